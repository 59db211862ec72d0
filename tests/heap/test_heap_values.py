"""Issue 15 §1: the values a Dict and a List hold, containers in the same
heap (one parent each), List, Array.at, insertion order, and heaps of the
previous layout version."""

from __future__ import annotations

import math
import os
import random
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from heaputil import map_region
from test_heap_procs import _child

from vaspace.heap import Array, Dict, Heap, List

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(os.path.dirname(HERE)), "src")

SCALARS = [None, True, False, 0, -1, 2**63 - 1, -(2**63), 2**200, -(3**99), 1.5, -0.0,
           math.inf, -math.inf, 1e-310, "", "héllo", b"", b"\x00\xff"]


def test_scalar_values_keep_type_and_value(heap):
    d = Dict(heap)
    for i, v in enumerate(SCALARS):
        d[i] = v
    d["nan"] = math.nan
    for i, v in enumerate(SCALARS):
        got = d[i]
        assert type(got) is type(v) and got == v, (v, got)
    assert math.copysign(1, d[10]) == -1 and SCALARS[10] == 0  # the sign of -0.0 survives
    assert math.isnan(d["nan"])
    assert [type(v) for v in d.values()][:3] == [type(None), bool, bool]
    lst = List(heap, items=SCALARS)
    assert [(type(x), x) for x in lst] == [(type(x), x) for x in SCALARS]


def test_unsupported_values_are_refused(heap):
    d, lst = Dict(heap), List(heap)
    for bad in (object(), [1], {"a": 1}, (1,), 1j, np.int64(3)):
        with pytest.raises(TypeError, match="value must be"):
            d["k"] = bad
        with pytest.raises(TypeError, match="value must be"):
            lst.append(bad)
    with pytest.raises(TypeError):
        d[None] = 1  # keys stay bytes, str, int
    assert len(d) == 0 and len(lst) == 0 and heap.check()


def test_dict_iterates_in_insertion_order(heap):
    """Against a Python dict over random inserts, replacements, deletions
    and re-insertions, through several table resizes."""
    rng = random.Random(15)
    d, model = Dict(heap), {}
    for step in range(3000):
        k = rng.randrange(400)
        if rng.random() < 0.3 and model:
            k = rng.choice(list(model))
            del d[k]
            del model[k]
        else:
            d[k] = model[k] = step
        if step % 250 == 0:
            assert list(d) == list(model)
    assert list(d) == list(model)
    assert d.items() == list(model.items()) and d.values() == list(model.values())
    d.clear()
    d["b"], d["a"] = 1, 2
    assert list(d) == ["b", "a"]


def test_list_against_a_python_list(heap):
    """Random operations, including a long List whose middle inserts and
    removals build a new items block."""
    rng = random.Random(7)
    lst, model = List(heap), []
    for step in range(2500):
        op = rng.random()
        v = rng.choice([step, str(step), float(step), None, bool(step & 1), bytes([step % 256])])
        if op < 0.4 or not model:
            lst.append(v)
            model.append(v)
        elif op < 0.55:
            i = rng.randrange(-len(model) - 3, len(model) + 3)
            lst.insert(i, v)
            model.insert(i, v)
        elif op < 0.7:
            i = rng.randrange(-len(model), len(model))
            assert lst.pop(i) == model.pop(i)
        elif op < 0.8:
            i = rng.randrange(-len(model), len(model))
            del lst[i]
            del model[i]
        elif op < 0.9:
            i = rng.randrange(-len(model), len(model))
            lst[i] = model[i] = v
        else:
            i, j = sorted(rng.randrange(-len(model) - 2, len(model) + 2) for _ in range(2))
            assert lst[i:j] == model[i:j] and lst[::3] == model[::3] and lst[::-2] == model[::-2]
        assert len(lst) == len(model)
    assert lst[:] == model and list(lst) == model and lst == model
    assert lst[-1] == model[-1] and lst.index(model[5]) == model.index(model[5])
    with pytest.raises(IndexError):
        lst[len(model)]
    with pytest.raises(IndexError):
        lst[len(model)] = 1
    with pytest.raises(IndexError):
        List(heap).pop()
    with pytest.raises(TypeError):
        lst[1:2] = [1]
    assert heap.check()


def test_list_roots_and_at(heap):
    lst = List(heap, root="todo", items=["a", 1])
    assert List.open(heap, "todo") == ["a", 1]
    assert List.at(heap, lst.address)[0] == "a"
    with pytest.raises(ValueError, match="not a List"):
        List.at(heap, Dict(heap).address)
    with pytest.raises(ValueError, match="not a List"):
        List.at(heap, lst.address + 16)


def test_array_at(heap):
    a = Array(heap, np.float32)
    a.extend([1, 2, 3])
    b = Array.at(heap, a.address)
    assert b.dtype == np.float32 and b.numpy().tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="not an Array"):
        Array.at(heap, Dict(heap).address)


def _tree(heap: Heap) -> Dict:
    """A dict of lists of dicts, plus an Array, built in place."""
    root = Dict(heap, root="tree")
    for u in range(3):
        posts = List(heap)
        root[f"user{u}"] = posts
        for p in range(4):
            post = Dict(heap)
            posts.append(post)  # attached first, then filled: it is the same object
            post["title"] = f"post {u}.{p}"
            post["score"] = p * 0.5
            post["tags"] = List(heap, items=["x", p, None])
    hits = Array(heap, np.int64)
    hits.extend(range(10))
    root["hits"] = hits
    return root


def _plain(v):
    """A container tree as plain Python objects."""
    if isinstance(v, Dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, List):
        return [_plain(x) for x in v]
    if isinstance(v, Array):
        return v.numpy().tolist()
    return v


def test_nested_structures_are_live_references(heap):
    root = _tree(heap)
    post = root["user1"][2]
    assert isinstance(post, Dict) and post["title"] == "post 1.2"
    post["title"] = "edited"  # through a handle read back: the same memory
    assert root["user1"][2]["title"] == "edited"
    root["hits"].append(99)
    assert len(root["hits"]) == 11
    assert root["user0"].parent == root.address and post.parent == root["user1"].address
    assert root.parent == 0 and list(root) == ["user0", "user1", "user2", "hits"]
    assert heap.check()


CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = [{here!r}, {src!r}]
    from heaputil import map_region
    from vaspace.heap import Dict, Heap, List
    r = map_region({path!r}, {size}, addr={addr}, create=False)
    h = Heap.open(r.buf)
    root = Dict.open(h, "tree")
    posts = root["user2"]
    seen = [p["title"] for p in posts] + [posts[3]["tags"][:]]
    new = Dict(h)
    new["title"] = "from the child"
    posts.insert(0, new)
    root["user0"][1]["tags"].append(3.25)
    print(repr(seen))
    h.close()
    r.close()
""")


def test_nested_structures_across_processes(tmp_path):
    """One process builds, a fresh interpreter reads in place and adds to
    the nested parts, and the first sees the additions."""
    size = 4 << 20
    r = map_region(str(tmp_path / "tree.heap"), size)
    heap = Heap.format(r.buf)
    _tree(heap)
    code = CHILD.format(here=HERE, src=SRC, path=str(tmp_path / "tree.heap"), size=size,
                        addr=r.addr)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == repr([f"post 2.{p}" for p in range(4)] + [["x", 3, None]])
    root = Dict.open(heap, "tree")
    assert root["user2"][0]["title"] == "from the child" and len(root["user2"]) == 5
    assert root["user0"][1]["tags"][:] == ["x", 1, None, 3.25]
    assert heap.check()
    heap.close()
    r.close()


def test_one_parent_each(heap):
    d, other = Dict(heap), Dict(heap)
    lst = List(heap)
    d["l"] = lst
    with pytest.raises(ValueError, match="one parent"):
        other["l"] = lst
    with pytest.raises(ValueError, match="one parent"):
        List(heap).append(lst)
    d["l"] = lst  # the same container at the same place: nothing changes
    assert d["l"].address == lst.address and lst.parent == d.address
    with pytest.raises(ValueError, match="cannot hold itself"):
        d["self"] = d
    inner = Dict(heap)
    lst.append(inner)
    with pytest.raises(ValueError, match="cannot hold itself"):
        inner["loop"] = d  # d holds lst holds inner
    with pytest.raises(ValueError, match="delete it there"):
        lst.destroy()
    with pytest.raises(ValueError, match="delete it there"):
        inner.destroy()
    with pytest.raises(ValueError, match="live container|use its destroy"):
        heap.free(lst.address)
    assert "loop" not in inner and "self" not in d and heap.check()


def test_another_heaps_container_is_refused(heap, tmp_path):
    r2 = map_region(str(tmp_path / "other.heap"), 1 << 20)
    h2 = Heap.format(r2.buf)
    with pytest.raises(ValueError, match="another heap"):
        Dict(heap)["x"] = Dict(h2)
    h2.close()
    r2.close()


def test_overwrite_and_del_free_the_whole_subtree(heap):
    d = Dict(heap)
    base = heap.stats().allocations
    for how in ("overwrite", "del", "clear", "list set", "list del", "destroy"):
        holder = List(heap, items=[0])
        d["x"] = holder
        sub = Dict(heap)
        holder[0] = sub
        sub["deep"] = List(heap, items=[Dict(heap), Array(heap, np.int8), "s" * 100])
        deep = sub["deep"]
        if how == "overwrite":
            d["x"] = 1.0
        elif how == "del":
            del d["x"]
        elif how == "clear":
            d.clear()
        elif how == "list set":
            holder[0] = None
        elif how == "list del":
            del holder[0]
        else:
            d.pop("x").destroy()
        if how.startswith("list"):
            del d["x"]
        d.pop("x", None)
        assert heap.stats().allocations == base, how
        with pytest.raises(ValueError, match="not a"):
            len(deep)  # the handle refuses: its container is gone
        assert heap.check()


def test_pop_hands_the_container_back_detached(heap):
    d, lst = Dict(heap), List(heap)
    d["a"] = Dict(heap)
    d["a"]["k"] = 1
    got = d.pop("a")
    assert got.parent == 0 and got["k"] == 1
    lst.append(got)  # free to be adopted again
    back = lst.pop()
    assert back.parent == 0 and back["k"] == 1
    back.destroy()
    assert heap.check()


def test_an_array_with_a_live_view_is_detached_not_freed(heap):
    d = Dict(heap)
    a = Array(heap, np.int32)
    a.extend(range(8))
    d["a"] = a
    view = a.numpy()
    del d["a"]  # would free the view's memory: the Array is detached instead
    view[:] = 5
    assert a.parent == 0 and a.numpy().tolist() == [5] * 8
    del view
    a.destroy()
    assert heap.check()


def test_a_corrupt_reference_is_an_error_not_a_fault(heap, region):
    """A co-writer overwrites the reference or its tag (see tests/safety
    for the same in a child that must not die)."""
    d = Dict(heap)
    d["c"] = List(heap)
    buf = region.buf
    ref = struct.pack("<Q", d["c"].address)
    at = bytes(buf).find(b"c" + bytes(7) + ref)  # the key's room is padded to 8 bytes
    assert at > 0
    for bogus in (heap.base + 8, d.address, 0, 2**64 - 16, heap.base + heap.size - 16):
        struct.pack_into("<Q", buf, at + 8, bogus)
        with pytest.raises(ValueError):
            d["c"]
    struct.pack_into("<Q", buf, at + 8, struct.unpack("<Q", ref)[0])
    assert isinstance(d["c"], List)
    struct.pack_into("<B", buf, at - 8 + 1, 200)  # the entry's value tag
    with pytest.raises(RuntimeError, match="heap corrupt"):
        d["c"]


def test_a_heap_of_the_previous_layout_is_refused_by_name(heap, region):
    """Version 1 heaps (main before issue 15), version 2 heaps (before the
    compact Dict) and version 3 heaps (before update lanes) are refused with
    a ValueError naming both versions, before anything in them is read."""
    for old in (1, 2, 3):
        struct.pack_into("<I", region.buf, 8, old)
        with pytest.raises(ValueError, match=f"layout version {old} .*reads version 4"):
            Heap.open(region.buf)
    struct.pack_into("<I", region.buf, 8, 4)
    Heap.open(region.buf).close()


def test_mixin_methods_keep_the_ownership_rule(heap):
    """popitem hands containers back (as pop does); clear destroys them."""
    d = Dict(heap)
    d["a"], d["b"] = 1, List(heap, items=[1])
    k, v = d.popitem()
    assert k == "b" and v[:] == [1] and v.parent == 0
    v.destroy()
    base = heap.stats().allocations
    lst = List(heap, items=[Dict(heap), 2, List(heap)])
    lst.clear()
    assert len(lst) == 0
    lst.destroy()
    assert heap.stats().allocations == base and heap.check()
    with pytest.raises(TypeError):
        List(heap).reverse()


def test_a_subclass_travels_as_its_kind(heap):
    class Tagged(List):
        pass

    d = Dict(heap)
    d["t"] = Tagged(heap, items=[1])
    assert isinstance(d["t"], List) and d["t"][:] == [1]


def test_lock_free_readers_see_whole_list_states(heap):
    """Real processes: a writer keeps the List a run of consecutive ints
    (append at the end, pop at the front, rewrites in the middle, and moves
    of a Dict between two Lists); readers, lock-free, must only ever
    see whole states.  A reader's failure is its exit status."""
    import time

    run = List(heap, root="run", items=range(50))
    a, b = List(heap, root="a"), List(heap, root="b")
    box = Dict(heap)
    box["n"] = 0
    a.append(box)
    deadline = time.monotonic() + 1.5

    def writer():
        rng = random.Random(3)
        lo, hi = 0, 50
        while time.monotonic() < deadline:
            run.append(hi)
            hi += 1
            if hi - lo > 400 or rng.random() < 0.4:
                assert run.pop(0) == lo
                lo += 1
            if rng.random() < 0.2:  # rewrite a middle item (a new entry, same value)
                i = rng.randrange(hi - lo)
                run[i] = lo + i
            src, dst = (a, b) if len(a) else (b, a)
            moved = src.pop()
            moved["n"] += 1
            dst.append(moved)

    def reader():
        n = 0
        while time.monotonic() < deadline:
            snap = run[:]
            assert snap == list(range(snap[0], snap[0] + len(snap))), snap[:5]
            for side in (a, b):  # one snapshot each: the moved Dict, whole, or nothing
                assert all(isinstance(x, Dict) for x in side[:])
            n += 1
        assert n > 10

    pids = [_child(writer), _child(reader), _child(reader)]
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
    assert codes == [0, 0, 0]
    assert heap.check() and (a[:] + b[:])[0]["n"] > 10


def test_dict_check_verifies_container_values(heap, region):
    d = Dict(heap)
    d["l"] = List(heap)
    assert d.check() == 1
    parent_word = d["l"].address - region.addr + 40  # list_hdr.parent
    struct.pack_into("<Q", region.buf, parent_word, 0)
    with pytest.raises(RuntimeError, match="another parent"):
        d.check()
    struct.pack_into("<Q", region.buf, parent_word, d.address)
    assert d.check() == 1
