"""Heap.flush(): what a power loss keeps (docs/heap.md, "Durability").

A power loss cannot be staged in a test, so these check what it depends on:
after ``flush()`` the file's bytes, read with plain ``read()`` (not through
the mapping), are a complete, consistent heap; no page of the mapping is left
dirty; the header's "written since the last flush" mark is set before a
write and cleared only by a flush; and a heap marked by an earlier boot is
walked at open, refused if torn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from heaputil import map_region

from vaspace.heap import Dict, Heap, HeapRecoveredWarning, _heapcore

HERE = Path(__file__).resolve().parent
SIZE = 8 << 20

# A child process maps a copy of the file's bytes at the heap's address and
# checks it as Heap.open and check() do.
CHECK_COPY = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from heaputil import map_region
from vaspace.heap import Dict, Heap
r = map_region(sys.argv[2], int(sys.argv[3]), addr=int(sys.argv[4]), create=False)
h = Heap.open(r.buf)
d = Dict.open(h, "data")
print(json.dumps({"allocations": h.check(), "items": d.check(), "flushed": h.flushed,
                  "sample": [d[i] for i in range(0, len(d), 97)], "len": len(d)}))
h.close()
r.close()
"""


def _file_bytes(path: str) -> bytes:
    """The file's contents through read(2), not through any mapping."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _dirty_kib(addr: int) -> int:
    """Dirty KiB of the mapping that starts at addr (/proc/self/smaps)."""
    lines = Path("/proc/self/smaps").read_text().splitlines()
    start = f"{addr:x}-"
    for i, line in enumerate(lines):
        if line.startswith(start):
            total = 0
            for field in lines[i + 1:]:
                if "-" in field.split()[0]:
                    break  # the next mapping
                if field.startswith(("Shared_Dirty:", "Private_Dirty:")):
                    total += int(field.split()[1])
            return total
    raise AssertionError(f"no mapping at {addr:#x}")


@pytest.fixture
def disk_region(tmp_path):
    r = map_region(str(tmp_path / "durable.heap"), SIZE)
    yield r
    r.close()


def _fill(heap: Heap, n: int, offset: int = 0) -> Dict:
    d = Dict.open(heap, "data") if "data" in heap.roots() else Dict(heap, root="data")
    for i in range(n):
        d[i] = f"value {i + offset}"
    return d


def test_flushed_file_read_back_is_a_consistent_heap(disk_region, tmp_path):
    heap = Heap.format(disk_region.buf)
    d = _fill(heap, 5000)
    del d[17]
    d["big"] = b"x" * 100_000
    heap.flush()
    expected = {"allocations": heap.check(), "items": len(d), "len": len(d), "flushed": True}
    data = _file_bytes(disk_region.path)
    assert len(data) == SIZE
    heap.close()
    copy = tmp_path / "copy.heap"
    copy.write_bytes(data)
    disk_region.close()  # its address is now free for the child's copy
    out = subprocess.run(
        [sys.executable, "-c", CHECK_COPY, str(HERE), str(copy), str(SIZE),
         str(disk_region.addr)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    sample = got.pop("sample")
    assert got == expected
    assert sample == [f"value {i}" for i in range(0, 5000, 97)]


def test_flush_leaves_no_dirty_page(disk_region):
    heap = Heap.format(disk_region.buf)
    _fill(heap, 3000)
    assert _dirty_kib(disk_region.addr) > 0
    heap.flush()
    assert _dirty_kib(disk_region.addr) == 0
    heap.close()


def test_the_mark_follows_writes_not_reads(disk_region):
    off = _heapcore._UNFLUSHED_OFFSET

    def mark_in_file() -> int:
        fd = os.open(disk_region.path, os.O_RDONLY)
        try:
            return int.from_bytes(os.pread(fd, 8, off), "little")
        finally:
            os.close(fd)

    heap = Heap.format(disk_region.buf)
    assert not heap.flushed  # nothing of a new heap is on disk yet
    heap.flush()
    assert heap.flushed and mark_in_file() == 0
    d = _fill(heap, 10)
    assert not heap.flushed and mark_in_file() != 0
    heap.flush()
    # reads, lookups, stats and checks write nothing that a power loss could tear
    assert d[3] == "value 3" and len(d.items()) == 10
    heap.stats()
    heap.check()
    d.check()
    assert heap.flushed and mark_in_file() == 0
    heap.close()


def _fake_restart(region) -> None:
    """Mark the heap as written by another boot (as if the machine restarted
    between a write and the next flush)."""
    off = _heapcore._UNFLUSHED_OFFSET
    region.buf[off:off + 8] = (0x5EED_0F_0B00_7ED1).to_bytes(8, "little")


def test_open_after_restart_walks_and_warns(disk_region):
    heap = Heap.format(disk_region.buf)
    _fill(heap, 100)
    heap.close()
    _fake_restart(disk_region)
    with pytest.warns(HeapRecoveredWarning, match="restarted before the next one"):
        heap = Heap.open(disk_region.buf)
    assert Dict.open(heap, "data")[5] == "value 5"
    assert not heap.flushed
    heap.flush()
    heap.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Heap.open(disk_region.buf).close()  # flushed: no walk, no warning


def test_open_after_restart_refuses_a_torn_heap(disk_region):
    heap = Heap.format(disk_region.buf)
    d = _fill(heap, 100)
    used = heap.stats().used
    heap.close()
    del d
    # a torn file: the header's "used" counter from another moment
    used_off = 72  # heap_header.used: after 9 words (magic .. recoveries; see core/layout.h)
    assert int.from_bytes(disk_region.buf[used_off:used_off + 8], "little") == used
    disk_region.buf[used_off:used_off + 8] = (used + 4096).to_bytes(8, "little")
    _fake_restart(disk_region)
    with pytest.raises(RuntimeError, match="restarted .* before the next one; the file is torn"):
        Heap.open(disk_region.buf)


def test_flush_read_only_and_plain_memory(disk_region):
    import mmap

    m = mmap.mmap(-1, 1 << 20)
    h = Heap.format(m)
    h.flush()  # an anonymous mapping: nothing to write back, no error
    assert h.flushed
    h.close()
    heap = Heap.format(disk_region.buf)
    heap.flush()
    heap.close()
    ro = disk_region.buf.toreadonly()
    heap = Heap.open(ro)
    with pytest.raises(PermissionError, match="flush"):
        heap.flush()
    heap.close()


def _leave_lock_held(region, boot: int | None) -> None:
    """The lock word as a file can hold it after a restart: held by a thread
    that does not exist (a tid above any pid_max).  ``boot``: the lock's boot
    tag to leave (None: keep this boot's)."""
    gone = 0x3FFF_FFF0
    lock = _heapcore._LOCK_OFFSET
    region.buf[lock:lock + 4] = gone.to_bytes(4, "little")  # __lock: owner's tid
    region.buf[lock + 8:lock + 12] = gone.to_bytes(4, "little")  # __owner
    if boot is not None:
        off = _heapcore._LOCK_BOOT_OFFSET
        region.buf[off:off + 8] = boot.to_bytes(8, "little")


def test_a_new_boot_frees_a_lock_left_held(disk_region):
    heap = Heap.format(disk_region.buf)
    Dict(heap, root="data")[1] = 1
    heap.flush()
    heap.close()
    _leave_lock_held(disk_region, boot=0x5EED_0F_0B00_7ED1)
    heap = Heap.open(disk_region.buf)  # the first opener of this boot adopts the lock
    d = Dict.open(heap, "data")
    d[2] = 2
    assert dict(d.items()) == {1: 1, 2: 2} and heap.check() == 3  # header, index, entry area
    heap.close()


def test_this_boots_lock_is_not_taken_over(disk_region):
    """Control: the same lock word, initialised in this boot, is not adopted
    (someone of this boot could hold it); it fails as before, as corrupt."""
    heap = Heap.format(disk_region.buf)
    Dict(heap, root="data")[1] = 1
    heap.close()
    _leave_lock_held(disk_region, boot=None)
    heap = Heap.open(disk_region.buf)
    with pytest.raises(RuntimeError, match="names no thread that could hold it"):
        Dict.open(heap, "data")[2] = 2
    heap.close()
