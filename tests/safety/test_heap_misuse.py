"""Every public call of ``Heap``, ``Dict``, ``Array`` and their views, in every wrong state.

Each state is built in its own forked child (``safely``); there every public
call runs against the state's objects.  The rule: no call kills the child,
and every refusal is a Python exception of a documented type with a message.
Where the memory is gone (closed heap, switched away, another world at the
address, VAS detached) every call that would touch it must refuse with
ValueError and change nothing.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from viewutil import safely

import vaspace as v
from vaspace.heap import Array, Dict, Heap
from vaspace_testing import SEG_BASE, MiB

SIZE = 4 * MiB
ALLOWED = (ValueError, TypeError, KeyError, IndexError, BufferError, MemoryError, RuntimeError,
           PermissionError, OSError)
# calls that never touch heap memory, so they may succeed in any state
INERT = {"h.close", "h.closed", "h.readonly", "with h", "repr(h)", "repr(d)", "repr(a)",
         "d.address", "a.address", "a.dtype", "d == 1", "d.update()"}


def _calls(h: Heap, d: Dict, a: Array) -> dict[str, Callable[[], Any]]:
    """Every public call, each as a thunk (mutating ones included)."""
    addr = d.address
    return {
        "h.base": lambda: h.base, "h.size": lambda: h.size, "h.closed": lambda: h.closed,
        "h.readonly": lambda: h.readonly, "h.alloc": lambda: h.alloc(64),
        "h.alloc(junk)": lambda: h.alloc(-1), "h.free": lambda: h.free(addr + 16),
        "h.free(Dict)": lambda: h.free(addr), "h.realloc": lambda: h.realloc(addr, 128),
        "h.usable_size": lambda: h.usable_size(addr),
        "h.stats": h.stats, "h.check": h.check, "h.set_root": lambda: h.set_root("r", addr),
        "h.get_root": lambda: h.get_root("kv"), "h.del_root": lambda: h.del_root("nope"),
        "h.roots": h.roots, "repr(h)": lambda: repr(h),
        "Dict(h)": lambda: Dict(h), "Dict.open": lambda: Dict.open(h, "kv"),
        "Dict.at": lambda: Dict.at(h, addr), "Dict.at(junk)": lambda: Dict.at(h, SEG_BASE + 8),
        "d.address": lambda: d.address, "d[k]": lambda: d["k1"], "d.get": lambda: d.get("k2"),
        "k in d": lambda: "k3" in d, "d[sub]": lambda: d["sub"]["x"],
        "d.get(sub)": lambda: d.get("sub"), "d.get(absent)": lambda: d.get("absent", 0),
        "absent in d": lambda: "absent" in d, "d[k]=v": lambda: d.__setitem__("k4", "new"),
        "del d[k]": lambda: d.__delitem__("k5"), "d.pop": lambda: d.pop("k6", None),
        "d.popitem": d.popitem, "d.setdefault": lambda: d.setdefault("z", 1),
        "len(d)": lambda: len(d), "iter(d)": lambda: list(iter(d)), "d.keys": d.keys,
        "d.values": d.values, "d.items": d.items, "d.update": lambda: d.update({"u": 1}),
        "d.update()": d.update, "d == 1": lambda: d == 1, "d == {}": lambda: d == {},
        "d.check": d.check, "repr(d)": lambda: repr(d),
        "Array(h)": lambda: Array(h, np.int16), "Array.open": lambda: Array.open(h, "arr"),
        "a.address": lambda: a.address, "a.dtype": lambda: a.dtype, "len(a)": lambda: len(a),
        "a.numpy": lambda: a.numpy().sum(), "a[i]": lambda: a[3], "a[i]=x": lambda: a.__setitem__(
            3, 9), "a[slice]": lambda: a[1:4], "iter(a)": lambda: list(a),
        "a.append": lambda: a.append(1), "a.extend": lambda: a.extend([1, 2]),
        "a.resize": lambda: a.resize(50), "repr(a)": lambda: repr(a),
        "d.clear": d.clear, "a.destroy": a.destroy, "d.destroy": d.destroy,
        "with h": lambda: h.__exit__(None, None, None), "h.close": h.close,
    }


def _walk(h: Heap, d: Dict, a: Array) -> dict[str, str]:
    """Run every call; map name -> '' (success) or the exception's type."""
    return run_calls(_calls(h, d, a))


def run_calls(calls: dict[str, Callable[[], Any]]) -> dict[str, str]:
    """Run each call; map name -> '' (success) or the exception's type and message."""
    out = {}
    for name, fn in calls.items():
        try:
            fn()
            out[name] = ""
        except ALLOWED as exc:
            msg = str(exc).strip()
            assert msg, f"{name}: {type(exc).__name__} without a message"
            out[name] = f"{type(exc).__name__}: {msg}"
        except Exception as exc:  # noqa: BLE001 - reported with the call that raised it
            raise AssertionError(f"{name} raised {type(exc).__name__}: {exc}") from exc
    return out


def _build(h: Heap) -> tuple[Dict, Array]:
    d = Dict(h, root="kv")
    d["sub"] = Dict(h)  # a container value: the GET path makes a handle of it
    d["sub"]["x"] = 1
    d.update({f"k{i}": i for i in range(10)})
    a = Array(h, np.int64, root="arr")
    a.extend(range(10))
    return d, a


def _world(name: str) -> tuple[v.VAS, v.Segment]:
    seg = v.Segment.create(f"{name}-seg", SEG_BASE, size=SIZE)
    vas = v.VAS.create(name)
    vas.attach_segment(seg)
    vas.attach()
    return vas, seg


def _opened(name: str = "A") -> tuple[v.VAS, v.Segment, Heap, Dict, Array]:
    vas, seg = _world(name)
    with vas.active():
        h = Heap.format(seg.view())
        d, a = _build(h)
    return vas, seg, h, d, a


def _all_refused(out: dict[str, str], match: str, inert: set[str] = INERT) -> list[str]:
    """Names of the calls that touch memory but did not refuse with ValueError(match)."""
    return [f"{k}: {r!r}" for k, r in out.items()
            if k not in inert and not (r.startswith("ValueError") and match in r)]


def _state_switched_away() -> dict[str, str]:
    vas, seg, h, d, a = _opened()
    return _walk(h, d, a)


def _state_other_world() -> dict[str, str]:
    _a, _sa, h, d, a = _opened("A")
    other, oseg = _world("B")
    with other.active():
        Heap.format(oseg.view())  # B's own heap at the same address
        out = _walk(h, d, a)
        assert Heap.open(oseg.view()).check() >= 0  # B untouched
    return out


def _state_detached() -> dict[str, str]:
    vas, seg, h, d, a = _opened()
    vas.detach()
    return _walk(h, d, a)


def _state_closed() -> dict[str, str]:
    vas, seg, h, d, a = _opened()
    with vas.active():
        h.close()
        return _walk(h, d, a)


@pytest.mark.parametrize("state, match", [
    (_state_switched_away, "stale heap: segment 'A-seg' is not mapped here"),
    (_state_other_world, "stale heap: segment 'A-seg' is not mapped here"),
    (_state_detached, "stale heap"),
    (_state_closed, "closed heap"),
])
def test_memory_gone(registry, state, match):
    out = safely(state)
    assert not _all_refused(out, match), _all_refused(out, match)


def test_resize_in_flight(registry):
    """A numpy view is alive: the Array refuses to move its data; everything
    else works, and nothing the view can reach is ever freed."""

    def case():
        vas, seg, h, d, a = _opened()
        with vas.active():
            view = a.numpy()
            out = _walk(h, d, a)
            view[:] = 7  # the view still writes into the Array's own block
            total = int(view.sum())
            del view
            h2 = Heap.open(seg.view())
            a2 = Array.open(h2, "arr")
            ok = (a2.numpy().tolist(), h2.check())
            h2.close()
        return out, total, ok

    out, total, (values, _) = safely(case)
    for name in ("a.append", "a.extend", "a.resize", "a.destroy"):
        assert out[name].startswith("BufferError") and "numpy view" in out[name], out[name]
    assert out["h.close"].startswith("BufferError")
    assert out["d.destroy"] == "" and out["a.numpy"] == ""
    assert total == 7 * 10 and values == [7] * 10


@contextlib.contextmanager
def read_only_heap(build: Callable[[Heap], Any]) -> Iterator[Heap]:
    """A heap that ``build`` filled, opened again through an O_RDONLY
    attachment (a PROT_READ mapping), with the thread inside its VAS."""
    vas, seg = _world("R")
    with vas.active():
        with Heap.format(seg.view()) as h:
            build(h)
    vas.detach()
    vas.attach(os.O_RDONLY)
    with vas.active():
        yield Heap.open(seg.view())


def test_read_only_heap(registry):
    def case():
        with read_only_heap(_build) as h:
            return _walk(h, Dict.open(h, "kv"), Array.open(h, "arr"))

    out = safely(case)
    for name in ("h.alloc", "d[k]=v", "d.clear", "a.append", "a[i]=x", "Dict(h)"):
        assert out[name].startswith("PermissionError"), (name, out[name])
    assert out["d[k]"] == "" and out["a.numpy"] == "" and out["h.check"] == ""


CORRUPTIONS = {
    "magic": 0,  # header words (offsets), overwritten after open
    "arena bounds": 56,
    "free list head": 120 + 8 * 70,
    "lock type": -1,  # the lock's type word
    "Dict table": -2,  # the Dict header's table pointer
}


@pytest.mark.parametrize("what", sorted(CORRUPTIONS))
def test_corrupt_segment(registry, what):
    """Words overwritten by a co-writer after open: clear errors (ValueError,
    RuntimeError("heap corrupt: ...")), never a signal; a reopen refuses a
    corrupt header."""

    def case():
        from vaspace.heap import _heapcore

        vas, seg, h, d, a = _opened()
        off = CORRUPTIONS[what]
        off = {-1: _heapcore._LOCK_OFFSET + 16, -2: d.address - SEG_BASE + 40}.get(off, off)
        with vas.active():
            view = seg.view()
            struct.pack_into("<Q", view, off, 0x7F7F_7F7F_7F7F_7F7F)
            del view
            out = _walk(h, d, a)
            try:
                Heap.open(seg.view()).close()
                reopen = ""
            except (ValueError, RuntimeError) as e:
                reopen = f"{type(e).__name__}: {e}"
        return out, reopen

    out, reopen = safely(case)
    corrupt = [k for k, r in out.items() if r.startswith("RuntimeError: heap corrupt")]
    if what in ("magic", "arena bounds"):
        # the geometry was checked at open and is kept privately: the open
        # handle still works; a new open refuses the header
        assert reopen.startswith("ValueError"), reopen
    else:
        assert corrupt, out


def test_open_and_format_on_junk(registry):
    """Heap.format / Heap.open on every kind of wrong buffer: a clear error."""

    def case():
        import mmap

        released = memoryview(bytearray(8192))
        released.release()
        small = mmap.mmap(-1, 4096)
        zeros = mmap.mmap(-1, 1 << 20)
        junk = {"None": None, "int": 5, "str": "x", "bytes": b"x" * 65536,
                "bytearray": bytearray(1 << 20), "released": released, "small": small,
                "read-only no heap": memoryview(zeros).toreadonly(),
                "strided": memoryview(zeros)[::2], "no heap": zeros}
        out = {}
        for name, buf in junk.items():
            for call in (Heap.open, Heap.format):
                try:
                    call(buf).close()
                    out[f"{call.__name__}({name})"] = ""
                except ALLOWED as exc:
                    assert str(exc).strip(), name
                    out[f"{call.__name__}({name})"] = type(exc).__name__
        return out

    out = safely(case)
    # every one refused, except formatting a fresh zeroed mapping (and it
    # formats: the buffer is writable, aligned and large enough)
    assert [k for k, r in out.items() if not r] == ["format(no heap)"], out
