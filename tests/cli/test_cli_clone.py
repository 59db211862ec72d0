"""``vaspace clone`` / ``vaspace seg clone``, and private ranges in show, maps and map."""

from __future__ import annotations

import json
import os

from cli_helpers import invoke, run

import vaspace

BASE = 0x4000_0000_0000
MiB = 1 << 20


def _setup() -> int:
    for args in (["create", "db", "--mode", "0640"],
                 ["seg", "create", "table", "--start", hex(BASE), "--size", "4M"],
                 ["seg", "attach", "db", "table", "--rw"]):
        assert invoke(*args).code == 0, args
    return vaspace.VAS.find("db").mmap(MiB, BASE + 8 * MiB)


def test_clone_commands(registry: str) -> None:
    addr = _setup()
    r = invoke("clone", "db", "db2")
    assert r.code == 0 and "cloned VAS 'db' to 'db2'" in r.stdout
    db2 = vaspace.VAS.find("db2")
    assert db2.seg_links() == vaspace.VAS.find("db").seg_links()
    assert db2.attr.mode == 0o640 and db2.private() == [(addr, addr + MiB, 3)]
    r = invoke("seg", "clone", "table", "table2", "--json")
    got = json.loads(r.stdout)
    assert got["kind"] == "segment" and got["name"] == "table2" and got["from"] == "table"
    assert vaspace.seg_region(got["id"]) == (BASE, BASE + 4 * MiB)
    # Errors are one line, with the RFC's reason.
    r = run("clone", "db", "db2")
    assert r.code == 1 and "exists" in r.err_line()
    vaspace.VAS.find("db").attach(os.O_RDWR, pid=0)
    try:
        r = invoke("seg", "clone", "table", "t3")
        assert r.code == 1 and "attached for writing" in r.stderr
    finally:
        vaspace.VAS.find("db").detach()


def test_private_ranges_are_shown(registry: str) -> None:
    addr = _setup()
    r = invoke("show", "db")
    assert r.code == 0 and "private   1, 1M" in r.stdout and "[private]" in r.stdout
    shown = json.loads(invoke("show", "db", "--json").stdout)
    assert shown["private"] == [{"start": addr, "end": addr + MiB, "size": MiB, "type": "rw"}]
    lay = json.loads(invoke("map", "--json").stdout)
    (lane,) = [lane for lane in lay["lanes"] if lane["label"].startswith("db ")]
    boxes = {(b["segment"], b["private"]) for b in lane["boxes"]}
    assert boxes == {("table", False), ("[private]", True)}
    assert "[private]" in invoke("map").stdout
    vas = vaspace.VAS.find("db").attach()
    try:
        maps = json.loads(invoke("maps", str(os.getpid()), "db", "--json").stdout)
        assert {"start": addr, "end": addr + MiB, "size": MiB, "access": "rw-",
                "segment": "[private]", "private": True} in maps
        assert "[private]" in invoke("maps", str(os.getpid()), "db").stdout
    finally:
        vas.detach()
