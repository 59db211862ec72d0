"""Read-only heap access: ``Heap.open`` on a read-only buffer.

A VAS attached ``O_RDONLY`` maps its segments ``PROT_READ``; a reader there
must be able to use a Dict, and a write (even to the heap lock) would kill it
with SIGSEGV.  So every test that matters here runs the reader in a child
whose mapping is really ``PROT_READ`` and requires that it did not die of a
signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import signal
import time
import warnings

import numpy as np
import pytest
from heaputil import Region

import vaspace
from vaspace.heap import Array, Dict, Heap, HeapRecoveredWarning, _heapcore
from vaspace_testing import SEG_BASE, MiB, in_child, start_child

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.restype = ctypes.c_int
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _make_prot_read(region: Region) -> None:
    """Turn this process's mapping of ``region`` read-only (as O_RDONLY does)."""
    if _libc.mprotect(region.addr, region.size, mmap.PROT_READ) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _build(h: Heap) -> tuple[Dict, Array]:
    d = Dict(h, root="kv")
    for i in range(300):
        d[f"k{i}"] = i * 3
    d[b"raw"] = b"\x00\xff"
    d[2**80] = "big"
    arr = Array(h, np.int64, root="arr")
    arr.extend(range(100))
    return d, arr


def _mutations(h: Heap, d: Dict, arr: Array) -> dict:
    """Every mutating call, each as a thunk."""
    addr = h.get_root("kv")
    return {
        "alloc": lambda: h.alloc(16),
        "free": lambda: h.free(addr),
        "realloc": lambda: h.realloc(addr, 64),
        "set_root": lambda: h.set_root("new", addr),
        "del_root": lambda: h.del_root("kv"),
        "Dict()": lambda: Dict(h),
        "Dict(root)": lambda: Dict(h, root="other"),
        "d[k]=v": lambda: d.__setitem__("k1", 1),
        "del d[k]": lambda: d.__delitem__("k1"),
        "d.pop": lambda: d.pop("k1"),
        "d.pop default": lambda: d.pop("absent", None),
        "d.popitem": lambda: d.popitem(),
        "d.setdefault": lambda: d.setdefault("absent", 1),
        "d.update": lambda: d.update({"k1": 5}),
        "d.update empty": lambda: d.update(),
        "d.clear": lambda: d.clear(),
        "d.destroy": lambda: d.destroy(),
        "Array()": lambda: Array(h, np.int64),
        "arr.append": lambda: arr.append(1),
        "arr.extend": lambda: arr.extend([1, 2]),
        "arr.extend empty": lambda: arr.extend([]),
        "arr.resize": lambda: arr.resize(5),
        "arr[i]=x": lambda: arr.__setitem__(0, 7),
        "arr.destroy": lambda: arr.destroy(),
    }


def _refusals(h: Heap) -> dict[str, str]:
    """Run every mutating call on a read-only heap; map name -> outcome."""
    d, arr = Dict.open(h, "kv"), Array.open(h, "arr")
    out = {}
    for name, fn in _mutations(h, d, arr).items():
        try:
            fn()
            out[name] = "no error"
        except PermissionError as e:
            out[name] = "refused" if "read-only" in str(e) else f"bad message: {e}"
        except Exception as e:  # noqa: BLE001 - reported, the test asserts on it
            out[name] = f"{type(e).__name__}: {e}"
    return out


def _observe(h: Heap) -> dict:
    """Everything a reader can see, as plain data."""
    d, arr = Dict.open(h, "kv"), Array.open(h, "arr")
    view = arr.numpy()
    res = {
        "readonly": h.readonly,
        "len": len(d),
        "k7": d["k7"],
        "get": d.get("k8"),
        "missing": d.get("nope", "dflt"),
        "contains": ("k9" in d, "nope" in d, 1.5 in d),
        "raw": d[b"raw"],
        "big": d[2**80],
        "keys": sorted(map(str, d.keys())),
        "items": sorted(map(str, d.items())),
        "iter": len(list(iter(d))),
        "values_sum": sum(v for v in d.values() if isinstance(v, int)),
        "eq": d == {**{f"k{i}": i * 3 for i in range(300)}, b"raw": b"\x00\xff", 2**80: "big"},
        "roots": sorted(h.roots()),
        "root": h.get_root("kv") == d.address,
        "at": len(Dict.at(h, d.address)),
        "stats": h.stats()._asdict(),
        "check": h.check(),
        "dcheck": d.check(),
        "usable": h.usable_size(d.address) >= 48,
        "arr_len": len(arr),
        "arr_3": int(arr[3]),
        "arr_slice": arr[10:13].tolist(),
        "arr_sum": int(view.sum()),
        "view_writeable": bool(view.flags.writeable),
        "arr_iter": len(list(arr)),
    }
    del view
    return res


def test_readonly_memoryview(heap: Heap, region: Region):
    _build(heap)
    before = (heap.stats(), dict(Dict.open(heap, "kv").items()), heap.roots())
    with Heap.open(region.buf.toreadonly()) as ro:
        seen = _observe(ro)
        refused = _refusals(ro)
        assert ro.stats() == before[0]
    assert seen["readonly"] and seen["len"] == 302 and seen["k7"] == 21
    assert seen["get"] == 24 and seen["missing"] == "dflt"
    assert seen["contains"] == (True, False, False)
    assert seen["raw"] == b"\x00\xff" and seen["big"] == "big" and seen["eq"]
    assert seen["iter"] == 302 and seen["values_sum"] == 3 * sum(range(300))
    assert seen["roots"] == ["arr", "kv"] and seen["root"] and seen["at"] == 302
    assert seen["check"] == heap.check() and seen["dcheck"] == 302 and seen["usable"]
    assert seen["stats"] == before[0]._asdict()
    assert seen["arr_len"] == 100 and seen["arr_3"] == 3 and seen["arr_slice"] == [10, 11, 12]
    assert seen["arr_sum"] == sum(range(100)) and not seen["view_writeable"]
    assert seen["arr_iter"] == 100
    assert refused == {k: "refused" for k in refused}, refused
    # nothing changed, and the writable heap is still fully usable
    assert (heap.stats(), dict(Dict.open(heap, "kv").items()), heap.roots()) == before
    assert not heap.readonly
    Dict.open(heap, "kv")["k1"] = "w"
    heap.check()


def test_format_needs_a_writable_buffer(region: Region):
    with pytest.raises(TypeError, match="writable"):
        Heap.format(region.buf.toreadonly())
    with pytest.raises(ValueError, match="bad magic"):
        Heap.open(region.buf.toreadonly())  # nothing formatted yet: no write attempted
    with pytest.raises(ValueError, match="read_timeout"):
        Heap.open(region.buf.toreadonly(), read_timeout=-1)


def test_prot_read_mapping_every_write_refused_without_a_signal(heap: Heap, region: Region):
    _build(heap)
    expected = _observe(heap)
    expected["readonly"] = True
    expected["view_writeable"] = False

    def reader():
        _make_prot_read(region)
        with Heap.open(region.buf.toreadonly()) as ro:
            return _observe(ro), _refusals(ro), _observe(ro)

    res = in_child(reader)
    assert res.signal is None, f"read-only reader died of {signal.Signals(res.signal).name}"
    seen, refused, again = res.get()
    assert seen == expected and again == expected
    assert refused == {k: "refused" for k in refused}, refused

    def control():  # the mapping really is read-only: a plain store faults
        _make_prot_read(region)
        ctypes.c_char.from_address(region.addr + 4096).value = b"x"

    assert in_child(control).signal == signal.SIGSEGV
    heap.check()


SEG = SEG_BASE + 0x30_0000_0000


def test_segment_attached_readonly(registry):
    vid = vaspace.vas_create("ro-vas", 0o600)
    sid = vaspace.vas_seg_create("ro-seg", SEG, SEG + 4 * MiB, 0o600)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)

    def enter(mode: int) -> memoryview:
        vaspace.vas_attach(0, vid, mode)
        vaspace.vas_switch(vid)
        return vaspace.Segment.find("ro-seg").view()

    def writer():
        with Heap.format(enter(os.O_RDWR)) as h:
            _build(h)
            return _observe(h)

    def reader():
        view = enter(os.O_RDONLY)
        assert view.readonly
        with Heap.open(view) as h:
            return _observe(h), _refusals(h), _observe(h)

    expected = in_child(writer).get()
    expected["readonly"] = True
    expected["view_writeable"] = False
    res = in_child(reader)
    assert res.signal is None, f"read-only reader died of {signal.Signals(res.signal).name}"
    seen, refused, again = res.get()
    assert seen == expected and again == expected
    assert refused == {k: "refused" for k in refused}, refused


# -- concurrency ------------------------------------------------------------


def _value(key: str, rnd: int) -> bytes:
    """A self-checking value: the key, then the round repeated a number of
    times that depends on the round, so a torn value cannot pass ``_valid``."""
    return (f"{key}=" + f"{rnd}:" * (1 + rnd % 13)).encode()


def _valid(key: str, v: bytes) -> int:
    head = key.encode() + b"="
    parts = v[len(head):].split(b":")
    ok = (v.startswith(head) and len(parts) >= 2 and parts[-1] == b"" and parts[0].isdigit()
          and all(p == parts[0] for p in parts[:-1])
          and len(parts) - 1 == 1 + int(parts[0]) % 13)
    if not ok:
        raise AssertionError(f"torn value for {key!r}: {v!r}")
    return int(parts[0])


def test_writer_and_two_readonly_readers(heap: Heap, region: Region):
    keys = [f"key{i}" for i in range(64)]
    d = Dict(heap, root="kv")
    for k in keys:
        d[k] = _value(k, 0)
    d["round"] = 0

    ready_r, ready_w = os.pipe()
    overlap_r, overlap_w = os.pipe()

    def writer():
        os.read(ready_r, 1), os.read(ready_r, 1)  # both readers are reading
        # At least a second of writes, and on until both readers have seen
        # two rounds: the overlap is awaited, not assumed from the timing.
        os.set_blocking(overlap_r, False)
        rnd, overlapped, t_end = 0, 0, time.monotonic() + 1.0
        while time.monotonic() < t_end or overlapped < 2:
            with contextlib.suppress(BlockingIOError):
                overlapped += len(os.read(overlap_r, 2))
            rnd += 1
            for k in keys[rnd % 8::8]:
                d[k] = _value(k, rnd)
            # inserts and deletes: tombstone sweeps and rehashes move the table
            d[f"tmp{rnd}"] = b"x" * (rnd % 300)
            d.pop(f"tmp{rnd - 40}", None)
            d["round"] = rnd
        d["done"] = 1
        return rnd

    def reader():
        _make_prot_read(region)
        ro = Heap.open(region.buf.toreadonly())
        rd = Dict.open(ro, "kv")
        rounds, lookups, snaps, told = set(), 0, 0, False
        while True:  # until the writer is done (the child's timeout bounds a hang)
            if snaps == 1:
                os.write(ready_w, b"r")
            done = rd.get("done")
            for k in keys[lookups % 7::7]:
                _valid(k, rd[k])
                lookups += 1
            snap = rd.items()
            snaps += 1
            for k, v in snap:
                if isinstance(k, str) and k.startswith("key"):
                    _valid(k, v)
            assert sum(1 for k, _ in snap if isinstance(k, str) and k.startswith("key")) == 64
            rounds.add(rd["round"])
            if len(rounds) == 2 and not told:
                os.write(overlap_w, b"o")
                told = True
            ro.stats()
            if done:
                break
        ro.check()
        ro.close()
        return len(rounds), lookups, snaps, bool(done)

    readers = [start_child(reader) for _ in range(2)]
    try:
        start_child(writer).result().get()
        results = [child.result() for child in readers]
    finally:
        for child in readers:  # readers left waiting for a writer that failed
            child.kill()
        for fd in (ready_r, ready_w, overlap_r, overlap_w):
            os.close(fd)
    for res in results:
        assert res.signal is None, f"reader killed by {signal.Signals(res.signal).name}"
        nrounds, lookups, snaps, done = res.get()
        assert done
        assert nrounds >= 2, "reader never overlapped the writer"
        assert lookups > 0 and snaps > 0
    heap.check()
    Dict.open(heap, "kv").check()


# -- a writer that dies mid-update --------------------------------------------

READ_TIMEOUT = 0.3


def _spin() -> None:
    while True:
        pass



def test_dead_writer_gives_bounded_error(heap: Heap, region: Region):
    d = Dict(heap, root="kv")
    for i in range(20):
        d[i] = i
    addr = d.address

    def dying_writer():
        _heapcore._crash_after(3)  # _exit mid-update: lock held, seqs odd
        d[99] = "never"

    assert in_child(dying_writer).exitcode == 77

    def reader():
        _make_prot_read(region)
        ro = Heap.open(region.buf.toreadonly(), read_timeout=READ_TIMEOUT)
        rd = Dict.at(ro, addr)  # the header itself is readable
        out = {"len": len(rd)}
        for name, fn in {"get": lambda: rd[5], "items": rd.items, "stats": ro.stats,
                         "roots": ro.roots, "get_root": lambda: ro.get_root("kv"),
                         "check": ro.check}.items():
            t0 = time.monotonic()
            try:
                fn()
                out[name] = "no error"
            except TimeoutError as e:
                ok = "writer" in str(e) and "recover" in str(e) and "0.30 s" in str(e)
                out[name] = ("timeout" if ok else str(e), time.monotonic() - t0)
        ro.close()
        return out

    # Two CPU hogs make every sched_yield of the reader give its core away
    # for a time slice: the deadline must be checked often enough that the
    # wait still ends close to read_timeout (it once overshot it 18x).
    hogs = [start_child(_spin) for _ in range(2)]
    try:
        res = in_child(reader)
    finally:
        for hog in hogs:
            hog.kill()
    assert res.signal is None, f"read-only reader died of {signal.Signals(res.signal).name}"
    out = res.get()
    assert out.pop("len") == 20
    for name, (what, waited) in out.items():
        assert what == "timeout", (name, what)
        # bounded relative to read_timeout: it gave up on time, it did not hang
        assert READ_TIMEOUT <= waited < 1.5 * READ_TIMEOUT + 0.15, (name, waited)
    # a writer opening the heap recovers it; read-only readers then work again
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with Heap.open(region.buf) as wh:
            assert Dict.open(wh, "kv").get(99) is None
    assert any(issubclass(x.category, HeapRecoveredWarning) for x in w)

    def reader_after():
        _make_prot_read(region)
        with Heap.open(region.buf.toreadonly(), read_timeout=0.3) as ro:
            return dict(Dict.open(ro, "kv").items()), ro.stats().recoveries, ro.check()

    items, recoveries, _ = in_child(reader_after).get()
    assert items == {i: i for i in range(20)} and recoveries == 1


def test_dead_lane_writer_gives_bounded_error_then_is_rolled_back(heap: Heap, region: Region):
    """A writer killed inside an update lane (an in-place overwrite, which
    does not take the heap mutex) leaves that lane's seq odd: a read-only
    reader of the key, or of all values, gives up after read_timeout instead
    of reading the half-written value; a writer's next heap-mutex operation
    rolls the lane back (old value, a recovery warning)."""
    d = Dict(heap, root="kv")
    for i in range(20):
        d[i] = i
    addr = d.address

    def dying_lane_writer():
        # crash point 3 of an overwrite whose head word is unchanged: the new
        # value stored, the lane's log not yet cleared, its seq odd
        _heapcore._crash_after(3)
        d[5] = 7

    assert in_child(dying_lane_writer).exitcode == 77

    def reader():
        _make_prot_read(region)
        out = {}
        with Heap.open(region.buf.toreadonly(), read_timeout=READ_TIMEOUT) as ro:
            rd = Dict.at(ro, addr)
            for name, fn in {"get": lambda: rd[5], "items": rd.items}.items():
                try:
                    out[name] = repr(fn())
                except TimeoutError as e:
                    out[name] = "timeout" if "recover" in str(e) else str(e)
        return out

    res = in_child(reader)
    assert res.signal is None
    assert res.get() == {"get": "timeout", "items": "timeout"}
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with Heap.open(region.buf) as wh:
            wh.check()  # a heap-mutex operation: excludes the lanes first
            dd = Dict.open(wh, "kv")
            assert dd[5] == 5 and dd.check() == 20
    assert any(issubclass(x.category, HeapRecoveredWarning) for x in w)
