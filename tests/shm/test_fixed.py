"""``_core.FixedMap``: a file mapped at a fixed address in the shared-memory range."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from vaspace import _core
from vaspace.window import PAGE, shm_range
from vaspace_testing import in_child


@pytest.fixture
def data_fd(tmp_path) -> Iterator[int]:
    lo, hi = shm_range()
    _core.set_fixed_range(lo, hi - lo)  # what vaspace.shm.mappings allows, too
    fd = os.open(tmp_path / "data", os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, 2 * PAGE)
    yield fd
    os.close(fd)


def _mapped(addr: int) -> bool:
    with open("/proc/self/maps") as f:
        return any(int(line.split("-")[0], 16) == addr for line in f)


ADDR = shm_range()[1] - 2 * PAGE


def test_maps_the_file_at_the_address(data_fd: int) -> None:
    m = _core.FixedMap(data_fd, ADDR, 2 * PAGE)
    assert (m.addr, m.size, m.exports, m.closed) == (ADDR, 2 * PAGE, 0, False)
    assert _mapped(ADDR)
    with memoryview(m) as mv:
        assert m.exports == 1
        mv[:4] = b"abcd"
    assert m.exports == 0
    assert os.pread(data_fd, 4, 0) == b"abcd"
    with pytest.raises(FileExistsError):  # never over something mapped
        _core.FixedMap(data_fd, ADDR, 2 * PAGE)
    m.close()
    assert m.closed and not _mapped(ADDR)
    assert "closed" in repr(m)


def test_refuses_bad_ranges_and_files(data_fd: int, tmp_path) -> None:
    lo, _ = shm_range()
    for addr, size in [(lo - PAGE, PAGE), (ADDR + 1, PAGE), (ADDR, 0), (ADDR, 3 * PAGE),
                       (0x10000, PAGE), (2**64 - PAGE, PAGE)]:
        with pytest.raises((ValueError, OverflowError)):
            _core.FixedMap(data_fd, addr, size)
    short = os.open(tmp_path / "short", os.O_RDWR | os.O_CREAT, 0o600)
    r, w = os.pipe()
    try:
        with pytest.raises(ValueError, match="regular file"):  # would SIGBUS past its end
            _core.FixedMap(short, ADDR, PAGE)
        with pytest.raises(ValueError, match="regular file"):
            _core.FixedMap(r, ADDR, PAGE)
    finally:
        for fd in (short, r, w):
            os.close(fd)
    with pytest.raises(OSError):
        _core.FixedMap(-1, ADDR, PAGE)
    ro = os.open(tmp_path / "data", os.O_RDONLY)
    try:
        with pytest.raises(PermissionError):  # a writable shared map needs O_RDWR
            _core.FixedMap(ro, ADDR, PAGE)
    finally:
        os.close(ro)
    assert not _mapped(ADDR)


def test_set_fixed_range_refuses_reserved_and_junk_ranges() -> None:
    for addr, size in [(0, PAGE), (0x4000_0000_0001, PAGE), (0x7FFF_FFFF_F000, 2 * PAGE)]:
        with pytest.raises(ValueError):
            _core.set_fixed_range(addr, size)
    _core.reserve(0x3100_0000_0000, PAGE)
    try:
        with pytest.raises(ValueError, match="reserved"):
            _core.set_fixed_range(0x3100_0000_0000, 16 * PAGE)
    finally:
        _core.unmap(0x3100_0000_0000, PAGE)
        lo, hi = shm_range()
        _core.set_fixed_range(lo, hi - lo)


def test_alias_counts_its_own_exports_and_the_last_close_unmaps(data_fd: int) -> None:
    m = _core.FixedMap(data_fd, ADDR, 2 * PAGE)
    alias = m.alias()
    assert alias.addr == ADDR
    view = memoryview(alias)
    assert (alias.exports, m.exports) == (1, 0)
    with pytest.raises(BufferError):
        alias.close()
    assert not alias.closed
    m.close()  # the alias keeps the memory
    assert _mapped(ADDR)
    view[0] = 7
    with pytest.raises(ValueError, match="closed"):
        memoryview(m)
    with pytest.raises(ValueError, match="closed"):
        m.close()
    with pytest.raises(ValueError, match="closed"):
        m.alias()
    view.release()
    alias.close()
    assert not _mapped(ADDR)
    assert os.pread(data_fd, 1, 0) == b"\x07"


def test_deallocation_unmaps(data_fd: int) -> None:
    m = _core.FixedMap(data_fd, ADDR, PAGE)
    mv = memoryview(m)
    del m  # the view keeps the object, so its memory
    mv[0] = 1
    assert _mapped(ADDR)
    mv.release()
    assert not _mapped(ADDR)


def test_a_forked_child_keeps_the_mapping(data_fd: int) -> None:
    m = _core.FixedMap(data_fd, ADDR, PAGE)
    mv = memoryview(m)
    mv[0] = 3

    def child() -> int:
        mv[1] = 4  # MAP_SHARED: the parent sees it
        first = mv[0]
        mv.release()
        m.close()
        return first

    out = in_child(child)
    assert out.signal is None, out
    assert out.get() == 3 and mv[1] == 4 and _mapped(ADDR)
    mv.release()
    m.close()
