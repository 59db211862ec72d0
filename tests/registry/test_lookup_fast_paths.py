"""The one-call lookups take a healthy object the fast way, and only a bad one the slow way.

``seg.pin_open_mapping`` (an attach's segment) and ``seg.name_region``
(``Segment(sid)``) make one ``_core.open_segment`` call and check its
answer in Python; anything off goes the ``pin`` way for the exact error.
Both ways give the same answers, so what tells them apart is which way was
taken: a healthy segment must never need the slow way (issue 11 §3's
attach and handle costs depend on it), and a damaged one must take it (its
exact error comes from there).  The slow functions are wrapped to count
their calls, and still run.
"""

from __future__ import annotations

import errno
import os

import pytest

import vaspace as v
from vaspace.registry import seg as segmod
from vaspace_testing import SEG_BASE, MiB, count_calls

PAGE = os.sysconf("SC_PAGE_SIZE")


def _vas_holding(size: int = MiB, start: int = SEG_BASE) -> tuple[int, int]:
    vid = v.vas_create("fast", 0o600)
    sid = v.vas_seg_create("fast", start, start + size, 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    return vid, sid


@pytest.mark.parametrize("start", [SEG_BASE, SEG_BASE + 0xABC_DEF0_0000])
def test_a_healthy_segment_is_attached_the_fast_way(registry: str, monkeypatch: pytest.MonkeyPatch,
                                                    start: int) -> None:
    vid, sid = _vas_holding(start=start)
    slow = count_calls(monkeypatch, segmod, "_pin_open_mapping_slowly")
    v.vas_attach(0, vid, os.O_RDWR)
    try:
        assert [(m.start, m.end) for m in v.proc_maps(0, vid)] == [(start, start + MiB)]
    finally:
        v.vas_detach(0, vid)
    assert slow == []


@pytest.mark.parametrize("damage", ["size", "region", "junk", "link"])
def test_a_damaged_segment_is_attached_the_slow_way(registry: str, monkeypatch: pytest.MonkeyPatch,
                                                    damage: str) -> None:
    vid, sid = _vas_holding()
    obj = f"{registry}/seg/{sid}"
    if damage == "size":
        os.truncate(f"{obj}/data", PAGE)
    elif damage == "region":
        with open(f"{obj}/region", "w") as f:
            f.write(f"{SEG_BASE + MiB:x}-{SEG_BASE:x}\n")  # parses, but reversed
    elif damage == "junk":  # unparsable, with data of the size a (0, 1) region would have
        with open(f"{obj}/region", "w") as f:
            f.write("junk")
        os.truncate(f"{obj}/data", 1)
    else:
        os.link(f"{obj}/data", f"{registry}/planted-link")  # a second hard link
    slow = count_calls(monkeypatch, segmod, "_pin_open_mapping_slowly")
    with pytest.raises(OSError) as info:
        v.vas_attach(0, vid, os.O_RDWR)
    assert info.value.errno == errno.EIO and "damaged" in str(info.value)
    assert len(slow) == 1
    assert v.proc_vas(0) == []


@pytest.mark.parametrize("start", [SEG_BASE, SEG_BASE + 0xABC_DEF0_0000])
def test_a_segment_handle_is_made_the_fast_way(registry: str, monkeypatch: pytest.MonkeyPatch,
                                               start: int) -> None:
    sid = v.vas_seg_create("handle", start, start + 2 * MiB, 0o600)
    pins = count_calls(monkeypatch, segmod, "pin")
    seg = v.Segment(sid)
    assert (seg.name, seg.start, seg.end) == ("handle", start, start + 2 * MiB)
    assert pins == []


def test_a_hashed_name_makes_the_handle_the_slow_way(registry: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    name = "é" * 100  # too long for the index link: stored by hash, read from "name"
    sid = v.vas_seg_create(name, SEG_BASE, SEG_BASE + MiB, 0o600)
    pins = count_calls(monkeypatch, segmod, "pin")
    assert v.seg_name_region(sid) == (name, (SEG_BASE, SEG_BASE + MiB))
    assert len(pins) == 1


def test_a_segment_handle_leaves_no_descriptor_open(registry: str) -> None:
    """name_region asks open_segment for the region only: no data file is
    opened (its descriptor would have nobody to close it)."""
    sid = v.vas_seg_create("handle", SEG_BASE, SEG_BASE + MiB, 0o600)
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(3):
        assert v.seg_name_region(sid) == ("handle", (SEG_BASE, SEG_BASE + MiB))
    assert set(os.listdir("/proc/self/fd")) == before


def test_a_segment_whose_name_link_points_elsewhere_has_no_handle(registry: str) -> None:
    """Its name link retargeted at another segment: not live, EINVAL, whatever
    its region says."""
    sid = v.vas_seg_create("one", SEG_BASE, SEG_BASE + MiB, 0o600)
    other = v.vas_seg_create("two", SEG_BASE + 4 * MiB, SEG_BASE + 5 * MiB, 0o600)
    os.unlink(f"{registry}/names/seg/one")
    os.symlink(str(other), f"{registry}/names/seg/one")
    with pytest.raises(OSError) as info:
        v.seg_name_region(sid)
    assert info.value.errno == errno.EINVAL
