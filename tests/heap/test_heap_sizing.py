"""A full heap: MemoryError says how much more room was needed, and changes nothing.

The case that matters most is a Dict whose table must double when no free
block is large enough for the new table: the insert fails whole, and the Dict
keeps its old table, its count and every item (never half-grown).
"""

from __future__ import annotations

import re

import pytest

from vaspace.heap import Dict, Heap

NEEDS = re.compile(r"it needs a free block of (\d+) bytes, the largest is (\d+), "
                   r"so the heap needs at least (\d+) more bytes")


def _needs(exc: pytest.ExceptionInfo[MemoryError]) -> tuple[int, int, int]:
    m = NEEDS.search(str(exc.value))
    assert m, str(exc.value)
    want, largest, more = (int(g) for g in m.groups())
    return want, largest, more


def _fill(heap: Heap, size: int) -> list[int]:
    """Allocate blocks of ``size`` bytes until the heap refuses one."""
    blocks = []
    while True:
        try:
            blocks.append(heap.alloc(size))
        except MemoryError:
            return blocks


def test_alloc_too_big_says_how_much_more(heap):
    st = heap.stats()
    with pytest.raises(MemoryError, match="heap full: cannot allocate") as exc:
        heap.alloc(st.largest_free + 4096)
    want, largest, more = _needs(exc)
    assert largest == st.largest_free + 16  # a block's size counts its 16-byte header
    assert want == st.largest_free + 4096 + 16
    assert more == want - largest == 4096
    assert heap.stats() == st


def test_dict_index_cannot_grow(heap):
    d = Dict(heap)
    # 1638 items: an index of 2048 slots at its 4/5 load limit; item 1639
    # makes the Dict rebuild into 4096 slots of 4 bytes (a 16 KiB index)
    # and a fresh, larger entry area.
    for i in range(1638):
        d[i] = i
    # Use up the heap in 16 KiB blocks, then in small ones, and free every
    # other small block: room for many entries, none for a 16 KiB index.
    big = _fill(heap, 16 << 10)
    small = _fill(heap, 1000)
    for a in small[::2]:
        heap.free(a)
    assert heap.stats().largest_free < 16 << 10
    before = heap.stats()
    grow = r"index of 2048 slots and area of \d+ bytes must grow"
    with pytest.raises(MemoryError, match=grow) as exc:
        d[1638] = 1638
    want, largest, more = _needs(exc)
    assert want == 4096 * 4 + 16  # the new index's block
    assert largest == before.largest_free + 16
    assert more == want - largest
    # nothing changed: not half-grown
    assert heap.stats() == before
    assert len(d) == 1638 and d.check() == 1638
    assert heap.check() == before.allocations
    assert all(d[i] == i for i in range(1638))
    assert 1638 not in d
    # Give it the room the message asked for (free the big blocks: they sit
    # side by side and coalesce) and the same insert succeeds.
    for a in big:
        heap.free(a)
    assert heap.stats().largest_free + 16 >= largest + more
    d[1638] = 1638
    assert len(d) == 1639 and d.check() == 1639 and d[1638] == 1638
    heap.check()


def test_dict_entry_cannot_fit(heap):
    d = Dict(heap)
    d["keep"] = b"v"
    _fill(heap, 64)
    before = heap.stats()
    with pytest.raises(MemoryError, match="cannot store Dict item: it needs") as exc:
        d["new"] = b"x" * 500
    want, largest, more = _needs(exc)
    assert want >= 500 and more == want - largest
    assert heap.stats() == before and dict(d.items()) == {"keep": b"v"}
    d.check()
    heap.check()


def test_dict_index_grows_then_area_fails(heap):
    """The rebuild takes its new index inside the operation, then finds no
    room for the new entry area: the new index is rolled back with the rest."""
    d = Dict(heap)
    for i in range(1638):
        d[i] = i
    room = heap.alloc(4096 * 4)  # exactly the block the new index takes
    for size in (16 << 10, 1000, 64, 1):
        _fill(heap, size)
    heap.free(room)
    before = heap.stats()
    assert before.largest_free == 4096 * 4
    with pytest.raises(MemoryError, match="must grow") as exc:
        d[1638] = 1638
    want, _, more = _needs(exc)
    assert want > 1638 * 24 and more > 0  # the area: 24 bytes per int -> int entry
    assert heap.stats() == before
    assert len(d) == 1638 and d.check() == 1638 and 1638 not in d
    assert all(d[i] == i for i in range(0, 1638, 7))
    heap.check()


# docs/heap.md, "Sizing": bytes per Dict item (layout, not timing, so exact)
PER_ITEM = {
    "int -> int": (lambda i: (i, i), 33, 30),
    "12-byte bytes -> 32-byte bytes": (lambda i: (b"%012d" % i, b"v" * 32), 67, 62),
    "~10-char str -> int": (lambda i: (f"user:{i % 100000:05d}{i // 100000}", i), 42, 38),
    "~20-char str -> ~100-char str": (lambda i: (f"session-{i:012d}", "x" * 100), 150, 144),
    "16-byte bytes -> 1 KiB bytes": (lambda i: (b"%016d" % i, b"v" * 1024), 1098, 1094),
}


@pytest.mark.parametrize("case", sorted(PER_ITEM))
def test_documented_bytes_per_item(tmp_path, case):
    from heaputil import map_region

    make, at_1k, at_100k = PER_ITEM[case]
    r = map_region(str(tmp_path / "sizing.heap"), 256 << 20)
    try:
        heap = Heap.format(r.buf)
        d = Dict(heap)
        used0 = heap.stats().used
        per = {}
        for n in (1_000, 100_000):
            for i in range(len(d), n):
                k, v = make(i)
                d[k] = v
            per[n] = round((heap.stats().used - used0) / n)
        assert per == {1_000: at_1k, 100_000: at_100k}
        heap.close()
    finally:
        r.close()


def test_freed_index_and_area_give_their_pages_back(tmp_path):
    """A Dict that grew through rebuilds and moves leaves its old index and
    area free; their pages go back to the file (MADV_REMOVE), so the file
    holds about the live bytes, not every part the Dict outgrew."""
    import os

    from heaputil import map_region

    path = str(tmp_path / "grown.heap")
    r = map_region(path, 64 << 20)
    try:
        heap = Heap.format(r.buf)
        d = Dict(heap)
        for i in range(300_000):  # rebuilds at 4/5 of 8, 16, ... 2**19 slots
            d[i] = i
        used = heap.stats().used
        on_disk = os.stat(path).st_blocks * 512
        # header and allocation bitmap (1/128 of the size), plus a little
        formatted = (64 << 20) // 128 + (1 << 20)
        assert on_disk < used + formatted, (on_disk, used)
        heap.close()
    finally:
        r.close()
