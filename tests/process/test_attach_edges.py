"""Attach and detach at their edges: pid bounds, failed attaches, forged regions.

Each test here kills mutants of ``process/attach.py`` that the main attach
tests let live (see scripts/mutate.py).
"""

from __future__ import annotations

import errno
import os
import select

import pytest

import vaspace as v
from vaspace_testing import SEG_BASE, MiB, errno_of, in_child


def make_vas(name: str = "v", segs: int = 1) -> tuple[int, list[int]]:
    vid = v.vas_create(name, 0o666)
    sids = []
    for i in range(segs):
        start = SEG_BASE + 2 * i * MiB
        sid = v.vas_seg_create(f"{name}-s{i}", start, start + MiB, 0o666)
        v.vas_seg_attach(vid, sid, os.O_RDWR)
        sids.append(sid)
    return vid, sids


def test_pid_bounds(registry: str) -> None:
    """A pid is a C int: the largest one is a pid nobody has (ESRCH), one more is EINVAL."""
    vid, _ = make_vas()
    assert errno_of(v.vas_attach, 2**31 - 1, vid, os.O_RDONLY) == errno.ESRCH
    for bad in (2**31, 2**32, -1):
        assert errno_of(v.vas_attach, bad, vid, os.O_RDONLY) == errno.EINVAL
        assert errno_of(v.vas_detach, bad, vid) == errno.EINVAL


def test_failed_attach_holds_no_lock(registry: str) -> None:
    """An attach that fails after it took the sharing lock lets it go."""
    vid, (sid,) = make_vas()
    with open(f"{registry}/seg/{sid}/region", "w") as f:
        f.write("7f0000000000-7f0000100000\n")  # outside the window: EFAULT, after the lock
    fds = len(os.listdir("/proc/self/fd"))
    assert errno_of(v.vas_attach, 0, vid, os.O_RDWR) == errno.EFAULT
    assert len(os.listdir("/proc/self/fd")) == fds

    def writer_gets_it() -> int:
        return errno_of(v.vas_attach, 0, vid, os.O_RDWR)

    # The kernel's view: the writer's exclusive lock is free (EFAULT, not EBUSY).
    assert in_child(writer_gets_it).get() == errno.EFAULT


def test_region_forged_to_overlap_another_segment_is_refused(registry: str) -> None:
    """The owner of one segment rewrites its region over the VAS's other segment."""
    vid, (_, sid) = make_vas(segs=2)
    start = SEG_BASE + MiB // 2  # the same size: only the place changes
    with open(f"{registry}/seg/{sid}/region", "w") as f:
        f.write(f"{start:x}-{start + MiB:x}\n")
    with pytest.raises(OSError) as e:
        v.vas_attach(0, vid, os.O_RDWR)
    assert e.value.errno == errno.EFAULT and "overlaps segment" in str(e.value)
    assert v.proc_vas(0) == []


def test_detach_of_another_process_that_lacks_it(registry: str) -> None:
    vid, _ = make_vas()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_w)
            select.select([go_r], [], [], 30)
        finally:
            os._exit(0)
    os.close(go_r)
    try:
        with pytest.raises(OSError) as e:
            v.vas_detach(pid, vid)
        assert e.value.errno == errno.EINVAL and f"not attached to pid {pid}" in str(e.value)
    finally:
        os.close(go_w)
        os.waitpid(pid, 0)
