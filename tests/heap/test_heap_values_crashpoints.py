"""Deterministic crash points (see test_heap_crashpoints.py) for the write
paths of issue 15: adopting a container as a value, overwriting and
deleting one (which destroys its subtree in later steps), pop (which
detaches it), and every List write, both the in-place shift and the path
that builds a new items block.

A crash inside one operation leaves the state before or after it; a crash
in the steps that destroy an orphaned subtree may leak its memory (the
``leak_ok`` sweeps), never corrupt the heap."""

from __future__ import annotations

import mmap

import numpy as np
import pytest
from test_heap_crashpoints import STRIDE, sweep
from test_heap_values import _plain

from vaspace.heap import Array, Dict, List


@pytest.fixture
def small():
    """A small shared anonymous mapping, cheap to reformat for every point
    (fork keeps it at the same address in the child)."""
    buf = mmap.mmap(-1, 256 << 10)
    yield buf
    buf.close()


def _snap(h, ctx, counters):
    root = ctx["root"]
    content = (_plain(root), [(type(v).__name__, v.parent == root.address)
                              for v in root.values() if hasattr(v, "parent")])
    if not counters:
        return content
    root.check()
    st = h.stats()
    return content, st.allocations, st.used


def _setup(h):
    root = Dict(h, root="root")
    tree = List(h)
    root["tree"] = tree
    sub = Dict(h)
    tree.append(sub)
    sub["deep"] = List(h, items=[1, "two", None])
    arr = Array(h, np.int16)
    arr.extend(range(3))
    tree.append(arr)
    root["n"] = 1.5
    loose = List(h, items=[True, 2])  # a detached container, to adopt
    return {"root": root, "tree": tree, "loose": loose}


def test_crash_everywhere_in_container_values(small):
    total = 0
    total += sweep(small, _setup, lambda c: c["root"].__setitem__("l", c["loose"]), _snap)
    total += sweep(small, _setup, lambda c: c["tree"].append(c["loose"]), _snap)
    total += sweep(small, _setup, lambda c: c["root"].pop("tree"), _snap)
    total += sweep(small, _setup, lambda c: c["tree"].pop(0), _snap)
    total += sweep(small, _setup, lambda c: c["root"].__setitem__("tree", None), _snap,
                   leak_ok=True)
    total += sweep(small, _setup, lambda c: c["root"].__delitem__("tree"), _snap,
                   leak_ok=True)
    total += sweep(small, _setup, lambda c: c["tree"].__delitem__(0), _snap, leak_ok=True)
    total += sweep(small, _setup, lambda c: c["root"].clear(), _snap, leak_ok=True)
    assert total * STRIDE > 150


def _setup_list(h):
    root = Dict(h, root="root")
    short = List(h, items=["a", 2, 3.0, None, "e"])  # 5 of 8 slots: shifts in place
    full = List(h, items=[1, 2, 3, 4])  # 4 of 4 slots: the next item needs a new block
    long = List(h, items=range(300))  # moves beyond the shift limit: a new items block
    root["short"], root["full"], root["long"] = short, full, long
    return {"root": root, "short": short, "full": full, "long": long}


def test_crash_everywhere_in_list_writes(small):
    total = 0
    for op in (lambda c: c["short"].append("new" * 10),
               lambda c: c["full"].append(None),
               lambda c: c["full"].insert(0, 1.5),
               lambda c: c["short"].insert(1, b"x"),
               lambda c: c["short"].__setitem__(2, 2**80),
               lambda c: c["short"].pop(1),
               lambda c: c["short"].__delitem__(-1),
               lambda c: c["long"].insert(3, "mid"),
               lambda c: c["long"].pop(2)):
        total += sweep(small, _setup_list, op, _snap)
    assert total * STRIDE > 100
