"""This process's shared-memory mappings: one per segment file, shared by aliases.

Two ``SharedMemory`` objects of one segment in one process must see the
same bytes at the same address, and there is only one such address.  So
the first object maps the file there (``_core.FixedMap``) and the others
get *aliases* of it (``FixedMap.alias()``): exporters of their own over the
same memory, so each object counts its own exports, as with the standard
library.  Any of them may close last: ``_core`` unmaps on the last close.
The table is keyed by the data file's identity (device, inode), unique
while the mapping holds the file open.

A forked child inherits the table together with the mappings themselves.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from .. import _core
from ..errors import vas_error
from .forksafe import fork_safe_lock


@dataclass(eq=False)
class Mapping:
    """One fixed-address mapping of a segment's data file, and its open exporters."""

    key: tuple[int, int]
    name: str
    start: int
    size: int
    # Every open object's exporter (all at start); any one can make an alias.
    users: list[_core.FixedMap] = field(default_factory=list)


_lock = fork_safe_lock(globals(), "_lock")
_by_key: dict[tuple[int, int], Mapping] = {}
# The range last handed to _core.set_fixed_range (shm_range() may move with VASPACE_WINDOW).
_allowed: tuple[int, int] | None = None


def taken() -> list[tuple[int, int]]:
    """The ranges this process maps (some may belong to unlinked segments)."""
    with _lock:
        return [(m.start, m.start + m.size) for m in _by_key.values()]


def _allow(lo: int, hi: int) -> None:
    global _allowed
    if _allowed != (lo, hi):
        _core.set_fixed_range(lo, hi - lo)
        _allowed = (lo, hi)


def acquire(fd: int, name: str, start: int, size: int,
            shm: tuple[int, int]) -> tuple[Mapping, _core.FixedMap]:
    """An exporter of its own over the file open at ``fd``, mapped at ``start``.

    ``shm`` is the shared-memory range, the only place ``_core`` maps.
    EFAULT if the range is already used in this process by something else
    (typically a segment that was unlinked but is still open here).
    """
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    with _lock:
        m = _by_key.get(key)
        if m is None:
            _allow(*shm)
            try:
                fm = _core.FixedMap(fd, start, size)
            except FileExistsError:
                user = _user(start, size)
                raise vas_error(errno.EFAULT, f"shared memory {name!r}: [{start:#x}, "
                                f"{start + size:#x}) is in use in this process ({user}); "
                                "close it there first") from None
            m = Mapping(key=key, name=name, start=start, size=size)
            _by_key[key] = m
        else:
            fm = m.users[0].alias()
        m.users.append(fm)
        return m, fm


def release(m: Mapping, fm: _core.FixedMap) -> None:
    """Close one object's exporter; the last one unmaps.

    BufferError, changing nothing, while that exporter has exports.
    """
    with _lock:
        fm.close()
        m.users.remove(fm)
        if not m.users:
            del _by_key[m.key]


def _user(start: int, size: int) -> str:
    for m in _by_key.values():
        if m.start < start + size and start < m.start + m.size:
            return f"by shared memory {m.name!r}, which was unlinked but not closed"
    return "by another mapping"
