"""Dict.update and List.extend: the bulk load.  All pairs land in one operation (one lock,
one undo log that does not grow with the number of pairs), so the update is
atomic as a whole: against errors, against a writer killed at any store
(crash points, and real SIGKILLs), and for lock-free readers in other
processes, which see the Dict before or after it, never in between."""

from __future__ import annotations

import mmap
import os
import random
import signal
import time
import warnings

import pytest
from test_heap_crashpoints import sweep
from test_heap_procs import _child, _wait

from vaspace.heap import Dict, Heap, HeapRecoveredWarning, List


def test_update_is_dict_update(heap):
    """Content and insertion order follow dict.update: new keys in order,
    replaced keys keep their place, a repeated key its first place and last
    value; big ints, kwargs, mappings, pairs of any sequence type."""
    d, ref = Dict(heap), {}
    rnd = random.Random(5)

    def key():
        n = rnd.randrange(3000)
        return rnd.choice([n, f"s{n}", 2**70 + n % 9])

    def value():
        return rnd.choice([None, True, 1.5, b"x" * rnd.randrange(40), "t", -(2**80)])

    for _ in range(6):
        pairs = [(key(), value()) for _ in range(rnd.randrange(1, 2000))]
        d.update(pairs)
        ref.update(pairs)
        assert d.items() == list(ref.items())
    d.update({"m": 1}, kw=2)
    d.update([["l", 3]])  # pairs that are not tuples
    ref.update({"m": 1}, kw=2)
    ref.update([["l", 3]])
    assert d.items() == list(ref.items())
    assert d.check() == len(ref)
    # every replaced value block was freed: the header, the index and the
    # entry area, plus nothing (no value here is long enough to live out
    # of line)
    assert heap.check() == 3


def test_update_errors_change_nothing(heap):
    d = Dict(heap)
    d.update((i, i) for i in range(100))
    before = (d.items(), heap.stats())
    with pytest.raises(TypeError):
        d.update([(1, b"a"), (2.5, b"b")])  # a bad key in the middle
    with pytest.raises(TypeError):
        d.update([(1, b"a"), (2, object())])  # a bad value
    with pytest.raises(ValueError, match="length 3"):
        d.update([(1, b"a"), (2, 3, 4)])
    with pytest.raises(MemoryError, match="more"):
        d.update((i, b"x" * 1000) for i in range(10000))  # 10 MB into 4 MiB
    assert (d.items(), heap.stats()) == before
    heap.check()


def test_update_with_container_values(heap):
    """Container values are stored item by item (each adopts its value)."""
    d, inner = Dict(heap), List(heap)
    inner.append(1)
    d.update({"a": 1, "l": inner})
    assert d["l"] == [1] and d["a"] == 1
    assert d.check() == 2


def test_update_on_read_only_heap(heap, region):
    Dict(heap, root="d")
    ro = Heap.open(memoryview(region.buf).toreadonly())
    with pytest.raises(PermissionError):
        Dict.open(ro, "d").update({1: 2})
    ro.close()


@pytest.fixture
def anon():
    class R:
        buf = mmap.mmap(-1, 256 << 10)

    yield R
    R.buf.close()


def test_crash_everywhere_in_update(anon):
    """A writer "killed" at every store of an update (table growth, replaced
    keys, a repeated key) leaves the Dict before or after the whole update."""

    def setup(h):
        d = Dict(h, root="d")
        for i in range(6):
            d[i] = b"v" * i
        return d

    def snap(h, d, counters):
        content = d.items()
        if not counters:
            return content
        d.check()
        st = h.stats()
        return content, st.allocations, st.used

    pairs = [(i, f"new{i}" * (i % 5)) for i in range(3, 300)] + [(4, None)]
    crashes = sweep(anon.buf, setup, lambda d: d.update(pairs), snap, leak_ok=True)
    assert crashes > 10
    # a bulk load whose log stays small: the points do not grow with 300 pairs
    assert crashes < 200


def _generation_writer(heap: Heap, d: Dict, n: int) -> None:
    g = 0
    while True:
        g += 1
        d.update((k, g) for k in range(n))


def test_sigkilled_update_is_all_or_nothing(heap):
    """Real SIGKILLs at random moments of a writer that keeps rewriting every
    key in one update: afterwards all keys hold the same generation."""
    n = 3000
    d = Dict(heap, root="gen")
    d.update((k, 0) for k in range(n))
    rnd = random.Random(7)
    recovered = 0
    for _ in range(12):
        pid = _child(lambda: _generation_writer(heap, d, n))
        time.sleep(rnd.uniform(0.01, 0.08))
        os.kill(pid, signal.SIGKILL)
        assert _wait(pid) == -signal.SIGKILL
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            heap.check()
        recovered += any(issubclass(w.category, HeapRecoveredWarning) for w in caught)
        values = d.values()
        assert len(values) == n and len(set(values)) == 1, sorted(set(values))[:5]
        assert d.keys() == list(range(n))
        d.check()
    assert recovered >= 1, "no kill landed inside an update"


def test_readers_in_another_process_see_whole_updates(heap):
    """A reader process never sees a Dict between two generations."""
    n = 2000
    d = Dict(heap, root="gen")
    d.update((k, 0) for k in range(n))
    stop = time.monotonic() + 1.5

    def reader() -> None:
        seen = set()
        while time.monotonic() < stop:
            values = d.values()
            assert len(values) == n and len(set(values)) == 1, "a partial update was seen"
            seen.add(values[0])
        assert len(seen) > 1, "the reader saw no update"

    pid = _child(reader)
    g = 0
    while time.monotonic() < stop:
        g += 1
        d.update((k, g) for k in range(n))
    assert _wait(pid) == 0


def test_extend_is_list_extend(heap):
    """In place (spare capacity) and into a new items block, mixed values."""
    lst, ref = List(heap), []
    rnd = random.Random(3)
    for n in (1, 2, 1, 5, 300, 0, 7000, 3):
        vals = [rnd.choice([None, False, 2.5, 2**90, "s" * rnd.randrange(30), b"b", -1])
                for _ in range(n)]
        lst.extend(vals)
        ref.extend(vals)
        assert lst == ref
    lst.extend(iter([1, 2]))  # any iterable
    ref.extend([1, 2])
    assert lst == ref
    assert heap.check() == len(ref) + 2  # header, items block, one entry each


def test_extend_errors_change_nothing(heap):
    lst, inner = List(heap), Dict(heap)
    lst.extend(range(10))
    before = (lst[:], heap.stats())
    with pytest.raises(TypeError):
        lst.extend([1, object()])
    with pytest.raises(MemoryError, match="more"):
        lst.extend([b"x" * 1000] * 10000)
    with pytest.raises(TypeError):
        lst.extend([inner, object()])  # checked before the first is appended
    assert (lst[:], heap.stats()) == before
    lst.extend([5, inner])  # a container value: one at a time
    assert lst[-1].address == inner.address and len(lst) == 12


def test_crash_everywhere_in_extend(anon):
    def setup(h):
        lst = List(h, root="l")
        for i in range(3):
            lst.append(i)  # cap 4: one spare slot
        return lst

    def snap(h, lst, counters):
        content = lst[:]
        if not counters:
            return content
        h.check()
        st = h.stats()
        return content, st.allocations, st.used

    for vals in ([7], [f"v{i}" for i in range(200)]):  # in place; a new block
        sweep(anon.buf, setup, lambda lst, vals=vals: lst.extend(vals), snap)


def test_readers_in_another_process_see_whole_extends(heap):
    """A reader process sees a List grow by whole extends only.

    The writer starts only once the reader has read the empty List, and the
    reader reads until it sees the last length: it sees at least two lengths
    however the two processes are scheduled (no window of time is assumed).
    """
    chunk, rounds = 500, 20
    lst = List(heap, root="l")
    ready_r, ready_w = os.pipe()

    def reader() -> None:
        os.close(ready_r)
        lengths = set()
        deadline = time.monotonic() + 60  # a bound against a hang, not a timing assumption
        while time.monotonic() < deadline:
            items = lst[:]
            assert len(items) % chunk == 0, f"a partial extend: {len(items)} items"
            assert items == [i % chunk for i in range(len(items))]
            if not lengths:
                os.write(ready_w, b"r")  # the writer may start
            lengths.add(len(items))
            if len(items) == rounds * chunk:
                break
        assert lengths >= {0, rounds * chunk}, sorted(lengths)

    pid = _child(reader)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"r"
    finally:
        os.close(ready_r)
    for _ in range(rounds):
        lst.extend(range(chunk))
    assert _wait(pid) == 0


def test_threads_share_bulk_writes(heap):
    """Two threads run whole-Dict updates and a third reads: every read sees
    one generation, and the errors of the threads reach this one."""
    import threading

    n = 1000
    d = Dict(heap)
    d.update((k, 0) for k in range(n))
    stop = time.monotonic() + 0.8
    errors: list[BaseException] = []

    def writer(base: int) -> None:
        try:
            g = base
            while time.monotonic() < stop:
                g += 2
                d.update((k, g) for k in range(n))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def reader() -> None:
        try:
            while time.monotonic() < stop:
                assert len(set(d.values())) == 1, "a partial update was seen"
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=f, args=a) for f, a in
               ((writer, (1,)), (writer, (2,)), (reader, ()))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(d.values())) == 1 and d.check() == n
