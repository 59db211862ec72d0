"""Where a new shared-memory segment goes: first fit in ``window.shm_range()``.

Registry segments may overlap (the RFC only forbids overlaps inside one
VAS), so the registry does not arbitrate addresses by itself.  Creators of
shared memory therefore hold the registry-wide lock (``root.locked()``)
from reading the taken ranges to publishing the new segment: two processes
creating at once get disjoint ranges.  Taken ranges are every segment in
the registry that overlaps the shared-memory range (whatever its name),
plus ranges this process still maps for segments unlinked meanwhile.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from .. import api
from ..errors import vas_error
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


def registry_taken(lo: int, hi: int) -> list[tuple[int, int]]:
    """Regions of the registry's segments that overlap [lo, hi)."""
    taken = []
    for sid in api.seg_ids():
        try:
            s_lo, s_hi = api.seg_region(sid)
        except OSError:  # deleted meanwhile
            continue
        if s_lo < hi and lo < s_hi:
            taken.append((s_lo, s_hi))
    return taken
