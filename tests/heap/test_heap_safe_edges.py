"""Safe edges of the heap (issue 10, sections 2, 3 and 5).

- A heap handle knows its world: after a switch that parks its segment, or
  puts another world's segment at the same address, every call raises
  ``ValueError("stale heap: ...")`` and touches nothing; after switching
  back it works again.
- ``Array.numpy()`` views pin the Array (resize/destroy raise BufferError,
  as ``bytearray`` does) and the segment (a switch away raises BufferError).
- Smaller defects: ``Dict.clear()`` on a full heap, big ints beyond the
  4300-digit str limit, no Python code runs under the heap lock.
"""

from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest
from heaputil import Region

import vaspace as v
from vaspace.heap import Array, Dict, Heap
from vaspace_testing import SEG_BASE, MiB, in_child

SIZE = 4 * MiB


def _two_worlds() -> tuple[v.VAS, v.Segment, v.VAS, v.Segment]:
    """Two VASes holding two different segments at the same address."""
    sa = v.Segment.create("wa-seg", SEG_BASE, size=SIZE)
    sb = v.Segment.create("wb-seg", SEG_BASE, size=SIZE)
    a, b = v.VAS.create("wa"), v.VAS.create("wb")
    a.attach_segment(sa)
    b.attach_segment(sb)
    a.attach()
    b.attach()
    return a, sa, b, sb


def _outcome(fn) -> str:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - returned for the test to assert on
        return f"{type(e).__name__}: {e}"
    return "ok"


def test_heap_handles_know_their_world(registry):
    def case():
        a, sa, b, sb = _two_worlds()
        with a.active():
            h = Heap.format(sa.view())
            d = Dict(h, root="kv")
            d["k"] = "world A"
            arr = Array(h, np.int32, root="arr")
            arr.extend(range(5))
        # switched out: every call on every handle refuses, naming the segment
        calls = {"get": lambda: d["k"], "set": lambda: d.__setitem__("k", 0),
                 "len": lambda: len(d), "items": d.items, "arr len": lambda: len(arr),
                 "numpy": arr.numpy, "append": lambda: arr.append(1), "stats": h.stats,
                 "alloc": lambda: h.alloc(8), "roots": h.roots, "Dict.open":
                 lambda: Dict.open(h, "kv"), "check": h.check}
        out = {"out": {k: _outcome(f) for k, f in calls.items()}}
        with b.active():
            # another world at the same address: still refused, B untouched
            out["in B"] = {k: _outcome(f) for k, f in calls.items()}
            hb = Heap.format(sb.view())
            Dict(hb, root="kv")["k"] = "world B"
            out["B sees"] = Dict.open(hb, "kv")["k"]
        with a.active():  # back: the same handles work again
            out["back"] = (d["k"], arr.numpy().tolist())
            d["k"] = "world A again"
        with b.active():
            out["B after"] = Dict.open(hb, "kv")["k"]
            hb.close()
        h.close()
        return out

    res = in_child(case)
    assert res.signal is None
    out = res.get()
    for where in ("out", "in B"):
        for call, what in out[where].items():
            assert what == "ValueError: stale heap: segment 'wa-seg' is not mapped here", (
                where, call, what)
    assert out["B sees"] == "world B" and out["B after"] == "world B"
    assert out["back"] == ("world A", [0, 1, 2, 3, 4])


def test_a_heap_on_window_memory_does_not_pin_it(registry):
    """The heap keeps no export of the segment: switching away is allowed
    (an open Heap/Dict does not block it); a numpy view does block it."""

    def case():
        a, sa, b, sb = _two_worlds()
        with a.active():
            h = Heap.format(sa.view())
            arr = Array(h, np.float64, root="arr")
            arr.extend([1.0, 2.0])
        with a.active():
            view = arr.numpy()
            refused = _outcome(lambda: v.vas_switch(0))
            del view
        return refused, v.active_vas()

    refused, active = in_child(case).get()
    assert refused.startswith("BufferError") and "wa-seg" in refused
    assert active == 0


def test_closed_heap_refuses_every_handle(region: Region):
    h = Heap.format(region.buf)
    d = Dict(h, root="kv")
    d["k"] = 1
    arr = Array(h, np.int8, root="a")
    h.close()
    for fn in (lambda: d["k"], lambda: len(d), d.items, lambda: d.get("k"), lambda: len(arr),
               arr.numpy, lambda: arr.append(1), lambda: Dict.open(h, "kv"), h.stats):
        with pytest.raises(ValueError, match="closed heap"):
            fn()
    assert repr(d) == "<vaspace.heap.Dict (heap closed)>"


def _moves(arr: Array, dt: np.dtype, n: int) -> dict:
    """Every call that would move, resize or free an Array's data."""
    return {"append": lambda: arr.append(np.zeros((), dt)),
            "extend": lambda: arr.extend(np.zeros(3, dt)),
            "grow": lambda: arr.resize(n * 4 + 8), "shrink": lambda: arr.resize(0),
            "destroy": arr.destroy}


DTYPES = ["u1", "<i2", ">i4", "<f4", "<f8", "<c16", "<U3", "V5"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_views_pin_the_array(heap: Heap, dtype):
    """Growing, shrinking or destroying an Array with a live view raises
    BufferError and changes nothing; writes through the view stay inside the
    Array whatever the layout (sizes, neighbours before and after)."""
    dt = np.dtype(dtype)
    for n in (1, 2, 7, 64, 1000):
        before = Array(heap, np.int64)
        before.extend(range(10))
        arr = Array(heap, dt)
        arr.resize(n)
        after = Dict(heap)
        after["x"] = b"y" * 50
        view = arr.numpy()
        part = view[1:]  # a view of the view keeps the pin
        del view
        snapshot = (arr.numpy().tobytes(), heap.stats())
        for name, op in _moves(arr, dt, n).items():
            with pytest.raises(BufferError, match="numpy view"):
                op()
            assert (arr.numpy().tobytes(), heap.stats()) == snapshot, name
        if part.size:
            part[:] = np.frombuffer(b"\xa5" * part.nbytes, dt)  # every byte of the view
        del part
        assert before.numpy().tolist() == list(range(10)) and after["x"] == b"y" * 50
        heap.check()
        arr.extend(np.zeros(n, dt))  # views gone: grows (and moves) again
        assert len(arr) == 2 * n
        arr.destroy()


def test_views_pin_across_heap_objects(region: Region):
    h1 = Heap.format(region.buf)
    arr = Array(h1, np.int64, root="a")
    arr.extend(range(4))
    h2 = Heap.open(region.buf)
    view = Array.open(h2, "a").numpy()
    with pytest.raises(BufferError):
        arr.append(5)  # through the other Heap object
    del view
    arr.append(5)
    h2.close()
    h1.close()


def test_dict_clear_on_a_full_heap(heap: Heap):
    d = Dict(heap, root="kv")
    i = 0
    with pytest.raises(MemoryError):
        while True:
            d[i] = b"x" * 200
            i += 1
    with pytest.raises(MemoryError):
        heap.alloc(heap.stats().largest_free + 1)
    used = heap.stats().used
    d.clear()
    assert len(d) == 0 and d.check() == 0 and heap.check()
    assert heap.stats().used < used / 10
    d.update({k: k for k in range(1000)})
    assert d[999] == 999


def test_big_ints_beyond_the_str_digit_limit(heap: Heap):
    d = Dict(heap, root="kv")
    big = 7**9000  # 7606 digits: str() of it fails at the default limit
    d[big] = -big
    d["v"] = big + 1
    assert d[big] == -big and d["v"] == big + 1
    assert (big, -big) in d.items()

    def reader_with_a_lower_limit():
        sys.set_int_max_str_digits(640)
        return d[big] == -big and d.pop("v") == big + 1

    assert in_child(reader_with_a_lower_limit).get()
    assert d.pop(big) == -big and len(d) == 0  # the child popped "v" (shared memory)


def test_no_python_code_runs_under_the_heap_lock(heap: Heap):
    """A __del__ run by the garbage collector while a value is being built
    (here: big ints, whose decoding allocates tuples) uses the same Dict.
    Before the copy-out, that happened under the heap lock and failed with
    EDEADLK inside __del__ (swallowed: the write was silently lost)."""
    d = Dict(heap, root="kv")
    errors: list[BaseException] = []

    class Writer:
        def __init__(self, i: int) -> None:
            self.i, self.me = i, self  # a cycle: only the collector frees it

        def __del__(self) -> None:
            try:
                d[f"del{self.i}"] = self.i
            except BaseException as e:  # noqa: BLE001 - asserted below
                errors.append(e)

    for i in range(50):
        d[i] = 2**100 + i
    old = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        for i in range(50):
            # garbage in an older generation: the young collections before
            # the call leave it, and one of the collections that decoding
            # triggers (with these thresholds) reaches it
            keep = [Writer(i)]
            gc.collect(0)
            del keep
            assert d.pop(i) == 2**100 + i
    finally:
        gc.set_threshold(*old)
    gc.collect()
    assert not errors, errors[:3]
    assert sorted(d.values()) == list(range(50))
    d.check()


def test_fork_child_of_a_process_with_a_heap(registry):
    """A forked child does not see the segment (MADV_DONTFORK): its heap
    handles raise instead of faulting."""

    def case():
        a, sa, _b, _sb = _two_worlds()
        with a.active():
            h = Heap.format(sa.view())
            d = Dict(h, root="kv")
            d["k"] = 1
            child = in_child(lambda: _outcome(lambda: d["k"]))
            return child.signal, child.value, d["k"]

    sig, child_saw, parent_saw = in_child(case).get()
    assert sig is None and parent_saw == 1
    assert child_saw.startswith("ValueError: stale heap"), child_saw
    assert os.getpid()  # the test process itself is untouched


def test_a_call_waiting_for_the_lock_pins_the_segment(registry):
    """While a call waits for the heap lock (GIL released), a switch in
    another thread must refuse instead of moving the memory under it.

    Another process (its own VAS, the same segment) takes the heap lock --
    the robust, process-shared mutex in the region -- and holds it until
    told to let go, so the wait is certain, not caught by chance.  Here the
    main thread is in the VAS, so the segment is placed; a second thread
    (in no VAS) blocks in ``d[k] = v``, and the main thread's switch out,
    which would park the segment, must raise BufferError.  Once the lock is
    released, the blocked call completes and the switch works."""
    import ctypes
    import struct
    import threading
    import time

    from vaspace.heap import _heapcore

    seg = v.Segment.create("lk-seg", SEG_BASE, size=SIZE)
    mine, theirs = v.VAS.create("lk-a"), v.VAS.create("lk-b")
    mine.attach_segment(seg)
    theirs.attach_segment(seg)
    lock_word = _heapcore._LOCK_OFFSET

    def case():
        mine.attach()
        with mine.active():
            h = Heap.format(seg.view())
            d = Dict(h, root="kv")
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the holder: lock, say so, wait for "go", unlock
            try:
                theirs.attach()
                v.vas_switch(theirs.id)
                libc = ctypes.CDLL(None, use_errno=True)
                rc = libc.pthread_mutex_lock(ctypes.c_void_p(seg.start + lock_word))
                os.write(ready_w, b"x" if rc == 0 else b"e")
                os.read(go_r, 1)
                libc.pthread_mutex_unlock(ctypes.c_void_p(seg.start + lock_word))
                os.read(go_r, 1)  # stay alive (the lock is released) until the end
            finally:
                os._exit(0)
        assert os.read(ready_r, 1) == b"x"
        with mine.active():
            with seg.view() as view:
                held = struct.unpack_from("<i", view, lock_word)[0] != 0
        done: list[str] = []

        def blocked_writer():  # in no VAS: it sees the segment the main thread placed
            d["mine"] = 1
            done.append(d["mine"])

        v.vas_switch(mine.id)
        t = threading.Thread(target=blocked_writer)
        t.start()
        time.sleep(0.3)  # let it reach the lock wait (if it has not, `waiting` says so)
        refused = _outcome(lambda: v.vas_switch(0))  # would park the segment under it
        waiting = t.is_alive() and not done
        os.write(go_w, b"g")  # the holder unlocks
        t.join(30)
        v.vas_switch(0)  # the wait is over: now it may go
        os.write(go_w, b"e")
        os.waitpid(pid, 0)
        return held, waiting, refused, done, v.active_vas()

    held, waiting, refused, done, active = in_child(case).get()
    assert held, "the other process must hold the heap lock"
    assert waiting, "the call must still be waiting for the lock"
    assert refused.startswith("BufferError") and "lk-seg" in refused, refused
    assert done == [1] and active == 0


def test_a_buffer_over_two_segments_is_refused(registry):
    """A heap needs one mapping: a buffer spanning two adjacent segments
    could be half moved by a switch, so format/open refuse it (and format
    writes nothing)."""
    import ctypes

    def case():
        s1 = v.Segment.create("two-1", SEG_BASE, size=SIZE)
        s2 = v.Segment.create("two-2", SEG_BASE + SIZE, size=SIZE)
        vas = v.VAS.create("two")
        vas.attach_segment(s1)
        vas.attach_segment(s2)
        vas.attach()
        with vas.active():
            buf = (ctypes.c_char * (2 * SIZE)).from_address(SEG_BASE)
            out = [_outcome(lambda c=call: c(buf)) for call in (Heap.format, Heap.open)]
            untouched = bytes(s1.view()[:64]) == bytes(64)
        return out, untouched

    out, untouched = in_child(case).get()
    assert all(o.startswith("ValueError: heap buffer spans more than one") for o in out), out
    assert untouched
