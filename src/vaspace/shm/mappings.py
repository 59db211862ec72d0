"""This process's shared-memory mappings: one per segment file, reference counted.

Two ``SharedMemory`` objects of one segment in one process must see the
same bytes at the same address, and there is only one such address.  So
the first object maps the file there (``fixed.map_at``) and the others get
*aliases*: mmap objects of their own that point at the same memory
(``fixed.alias_at``).  Each object thus counts its own exports, as with the
standard library.  Any of them may close last: that one unmaps, the others
close without unmapping (``fixed.close_alias``).  The
table is keyed by the data file's identity (device, inode), unique while
the mapping holds the file open.

A forked child inherits the table together with the mappings themselves.
"""

from __future__ import annotations

import errno
import mmap
import os
from dataclasses import dataclass, field

from ..errors import vas_error
from . import fixed
from .forksafe import fork_safe_lock


@dataclass(eq=False)
class Mapping:
    """One fixed-address mapping of a segment's data file, and its mmap objects."""

    key: tuple[int, int]
    name: str
    start: int
    size: int
    # Every open object's mmap (all point at start).  Holding them here means
    # none is ever deallocated (which would unmap) behind the table's back.
    users: list[mmap.mmap] = field(default_factory=list)


_lock = fork_safe_lock(globals(), "_lock")
_by_key: dict[tuple[int, int], Mapping] = {}


def taken() -> list[tuple[int, int]]:
    """The ranges this process maps (some may belong to unlinked segments)."""
    with _lock:
        return [(m.start, m.start + m.size) for m in _by_key.values()]


def acquire(fd: int, name: str, start: int, size: int) -> tuple[Mapping, mmap.mmap]:
    """An mmap object of its own at ``start`` for the file open at ``fd``.

    EFAULT if the range is already used in this process by something else
    (typically a segment that was unlinked but is still open here).
    """
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    with _lock:
        m = _by_key.get(key)
        if m is None:
            try:
                mm = fixed.map_at(fd, size, start)
            except FileExistsError:
                user = _user(start, size)
                raise vas_error(errno.EFAULT, f"shared memory {name!r}: [{start:#x}, "
                                f"{start + size:#x}) is in use in this process ({user}); "
                                "close it there first") from None
            m = Mapping(key=key, name=name, start=start, size=size)
            _by_key[key] = m
        else:
            mm = fixed.alias_at(fd, size, m.start)
        m.users.append(mm)
        return m, mm


def release(m: Mapping, mm: mmap.mmap) -> None:
    """Close one object's mmap; the last one unmaps.

    BufferError, changing nothing, while that object has exports.
    """
    with _lock:
        if fixed.exports(mm):
            mm.close()  # raises BufferError
        if len(m.users) == 1:
            mm.close()  # the last user: this one unmaps
            del _by_key[m.key]
        else:
            fixed.close_alias(mm)
        m.users.remove(mm)


def _user(start: int, size: int) -> str:
    for m in _by_key.values():
        if m.start < start + size and start < m.start + m.size:
            return f"by shared memory {m.name!r}, which was unlinked but not closed"
    return "by another mapping"
