"""``Segment(sid)`` of a segment this process maps answers from its own mapping.

The handle's name and region are then the process's own facts (read from
the registry when the segment was attached), so a fresh process's first
``Segment(sid).view()`` does not pin the segment again.  A segment that is
not mapped here is looked up in the registry as before (EINVAL once it is
gone).  A segment cannot be detached or deleted through the API while a VAS
holding it is attached; removed behind the API's back, the mapping and its
view stay this process's, as a deleted file's mapping does.
"""

from __future__ import annotations

import errno
import os

import pytest

import vaspace as v
from vaspace.process import state as statemod
from vaspace_testing import SEG_BASE, MiB, in_child


def _setup() -> tuple[int, int]:
    vid = v.vas_create("m", 0o600)
    sid = v.vas_seg_create("m-seg", SEG_BASE, SEG_BASE + MiB, 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    return vid, sid


def test_a_mapped_segment_is_described_by_its_mapping(registry: str) -> None:
    vid, sid = _setup()
    v.vas_attach(0, vid, os.O_RDWR)
    seg = v.Segment(sid)
    assert (seg.name, seg.start, seg.end) == ("m-seg", SEG_BASE, SEG_BASE + MiB)
    v.vas_detach(0, vid)
    # Not mapped any more: the registry answers, the same facts.
    again = v.Segment(sid)
    assert (again.name, again.start, again.end) == ("m-seg", SEG_BASE, SEG_BASE + MiB)


def test_an_unmapped_deleted_segment_is_einval(registry: str) -> None:
    vid, sid = _setup()
    v.vas_seg_detach(vid, sid)
    v.vas_seg_delete(sid)
    with pytest.raises(OSError) as e:
        v.Segment(sid)
    assert e.value.errno == errno.EINVAL


def _remove_behind_the_api(root: str, sid: int) -> None:
    """What an out-of-API removal does: the name link and the directory go."""
    os.rename(f"{root}/seg/{sid}", f"{root}/gone-{sid}")
    os.unlink(f"{root}/names/seg/m-seg")


def test_a_view_after_the_segment_was_removed_while_mapped(registry: str) -> None:
    vid, sid = _setup()

    def child() -> tuple[str, int, int, int]:
        v.vas_attach(0, vid, os.O_RDWR)
        v.vas_switch(vid)
        v.Segment(sid).view()[:4] = b"abcd"
        _remove_behind_the_api(registry, sid)
        with pytest.raises(OSError) as e:
            v.vas_seg_getattr(sid)  # the registry no longer knows it
        seg = v.Segment(sid)  # this process still maps it: its mapping answers
        with seg.view() as mv:
            first = bytes(mv[:4])
        v.vas_switch(0)
        return seg.name, seg.start, e.value.errno, int(first == b"abcd")

    assert in_child(child).get() == ("m-seg", SEG_BASE, errno.EINVAL, 1)


def test_many_views_are_tracked_weakly_and_released(registry: str) -> None:
    vid, sid = _setup()
    v.vas_attach(0, vid, os.O_RDWR)
    seg = v.Segment(sid)
    with v.VAS(vid).active():
        kept = [seg.view() for _ in range(20)]
        for _ in range(100):
            seg.view()  # dropped at once: its reference dies with it
        m = next(m for m in statemod.state().space.mappings.values() if m.sid == sid)
        assert len(m.live_views()) == 20
        assert len(m._views or ()) < 60  # pruned as it grew, not one entry per view made
        seg.release_views()
        with pytest.raises(ValueError):
            kept[0][0]  # released: no access through it
    v.vas_detach(0, vid)  # nothing pins the mapping any more
