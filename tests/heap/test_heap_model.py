"""Property tests: random operation sequences checked against simple models."""

from __future__ import annotations

import ctypes
import mmap

import hypothesis.strategies as st
import numpy as np
from heaputil import soak
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from vaspace.heap import Array, Dict, Heap

REGION = 256 << 10


def _fill(addr: int, n: int, tag: int) -> None:
    ctypes.memset(addr, tag & 0xFF, n)


def _read(addr: int, n: int) -> bytes:
    return ctypes.string_at(addr, n)


class HeapMachine(RuleBasedStateMachine):
    """alloc/free/realloc against a model of live blocks and their contents."""

    blocks = Bundle("blocks")

    def __init__(self) -> None:
        super().__init__()
        self.m = mmap.mmap(-1, REGION)
        self.heap = Heap.format(self.m)
        self.live: dict[int, tuple[int, int]] = {}  # addr -> (size, fill byte)
        self.tag = 0

    def teardown(self) -> None:
        self.heap.close()
        self.m.close()

    @rule(target=blocks, size=st.integers(0, 9000), align_log=st.integers(4, 13))
    def alloc(self, size, align_log):
        align = 1 << align_log
        try:
            a = self.heap.alloc(size, align)
        except MemoryError:
            st_ = self.heap.stats()
            # only legitimate if no free block could hold it
            assert st_.largest_free < size + align + 64
            return None
        assert a % align == 0
        assert self.heap.base < a and a + size <= self.heap.base + REGION
        assert self.heap.usable_size(a) >= size
        self.tag += 1
        _fill(a, size, self.tag)
        self.live[a] = (size, self.tag)
        return a

    @rule(a=consumes(blocks))
    def free(self, a):
        if a is None:
            return
        self.heap.free(a)
        del self.live[a]

    @rule(a=consumes(blocks), size=st.integers(0, 12000), target=blocks)
    def realloc(self, a, size):
        if a is None:
            return None
        old_size, tag = self.live[a]
        try:
            b = self.heap.realloc(a, size)
        except MemoryError:
            return a  # old block intact
        del self.live[a]
        keep = min(old_size, size)
        assert _read(b, keep) == bytes([tag & 0xFF]) * keep
        self.tag += 1
        _fill(b, size, self.tag)
        self.live[b] = (size, self.tag)
        return b

    @precondition(lambda self: self.live)
    @rule()
    def double_free_rejected(self):
        a = next(iter(self.live))
        try:
            self.heap.free(a + 16)
        except ValueError:
            pass
        else:  # a+16 may itself be live only if it is another block's start
            raise AssertionError("interior pointer accepted")

    @invariant()
    def consistent(self):
        assert self.heap.check() == len(self.live)
        st_ = self.heap.stats()
        assert st_.allocations == len(self.live)
        spans = sorted((a, a + self.heap.usable_size(a)) for a in self.live)
        for (_, e1), (s2, _) in zip(spans, spans[1:], strict=False):
            assert e1 <= s2, "overlapping allocations"
        for a, (size, tag) in self.live.items():
            assert _read(a, size) == bytes([tag & 0xFF]) * size


HeapMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestHeapModel = HeapMachine.TestCase

KEYS = st.one_of(st.binary(max_size=12), st.text(max_size=8),
                 st.integers(-(2**70), 2**70), st.integers(-3, 3))
VALUES = st.one_of(st.binary(max_size=300), st.text(max_size=40), st.integers(-(2**80), 2**80))


class DictMachine(RuleBasedStateMachine):
    """Dict operations against a Python dict."""

    def __init__(self) -> None:
        super().__init__()
        self.m = mmap.mmap(-1, 1 << 20)
        self.heap = Heap.format(self.m)
        self.d = Dict(self.heap, root="d")
        self.model: dict = {}

    def teardown(self) -> None:
        self.heap.close()
        self.m.close()

    @rule(k=KEYS, v=VALUES)
    def set(self, k, v):
        self.d[k] = v
        self.model[k] = v

    @rule(k=KEYS)
    def delete(self, k):
        assert self.d.pop(k, "absent") == self.model.pop(k, "absent")

    @rule(k=KEYS)
    def get(self, k):
        got = self.d.get(k, "absent")
        want = self.model.get(k, "absent")
        assert got == want and type(got) is type(want)

    @rule(data=st.dictionaries(KEYS, VALUES, max_size=30))
    def update(self, data):
        self.d.update(data)
        self.model.update(data)

    @rule()
    def clear(self):
        self.d.clear()
        self.model.clear()

    @rule()
    def reopen(self):
        self.d = Dict.open(self.heap, "d")

    @invariant()
    def same(self):
        assert len(self.d) == len(self.model)
        assert self.d == self.model
        assert self.d.check() == len(self.model)
        self.heap.check()


DictMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestDictModel = DictMachine.TestCase


class ArrayMachine(RuleBasedStateMachine):
    """Array append/extend/resize/setitem against a numpy array."""

    def __init__(self) -> None:
        super().__init__()
        self.m = mmap.mmap(-1, 1 << 20)
        self.heap = Heap.format(self.m)
        self.a = Array(self.heap, np.int64, root="a")
        self.model = np.zeros(0, dtype=np.int64)

    def teardown(self) -> None:
        self.heap.close()
        self.m.close()

    @rule(v=st.integers(-(2**63), 2**63 - 1))
    def append(self, v):
        self.a.append(v)
        self.model = np.append(self.model, np.int64(v))

    @rule(vs=st.lists(st.integers(-1000, 1000), max_size=50))
    def extend(self, vs):
        self.a.extend(vs)
        self.model = np.concatenate([self.model, np.array(vs, dtype=np.int64)])

    @rule(n=st.integers(0, 300))
    def resize(self, n):
        self.a.resize(n)
        m = np.zeros(n, dtype=np.int64)
        k = min(n, len(self.model))
        m[:k] = self.model[:k]
        self.model = m

    @precondition(lambda self: len(self.model) > 0)
    @rule(i=st.integers(0, 10**6), v=st.integers(-5, 5))
    def setitem(self, i, v):
        i %= len(self.model)
        self.a[i] = v
        self.model[i] = v

    @rule()
    def reopen(self):
        self.a = Array.open(self.heap, "a")

    @invariant()
    def same(self):
        assert len(self.a) == len(self.model)
        assert np.array_equal(self.a.numpy(), self.model)
        self.heap.check()


ArrayMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestArrayModel = ArrayMachine.TestCase


@soak
def test_heap_model_soak():
    HeapMachine.TestCase.settings = settings(max_examples=1000, stateful_step_count=100,
                                             deadline=None)
    HeapMachine.TestCase().runTest()
