"""``--json`` output of every listing: valid JSON, the documented keys, true values."""

from __future__ import annotations

import json
import os

import pytest
from cli_helpers import Holder, invoke, run

import vaspace

BASE = 0x4000_0000_0000
MiB = 1 << 20

VAS_KEYS = {"kind", "id", "name", "uid", "gid", "owner", "group", "mode", "size", "segments",
            "holders", "damaged", "private"}
SEG_KEYS = {"kind", "id", "name", "uid", "gid", "owner", "group", "mode", "start", "end", "size",
            "vases", "damaged"}
VAS_SEG_KEYS = {"id", "name", "type", "start", "end", "size", "damaged"}


def _setup() -> None:
    """db holds table (rw) and idx (ro); cache holds table (ro); loose is in no VAS."""
    for args in (["create", "db"], ["create", "cache", "--mode", "0640"],
                 ["seg", "create", "table", "--start", "0x4000_0000_0000", "--size", "64M"],
                 ["seg", "create", "idx", "--start", hex(BASE + 256 * MiB), "--size", "4K"],
                 ["seg", "create", "loose", "--start", hex(BASE + 1024 * MiB),
                  "--end", hex(BASE + 1026 * MiB)],
                 ["seg", "attach", "db", "table", "--rw"], ["seg", "attach", "db", "idx", "--ro"],
                 ["seg", "attach", "cache", "table", "--ro"]):
        r = invoke(*args)
        assert r.code == 0, (args, r.stderr)
        assert r.stderr == ""


def test_ls_json_keys_and_values(registry: str) -> None:
    _setup()
    doc = json.loads(invoke("ls", "--json").stdout)
    assert set(doc) == {"registry", "window", "vases", "segments"}
    assert doc["registry"] == registry
    assert doc["window"] == {"start": vaspace.window()[0], "end": vaspace.window()[1]}
    vases = {v["name"]: v for v in doc["vases"]}
    assert set(vases) == {"db", "cache"}
    for v in vases.values():
        assert set(v) == VAS_KEYS and v["kind"] == "vas"
        for s in v["segments"]:
            assert set(s) == VAS_SEG_KEYS
    db = vases["db"]
    assert db["id"] == vaspace.vas_find("db")
    assert db["uid"] == os.getuid() and db["mode"] == "0600"
    assert vases["cache"]["mode"] == "0640"
    assert [(s["name"], s["type"]) for s in db["segments"]] == [("table", "rw"), ("idx", "ro")]
    assert db["size"] == 64 * MiB + 4096
    assert db["holders"] == []
    segs = {s["name"]: s for s in doc["segments"]}
    for s in segs.values():
        assert set(s) == SEG_KEYS and s["kind"] == "segment"
    assert (segs["table"]["start"], segs["table"]["end"]) == (BASE, BASE + 64 * MiB)
    assert segs["loose"]["size"] == 2 * MiB and segs["loose"]["vases"] == []
    assert sorted((v["name"], v["type"]) for v in segs["table"]["vases"]) == [
        ("cache", "ro"), ("db", "rw")]


def test_show_create_and_seg_json(registry: str) -> None:
    created = json.loads(invoke("create", "x", "--json").stdout)
    assert created == {"kind": "vas", "id": vaspace.vas_find("x"), "name": "x"}
    seg = json.loads(invoke("seg", "create", "s", "--start", hex(BASE), "--size", "1M",
                            "--json").stdout)
    assert seg == {"kind": "segment", "id": vaspace.vas_seg_find("s"), "name": "s",
                   "start": BASE, "end": BASE + MiB, "size": MiB}
    invoke("seg", "attach", "x", "s", "--rw")
    shown = json.loads(invoke("show", "x", "--json").stdout)
    assert set(shown) == VAS_KEYS and shown["segments"][0]["name"] == "s"
    # by id gives the same document; a name with no VAS falls back to the segment
    assert json.loads(invoke("show", str(created["id"]), "--json").stdout) == shown
    seg_doc = json.loads(invoke("show", "s", "--json").stdout)
    assert set(seg_doc) == SEG_KEYS and seg_doc["vases"] == [
        {"id": created["id"], "name": "x", "type": "rw"}]
    assert json.loads(invoke("seg", "show", "s", "--json").stdout) == seg_doc
    listed = json.loads(invoke("seg", "ls", "--json").stdout)
    assert listed == [seg_doc]


def test_digit_names_need_the_name_prefix(registry: str) -> None:
    vid = vaspace.vas_create("2024", 0o600)
    other = vaspace.vas_create("other", 0o600)
    assert json.loads(invoke("show", "name:2024", "--json").stdout)["id"] == vid
    assert json.loads(invoke("show", str(other), "--json").stdout)["name"] == "other"


def test_ps_and_maps_json_of_another_process(registry: str) -> None:
    _setup()
    with Holder("db", "rw") as h:
        rows = json.loads(run("ps", "--json").stdout)
        assert rows == [{"pid": h.pid, "command": "python", "vid": vaspace.vas_find("db"),
                         "name": "db", "type": "rw", "threads": rows[0]["threads"]}]
        # The holder switched into db with its main thread, whose tid is its pid.
        assert rows[0]["threads"] == [h.pid]
        assert json.loads(invoke("ps", str(h.pid), "--json").stdout) == rows
        text = run("ps")
        assert "\x1b[" not in text.stdout  # not a terminal: no colour codes
        assert f"{h.pid}" in text.stdout and "db" in text.stdout and "rw" in text.stdout
        maps = json.loads(invoke("maps", str(h.pid), "db", "--json").stdout)
        assert maps == [
            {"start": BASE, "end": BASE + 64 * MiB, "size": 64 * MiB, "access": "rw-",
             "segment": "table", "private": False},
            {"start": BASE + 256 * MiB, "end": BASE + 256 * MiB + 4096, "size": 4096,
             "access": "r--", "segment": "idx", "private": False}]
        doc = json.loads(invoke("ls", "--json").stdout)
        db = next(v for v in doc["vases"] if v["name"] == "db")
        assert db["holders"] == [{"pid": h.pid, "type": "rw"}]
        lanes = json.loads(invoke("map", "--json").stdout)["lanes"]
        assert [lane["attached"] for lane in lanes] == [f"pid {h.pid} (rw)", "", ""]
    assert json.loads(invoke("ps", "--json").stdout) == []


def test_ps_of_a_process_without_vases(registry: str) -> None:
    assert json.loads(invoke("ps", str(os.getpid()), "--json").stdout) == []
    assert "has no VAS attached" in invoke("ps", str(os.getpid())).stdout


def test_map_json_layout_is_ordered_and_log_scaled(registry: str) -> None:
    _setup()
    doc = json.loads(invoke("map", "--json").stdout)
    lanes = {lane["label"].split()[0]: lane for lane in doc["lanes"]}
    assert set(lanes) == {"db", "cache", "(in"}
    db = lanes["db"]["boxes"]
    assert [b["segment"] for b in db] == ["table", "idx"]
    assert [b["shared"] for b in db] == [True, False]
    width = {b["segment"]: b["x1"] - b["x0"] for lane in doc["lanes"] for b in lane["boxes"]}
    # 64 MiB is 16384x a 4 KiB page, but only about 4 log-units wider.
    assert width["idx"] == pytest.approx(1.5)
    assert width["table"] == pytest.approx(1.5 + 4.214, abs=0.01)
    assert db[0]["x1"] < db[1]["x0"]  # the gap between them is kept, compressed


def test_text_listings_name_everything(registry: str) -> None:
    _setup()
    text = invoke("ls").stdout
    for word in ("db", "cache", "table", "idx", "loose", "0x400000000000", "64M", "0640"):
        assert word in text
    shown = invoke("show", "db").stdout
    assert "table" in shown and "idx" in shown and "0x400010000000" in shown
    picture = invoke("map").stdout
    assert "table* 64M rw" in picture and "idx 4K ro" in picture and "≈" in picture


def test_every_json_key_is_documented() -> None:
    """docs/cli.md documents the stable keys; a key added here must be added there."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    keys = VAS_KEYS | SEG_KEYS | VAS_SEG_KEYS | {
        "registry", "window", "vases", "segments", "pid", "command", "vid", "threads",
        "access", "segment", "lanes", "label", "attached", "boxes", "shared", "x0", "x1",
        "private", "from",
        "vas_switch_ns", "vas_switch_nomove_ns", "proc_switch_pinned_ns",
        "proc_switch_unpinned_ns", "machine",
        "nodes", "rounds", "n"}
    missing = sorted(k for k in keys if f"`{k}`" not in doc and f'"{k}"' not in doc)
    assert missing == []
