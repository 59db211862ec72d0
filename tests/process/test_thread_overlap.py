"""Threads in VASes whose segments overlap only in part.

Two threads of a process may be in different VASes at once only if the
window can show both: a switch that needs a range another thread's VAS
maps differently fails with EFAULT and leaves the thread where it was.
The conflict must be found for any overlap, not only for segments with
the same start; otherwise the second switch's ``mremap`` would replace part
of the first thread's mapping under it.  Each case runs in a child, since a
missed conflict can end in SIGSEGV.
"""

from __future__ import annotations

import errno
import os
import threading

import pytest

import vaspace as v
from vaspace_testing import SEG_BASE, in_child, peek, poke

PAGE = os.sysconf("SC_PAGE_SIZE")
BASE = SEG_BASE + (1 << 30)  # room below for the segment that starts earlier


def world(name: str, start: int, pages: int) -> tuple[int, int]:
    vid = v.vas_create(name, 0o600)
    sid = v.vas_seg_create(f"{name}-seg", start, start + pages * PAGE, 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    return vid, sid


def _two_threads(first: int, second: int, first_pages: list[int], side: int = 0) -> dict:
    """The main thread enters ``first`` and tags its pages; a second thread
    tries ``second``.  Report what each saw.

    With ``side``, a bystander thread sits in that VAS meanwhile: it is in
    nobody's way, so the EFAULT must not name it.
    """
    v.vas_attach(0, first, os.O_RDWR)
    v.vas_attach(0, second, os.O_RDWR)
    v.vas_switch(first)
    for i, addr in enumerate(first_pages):
        poke(addr, 0x40 + i)
    out: dict = {}
    inside, leave = threading.Event(), threading.Event()

    def bystander() -> None:
        v.vas_switch(side)
        inside.set()
        leave.wait(10)
        v.vas_switch(0)

    if side:
        v.vas_attach(0, side, os.O_RDWR)
        by = threading.Thread(target=bystander)
        by.start()
        assert inside.wait(10)

    def worker(key: str) -> None:
        seen: dict[str, object] = {}
        try:
            v.vas_switch(second)
        except OSError as exc:
            seen["errno"] = exc.errno
            seen["message"] = str(exc)
        seen["active"] = v.active_vas()
        out[key] = seen

    t = threading.Thread(target=worker, args=("try",))
    t.start()
    t.join()
    if side:
        leave.set()
        by.join()
    out["first_view"] = [peek(addr) for addr in first_pages]
    out["main_tid"] = threading.get_native_id()
    out["main_active"] = v.active_vas()
    # Once the first thread leaves, the second VAS may be entered.
    v.vas_switch(0)
    t = threading.Thread(target=worker, args=("retry",))
    t.start()
    t.join()
    return out


@pytest.mark.parametrize("shift", [1, -1, 2], ids=["starts-inside", "ends-inside", "tail-only"])
def test_partial_overlap_is_efault(registry: str, shift: int) -> None:
    # first: 3 pages at BASE.  second: 3 pages at BASE + shift pages, so
    # they overlap in 3 - |shift| pages and never share a start address.
    first, _ = world("first", BASE, 3)
    second, _ = world("second", BASE + shift * PAGE, 3)
    side, _ = world("side", BASE + 16 * PAGE, 1)  # clear of both
    pages = [BASE + i * PAGE for i in range(3)]
    out = in_child(_two_threads, first, second, pages, side).get()
    tried = out["try"]
    assert tried["errno"] == errno.EFAULT, out
    assert "collides" in tried["message"] and "first-seg" in tried["message"]
    assert f"thread(s) [{out['main_tid']}]" in tried["message"]  # who is in the way
    assert tried["active"] == 0  # the worker stayed in the original AS
    # The first thread's view is intact, every page of it.
    assert out["first_view"] == [0x40, 0x41, 0x42]
    assert out["main_active"] == first
    assert out["retry"] == {"active": second}


def test_adjacent_segments_do_not_conflict(registry: str) -> None:
    """Touching is not overlapping: both threads get their VAS."""
    first, _ = world("first", BASE, 2)
    second, _ = world("second", BASE + 2 * PAGE, 2)
    out = in_child(_two_threads, first, second, [BASE, BASE + PAGE]).get()
    assert out["try"] == {"active": second}
    assert out["first_view"] == [0x40, 0x41]
    assert out["main_active"] == first
    assert out["retry"] == {"active": second}
