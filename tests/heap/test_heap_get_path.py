"""The Dict's GET path in C (``_heapcore.DictHandle``, Dict's base):
``d[key]``, ``d.get`` and ``key in d``.

- Every value type comes back whole and with its type, whether it is built
  inside the seqlock snapshot (bytes, ASCII text, int64, float, None, bool)
  or after it (text that is not ASCII, big ints, containers).
- Readers in other processes racing a writer that changes a key's value
  type and length see whole values only: an object built from a torn
  snapshot is dropped and the read retried.
- The handle's state (``_heap``, ``_c``, ``_addr``) is checked where it is
  set, and a handle that is not set up, or names no Dict, raises.
- Handles in reference cycles are collected.
"""

from __future__ import annotations

import gc
import struct
import time
import weakref

import pytest

from vaspace.heap import Dict, Heap, List, _heapcore
from vaspace_testing import start_child

VALUES = [b"", b"x", b"bytes" * 40, "", "ascii", "caf\u00e9 \u2603", "a" * 300, 0, -1, 2**63 - 1,
          -(2**63), 2**64, -(2**200), 0.0, -2.5, float("inf"), None, True, False]


def test_every_value_type_comes_back_whole(heap: Heap) -> None:
    d = Dict(heap)
    for i, v in enumerate(VALUES):
        d[i] = v
    for i, v in enumerate(VALUES):
        for got in (d[i], d.get(i), d.get(i, "dflt"), d.get(i, default="dflt")):
            assert type(got) is type(v) and got == v, (i, v, got)
        assert i in d
    assert d.get(len(VALUES)) is None and d.get(-1, default=7) == 7
    assert len(VALUES) not in d and 1.5 not in d and [] not in d
    with pytest.raises(KeyError) as e:
        d[b"absent"]
    assert e.value.args == (b"absent",)


def test_container_values_come_back_as_live_handles(heap: Heap) -> None:
    class Sub(Dict):
        __slots__ = ()

    d = Sub(heap)
    d["inner"] = Dict(heap)
    d["list"] = List(heap, items=[1, "two"])
    inner = d["inner"]
    assert type(inner) is Dict and inner.parent == d.address
    inner["k"] = 1
    assert d.get("inner")["k"] == 1 and d["list"][:] == [1, "two"]
    assert "inner" in d and isinstance(d, _heapcore.DictHandle)


def test_the_handle_state_is_checked_where_it_is_set(heap: Heap) -> None:
    d = Dict(heap)
    d["k"] = "v"
    bare = _heapcore.DictHandle()
    for call in (lambda: bare["k"], lambda: bare.get("k"), lambda: "k" in bare):
        with pytest.raises(ValueError, match="not set up"):
            call()
    with pytest.raises(AttributeError, match="_c"):
        bare._c  # noqa: B018
    with pytest.raises(TypeError, match="HeapCore"):
        bare._c = heap
    with pytest.raises(ValueError, match="negative"):
        bare._addr = -16
    with pytest.raises(ValueError, match="too large"):
        bare._addr = 2**64
    with pytest.raises(TypeError):
        bare._addr = "0x10"
    bare._heap, bare._c, bare._addr = heap, heap._c, d.address
    assert bare["k"] == "v" and bare._addr == d.address and bare._heap is heap
    for junk in (d.address + 16, d.address + 8, heap.base, heap.base + heap.size, 2**64 - 16):
        bare._addr = junk
        with pytest.raises(ValueError, match="not a Dict"):
            bare["k"]
    bare._addr = d.address
    del bare._c
    with pytest.raises(ValueError, match="not set up"):
        bare.get("k")
    with pytest.raises(TypeError, match="key and an optional default"):
        d.get("k", 1, 2)
    with pytest.raises(TypeError, match="key and an optional default"):
        d.get(key="k")


def test_a_destroyed_dict_refuses_every_get(heap: Heap) -> None:
    d = Dict(heap)
    d["k"] = 1
    d.destroy()
    for call in (lambda: d["k"], lambda: d.get("k"), lambda: "k" in d):
        with pytest.raises(ValueError, match="not a Dict"):
            call()
    assert heap.check() == 0


def test_handles_in_cycles_are_collected(heap: Heap) -> None:
    class Node(Dict):  # no __slots__: instances get a __dict__ and weakrefs
        pass

    d = Node(heap)
    d.me = d
    ref = weakref.ref(d)
    del d
    gc.collect()
    assert ref() is None


def _word(n: int) -> bytes:
    """A self-checking bytes value: n repeated, length by n."""
    return struct.pack("<q", n) * (n % 40 + 1)


def _shapes(n: int) -> object:
    """The writer's n-th value of the raced key: the type and the length
    (inline, out of line) change from one to the next."""
    kind = n % 5
    if kind == 0:
        return _word(n)
    if kind == 1:
        return f"{n}:" + "a" * (n % 300)
    if kind == 2:
        return n
    if kind == 3:
        return float(n)
    return f"{n}:\u00e9" * (n % 7 + 1)


def _whole(v: object) -> bool:
    """Is v one of the values _shapes makes (never a torn mix)?"""
    if isinstance(v, bytes):
        n = struct.unpack_from("<q", v)[0]
        return v == _word(n)
    if isinstance(v, str):
        n = int(v.split(":", 1)[0])
        return v == _shapes(n)
    if isinstance(v, float):
        return v == int(v) and int(v) % 5 == 3
    return isinstance(v, int) and v % 5 == 2


def test_readers_never_see_a_torn_value(heap: Heap) -> None:
    """Real processes: a writer keeps rewriting one key through values of
    other types and lengths (in place, grown out of line, moved); readers
    use d[k], d.get and `in`, lock-free, and check every value whole."""
    d = Dict(heap, root="race")
    d["k"] = _shapes(0)
    for i in range(200):
        d[i] = i  # neighbours, so that the table grows and entries move
    deadline = time.monotonic() + 1.5

    def writer() -> int:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            d["k"] = _shapes(n)
            if n % 97 == 0:
                d.update({f"n{n}-{j}": j for j in range(50)})  # an area that grows
            if n % 311 == 0:
                for key in [key for key in d.keys() if isinstance(key, str) and key[0] == "n"]:
                    del d[key]
        return n

    def reader() -> int:
        reads = 0
        while reads == 0 or time.monotonic() < deadline:
            for v in (d["k"], d.get("k")):
                assert _whole(v), repr(v)[:80]
            assert "k" in d
            reads += 1
        return reads

    children = [start_child(writer), start_child(reader), start_child(reader)]
    for out in [c.result() for c in children]:
        assert out.signal is None, out
        assert out.get() > 0
    assert _whole(d["k"]) and d.check() == len(d)
    heap.check()
