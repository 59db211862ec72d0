"""Issue 10's call orders (the non-heap ones) and their neighbours, each in a child.

Before the fix each of these killed the interpreter with SIGSEGV: a view
outlived the mapping under it.  Now the operation that would take the
memory away raises BufferError, changes nothing, and the view stays valid.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import time

import numpy as np
from viewutil import PAGE, refused, safely, world

import vaspace as v
from vaspace_testing import SEG_BASE


def test_view_then_switch_and_detach_then_read(registry: str) -> None:
    """``mv = seg.view()``, ``vas_switch(0)``, ``vas_detach``, then ``mv[0]``."""
    def case() -> None:
        vas, seg = world("a")
        v.vas_switch(vas.id)
        mv = seg.view()
        mv[0] = 42
        refused(BufferError, v.vas_switch, 0, match="segment 'a-seg'.*release")
        assert v.active_vas() == vas.id  # nothing changed
        exc = refused(OSError, v.vas_detach, 0, vas.id)
        assert exc.errno == errno.EBUSY
        assert mv[0] == 42  # the read that used to fault
        mv.release()
        v.vas_switch(0)
        v.vas_detach(0, vas.id)
        refused(ValueError, lambda: mv[0], match="released")
    safely(case)


def test_array_in_with_block_read_after(registry: str) -> None:
    """``a = seg.array()`` inside ``with vas.active():``, then ``a`` after it."""
    def case() -> None:
        vas, seg = world("a")
        try:
            with vas.active():
                a = seg.array("u4")
                a[:4] = [1, 2, 3, 4]
        except BufferError as exc:
            assert "'a-seg'" in str(exc)
        else:
            raise AssertionError("leaving the block with a live array must refuse")
        assert v.active_vas() == vas.id  # still inside: the array stays valid
        assert a[:4].tolist() == [1, 2, 3, 4]
        del a
        v.vas_switch(0)
    safely(case)


def test_view_in_another_world(registry: str) -> None:
    """Two VASes hold different segments at one address: a view pins its world."""
    def case() -> None:
        a, sa = world("a")
        b, sb = world("b")
        v.vas_switch(b.id)
        sb.view()[0] = 2
        v.vas_switch(a.id)
        mv = sa.view()
        mv[0] = 1
        refused(BufferError, v.vas_switch, b.id, match="'a-seg'")
        assert v.active_vas() == a.id and mv[0] == 1  # never B's byte
        del mv
        v.vas_switch(b.id)
        assert sb.view()[0] == 2
        v.vas_switch(0)
    safely(case)


def test_numpy_and_ctypes_made_from_a_view_pin_it(registry: str) -> None:
    def case() -> None:
        vas, seg = world("a")
        v.vas_switch(vas.id)
        mv = seg.view()
        arr = np.frombuffer(mv, dtype="u1")
        cbuf = (ctypes.c_char * PAGE).from_buffer(seg.view())
        mv.release()  # the array holds the buffer itself: still pinned
        refused(BufferError, v.vas_switch, 0, match="'a-seg'")
        arr[0] = 3
        del arr
        refused(BufferError, v.vas_switch, 0, match="'a-seg'")
        cbuf[1] = b"x"
        assert bytes(seg.view()[:2]) == b"\x03x"
        del cbuf
        v.vas_switch(0)
    safely(case)


def test_segment_and_vas_deletes_while_viewed(registry: str) -> None:
    """Every delete and detach of what a view shows is refused; nothing changes."""
    def case() -> None:
        vas, seg = world("a")
        v.vas_switch(vas.id)
        mv = seg.view()
        for fn, args in ((v.vas_seg_detach, (vas.id, seg.id)), (v.vas_delete, (vas.id,)),
                         (v.vas_seg_delete, (seg.id,)), (v.vas_detach, (0, vas.id))):
            exc = refused(OSError, fn, *args)
            assert exc.errno == errno.EBUSY, (fn, exc)
        assert [s for s, _ in vas.segments()] == [seg]
        mv[0] = 1
        mv.release()
        v.vas_switch(0)
        vas.detach()
        vas.detach_segment(seg)
        vas.delete()
        seg.delete()
    safely(case)


def test_thread_exits_inside_a_vas_with_a_live_view(registry: str) -> None:
    """The thread's VAS stays pinned; a later conflicting switch is refused."""
    def case() -> None:
        a, sa = world("a")
        b, _ = world("b")
        kept: list[memoryview] = []
        tids: list[int] = []

        def inside() -> None:
            tids.append(threading.get_native_id())
            v.vas_switch(a.id)
            mv = sa.view()
            mv[0] = 9
            kept.append(mv)

        t = threading.Thread(target=inside)
        t.start()
        t.join()
        while os.path.exists(f"/proc/self/task/{tids[0]}"):  # join() can beat the exit
            time.sleep(0.001)
        assert kept[0][0] == 9  # readable from this thread, which is in no VAS
        refused(BufferError, v.vas_switch, b.id, match="'a-seg'")
        assert v.active_vas() == 0
        kept.clear()
        v.vas_switch(b.id)  # the dead thread's mapping can go now
        v.vas_switch(0)
        a.detach()
    safely(case)


def test_lazy_detach_of_a_pinned_vas_is_dropped(registry: str) -> None:
    """Another process's detach request must not fail this process's next call."""
    from vaspace.process import attach
    from vaspace.registry import records

    def case() -> None:
        a, sa = world("a")
        kept: list[memoryview] = []
        tids: list[int] = []

        def inside() -> None:
            tids.append(threading.get_native_id())
            v.vas_switch(a.id)
            kept.append(sa.view())

        t = threading.Thread(target=inside)
        t.start()
        t.join()
        while os.path.exists(f"/proc/self/task/{tids[0]}"):
            time.sleep(0.001)
        records.request(os.getpid(), a.id, records.DETACH)
        attach.sync()  # carries the request out: refused by the view, dropped
        assert [p.vid for p in v.proc_vas(0)] == [a.id]
        kept[0][0] = 1  # still mapped
        kept.clear()
        a.detach()
    safely(case)


def test_other_thread_switches_away_from_a_viewed_segment(registry: str) -> None:
    """The export pins the mapping, whichever thread made the view."""
    def case() -> list[str]:
        a, sa = world("a")
        v.vas_switch(a.id)
        mv = sa.view()
        seen: list[str] = []

        def other() -> None:
            v.vas_switch(a.id)
            v.vas_switch(0)  # the main thread is still inside: nothing moves
            seen.append("ok")

        t = threading.Thread(target=other)
        t.start()
        t.join()
        refused(BufferError, v.vas_switch, 0)
        mv.release()
        v.vas_switch(0)
        return seen
    assert safely(case) == ["ok"]


def test_fork_with_a_live_view(registry: str) -> None:
    """A forked child's inherited view reads zeros (not the segment) and never faults."""
    def case() -> tuple[int, int]:
        vas, seg = world("a")
        v.vas_switch(vas.id)
        mv = seg.view()
        mv[0] = 77

        def child() -> tuple[int, int]:
            before = mv[0]
            mv[1] = 5  # private to the child
            return before, v.active_vas()

        got = safely(child)
        assert mv[0] == 77 and mv[1] == 0  # the parent's segment is untouched
        mv.release()
        v.vas_switch(0)
        return got
    assert safely(case) == (0, 0)


def test_fork_child_enters_the_vas_its_inherited_view_shows(registry: str) -> None:
    """Readers share: the child may attach the VAS too, but may not place the
    segment over the zero pages its inherited view still reads (that view
    would fault once the segment is parked again), until it drops the view."""
    def case() -> tuple[int, str, int, int]:
        vas, seg = world("a", attach=False)
        with vas.attach(os.O_RDWR).active(), seg.view() as mv:
            mv[0] = 77
        vas.detach()
        vas.attach(os.O_RDONLY)
        v.vas_switch(vas.id)
        mv = seg.view()

        def child() -> tuple[int, str, int, int]:
            ghost = mv[0]
            vas.attach(os.O_RDONLY)  # many readers: allowed
            exc = refused(BufferError, v.vas_switch, vas.id, match="'a-seg'")
            mv.release()  # the last inherited view: the zero pages go
            v.vas_switch(vas.id)
            real = seg.view()[0]
            v.vas_switch(0)
            return ghost, type(exc).__name__, real, v.active_vas()

        got = safely(child)
        mv.release()
        v.vas_switch(0)
        return got
    assert safely(case) == (0, "BufferError", 77, 0)


def test_view_where_the_segment_is_not_visible(registry: str) -> None:
    def case() -> None:
        vas, seg = world("a")
        _, other = world("b", start=SEG_BASE + 64 * PAGE)
        assert refused(OSError, seg.view, match="not visible").errno == errno.EFAULT
        v.vas_switch(vas.id)
        assert refused(OSError, other.array, match="'b-seg'").errno == errno.EFAULT
        v.vas_switch(0)
        vas.detach()
        assert refused(OSError, seg.view).errno == errno.EFAULT
    safely(case)


def test_readonly_views_refuse_writes(registry: str) -> None:
    def case() -> None:
        vas, seg = world("a", access=os.O_RDONLY)
        with vas.active():
            with seg.view() as mv:
                refused(TypeError, mv.__setitem__, 0, 1, match="read-only")
            arr = seg.array("u1")
            refused(ValueError, arr.__setitem__, 0, 1, match="read-only")
            del arr
            refused(TypeError, (ctypes.c_char * 4).from_buffer, seg.view())
    safely(case)


def test_threads_racing_between_two_worlds(registry: str) -> None:
    """Threads switch between worlds at one address, holding views across tries.

    Every view reads its own world's byte (never the other world's), every
    refusal is EFAULT or BufferError, and nothing dies.
    """
    def case() -> dict[str, int]:
        import random

        worlds = [world(name) for name in ("a", "b")]
        for byte, (vas, seg) in enumerate(worlds, 1):
            with vas.active(), seg.view() as mv:
                mv[0] = byte
        counts: dict[str, int] = {}
        problems: list[str] = []
        lock = threading.Lock()

        def note(what: str) -> None:
            with lock:
                counts[what] = counts.get(what, 0) + 1

        def worker(seed: int) -> None:
            try:
                work(seed)
            except BaseException as exc:  # noqa: BLE001 - reported to the test's thread
                problems.append(f"{type(exc).__name__}: {exc}")

        def work(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(150):
                k = rng.randrange(2)
                vas, seg = worlds[k]
                try:
                    v.vas_switch(vas.id)
                except OSError as exc:
                    note(f"enter:{errno.errorcode[exc.errno or 0]}")
                    continue
                mv = seg.view()
                if mv[0] != k + 1:
                    problems.append(f"world {k} read {mv[0]}")
                try:
                    v.vas_switch(worlds[1 - k][0].id)  # away, with the view alive
                    problems.append("switched away under a live view")
                except BufferError:
                    note("away:BufferError")
                except OSError as exc:  # another thread holds the other world's range
                    note(f"away:{errno.errorcode[exc.errno or 0]}")
                if mv[0] != k + 1:
                    problems.append(f"world {k} read {mv[0]} after a refused switch")
                mv.release()
                v.vas_switch(0)
                note("ok")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert problems == [], problems[:5]
        return counts
    counts = safely(case)
    assert counts.get("ok", 0) > 0, counts
    assert set(counts) <= {"ok", "away:BufferError", "away:EFAULT", "enter:EFAULT"}, counts
