"""Segment delete's fast path: an empty reverse index is removed with one rmdir.

A segment no VAS holds has an empty ``vases/``; ``seg.delete`` removes it
first (proving no VAS holds the segment) and remakes it if the delete is
refused afterwards, so a refused delete leaves the segment whole.  A held
segment takes the long way (EBUSY, its index untouched).
"""

from __future__ import annotations

import errno
import os
import stat

import pytest

import vaspace as v
from vaspace_testing import SEG_BASE, in_child

NOBODY = 65534


def _reverse(registry: str, sid: int) -> os.stat_result:
    return os.lstat(f"{registry}/seg/{sid}/vases")


def test_an_unheld_segment_is_deleted_whole(registry: str) -> None:
    sid = v.vas_seg_create("s", SEG_BASE, SEG_BASE + 4096, 0o600)
    v.vas_seg_delete(sid)
    assert not os.path.lexists(f"{registry}/seg/{sid}")
    with pytest.raises(OSError) as exc:
        v.vas_seg_find("s")
    assert exc.value.errno == errno.ESRCH


def test_a_held_segment_is_busy_and_keeps_its_index(registry: str) -> None:
    vid = v.vas_create("v", 0o600)
    sid = v.vas_seg_create("s", SEG_BASE, SEG_BASE + 4096, 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    with pytest.raises(OSError) as exc:
        v.vas_seg_delete(sid)
    assert exc.value.errno == errno.EBUSY and "is attached to VAS 'v'" in str(exc.value)
    assert os.listdir(f"{registry}/seg/{sid}/vases") == [str(vid)]
    v.vas_seg_detach(vid, sid)
    v.vas_seg_delete(sid)
    assert not os.path.lexists(f"{registry}/seg/{sid}")


def _refused_then_attached() -> tuple[int, int, int]:
    """As nobody: a read-only segment of one's own; the delete is refused (EACCES)."""
    sid = v.vas_seg_create("ro", SEG_BASE, SEG_BASE + 4096, 0o444)
    try:
        v.vas_seg_delete(sid)
    except OSError as exc:
        err = exc.errno
    else:
        err = 0
    # The index was remade: another VAS may still attach the segment, and
    # then the segment is busy as before.
    vid = v.vas_create("v", 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDONLY)
    try:
        v.vas_seg_delete(sid)
    except OSError as exc:
        busy = exc.errno
    else:
        busy = 0
    return err, busy, sid


def test_a_refused_delete_remakes_the_index(registry: str) -> None:
    err, busy, sid = in_child(_refused_then_attached, uid=NOBODY).get()
    assert err == errno.EACCES and busy == errno.EBUSY
    st = _reverse(registry, sid)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o1777
    assert st.st_uid == NOBODY
    assert v.vas_seg_find("ro") == sid  # still published
