"""Segment delete: nothing changes before its commit point.

``seg.delete`` checks the reverse index (which VASes hold the segment) and
the caller's right to delete under the registry lock, and only then
unpublishes.  So a delete that is refused, or a deleter killed before the
unpublish, leaves the segment whole: findable, attachable, with the same
reverse index.
"""

from __future__ import annotations

import errno
import os
import signal

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
    before = _reverse(registry, sid)
    with pytest.raises(OSError) as exc:
        v.vas_seg_delete(sid)
    assert exc.value.errno == errno.EBUSY and "is attached to VAS 'v'" in str(exc.value)
    assert os.listdir(f"{registry}/seg/{sid}/vases") == [str(vid)]
    assert _reverse(registry, sid).st_ino == before.st_ino
    v.vas_seg_detach(vid, sid)
    v.vas_seg_delete(sid)
    assert not os.path.lexists(f"{registry}/seg/{sid}")


def _own_read_only_segment_refused() -> tuple[int, int, int, int]:
    """As nobody: a read-only segment of one's own (the owner may not write it)."""
    sid = v.vas_seg_create("ro", SEG_BASE, SEG_BASE + 4096, 0o444)
    root = os.environ["VASPACE_ROOT"]
    before = _reverse(root, sid).st_ino
    try:
        v.vas_seg_delete(sid)
    except OSError as exc:
        err = exc.errno or 0
    else:
        err = 0
    return sid, err, before, _reverse(root, sid).st_ino


def test_a_refused_delete_leaves_the_segment_whole(registry: str) -> None:
    sid, err, before, after = in_child(_own_read_only_segment_refused, uid=NOBODY).get()
    assert err == errno.EACCES
    assert after == before  # the same index, never removed and remade
    vid = v.vas_create("v", 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDONLY)  # not damaged
    assert v.vas_seg_find("ro") == sid


def _delete_killed_at_the_permission_check(sid: int) -> None:
    """Delete, dying (SIGKILL) at the permission check: after the busy check,
    before the unpublish, with the registry lock held."""
    from vaspace.registry.ref import Ref

    def die(*_args: object, **_kw: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    Ref.require = die  # type: ignore[method-assign]
    v.vas_seg_delete(sid)


def test_a_deleter_killed_before_the_commit_leaves_the_segment_whole(registry: str) -> None:
    sid = v.vas_seg_create("k", SEG_BASE, SEG_BASE + 4096, 0o600)
    before = _reverse(registry, sid)
    with pytest.raises(Exception, match="SIGKILL|signal|9"):
        in_child(_delete_killed_at_the_permission_check, sid).get()
    assert _reverse(registry, sid).st_ino == before.st_ino
    vid = v.vas_create("v", 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDWR)  # not damaged: its index is there
    v.vas_seg_detach(vid, sid)
    v.vas_seg_delete(sid)  # and the lock the dead deleter held is free
    assert not os.path.lexists(f"{registry}/seg/{sid}")
