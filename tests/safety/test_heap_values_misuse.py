"""Every public call of ``List``, ``Array.at`` and container values (issue 15)
in every wrong state, as test_heap_misuse.py does for Heap, Dict and Array.

Each state is built in its own forked child (``safely``).  No call may kill
the child; every refusal is a documented exception with a message; where
the memory is gone (switched away, another world at the address, detached,
closed) every call that touches it refuses with ValueError.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from test_heap_misuse import _all_refused, _world, read_only_heap, run_calls
from viewutil import safely

from vaspace.heap import Array, Dict, Heap, List
from vaspace_testing import SEG_BASE

INERT = {"l.address", "repr(l)", "l == 1"}


def _build(h: Heap) -> tuple[Dict, List, Array]:
    d = Dict(h, root="kv")
    lst = List(h, root="lst", items=[1, "two", 3.0, None, True])
    inner = Dict(h)
    lst.append(inner)
    inner["deep"] = List(h, items=[b"x"])
    a = Array(h, np.int64)
    a.extend(range(4))
    d["arr"] = a
    d["sub"] = List(h, items=[Dict(h)])
    return d, lst, a


def _calls(h: Heap, d: Dict, lst: List, a: Array) -> dict[str, Callable[[], Any]]:
    addr = lst.address
    return {
        "nested read": lambda: lst[5]["deep"][0],
        "List(h)": lambda: List(h), "List(h, items)": lambda: List(h, items=[1, None]),
        "List.open": lambda: List.open(h, "lst"), "List.at": lambda: List.at(h, addr),
        "List.at(junk)": lambda: List.at(h, SEG_BASE + 8),
        "Array.at": lambda: Array.at(h, a.address),
        "Array.at(junk)": lambda: Array.at(h, addr), "l.address": lambda: lst.address,
        "l.parent": lambda: lst.parent, "len(l)": lambda: len(lst), "l[i]": lambda: lst[2],
        "l[-i]": lambda: lst[-1], "l[99]": lambda: lst[99], "l[slice]": lambda: lst[1:4],
        "l[::2]": lambda: lst[::2], "iter(l)": lambda: list(lst), "l == 1": lambda: lst == 1,
        "l == []": lambda: lst == [], "l.index": lambda: lst.index("two"),
        "l.append": lambda: lst.append(2.5), "l.insert": lambda: lst.insert(1, b"b"),
        "l.extend": lambda: lst.extend([1, 2]), "l[i]=x": lambda: lst.__setitem__(0, None),
        "del l[i]": lambda: lst.__delitem__(1), "l.pop": lambda: lst.pop(),
        "l.pop(0)": lambda: lst.pop(0),
        "d[k]=List": lambda: d.__setitem__("new", List(h)),
        "d[k]=owned": lambda: d.__setitem__("again", d["sub"][0]),
        "d[k]=self": lambda: d.__setitem__("self", d),
        "d[arr]": lambda: d["arr"].numpy().sum(),
        "a.destroy(owned)": a.destroy, "d.pop(sub)": lambda: d.pop("sub"),
        "del d[arr]": lambda: d.__delitem__("arr"),
        "repr(l)": lambda: repr(lst),
        "l.destroy": lst.destroy,
    }


def _walk(h: Heap, d: Dict, lst: List, a: Array) -> dict[str, str]:
    """Run every call; map name -> '' (success) or the exception's type and message."""
    return run_calls(_calls(h, d, lst, a))


def _opened(name: str = "A"):
    vas, seg = _world(name)
    with vas.active():
        h = Heap.format(seg.view())
        d, lst, a = _build(h)
    return vas, seg, h, d, lst, a


def _state_switched_away():
    vas, seg, h, d, lst, a = _opened()
    return _walk(h, d, lst, a)


def _state_other_world():
    _v, _s, h, d, lst, a = _opened("A")
    other, oseg = _world("B")
    with other.active():
        Heap.format(oseg.view())
        out = _walk(h, d, lst, a)
        assert Heap.open(oseg.view()).check() >= 0  # B untouched
    return out


def _state_detached():
    vas, seg, h, d, lst, a = _opened()
    vas.detach()
    return _walk(h, d, lst, a)


def _state_closed():
    vas, seg, h, d, lst, a = _opened()
    with vas.active():
        h.close()
        return _walk(h, d, lst, a)


@pytest.mark.parametrize("state, match", [
    (_state_switched_away, "stale heap: segment 'A-seg' is not mapped here"),
    (_state_other_world, "stale heap: segment 'A-seg' is not mapped here"),
    (_state_detached, "stale heap"),
    (_state_closed, "closed heap"),
])
def test_memory_gone(registry, state, match):
    out = safely(state)
    assert not _all_refused(out, match, INERT), _all_refused(out, match, INERT)


def test_in_a_live_world(registry):
    """The same calls where the memory is there: each works or refuses as
    documented, and the heap is sound afterwards."""

    def case():
        vas, seg, h, d, lst, a = _opened()
        with vas.active():
            out = _walk(h, d, lst, a)
            return out, h.check()

    out, _ = safely(case)
    assert out["l[99]"].startswith("IndexError")
    assert out["Array.at(junk)"].startswith("ValueError")
    assert "one parent" in out["d[k]=owned"] and "cannot hold itself" in out["d[k]=self"]
    assert "delete it there" in out["a.destroy(owned)"]
    assert out["nested read"] == "" and out["l.destroy"] == "" and out["d.pop(sub)"] == ""


def test_read_only_heap(registry):
    def case():
        with read_only_heap(_build) as h:
            d = Dict.open(h, "kv")
            return _walk(h, d, List.open(h, "lst"), d["arr"])

    out = safely(case)
    for name in ("l.append", "l.insert", "l.extend", "l[i]=x", "del l[i]", "l.pop", "List(h)",
                 "l.destroy", "d[k]=owned", "del d[arr]"):
        assert out[name].startswith("PermissionError"), (name, out[name])
    for name in ("l[i]", "l[slice]", "nested read", "iter(l)", "len(l)", "d[arr]"):
        assert out[name] == "", (name, out[name])


# List header words (index of the u64 in list_hdr) and value-entry words a
# co-writer overwrites after open.
CORRUPTIONS = {"List len": 2, "List cap": 3, "List items": 4, "List parent": 5,
               "item pointer": -1, "ref address": -2, "ref tag": -3}


@pytest.mark.parametrize("what", sorted(CORRUPTIONS))
def test_corrupt_list_and_references(registry, what):
    """Clear errors (ValueError, RuntimeError("heap corrupt: ..."),
    IndexError), never a signal."""

    def case():
        vas, seg, h, d, lst, a = _opened()
        with vas.active():
            view = seg.view()
            items = struct.unpack_from("<Q", view, lst.address - SEG_BASE + 32)[0]
            last = struct.unpack_from("<Q", view, items - SEG_BASE + 8 * 5)[0]  # -> inner Dict
            i = CORRUPTIONS[what]
            if i >= 0:
                off, val = lst.address - SEG_BASE + 8 * i, 0x7F7F_7F7F_7F7F_7F7F
            elif i == -1:
                off, val = items - SEG_BASE + 8, SEG_BASE + 64
            elif i == -2:
                off, val = last - SEG_BASE + 16, SEG_BASE + 4096
            else:
                off = last - SEG_BASE + 8
                val = struct.unpack_from("<Q", view, off)[0] & ~0xFF00 | 0x4200
            struct.pack_into("<Q", view, off, val)
            del view
            out = _walk(h, d, lst, a)
            try:
                check = str(h.check())
            except RuntimeError as e:
                check = f"RuntimeError: {e}"
        return out, check

    out, _check = safely(case)
    refused = [k for k, r in out.items() if r]
    assert refused, out  # the corruption was noticed somewhere, and nothing died
