"""Contract tests: public names, types and the exception for each misuse."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

import vaspace.heap as vh
from vaspace.heap import Array, Dict, Heap, HeapRecoveredWarning, HeapStats


def test_public_names():
    assert set(vh.__all__) == {"Array", "Dict", "Heap", "HeapRecoveredWarning", "HeapStats",
                               "Key", "List", "Value"}
    for name in vh.__all__:
        assert hasattr(vh, name)
    assert issubclass(HeapRecoveredWarning, RuntimeWarning)
    assert HeapRecoveredWarning.__module__ == "vaspace.heap"
    assert HeapStats._fields == ("size", "used", "free", "allocations", "largest_free",
                                 "recoveries")


def test_return_types(heap):
    a = heap.alloc(10)
    assert isinstance(a, int) and heap.base <= a < heap.base + heap.size
    assert isinstance(heap.realloc(a, 20), int)
    st = heap.stats()
    assert isinstance(st, HeapStats) and all(isinstance(x, int) for x in st)
    assert st.size == heap.size and st.used + st.free < st.size
    assert isinstance(heap.roots(), dict)
    assert isinstance(heap.check(), int)


def test_alloc_errors(heap):
    with pytest.raises(ValueError, match="negative"):
        heap.alloc(-1)
    with pytest.raises(ValueError, match="power of two"):
        heap.alloc(8, 3)
    with pytest.raises(ValueError, match="power of two"):
        heap.alloc(8, 0)
    with pytest.raises(TypeError):
        heap.alloc("8")
    with pytest.raises(TypeError):
        heap.alloc(8.0)
    with pytest.raises(MemoryError):
        heap.alloc(heap.size)
    with pytest.raises(MemoryError):
        heap.alloc(2**63)
    with pytest.raises(ValueError):
        heap.alloc(2**64)
    heap.check()


def test_free_errors(heap):
    a = heap.alloc(64)
    for bad in (a + 16, a - 16, a + 1, 0, heap.base, heap.base + heap.size, 2**63):
        with pytest.raises(ValueError, match="not a live allocation"):
            heap.free(bad)
    with pytest.raises(ValueError):
        heap.free(-5)
    heap.free(a)
    with pytest.raises(ValueError, match="not a live allocation"):
        heap.free(a)  # double free
    with pytest.raises(ValueError):
        heap.realloc(a, 10)
    with pytest.raises(ValueError):
        heap.usable_size(a)
    assert heap.check() == 0
    assert heap.stats().allocations == 0


def test_roots(heap):
    a = heap.alloc(10)
    heap.set_root("r", a)
    assert heap.get_root("r") == a
    heap.set_root("r", a + 16)
    assert heap.roots() == {"r": a + 16}
    heap.del_root("r")
    with pytest.raises(KeyError):
        heap.get_root("r")
    with pytest.raises(KeyError):
        heap.del_root("r")
    with pytest.raises(ValueError):
        heap.set_root("", a)
    with pytest.raises(ValueError):
        heap.set_root("x" * 56, a)
    with pytest.raises(ValueError):
        heap.set_root("a\0b", a)
    with pytest.raises(TypeError):
        heap.set_root(b"r", a)
    with pytest.raises(ValueError, match="outside"):
        heap.set_root("r", heap.base + heap.size)
    heap.set_root("é" * 27, a)  # 54 UTF-8 bytes: fits
    for i in range(127):
        heap.set_root(f"n{i}", a)
    with pytest.raises(MemoryError, match="root table full"):
        heap.set_root("one-too-many", a)


def test_open_errors(region):
    with pytest.raises(ValueError, match="not contain a vaspace heap"):
        Heap.open(region.buf)
    h = Heap.format(region.buf)
    h.close()
    with pytest.raises(ValueError, match="formatted for"):
        Heap.open(region.buf[: region.size // 2])
    with pytest.raises(ValueError, match="too small"):
        Heap.format(region.buf[:4096])
    with pytest.raises(TypeError):
        Heap.format(b"read-only bytes")
    with pytest.raises(TypeError):
        Heap.format(memoryview(bytearray(1 << 20))[::2])
    m = mmap.mmap(-1, 1 << 20)
    Heap.format(m).close()
    with pytest.raises(ValueError, match="formatted at"):
        # same bytes at another address: absolute pointers would be wrong
        m2 = mmap.mmap(-1, 1 << 20)
        m2[:] = m[:]
        Heap.open(m2)
    h = Heap.open(region.buf)
    with pytest.raises(BufferError):
        region.buf.release()  # the heap holds an export: cannot unmap under it
    h.close()


def test_closed_heap(region):
    h = Heap.format(region.buf)
    d = Dict(h)
    arr = Array(h, np.int32)
    h.close()
    h.close()  # idempotent
    assert h.closed
    for call in (lambda: h.alloc(1), lambda: h.free(1), lambda: h.stats(), lambda: h.roots(),
                 lambda: h.get_root("x"), lambda: h.base, lambda: d["k"], lambda: len(d),
                 lambda: d.__setitem__("k", 1), lambda: len(arr), lambda: arr.append(1)):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_close_refused_while_views_exist(heap):
    arr = Array(heap, np.float32)
    arr.extend([1, 2, 3])
    v = arr.numpy()
    with pytest.raises(BufferError):
        heap.close()
    del v
    heap.close()


def test_dict_errors(heap):
    d = Dict(heap)
    with pytest.raises(TypeError):
        d[1.5] = 1
    with pytest.raises(TypeError):
        d["k"] = object()
    with pytest.raises(TypeError):
        d["k"] = [1]
    with pytest.raises(TypeError):
        d[(1,)]
    with pytest.raises(KeyError):
        d["missing"]
    with pytest.raises(KeyError):
        del d["missing"]
    with pytest.raises(KeyError):
        d.pop("missing")
    assert d.pop("missing", 7) == 7
    assert 1.5 not in d
    with pytest.raises(KeyError):
        Dict.open(heap, "nope")
    a = heap.alloc(64)
    heap.set_root("notadict", a)
    with pytest.raises(ValueError, match="not a Dict"):
        Dict.open(heap, "notadict")
    with pytest.raises(ValueError, match="not an Array"):
        Array.open(heap, "notadict")
    with pytest.raises(TypeError):
        Array(heap, object)
    with pytest.raises(TypeError):
        Array(heap, [("a", "i4")])
    with pytest.raises(UnicodeEncodeError):
        d["\udcff"] = 1
    assert len(d) == 0


def test_addresses_past_the_arena_are_refused(heap):
    """Container addresses beyond the arena's end, up to the top of the
    address space, are refused with ValueError; none is dereferenced (in a
    child, so that a wrong bounds check shows as a signal, not a dead run)."""
    from vaspace_testing import in_child

    end = heap.base + heap.size
    bad = [end, end + 4096, end + (1 << 30), (1 << 64) - 4096, (1 << 64) - 16]

    def probe() -> list[str]:
        out = []
        for a in bad:
            for call in (lambda x: Dict.at(heap, x), heap._c.array_info, heap._c.dict_len):
                try:
                    call(a)
                    out.append(f"{a:#x}: accepted")
                except ValueError as e:
                    out.append("refused" if "of this heap" in str(e) else f"{a:#x}: {e}")
        return out

    assert in_child(probe).get() == ["refused"] * (3 * len(bad))


def test_dict_get_path_contract(heap):
    """The GET path (C, _heapcore.DictHandle): what each call returns and
    the exception of each misuse."""
    from vaspace.heap import _heapcore

    d = Dict(heap)
    d["k"] = b"v"
    assert issubclass(Dict, _heapcore.DictHandle) and "DictHandle" not in vh.__all__
    assert type(d["k"]) is bytes and d.get("k") == b"v" and d.get("x") is None
    assert ("k" in d) is True and ("x" in d) is False and (1.5 in d) is False
    assert type(d._addr) is int and d._c is heap._c and d._heap is heap
    for call, exc in ((lambda: d["x"], KeyError), (lambda: d[1.5], TypeError),
                      (lambda: d.get(), TypeError), (lambda: d.get("k", 1, 2), TypeError),
                      (lambda: d.get("k", dflt=1), TypeError),
                      (lambda: d["\udcff"], UnicodeEncodeError),
                      (lambda: setattr(d, "_c", None), TypeError),
                      (lambda: setattr(d, "_addr", -1), ValueError)):
        with pytest.raises(exc):
            call()
    heap.close()
    with pytest.raises(ValueError, match="closed heap"):
        d["k"]
