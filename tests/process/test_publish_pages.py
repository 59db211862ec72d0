"""Publishing the thread slots touches no page of the shared file until a
thread is inside a VAS, and other processes still see the threads that are.

A first attach publishes the slots (procs/<pid>-<start>.threads).  With no
thread inside a VAS and no lazy-attach request, the file reads as zeros
already, so nothing is written: each tmpfs page first written would be
allocated (issue 11 §3, the first answer).  A later switch writes its slot
into the shared mapping, where ``proc_vas`` of another process reads it.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

import vaspace as v
from vaspace.registry import records
from vaspace_testing import SEG_BASE, MiB, in_child, start_child


def _vas(name: str) -> int:
    vid = v.vas_create(name, 0o666)
    sid = v.vas_seg_create(name, SEG_BASE, SEG_BASE + MiB, 0o666)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    return vid


def _slots_blocks(root: str) -> int:
    path = f"{root}/procs/{os.getpid()}-{records.start_time(os.getpid())}.threads"
    return os.stat(path).st_blocks


def test_a_first_attach_publishes_without_touching_a_page(registry: str) -> None:
    vid = _vas("pages")

    def child() -> tuple[int, int]:
        v.vas_attach(0, vid, os.O_RDONLY)  # the first attach of this process: publishes
        before = _slots_blocks(registry)
        v.vas_switch(vid)  # the slot is written now, into the shared file
        after = _slots_blocks(registry)
        v.vas_switch(0)
        return before, after

    before, after = in_child(child).get()
    assert before == 0
    assert after > 0


def _inside(vid: int, w: int) -> None:
    """In a child: attach, switch in, tell the parent our tid, wait to be killed."""
    v.vas_attach(0, vid, os.O_RDONLY)
    v.vas_switch(vid)
    os.write(w, str(threading.get_native_id()).encode())
    time.sleep(60)


def test_publish_with_a_mode_sizes_the_file_and_sets_its_mode(tmp_path) -> None:
    from vaspace import _core

    fd = os.open(tmp_path / "slots", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        def publish() -> tuple[int, int, int]:
            _core.publish_threads(fd, 0o644)
            st = os.fstat(fd)
            return st.st_mode & 0o7777, st.st_size, st.st_blocks

        assert in_child(publish).get() == (0o644, _core.slots_size(), 0)
    finally:
        os.close(fd)


def _inside_under_umask(vid: int, w: int) -> None:
    os.umask(0o077)  # the create's mode is masked to 0600: publishing must widen it
    _inside(vid, w)


@pytest.mark.parametrize("holder_fn", [_inside, _inside_under_umask])
def test_other_processes_see_the_thread_inside(registry: str, holder_fn) -> None:
    vid = _vas("seen")
    r, w = os.pipe()
    holder = start_child(holder_fn, vid, w)
    try:
        os.close(w)
        tid = int(os.read(r, 32))
        pid = holder.pid

        def look() -> list[tuple[int, tuple[int, ...]]]:
            return [(pv.vid, pv.threads) for pv in v.proc_vas(pid)]

        assert look() == [(vid, (tid,))]
        assert in_child(look).get() == [(vid, (tid,))]
        assert in_child(look, uid=65534).get() == [(vid, (tid,))]
    finally:
        os.close(r)
        holder.kill()


def test_a_forked_child_records_and_publishes_under_its_own_pid(registry: str) -> None:
    """The pid the attach's record, slots file and request check use is the state's
    (no getpid per call): after a fork it must be the child's, not the parent's,
    even when the parent had attached, published and read its start time first."""
    first, second = _vas("forked-parent"), _vas("forked-child")
    v.vas_attach(0, first, os.O_RDONLY)  # the parent publishes and knows its start time

    def child() -> tuple[int, int | None, bool, bool, list[int]]:
        v.vas_attach(0, second, os.O_RDONLY)
        pid = os.getpid()
        started = records.start_time(pid)
        slots = os.path.exists(f"{registry}/procs/{pid}-{started}.threads")
        record = os.path.lexists(f"{registry}/procs/{second}.{pid}")
        return pid, started, slots, record, sorted(pv.vid for pv in v.proc_vas(pid))

    try:
        pid, started, slots, record, vids = in_child(child).get()
        assert pid != os.getpid() and started is not None
        assert slots and record
        assert vids == [second]  # its own attachment, under its pid (a child inherits none)
    finally:
        v.vas_detach(0, first)
