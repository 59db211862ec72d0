"""filecopy: each way of copying a backing file, reached on real filesystems.

The registry's tests run on tmpfs, where FICLONE is refused and
copy_file_range works, so only the "sparse" path is seen there.  Here the
other paths are reached with real files and real system calls: a copy
between two filesystems (copy_file_range refuses it: the pwrite path), a
file without SEEK_DATA (procfs), a pipe, a directory, a source that ends
before the range asked for.  No reflink-capable filesystem (btrfs, xfs) can
be made here without its mkfs, so the reflink success path itself is not
run; what is checked is that the request number is the kernel's and that
only "no reflink here" errors send the copy to its fallbacks.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaspace.registry import filecopy
from vaspace_testing import MiB, in_child

PAGE = 4096


@pytest.fixture
def shm() -> Iterator[Path]:
    """A directory on tmpfs (the registry's usual filesystem)."""
    d = Path(tempfile.mkdtemp(prefix="vaspace-filecopy-", dir="/dev/shm"))
    yield d
    shutil.rmtree(d)


def _open(path: Path, flags: int = 0) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o600)


def _source(path: Path, size: int) -> tuple[int, dict[int, bytes]]:
    """A sparse file: data at 0, a 3 MiB run (more than one pwrite chunk), and a
    hole at the end; returns its fd and {offset: bytes} of what was written."""
    fd = _open(path)
    os.ftruncate(fd, size)
    written = {0: b"a" * PAGE, 8 * MiB: bytes(range(256)) * (3 * MiB // 256)}
    for off, data in written.items():
        os.pwrite(fd, data, off)
    return fd, written


def _check_copy(src: int, dst: int, size: int, written: dict[int, bytes]) -> None:
    assert os.fstat(dst).st_size == size
    for off, data in written.items():
        assert os.pread(dst, len(data), off) == data
    assert os.pread(dst, PAGE, 4 * MiB) == bytes(PAGE)  # a hole reads as zeros
    assert os.pread(dst, PAGE, size - PAGE) == bytes(PAGE)
    assert os.pread(src, size, 0) == os.pread(dst, size, 0)


def test_ficlone_is_the_kernels_clone_request(shm: Path) -> None:
    """tmpfs refuses a clone it recognises (EOPNOTSUPP), where an unknown ioctl
    number gets ENOTTY; a directory as the source is an error of its own
    (EISDIR), which copy() raises instead of taking it for "no reflink here"."""
    src, dst = _open(shm / "src"), _open(shm / "dst")
    d = os.open(shm, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.pwrite(src, b"x" * PAGE, 0)
        with pytest.raises(OSError) as e:
            fcntl.ioctl(dst, filecopy.FICLONE, src)
        assert e.value.errno == errno.EOPNOTSUPP
        with pytest.raises(IsADirectoryError):
            filecopy.copy(d, dst, 0)
    finally:
        for fd in (src, dst, d):
            os.close(fd)


def _copy_and_check(src_dir: Path, dst_dir: Path, how: str) -> None:
    """Copy a sparse 32 MiB file from ``src_dir`` to ``dst_dir``, the way ``how``."""
    size = 32 * MiB
    src, written = _source(src_dir / "src", size)
    dst = _open(dst_dir / "dst")
    try:
        assert filecopy.copy(src, dst, size) == how
        _check_copy(src, dst, size, written)
        # Holes stay holes: about the 3 MiB written is allocated, not 32 MiB.
        assert os.fstat(dst).st_blocks * 512 < 8 * MiB
    finally:
        os.close(src)
        os.close(dst)


def test_copy_within_one_filesystem_is_sparse(shm: Path) -> None:
    _copy_and_check(shm, shm, "sparse")


def test_copy_between_filesystems_falls_back_to_pwrite(shm: Path, tmp_path: Path) -> None:
    if os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("the test's temporary directory is on /dev/shm's filesystem")
    # FICLONE and copy_file_range both refuse two filesystems (EXDEV).
    _copy_and_check(shm, tmp_path, "pwrite")


def test_an_append_only_destination_is_refused_not_scrambled(shm: Path) -> None:
    """copy_file_range refuses O_APPEND (EBADF); pwrite would append at the end
    whatever the offset, so the error is raised, not sent to the fallback."""
    src, _ = _source(shm / "src", 16 * MiB)
    dst = _open(shm / "dst", os.O_APPEND)
    try:
        with pytest.raises(OSError) as e:
            filecopy.copy(src, dst, 16 * MiB)
        assert e.value.errno == errno.EBADF
        assert os.pread(dst, PAGE, 0) == bytes(PAGE)  # nothing written anywhere
        assert os.fstat(dst).st_blocks == 0
    finally:
        os.close(src)
        os.close(dst)


def test_data_extents_where_seek_data_is_missing_or_impossible() -> None:
    # procfs answers SEEK_DATA with EINVAL: the whole range counts as data.
    fd = os.open("/proc/self/stat", os.O_RDONLY)
    try:
        assert filecopy.data_extents(fd, 100) == [(0, 100)]
    finally:
        os.close(fd)
    # A pipe cannot seek at all (ESPIPE): that is an error, not "all data".
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as e:
            filecopy.data_extents(r, 100)
        assert e.value.errno == errno.ESPIPE
    finally:
        os.close(r)
        os.close(w)


def test_data_extents_of_a_sparse_file(shm: Path) -> None:
    size = 32 * MiB
    fd, _ = _source(shm / "src", size)
    try:
        got = filecopy.data_extents(fd, size)
        assert got[0][0] == 0 and got[-1][1] <= 12 * MiB  # starts at 0, ends in a hole
        assert any(lo <= 8 * MiB and hi >= 11 * MiB for lo, hi in got)
        assert filecopy.data_extents(fd, PAGE // 2) == [(0, PAGE // 2)]  # cut at size
    finally:
        os.close(fd)


def _copy_past_the_end(src_path: str, dst_path: str) -> bytes:
    """In a child: both copy loops asked for a range the source no longer has."""
    src, dst = os.open(src_path, os.O_RDONLY), os.open(dst_path, os.O_RDWR)
    filecopy._copy_range(src, dst, 0, 3 * PAGE)  # one page there, then the end
    filecopy._copy_range(src, dst, 2 * PAGE, 3 * PAGE)  # nothing there at all
    filecopy._pwrite_range(src, dst, 2 * PAGE, 3 * PAGE)
    return os.pread(dst, 3 * PAGE, 0)


def test_a_source_that_shrank_leaves_the_rest_a_hole(shm: Path) -> None:
    """The extents were found before the source was cut short: both loops stop
    at its end (a read of 0 bytes), and neither spins on it."""
    src = _open(shm / "src")
    os.pwrite(src, b"s" * PAGE, 0)
    os.close(src)
    dst = _open(shm / "dst")
    os.close(dst)
    got = in_child(_copy_past_the_end, str(shm / "src"), str(shm / "dst"), timeout=10).get()
    assert got[:PAGE] == b"s" * PAGE and len(got) == PAGE  # nothing past the source's end
