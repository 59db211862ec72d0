"""Threads that died inside a VAS without leaving it are pruned.

A thread normally leaves its VAS as it exits: a guard in its thread-local
storage switches it out.  A thread that ends at the OS level (the ``exit``
system call, as a C library or a crashed extension may do) skips every
Python clean-up, so its slot in the thread table still says it is inside
its VAS.  The slow path prunes such slots (their ``/proc/self/task/<tid>``
is gone), so the dead thread's mappings get parked and stop blocking the
live threads' switches.  Each case runs in a child: a thread that ends this
way leaves the interpreter a thread state that is never cleaned up.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time

import vaspace as v
from vaspace import _core
from vaspace_testing import SEG_BASE, in_child, vas_with_byte

SYS_exit = 60  # x86-64: ends the calling thread only (exit_group ends the process)


def world(name: str, byte: int) -> int:
    """A VAS with one segment at SEG_BASE whose first byte is ``byte`` (not attached)."""
    vid = vas_with_byte(name, byte)
    v.vas_detach(0, vid)
    return vid


def _die_inside(vid: int) -> int:
    """Start a thread that enters ``vid`` and ends by the exit system call.

    Returns its native id once the OS has reaped it.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    tids: list[int] = []
    entered = threading.Event()

    def body() -> None:
        v.vas_switch(vid)
        tids.append(threading.get_native_id())
        entered.set()
        libc.syscall(SYS_exit, 0)  # no Python clean-up: the guard never runs

    threading.Thread(target=body, daemon=True).start()
    assert entered.wait(10), "the thread did not enter the VAS"
    tid = tids[0]
    for _ in range(1000):  # a dying thread leaves /proc at once; bound the wait anyway
        if not os.path.exists(f"/proc/self/task/{tid}"):
            return tid
        time.sleep(0.005)
    raise AssertionError(f"thread {tid} is still in /proc/self/task")


def _switch_after_death(a: int, b: int) -> dict:
    v.vas_attach(0, a, os.O_RDWR)
    v.vas_attach(0, b, os.O_RDWR)
    tid = _die_inside(a)
    out: dict = {"slot_before": (tid, a) in _core.thread_vids()}
    # b maps the same range with another segment: only a's mapping, still
    # placed for the dead thread, could stand in the way.
    try:
        v.vas_switch(b)
    except OSError as exc:
        out["errno"] = exc.errno
        return out
    out["active"] = v.active_vas()
    out["byte"] = ctypes.c_ubyte.from_address(SEG_BASE).value
    out["slots"] = _core.thread_vids()
    v.vas_switch(0)
    v.vas_detach(0, a)  # nobody is inside a any more
    out["attached"] = [p.vid for p in v.proc_vas(0)]
    return out


def test_thread_dead_inside_vas_is_pruned(registry: str) -> None:
    a, b = world("a", 0xA1), world("b", 0xB2)
    me = threading.get_native_id()
    out = in_child(_switch_after_death, a, b).get()
    assert out["slot_before"], out  # the case the prune exists for was reached
    assert "errno" not in out, out
    assert out["active"] == b and out["byte"] == 0xB2
    assert [vid for tid, vid in out["slots"] if tid != me] == [b]  # the dead slot is gone
    assert out["attached"] == [b]


def _detach_after_death(a: int) -> dict:
    v.vas_attach(0, a, os.O_RDWR)
    tid = _die_inside(a)
    out: dict = {"slot_before": (tid, a) in _core.thread_vids()}
    try:
        v.vas_detach(0, a)
        out["detached"] = True
    except OSError as exc:
        out["errno"] = exc.errno
        out["message"] = str(exc)
    return out


def test_detach_after_thread_died_inside(registry: str) -> None:
    """No switch comes first: the detach itself must not count the dead thread."""
    a = world("a", 0xA1)
    out = in_child(_detach_after_death, a).get()
    assert out["slot_before"], out
    assert out.get("detached") and "errno" not in out, out  # not EBUSY


def test_thread_that_exits_inside_leaves_at_once(registry: str) -> None:
    """The common path: the thread's guard parks its VAS as it ends, before any prune.

    Until then the dead thread would still count as inside: other processes
    would see it in /proc-style views and the fast path would stand aside.
    """
    a = world("a", 0xA1)
    v.vas_attach(0, a, os.O_RDWR)
    t = threading.Thread(target=v.vas_switch, args=(a,))
    t.start()
    t.join()
    assert (t.native_id, a) not in _core.thread_vids()
    assert _core.threads_in_vas() == 0
    v.vas_detach(0, a)
