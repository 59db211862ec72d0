"""Deterministic crash injection: "kill" a writer at every single store of an
operation (before a store is logged, after it is logged but before it is
written, before the commit and after it), then check that recovery leaves
the heap consistent and the operation done entirely or not at all.

Each crash point starts from an identical, freshly built heap (the allocator
is deterministic), so every point of the operation is exercised exactly.
fork() costs ~15 ms on the CI machine, so the default run tests every third
point (a different third for each operation); VASPACE_SOAK=1 tests them all."""

from __future__ import annotations

import itertools
import mmap
import os
import warnings

import numpy as np
import pytest
from heaputil import SOAK

from vaspace.heap import Array, Dict, Heap, HeapRecoveredWarning, _heapcore

CRASHED = 77
STRIDE = 1 if SOAK else 3
_offsets = itertools.cycle(range(STRIDE))


def _run_crashing(fn, point: int) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _heapcore._crash_after(point)
            fn()
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def sweep(buf, setup, op, snapshot, leak_ok: bool = False) -> int:
    """Crash ``op`` at points 1, 2, ... until it completes without crashing.

    ``setup(heap)`` builds the starting state and returns a context object;
    ``op(ctx)`` is the operation; ``snapshot(heap, ctx)`` the observable
    state.  With ``leak_ok``, a crash after the commit may leak blocks (the
    heap-level counters are then not compared)."""

    def fresh():
        heap = Heap.format(buf)
        return heap, setup(heap)

    heap, ctx = fresh()
    before = snapshot(heap, ctx, True)
    op(ctx)
    after = snapshot(heap, ctx, True)
    heap.check()
    assert before != after
    crashes = 0
    for point in range(1 + next(_offsets), 100_000, STRIDE):
        heap, ctx = fresh()
        code = _run_crashing(lambda ctx=ctx: op(ctx), point)
        if code == 0:
            assert snapshot(heap, ctx, True) == after
            return crashes
        assert code == CRASHED, f"child failed at crash point {point} (exit {code})"
        crashes += 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            heap.check()  # takes the lock: the recovery runs here
        assert any(issubclass(w.category, HeapRecoveredWarning) for w in caught), point
        state = snapshot(heap, ctx, True)
        if state == before:
            continue
        if leak_ok and snapshot(heap, ctx, False) == snapshot_without_counters(after):
            continue
        assert state == after, f"crash point {point}: partial state {state}"
    raise AssertionError("operation never completed")


def snapshot_without_counters(snap):
    return snap[0]


@pytest.fixture
def region():
    """A small shared anonymous mapping: cheap to reformat for every point
    (fork keeps it at the same address in the child)."""

    class R:
        buf = mmap.mmap(-1, 256 << 10)

    yield R
    R.buf.close()


def test_crash_everywhere_in_dict_ops(region):
    def setup(h):
        d = Dict(h, root="d")
        for i in range(5):  # 5 live keys: the next insert resizes the table
            d[i] = b"v" * i
        d["big"] = 2**90
        return d

    def snap(h, d, counters):
        content = sorted(((type(k).__name__, k), v) for k, v in d.items())
        if not counters:
            return content
        d.check()
        st = h.stats()
        return content, st.allocations, st.used

    total = 0
    total += sweep(region.buf, setup, lambda d: d.__setitem__(100, b"new"), snap)
    total += sweep(region.buf, setup, lambda d: d.__setitem__(2, "replaced" * 20), snap)
    total += sweep(region.buf, setup, lambda d: d.pop(3), snap)
    total += sweep(region.buf, setup, lambda d: d.clear(), snap, leak_ok=True)
    assert total * STRIDE > 150  # every store of every operation is a crash point


def test_crash_everywhere_in_compact_dict_growth(region):
    """The compact Dict's other growth paths: the entry area grows in place
    (the block after it is free), or moves (it is not), without a rebuild;
    a value is overwritten in its entry's room, or moves out of line; a
    deleted key leaves a hole and comes back at the end."""

    def setup(h, blocked=False):
        d = Dict(h, root="d")
        for i in range(5):  # 5 entries of 24 bytes fill the 128-byte area
            d[i] = i
        if blocked:
            h.alloc(64)  # right after the area: growing it must move it
        return d

    def snap(h, d, counters):
        content = [((type(k).__name__, k), v) for k, v in d.items()]  # in order
        if not counters:
            return content
        d.check()
        st = h.stats()
        return content, st.allocations, st.used

    total = sweep(region.buf, setup, lambda d: d.__setitem__(5, 5), snap)
    total += sweep(region.buf, lambda h: setup(h, True), lambda d: d.__setitem__(5, 5), snap)
    total += sweep(region.buf, setup, lambda d: d.__setitem__(2, -2), snap)  # in its room
    total += sweep(region.buf, setup, lambda d: d.__setitem__(2, b"x" * 200), snap)  # out of line

    def with_hole(h):
        d = setup(h)
        del d[1]  # a hole in the area
        return d

    total += sweep(region.buf, setup, lambda d: d.__delitem__(1), snap)
    total += sweep(region.buf, with_hole, lambda d: d.__setitem__(1, "back"), snap)  # at the end
    assert total * STRIDE > 60


def test_crash_everywhere_in_allocator(region):
    def setup(h):
        a = h.alloc(100)
        b = h.alloc(3000, 256)
        c = h.alloc(50)
        h.free(b)  # a free neighbour, so operations split and coalesce
        return h, a, c

    def snap(h, ctx, counters):
        st = h.stats()
        return st.allocations, st.used, st.largest_free, h.roots()

    sweep(region.buf, setup, lambda ctx: ctx[0].alloc(1000, 512), snap)
    sweep(region.buf, setup, lambda ctx: ctx[0].free(ctx[2]), snap)
    sweep(region.buf, setup, lambda ctx: ctx[0].realloc(ctx[1], 20000), snap)  # moves
    sweep(region.buf, setup, lambda ctx: ctx[0].realloc(ctx[1], 3000), snap)  # grows in place
    sweep(region.buf, setup, lambda ctx: ctx[0].set_root("name", ctx[1]), snap)


def test_crash_everywhere_in_array(region):
    def setup(h):
        arr = Array(h, np.int32, root="arr")
        arr.extend(range(4))
        return arr

    def snap(h, arr, counters):
        st = h.stats()
        return arr.numpy().tolist(), st.allocations, st.used

    sweep(region.buf, setup, lambda a: a.extend(range(100)), snap)  # grows: moves the data
    sweep(region.buf, setup, lambda a: a.resize(2), snap)
    sweep(region.buf, setup, lambda a: a.append(7), snap)


def test_debris_under_a_free_lock_is_rolled_back(region):
    """An unfinished undo log found under a normally taken lock is rolled back.

    This is the "debris" case of docs/heap.md: a region copied (or restored)
    mid-operation carries a non-empty undo log, but its lock is simply free,
    so the EOWNERDEAD path never runs.  The test makes that state exactly: a
    writer dies mid-insert, then the lock's bytes are put back as they were
    before the operation (free).  The next operation must still roll the log
    back (issue 17, seeded bug #5)."""
    lock = slice(_heapcore._LOCK_OFFSET, _heapcore._LOCK_OFFSET + _heapcore._LOCK_SIZE)
    rolled_back = 0
    for point in (3, 9, 17, 30):
        heap = Heap.format(region.buf)
        d = Dict(heap, root="d")
        for i in range(5):  # the next insert resizes the table
            d[i] = b"v" * i
        before = sorted(d.items()), heap.stats().allocations, heap.stats().used
        free_lock = bytes(region.buf[lock])
        assert _run_crashing(lambda d=d: d.__setitem__(100, b"new"), point) == CRASHED
        region.buf[lock] = free_lock  # the copy: a free lock, a log in flight
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            heap.check()  # takes the lock normally; must find and undo the log
        assert any(issubclass(w.category, HeapRecoveredWarning) for w in caught), point
        d.check()
        assert (sorted(d.items()), heap.stats().allocations, heap.stats().used) == before, point
        assert heap.stats().recoveries == 1
        d[100] = b"after"  # and the heap works on
        heap.check()
        rolled_back += 1
    assert rolled_back == 4
