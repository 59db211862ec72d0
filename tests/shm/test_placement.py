"""First-fit placement in the shared-memory range, and the registry's taken ranges."""

from __future__ import annotations

import errno

import pytest

import vaspace
from vaspace.shm import placement
from vaspace.window import PAGE, shm_range


def test_first_fit_takes_the_lowest_hole_that_fits() -> None:
    lo, hi = 0x1000_0000, 0x1010_0000
    assert placement.first_fit(PAGE, [], lo, hi) == lo
    taken = [(lo + 4 * PAGE, lo + 6 * PAGE), (lo, lo + PAGE), (lo + 2 * PAGE, lo + 3 * PAGE)]
    assert placement.first_fit(PAGE, taken, lo, hi) == lo + PAGE
    assert placement.first_fit(2 * PAGE, taken, lo, hi) == lo + 6 * PAGE
    # Overlapping and nested taken ranges are fine.
    nested = [(lo, lo + 8 * PAGE), (lo + PAGE, lo + 2 * PAGE), (lo + 7 * PAGE, lo + 9 * PAGE)]
    assert placement.first_fit(PAGE, nested, lo, hi) == lo + 9 * PAGE
    # Taken ranges outside [lo, hi) do not matter.
    assert placement.first_fit(PAGE, [(0, lo), (hi, hi + PAGE)], lo, hi) == lo


def test_first_fit_enomem_when_full() -> None:
    lo, hi = 0x1000_0000, 0x1000_0000 + 4 * PAGE
    assert placement.first_fit(4 * PAGE, [], lo, hi) == lo
    with pytest.raises(OSError) as err:
        placement.first_fit(PAGE, [(lo, lo + 2 * PAGE), (lo + 2 * PAGE, hi)], lo, hi)
    assert err.value.errno == errno.ENOMEM


def test_page_round() -> None:
    assert [placement.page_round(n) for n in (1, PAGE, PAGE + 1)] == [PAGE, PAGE, 2 * PAGE]


def test_registry_taken_sees_segments_in_the_range_only(registry: str) -> None:
    lo, hi = shm_range()
    win_lo, _ = vaspace.window()
    vaspace.vas_seg_create("inside", lo + PAGE, lo + 3 * PAGE, 0o600)
    vaspace.vas_seg_create("outside", win_lo, win_lo + PAGE, 0o600)
    assert placement.registry_taken(lo, hi) == [(lo + PAGE, lo + 3 * PAGE)]
    sid = vaspace.vas_seg_find("inside")
    vaspace.vas_seg_delete(sid)
    assert placement.registry_taken(lo, hi) == []  # a deleted segment frees its range
