"""Text listings show a damaged object as ``damaged`` instead of failing (issue 11 §1.4).

An object is damaged when its files are not what vaspace writes: its owner
wrote junk into a segment's ``region``, or a FIFO stands where a VAS's
``lock`` was.  ``ls``, ``seg ls``, ``map`` and ``show`` (of it, or of
anything else) must still answer, and say which object is damaged.
"""

from __future__ import annotations

import json
import os

import pytest
from cli_helpers import invoke

import vaspace

BASE = 0x4000_0000_0000


@pytest.fixture
def damaged(registry: str) -> dict[str, int]:
    """VAS ``db`` holds segments ``bad`` (junk region) and ``good``; VAS ``broken``
    has a FIFO as its lock file; VAS ``other`` is fine and unrelated."""
    db = vaspace.vas_create("db", 0o600)
    bad = vaspace.vas_seg_create("bad", BASE, BASE + 4096, 0o600)
    good = vaspace.vas_seg_create("good", BASE + 8192, BASE + 12288, 0o600)
    vaspace.vas_seg_attach(db, bad, os.O_RDWR)
    vaspace.vas_seg_attach(db, good, os.O_RDWR)
    other = vaspace.vas_create("other", 0o600)
    broken = vaspace.vas_create("broken", 0o600)
    region = f"{registry}/seg/{bad}/region"
    os.chmod(region, 0o644)
    with open(region, "w") as f:
        f.write("not enough values")
    os.unlink(f"{registry}/vas/{broken}/lock")
    os.mkfifo(f"{registry}/vas/{broken}/lock")
    return {"db": db, "bad": bad, "good": good, "other": other, "broken": broken}


def _ok(*args: str) -> str:
    res = invoke(*args, COLUMNS="200")
    assert res.code == 0, (args, res.stdout, res.stderr)
    return res.stdout


def _row(text: str, name: str) -> str:
    """The table row whose NAME cell (the second) starts with ``name``."""
    rows = [line for line in text.splitlines()
            if line.count("│") > 3 and line.split("│")[2].strip().split(" ")[0] == name]
    assert len(rows) == 1, (name, text)
    return rows[0]


def test_ls_marks_the_damaged_segment_and_vas(damaged: dict[str, int]) -> None:
    text = _ok("ls")
    seg_row = _row(text, "bad")
    assert "bad (damaged)" in seg_row and seg_row.split("│")[6].strip() == "damaged"
    assert "[0x0" not in seg_row  # no made-up region
    assert "[0x400000002000, 0x400000003000)" in _row(text, "good")
    assert "bad (damaged), good" in _row(text, "db")
    broken = _row(text, "broken").split("│")
    assert broken[2].strip() == "broken (damaged)"
    assert [c.strip() for c in broken[3:6]] == ["-", "-", "damaged"]
    assert _row(text, "other").split("│")[5].strip() == "0600"


def test_seg_ls_marks_the_damaged_segment(damaged: dict[str, int]) -> None:
    row = _row(_ok("seg", "ls"), "bad")
    cells = [c.strip() for c in row.split("│")]
    assert cells[2] == "bad (damaged)" and cells[6] == "damaged" and cells[7] == "-"


def test_map_names_the_damaged_segment_in_its_lane(damaged: dict[str, int]) -> None:
    text = _ok("map")
    lane = next(line for line in text.splitlines() if line.startswith("db (vid"))
    assert "good" in lane and f"bad (damaged) (sid {damaged['bad']})" in lane
    doc = json.loads(_ok("map", "--json"))
    lanes = {lane["label"]: lane for lane in doc["lanes"]}
    db = lanes[f"db (vid {damaged['db']})"]
    assert db["damaged"] == [f"bad (damaged) (sid {damaged['bad']})"]
    assert [b["segment"] for b in db["boxes"]] == ["good"]
    assert lanes[f"broken (damaged) (vid {damaged['broken']})"]["damaged"] == []


def test_show_of_the_holder_the_damaged_and_an_unrelated_object(damaged: dict[str, int]) -> None:
    db = _ok("show", "db")
    line = next(line for line in db.splitlines() if f"(sid {damaged['bad']})" in line)
    assert "damaged" in line and "0x000000000000" not in line
    bad = _ok("seg", "show", "bad")
    assert "damaged" in bad.splitlines()[0] and "region  damaged" in bad
    assert "VAS 'other'" in _ok("show", "other")
    broken = _ok("show", "broken")
    assert "damaged" in broken.splitlines()[0] and "owner     unknown (damaged)" in broken


def test_json_flags_a_damaged_segment_inside_its_vas(damaged: dict[str, int]) -> None:
    doc = json.loads(_ok("ls", "--json"))
    vases = {v["name"]: v for v in doc["vases"]}
    segs = {s["name"]: s["damaged"] for s in vases["db"]["segments"]}
    assert segs == {"bad": True, "good": False}
    assert vases["broken"]["damaged"] is True and vases["other"]["damaged"] is False
