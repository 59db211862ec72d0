"""A forked child must not keep its parent's VAS locks.

An attachment is an ``flock`` on the VAS's lock file, and flock belongs to
the open file, which fork shares with the child.  So if the child kept the
inherited lock fd, the VAS would stay locked for the child's whole life after
the parent detached or died, and everyone else would get EBUSY.  EBUSY while
the parent holds the VAS proves nothing (someone holds it); these tests make
the parent let go while its child lives on, then a third process must be
able to attach for writing.
"""

from __future__ import annotations

import errno
import os
import select
import signal

import vaspace as v
from vaspace_testing import SEG_BASE, MiB, in_child


def make_vas() -> int:
    vid = v.vas_create("db", 0o600)
    sid = v.vas_seg_create("db-seg", SEG_BASE, SEG_BASE + MiB, 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    return vid


def try_attach(vid: int, access: int) -> int:
    """In a fresh process: attach ``vid``; return 0 or the errno."""
    try:
        v.vas_attach(0, vid, access)
    except OSError as exc:
        return exc.errno or -1
    v.vas_detach(0, vid)
    return 0


def fork_lingering_child(go_r: int, go_w: int) -> int:
    """Fork a child that reports it is up, then lives until ``go_r`` reads EOF (or 30 s)."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(go_w)  # the child's copy would keep its own pipe open
            os.write(ready_w, b"up")
            select.select([go_r], [], [], 30)
        finally:
            os._exit(0)
    os.close(ready_w)
    assert os.read(ready_r, 2) == b"up"
    os.close(ready_r)
    return pid


def lingering_child() -> tuple[int, int]:
    """A child of this process that lives on; returns (pid, fd to close to end it)."""
    go_r, go_w = os.pipe()
    pid = fork_lingering_child(go_r, go_w)
    os.close(go_r)
    return pid, go_w


def end(pid: int, go_w: int) -> None:
    os.close(go_w)
    os.waitpid(pid, 0)


def test_parent_detaches_child_lives(registry: str) -> None:
    vid = make_vas()
    v.vas_attach(0, vid, os.O_RDWR)
    v.vas_switch(vid)
    pid, go = lingering_child()
    try:
        # The parent holds it: someone does.
        assert in_child(try_attach, vid, os.O_RDWR).get() == errno.EBUSY
        v.vas_switch(0)
        v.vas_detach(0, vid)
        # The parent let go and its child is alive: nobody holds it now.
        assert in_child(try_attach, vid, os.O_RDWR).get() == 0
        assert v.vas_holders(vid) == []
    finally:
        end(pid, go)


def _attach_fork_and_exit(vid: int, go_r: int, go_w: int) -> int:
    """In a child: attach ``vid`` writable, fork a grandchild that lingers, return its pid."""
    v.vas_attach(0, vid, os.O_RDWR)
    v.vas_switch(vid)
    return fork_lingering_child(go_r, go_w)


def test_parent_dies_child_lives(registry: str) -> None:
    vid = make_vas()
    go_r, go_w = os.pipe()  # the grandchild lives until the test closes go_w
    try:
        grandchild = in_child(_attach_fork_and_exit, vid, go_r, go_w).get()
        try:
            # The attaching process is gone; its child (the grandchild) is not.
            os.kill(grandchild, 0)
            v.vas_attach(0, vid, os.O_RDWR)  # must not be EBUSY
            assert [h.pid for h in v.vas_holders(vid)] == [os.getpid()]
            v.vas_detach(0, vid)
        finally:
            os.kill(grandchild, signal.SIGKILL)
    finally:
        os.close(go_r)
        os.close(go_w)


def test_readers_children_do_not_block_a_writer(registry: str) -> None:
    """The same for a shared (read-only) lock: a reader's child keeps no LOCK_SH."""
    vid = make_vas()
    v.vas_attach(0, vid, os.O_RDONLY)
    pid, go = lingering_child()
    try:
        assert in_child(try_attach, vid, os.O_RDWR).get() == errno.EBUSY
        assert in_child(try_attach, vid, os.O_RDONLY).get() == 0  # readers share
        v.vas_detach(0, vid)
        assert in_child(try_attach, vid, os.O_RDWR).get() == 0
    finally:
        end(pid, go)
