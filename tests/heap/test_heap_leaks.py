"""Leak tests: call every C entry point many times, with good and bad
arguments, and check that RSS and the fd count stay flat."""

from __future__ import annotations

import gc
import mmap

import numpy as np
import psutil
import pytest

import vaspace.heap as vh
from vaspace.heap import Array, Dict, Heap, _heapcore

ROUNDS = 3000
PROC = psutil.Process()


def _expect(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return
    raise AssertionError(f"{fn} did not raise {exc}")


def _scenarios(m: mmap.mmap, h: Heap):
    c = h._c
    d = Dict(h)
    d_addr = d.address
    arr = Array(h, np.float64)
    big = 2**70

    def alloc_free():
        a = c.alloc(100, 64)
        a = c.realloc(a, 5000)
        c.free(c.realloc(a, 10))

    def alloc_errors():
        _expect(ValueError, c.alloc, -1)
        _expect(ValueError, c.alloc, 8, 3)
        _expect(TypeError, c.alloc, "x")
        _expect(MemoryError, c.alloc, 1 << 40)
        _expect(ValueError, c.free, 12345)
        _expect(ValueError, c.realloc, 12345, 1)
        _expect(ValueError, c.usable_size, 12345)

    def usable():
        a = c.alloc(10)
        c.usable_size(a)
        c.free(a)

    def stats_check():
        c.stats()
        c.check()
        c.flush()  # an anonymous mapping: msync does (almost) nothing, cheaply
        assert c.unflushed == 0

    def roots():
        a = c.alloc(16)
        c.set_root("leak", a)
        c.get_root("leak")
        c.roots()
        c.del_root("leak")
        _expect(KeyError, c.get_root, "leak")
        _expect(KeyError, c.del_root, "leak")
        _expect(ValueError, c.set_root, "x" * 99, a)
        _expect(TypeError, c.set_root, 5, a)
        c.free(a)

    def dict_ops():
        c.dict_set(d_addr, "k" * 20, "v" * 300)
        c.dict_set(d_addr, big, -big)
        c.dict_set(d_addr, b"b", 7)
        c.dict_get(d_addr, "k" * 20, None)
        c.dict_get(d_addr, big, None)
        c.dict_get(d_addr, "nope", None)
        c.dict_len(d_addr)
        c.dict_items(d_addr, 0)
        c.dict_items(d_addr, 1)
        c.dict_items(d_addr, 2)
        c.dict_check(d_addr)
        c.dict_pop(d_addr, big)
        c.dict_pop(d_addr, "nope", None)
        c.dict_update(d_addr, [(1, b"x"), (big, 2.5), ("k" * 20, None), (1, "again")])
        c.dict_update(d_addr, [[1, 2]])  # not tuples: 2, nothing stored
        c.dict_pop(d_addr, 1)

    def dict_errors():
        _expect(TypeError, c.dict_set, d_addr, 1.5, 1)
        _expect(TypeError, c.dict_set, d_addr, 1, object())
        _expect(KeyError, c.dict_del, d_addr, "nope")
        _expect(TypeError, c.dict_get, d_addr, [], None)
        _expect(KeyError, c.dict_pop, d_addr, "nope")
        _expect(ValueError, c.dict_len, 12345)
        _expect(ValueError, c.dict_items, d_addr, 7)
        _expect(UnicodeEncodeError, c.dict_set, d_addr, "\udcff", 1)
        _expect(TypeError, c.dict_update, d_addr, [(1, 1), (1.5, 1)])
        _expect(ValueError, c.dict_update, d_addr, [(1, 1, 1)])
        _expect(TypeError, c.dict_update, d_addr, 5)

    def dict_handle():
        # DictHandle, the C base of Dict: the GET path and the handle's state
        d["s"] = "text"
        d["u"] = "t\u00e9xt"  # not ASCII: decoded after the snapshot
        d["big"] = big
        d["f"] = 2.5
        d["n"] = None
        d["sub"] = Dict(h)  # a container: a handle made through _from_value
        for k in ("s", "u", "big", "f", "n"):
            d[k]
            d.get(k)
            d.get(k, default=0)
            assert k in d
        assert d["sub"].parent == d_addr
        assert d.get("nope", 1) == 1 and "nope" not in d and [] not in d
        _expect(KeyError, d.__getitem__, "nope")
        _expect(TypeError, d.__getitem__, 1.5)
        _expect(TypeError, d.get)
        _expect(TypeError, d.get, "s", 1, 2)
        _expect(TypeError, lambda: d.get("s", dflt=1))
        del d["sub"]
        bare = _heapcore.DictHandle()
        _expect(ValueError, bare.__getitem__, "k")
        _expect(ValueError, bare.get, "k")
        _expect(AttributeError, lambda: bare._addr)
        _expect(TypeError, setattr, bare, "_c", "not a core")
        _expect(ValueError, setattr, bare, "_addr", -1)
        _expect(TypeError, setattr, bare, "_addr", "x")
        bare._heap, bare._c, bare._addr = h, c, d_addr
        assert bare["s"] == "text" and bare._addr == d_addr and bare._c is c
        bare._addr = d_addr + 16
        _expect(ValueError, bare.__getitem__, "s")  # no Dict there
        del bare._c
        _expect(ValueError, bare.__contains__, "s")

    def dict_lifecycle():
        a = c.dict_new(10)
        for i in range(20):
            c.dict_set(a, i, i)
        c.dict_clear(a)
        c.dict_set(a, "x", "y")
        c.dict_destroy(a)
        _expect(ValueError, c.dict_len, a)
        c.dict_clear(d_addr)

    def list_ops():
        lst = c.list_new()
        for i in range(12):
            c.list_insert(lst, 1 << 62, i * 1.5)
        c.list_insert(lst, 0, None)
        c.list_set(lst, 1, "x" * 100)
        c.list_get(lst, -1)
        c.list_range(lst, 2, 9)
        c.list_len(lst)
        c.list_pop(lst, 3, False)
        c.list_pop(lst, 0, True)
        c.list_extend(lst, [1, "two", b"3", 4.0, None, 2**70] * 3)
        c.list_extend(lst, [c])  # not plain: 1, nothing stored
        _expect(TypeError, c.list_extend, lst, 5)
        _expect(IndexError, c.list_get, lst, 99)
        _expect(IndexError, c.list_set, lst, 99, 1)
        _expect(TypeError, c.list_insert, lst, 0, object())
        _expect(ValueError, c.list_len, 12345)
        inner = c.dict_new(0)
        c.dict_set(inner, "k", True)
        c.list_insert(lst, 0, vh._Ref(8, inner))  # a Dict held by the List
        assert c.container_parent(inner) == lst
        _expect(ValueError, c.list_insert, lst, 0, vh._Ref(8, inner))  # one parent
        _expect(ValueError, c.dict_destroy, inner)  # owned: destroyed through the List
        c.list_destroy(lst)
        _expect(ValueError, c.container_parent, inner)

    def array_ops():
        a = c.array_new(8, "<f8")
        c.array_append(a, np.arange(10.0).tobytes())
        c.array_resize(a, 100)
        c.array_info(a)
        view = memoryview(c.array_view(a))
        _expect(BufferError, c.array_resize, a, 5)  # pinned while the view lives
        _expect(BufferError, c.array_append, a, b"12345678")
        view.release()
        _expect(ValueError, c.array_view, 12345)
        _expect(ValueError, c.array_append, a, b"123")
        _expect(ValueError, c.array_new, 0, "<f8")
        _expect(ValueError, c.array_info, 12345)
        c.array_destroy(a)
        arr.resize(0)
        arr.extend(range(10))
        arr.numpy().sum()
        arr[3] = 4.0

    def open_close():
        h2 = Heap.open(m)
        h2.stats()
        h2.close()
        h2.close()
        _expect(ValueError, h2.alloc, 1)
        _expect(ValueError, _heapcore.HeapCore, b"ro", False)  # read-only, unaligned
        _expect(TypeError, _heapcore.HeapCore, b"ro", True)  # format needs writable
        _expect(ValueError, _heapcore.HeapCore, bytearray(4096), False)
        view = memoryview(c)
        view.release()

    ro_root = c.alloc(16)
    c.set_root("ro-dict", d_addr)
    c.set_root("ro-arr", arr.address)

    def readonly():
        # read-only mode: every reader path (seqlock, hseq) and every refusal
        r = _heapcore.HeapCore(memoryview(m).toreadonly(), False, 0.5)
        assert r.readonly
        r.get_root("ro-dict")
        r.roots()
        r.stats()
        r.check()
        r.usable_size(ro_root)
        r.dict_get(d_addr, "k" * 20, None)
        r.dict_len(d_addr)
        r.dict_items(d_addr, 2)
        r.dict_check(d_addr)
        r.array_info(arr.address)
        view = memoryview(r)
        assert view.readonly
        view.release()
        _expect(KeyError, r.get_root, "nope")
        _expect(PermissionError, r.alloc, 8)
        _expect(PermissionError, r.free, ro_root)
        _expect(PermissionError, r.realloc, ro_root, 8)
        _expect(PermissionError, r.set_root, "x", ro_root)
        _expect(PermissionError, r.del_root, "ro-dict")
        _expect(PermissionError, r.dict_new, 8)
        _expect(PermissionError, r.dict_set, d_addr, 1, 1)
        _expect(PermissionError, r.dict_pop, d_addr, 1)
        _expect(PermissionError, r.dict_update, d_addr, [(1, 1)])
        _expect(PermissionError, r.dict_clear, d_addr)
        _expect(PermissionError, r.dict_destroy, d_addr)
        _expect(PermissionError, r.array_new, 8, "<f8")
        _expect(PermissionError, r.array_resize, arr.address, 1)
        _expect(PermissionError, r.array_append, arr.address, b"12345678")
        _expect(PermissionError, r.array_destroy, arr.address)
        r.close()

    return {
        "read-only mode": readonly,
        "alloc/realloc/free": alloc_free,
        "allocator errors": alloc_errors,
        "usable_size": usable,
        "stats/check": stats_check,
        "roots": roots,
        "dict ops": dict_ops,
        "dict errors": dict_errors,
        "dict lifecycle": dict_lifecycle,
        "dict handle": dict_handle,
        "list ops": list_ops,
        "array ops": array_ops,
        "open/close/buffer": open_close,
    }


COVERED = {
    "alloc", "free", "realloc", "usable_size", "stats", "check", "set_root", "get_root",
    "del_root", "roots", "dict_new", "dict_get", "dict_set", "dict_pop", "dict_len",
    "dict_update", "list_extend",
    "dict_items", "dict_clear", "dict_check", "dict_destroy", "array_new", "array_info",
    "array_resize", "array_append", "array_destroy", "array_view", "close", "flush", "dict_del",
    "list_new", "list_len", "list_get", "list_range", "list_insert", "list_set", "list_pop",
    "list_destroy", "container_parent",
}


# DictHandle's entries, all called by the "dict handle" scenario
HANDLE_COVERED = {"__getitem__", "__contains__", "get", "_heap", "_c", "_addr"}


def test_every_entry_point_is_covered():
    public = {n for n in dir(_heapcore.HeapCore) if not n.startswith("_")}
    public -= {"base", "size", "closed", "readonly", "read_timeout", "unflushed"}  # attributes
    assert public == COVERED, f"untested C entry points: {public - COVERED}"
    handle = set(vars(_heapcore.DictHandle)) - {"__doc__", "__new__"}
    assert handle == HANDLE_COVERED, f"untested DictHandle entries: {handle - HANDLE_COVERED}"
    module = {n for n in vars(_heapcore) if not n.startswith("__") and not n.isupper()}
    # the module's own callables: set-up hooks and a test switch, no data path
    assert module == {"HeapCore", "DictHandle", "HeapRecoveredWarning", "_set_from_value",
                      "_set_ref_type", "_crash_after"}, module


def _fds() -> int:
    return PROC.num_fds()


NAMES = ["alloc/realloc/free", "allocator errors", "usable_size", "stats/check", "roots",
         "dict ops", "dict errors", "dict lifecycle", "dict handle", "list ops", "array ops",
         "open/close/buffer", "read-only mode"]


@pytest.mark.parametrize("name", NAMES)
def test_no_leak(name):
    m = mmap.mmap(-1, 8 << 20)
    h = Heap.format(m)
    fn = _scenarios(m, h)[name]
    for _ in range(200):  # warm up caches and freelists
        fn()
    gc.collect()
    rss0, fds0 = PROC.memory_info().rss, _fds()
    allocs0 = h.stats().allocations
    for _ in range(ROUNDS):
        fn()
    gc.collect()
    grown = PROC.memory_info().rss - rss0
    assert _fds() == fds0
    # 3000 rounds leaking even 64 bytes each would show as ~200 KiB
    assert grown < 160 * 1024, f"{name}: RSS grew by {grown} bytes"
    assert h.stats().allocations == allocs0, "heap allocations leaked"
    h.check()
    h.close()
    m.close()
