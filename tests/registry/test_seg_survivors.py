"""Segment checks that mutation testing found unasserted (issue 17, Deliver 3).

Each test pins one behaviour a caller can see: which argument an error
names, which way a damaged or changed segment goes, through the public API
on a real registry.
"""

from __future__ import annotations

import errno
import os

import pytest

import vaspace as v
from vaspace_testing import NOBODY, SEG_BASE, MiB, attach_outcome, in_child, require_root, set_acl


@pytest.mark.parametrize(("start", "end", "text"), [
    ("0", SEG_BASE + MiB, "start must be int, not str"),
    (SEG_BASE, 2.0, "end must be int, not float"),
    (None, b"x", "start must be int, not NoneType"),
])
def test_a_bad_bound_names_itself_and_its_own_type(registry: str, start: object, end: object,
                                                   text: str) -> None:
    with pytest.raises(OSError) as info:
        v.vas_seg_create("bad", start, end, 0o600)  # type: ignore[arg-type]
    assert info.value.errno == errno.EINVAL
    assert text in info.value.strerror


def _attach_and_list(vid: int) -> tuple[int, list]:
    """Attach read-write here: (errno or 0, this process's mappings of the VAS)."""
    try:
        v.vas_attach(0, vid, os.O_RDWR)
    except OSError as exc:
        return exc.errno, []
    return 0, v.proc_maps(0, vid)


def test_a_segment_directory_the_os_refuses_fails_the_attach(registry: str) -> None:
    """The segment's owner narrowed its directory (0o700): another user's attach
    of a VAS holding it is refused (EACCES), as pin refuses it, and does not
    pass the segment over as if it had been deleted."""
    require_root()
    vid = v.vas_create("open", 0o666)
    sid = v.vas_seg_create("narrowed", SEG_BASE, SEG_BASE + MiB, 0o666)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    assert in_child(_attach_and_list, vid, uid=NOBODY).get()[0] == 0  # as made: it maps
    os.chmod(f"{registry}/seg/{sid}", 0o700)
    assert in_child(_attach_and_list, vid, uid=NOBODY).get() == (errno.EACCES, [])


def test_a_fifo_for_a_file_is_named_as_damaged(registry: str) -> None:
    """A FIFO planted as a VAS's lock (opened by _core.open_regular) or as a
    segment's data (opened by Ref.open_stat, the slow way): EIO saying which
    file is not a regular file, from a child that must not block on it."""
    vid = v.vas_create("v", 0o600)
    sid = v.vas_seg_create("s", SEG_BASE, SEG_BASE + MiB, 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    data = f"{registry}/seg/{sid}/data"
    os.unlink(data)
    os.mkfifo(data, 0o600)
    err, text = in_child(attach_outcome, vid, timeout=20).get()
    assert err == errno.EIO and "its data is not a regular file" in text, text
    lock = f"{registry}/vas/{vid}/lock"
    os.unlink(lock)
    os.mkfifo(lock, 0o600)
    err, text = in_child(attach_outcome, vid, timeout=20).get()
    assert err == errno.EIO and "its lock is not a regular file" in text, text


def test_a_data_file_the_os_refuses_names_the_access(registry: str) -> None:
    """The bits let others read and write the segment; an ACL entry refuses
    NOBODY: EACCES saying which access the OS refused."""
    require_root()
    vid = v.vas_create("v", 0o666)
    sid = v.vas_seg_create("s", SEG_BASE, SEG_BASE + MiB, 0o666)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    set_acl(f"{registry}/seg/{sid}/data", nobody=0, other=6)
    for access, how in ((os.O_RDONLY, "reading"), (os.O_RDWR, "writing")):
        err, text = in_child(attach_outcome, vid, access, uid=NOBODY).get()
        assert err == errno.EACCES and f"cannot be opened for {how}" in text, text
