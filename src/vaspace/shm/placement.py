"""Where a new shared-memory segment goes: first fit in ``window.shm_range()``.

Registry segments may overlap (the RFC only forbids overlaps inside one
VAS), so the registry does not arbitrate addresses by itself.  Creators of
shared memory therefore hold the registry-wide lock (``root.locked()``)
from reading the taken ranges to publishing the new segment: two processes
creating at once get disjoint ranges.  Taken ranges are those of every
segment directory in the registry that overlap the shared-memory range
(whatever the segment's name, published or still being made), plus ranges
this process still maps for segments unlinked meanwhile.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

from ..errors import vas_error
from ..registry import fs
from ..registry import root as rootmod
from ..registry.ref import parse_region
from ..registry.seg import SEG
from ..window import PAGE


def page_round(size: int) -> int:
    """``size`` rounded up to whole pages."""
    return -(-size // PAGE) * PAGE


def first_fit(size: int, taken: Iterable[tuple[int, int]], lo: int, hi: int) -> int:
    """The lowest address in [lo, hi) where ``size`` bytes miss every taken range.

    ENOMEM if there is no such place.
    """
    cand = lo
    for t_lo, t_hi in sorted(taken):
        if t_hi <= cand:
            continue
        if cand + size <= t_lo:
            break
        cand = t_hi
    if cand + size > hi:
        raise vas_error(errno.ENOMEM, f"no free {size:#x} bytes left in the shared-memory "
                        f"range [{lo:#x}, {hi:#x})")
    return cand


# Regions of the registry's segment directories, by (root, sid, inode): a
# segment's region never changes, so each is read once.  The inode tells a
# reused id from the segment that had it before.
_regions: dict[tuple[str, int, int], tuple[int, int]] = {}


def registry_taken(lo: int, hi: int) -> list[tuple[int, int]]:
    """Regions of the registry's segment directories that overlap [lo, hi).

    Every directory under ``seg/`` counts, published or not: one being
    created holds its range too (and an unreadable region counts as
    nothing).  One ``scandir`` per call, plus one read per new directory.
    """
    root = str(rootmod.ensure())
    seen: dict[tuple[str, int, int], tuple[int, int]] = {}
    with os.scandir(os.path.join(root, SEG.dirname)) as entries:
        for entry in entries:
            if not rootmod.is_id(entry.name):
                continue
            key = (root, int(entry.name), entry.inode())
            # Not cached while unreadable: a directory being made gets its region soon.
            region = _regions.get(key) or _read_region(entry.path)
            if region is not None:
                seen[key] = region
    # Forget the directories that are gone; keep other roots' entries.
    for key in [k for k in _regions if k[0] == root and k not in seen]:
        del _regions[key]
    _regions.update(seen)
    return [r for r in seen.values() if r[0] < hi and lo < r[1]]


def remember(root: str, sid: int, dfd: int, start: int, end: int) -> None:
    """Cache the region of segment ``sid`` this process is creating (its directory ``dfd``)."""
    _regions[(root, sid, os.fstat(dfd).st_ino)] = (start, end)


def _read_region(path: str) -> tuple[int, int] | None:
    try:
        # No link followed, no FIFO waited on (registry/fs.py).
        return parse_region(fs.read_small(f"{path}/region"))
    except OSError:
        return None
