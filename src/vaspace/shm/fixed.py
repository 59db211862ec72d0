"""An ``mmap.mmap`` whose memory sits at a fixed address.

``multiprocessing.shared_memory`` hands out ``memoryview(mmap)``; the mmap
object counts the buffers exported from it and refuses to close while any
is alive (BufferError), and it is inherited across ``fork``.  Both are what
``vaspace.shared_memory`` needs, but ``mmap.mmap`` lets the kernel choose
the address.  So the file is mapped by ``mmap.mmap`` wherever the kernel
likes, then moved with ``mremap(MREMAP_FIXED)`` onto a placeholder reserved
with ``MAP_FIXED_NOREPLACE`` at the wanted address (so nothing already
mapped there can be replaced), and the object's data pointer is updated.

The system calls go through ctypes, not ``vaspace._core``: ``_core``'s
ranges belong to VAS switching (it re-plugs them in a forked child, which
would wipe a block the child inherited).

The object's layout (``PyObject_HEAD``, then ``char *data``, then
``Py_ssize_t size``) is the same in CPython 3.8 to 3.13; it is checked
against the address and size the kernel gave before anything is written,
and an interpreter that does not match gets a clear RuntimeError.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os

_MREMAP_MAYMOVE = 1
_MREMAP_FIXED = 2
_MAP_FIXED_NOREPLACE = 0x100000
_MAP_NORESERVE = 0x4000
_PROT_NONE = 0
_MAP_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(None, use_errno=True)
_mremap = _libc.mremap
_mremap.restype = ctypes.c_void_p
_mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                    ctypes.c_void_p]
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_long]
_munmap = _libc.munmap
_munmap.restype = ctypes.c_int
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def _errno_error(call: str) -> OSError:
    err = ctypes.get_errno() or errno.EFAULT
    return OSError(err, f"{call}: {os.strerror(err)}")


def reserve(addr: int, size: int) -> None:
    """Reserve [addr, addr + size) PROT_NONE; FileExistsError if anything is mapped there."""
    p = _mmap(addr, size, _PROT_NONE,
              mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE | _MAP_FIXED_NOREPLACE,
              -1, 0)
    if p is None or p == _MAP_FAILED:
        raise _errno_error(f"mmap at {addr:#x}")
    if p != addr:  # a kernel without MAP_FIXED_NOREPLACE took it as a hint
        _munmap(p, size)
        raise FileExistsError(errno.EEXIST, f"mmap at {addr:#x}: the range is in use")


def unmap(addr: int, size: int) -> None:
    """munmap [addr, addr + size)."""
    if _munmap(addr, size) != 0:
        raise _errno_error(f"munmap at {addr:#x}")

# mmap_object: PyObject_HEAD, then char *data, Py_ssize_t size, Py_ssize_t
# pos, off_t offset, Py_ssize_t exports.
_DATA_OFFSET = object.__basicsize__
_SIZE_OFFSET = _DATA_OFFSET + ctypes.sizeof(ctypes.c_void_p)
_EXPORTS_OFFSET = _SIZE_OFFSET + 3 * 8


def exports(m: mmap.mmap) -> int:
    """How many buffers exported from ``m`` are alive (what makes ``close`` refuse)."""
    if m.closed:
        return 0
    return ctypes.c_ssize_t.from_address(id(m) + _EXPORTS_OFFSET).value


def _layout_ok() -> bool:
    """Check the assumed layout on a scratch map: size, and exports moving with a view."""
    m = mmap.mmap(-1, mmap.PAGESIZE)
    try:
        if ctypes.c_ssize_t.from_address(id(m) + _SIZE_OFFSET).value != mmap.PAGESIZE:
            return False
        before = exports(m)
        view = memoryview(m)
        during = exports(m)
        view.release()
        return (before, during, exports(m)) == (0, 1, 0)
    finally:
        m.close()


LAYOUT_OK = _layout_ok()


def _fields(m: mmap.mmap) -> tuple[ctypes.c_void_p, ctypes.c_ssize_t]:
    base = id(m)
    return (ctypes.c_void_p.from_address(base + _DATA_OFFSET),
            ctypes.c_ssize_t.from_address(base + _SIZE_OFFSET))


def buffer_address(m: mmap.mmap) -> int:
    """The address of a writable mmap's first byte, as its buffer reports it."""
    probe = ctypes.c_char.from_buffer(m)
    try:
        return ctypes.addressof(probe)
    finally:
        del probe


def _new(fd: int, size: int) -> tuple[mmap.mmap, int]:
    """A new mmap of the file wherever the kernel puts it, and that address."""
    m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    data, length = _fields(m)
    here = buffer_address(m)
    if not LAYOUT_OK or data.value != here or length.value != size:
        m.close()
        raise RuntimeError("this interpreter's mmap object has an unknown layout; "
                           "vaspace.shared_memory cannot place it at a fixed address")
    return m, here


def map_at(fd: int, size: int, addr: int) -> mmap.mmap:
    """Map ``size`` bytes of ``fd`` (read-write, shared) at ``addr`` as an mmap object.

    Raises FileExistsError if anything is mapped in [addr, addr + size) in
    this process, OSError for a failed mapping, RuntimeError if the
    interpreter's mmap object has an unknown layout.
    """
    m, here = _new(fd, size)
    try:
        reserve(addr, size)  # FileExistsError if the range is in use here
        moved = _mremap(here, size, size, _MREMAP_MAYMOVE | _MREMAP_FIXED, addr)
        if moved == _MAP_FAILED or moved != addr:
            exc = _errno_error(f"mremap to {addr:#x}")
            unmap(addr, size)
            raise exc
    except BaseException:
        m.close()
        raise
    # The old range is gone (mremap moved it); the object now owns addr.
    _fields(m)[0].value = addr
    return m


def alias_at(fd: int, size: int, addr: int) -> mmap.mmap:
    """A second mmap object for the mapping already at ``addr`` (made by ``map_at``).

    Its own mapping is dropped; it only points at ``addr``.  It counts its
    own exports.  ``close_alias`` closes any of them without unmapping.
    """
    m, here = _new(fd, size)
    try:
        unmap(here, size)
    except BaseException:
        m.close()
        raise
    _fields(m)[0].value = addr
    return m


def close_alias(m: mmap.mmap) -> None:
    """Close an alias without unmapping; BufferError (nothing changed) while it has exports."""
    if m.closed:
        return
    if exports(m):
        m.close()  # raises BufferError, as the mmap object would
    data = _fields(m)[0]
    addr = data.value
    data.value = None  # close() then leaves the memory mapped
    try:
        m.close()
    except BaseException:
        data.value = addr
        raise
