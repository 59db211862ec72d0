"""Copy a backing file: a reflink where the filesystem has one, else only its data.

A clone must be cheap when the source is big and mostly empty (segments are
sparse until touched), so the copy is, in order of preference:

- ``ioctl(FICLONE)``: the filesystem shares the blocks copy-on-write
  (btrfs, xfs with reflink); nothing is copied now;
- ``copy_file_range`` over the source's data extents only (``SEEK_DATA`` /
  ``SEEK_HOLE``), the holes left as holes, so a 1 GiB file with 10 MiB
  written copies about 10 MiB (tmpfs, ext4);
- ``pread``/``pwrite`` of the same extents where ``copy_file_range`` is
  refused (old kernels, some filesystems).

Both descriptors are already open and checked by the caller (regular files,
reached without following links, see fs.py): nothing here opens a path.
"""

from __future__ import annotations

import errno
import fcntl
import os

FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
CHUNK = 1 << 30  # at most this much per copy_file_range call
_NO_REFLINK = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EXDEV, errno.ENOSYS,
               errno.EPERM, errno.EBADF}


def copy(src: int, dst: int, size: int) -> str:
    """Make ``dst`` (empty, writable) a copy of the first ``size`` bytes of ``src``.

    Returns how: ``"reflink"``, ``"sparse"`` (copy_file_range over data
    extents) or ``"pwrite"``.  ``dst`` ends exactly ``size`` bytes long.
    """
    try:
        fcntl.ioctl(dst, FICLONE, src)
        os.ftruncate(dst, size)
        return "reflink"
    except OSError as exc:
        if exc.errno not in _NO_REFLINK:
            raise
    os.ftruncate(dst, size)
    how = "sparse"
    for lo, hi in data_extents(src, size):
        if how == "sparse":
            try:
                _copy_range(src, dst, lo, hi)
                continue
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                how = "pwrite"
        _pwrite_range(src, dst, lo, hi)
    return how


def data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """The [start, end) ranges of ``fd`` below ``size`` that hold data (not holes).

    A filesystem without SEEK_DATA reports the whole file as data.
    """
    out = []
    off = 0
    while off < size:
        try:
            lo = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole from off to the end
                break
            if exc.errno == errno.EINVAL and not out and off == 0:
                return [(0, size)]  # no SEEK_DATA here: copy everything
            raise
        if lo >= size:
            break
        hi = min(os.lseek(fd, lo, os.SEEK_HOLE), size)
        out.append((lo, hi))
        off = hi
    return out


def _copy_range(src: int, dst: int, lo: int, hi: int) -> None:
    off = lo
    while off < hi:
        n = os.copy_file_range(src, dst, min(hi - off, CHUNK), off, off)
        if n == 0:  # the source shrank under us: what is left stays a hole
            return
        off += n


def _pwrite_range(src: int, dst: int, lo: int, hi: int) -> None:
    off = lo
    while off < hi:
        data = os.pread(src, min(hi - off, 1 << 20), off)
        if not data:
            return
        os.pwrite(dst, data, off)
        off += len(data)
