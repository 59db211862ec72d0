"""Test helper: map a file MAP_SHARED at a fixed address, as a vaspace segment
would, so that a heap (and its absolute pointers) is valid in every process.

Importable both from pytest (tests/heap is on sys.path) and from a fresh
``python -c`` child that inserts this directory into ``sys.path``.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import random

import pytest

PROT_RW = mmap.PROT_READ | mmap.PROT_WRITE
MAP_FIXED_NOREPLACE = 0x100000
# Below vaspace's default window and parking range, which a test process may
# already have reserved (any earlier test that attached a VAS).
LO, HI = 0x2000_0000_0000, 0x2100_0000_0000
_STEP = 1 << 32  # candidate addresses are 4 GiB apart

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


class Region:
    """A file mapped at a fixed address; ``buf`` is a writable memoryview."""

    def __init__(self, path: str, addr: int, size: int, buf: memoryview) -> None:
        self.path, self.addr, self.size, self.buf = path, addr, size, buf

    def close(self) -> None:
        """Unmap (the heap using it must be closed first)."""
        if self.buf is not None:
            self.buf.release()
            self.buf = None
            if _libc.munmap(self.addr, self.size) != 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))


def map_region(path: str, size: int, addr: int | None = None, create: bool = True) -> Region:
    """Map ``path`` (created/extended to ``size`` when ``create``) at ``addr``,
    or at a random free address in [LO, HI) when ``addr`` is None."""
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        if create and os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
        candidates = [addr] if addr is not None else [
            LO + random.randrange((HI - LO) // _STEP) * _STEP for _ in range(64)]
        for a in candidates:
            got = _libc.mmap(a, size, PROT_RW, mmap.MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0)
            if got == ctypes.c_void_p(-1).value or got is None:
                e = ctypes.get_errno()
                if addr is None and e == 17:  # EEXIST: try another spot
                    continue
                raise OSError(e, os.strerror(e), path)
            if got != a:  # kernel without MAP_FIXED_NOREPLACE treated it as a hint
                _libc.munmap(got, size)
                raise OSError(17, "could not map at the fixed address", path)
            arr = (ctypes.c_char * size).from_address(a)
            return Region(path, a, size, memoryview(arr).cast("B"))
        raise OSError(17, "no free fixed address found", path)
    finally:
        os.close(fd)  # the mapping keeps the file alive


SOAK = os.environ.get("VASPACE_SOAK") == "1"


def soak(fn):
    """Mark a long variant: it runs only with VASPACE_SOAK=1 (select with -m soak)."""
    fn = pytest.mark.soak(fn)
    return pytest.mark.skipif(not SOAK, reason="soak test; set VASPACE_SOAK=1 to run")(fn)
