"""mmap objects at a fixed address: the move, aliases, export counting."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import pytest

from vaspace.shm import fixed
from vaspace.window import PAGE, shm_range


@pytest.fixture
def data_fd(tmp_path) -> Iterator[int]:
    fd = os.open(tmp_path / "data", os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, 2 * PAGE)
    yield fd
    os.close(fd)


def _mapped(addr: int) -> bool:
    with open("/proc/self/maps") as f:
        return any(int(line.split("-")[0], 16) == addr for line in f)


def test_layout_checked() -> None:
    assert fixed.LAYOUT_OK


def test_map_at_puts_the_file_at_the_address(data_fd: int) -> None:
    addr = shm_range()[1] - 2 * PAGE
    m = fixed.map_at(data_fd, 2 * PAGE, addr)
    try:
        assert fixed.buffer_address(m) == addr and _mapped(addr)
        m[:4] = b"abcd"
        assert os.pread(data_fd, 4, 0) == b"abcd"
        with pytest.raises(FileExistsError):  # never over something mapped
            fixed.map_at(data_fd, 2 * PAGE, addr)
    finally:
        m.close()
    assert not _mapped(addr)


def test_alias_counts_its_own_exports_and_closes_without_unmapping(data_fd: int) -> None:
    addr = shm_range()[1] - 2 * PAGE
    m = fixed.map_at(data_fd, 2 * PAGE, addr)
    alias = fixed.alias_at(data_fd, 2 * PAGE, addr)
    try:
        assert fixed.buffer_address(alias) == addr
        view = memoryview(alias)
        assert (fixed.exports(alias), fixed.exports(m)) == (1, 0)
        with pytest.raises(BufferError):
            fixed.close_alias(alias)
        assert not alias.closed
        view.release()
        fixed.close_alias(alias)
        assert alias.closed and _mapped(addr)  # still there for m
        m[0] = 1
    finally:
        m.close()
    assert not _mapped(addr)


def test_exports_of_a_closed_map_is_zero() -> None:
    m = mmap.mmap(-1, PAGE)
    m.close()
    assert fixed.exports(m) == 0
