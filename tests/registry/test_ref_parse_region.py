"""``ref.parse_region``: a segment's ``region`` text as the RFC's sysfs writes it.

``shm`` reads its segment's region with it, so the registry's tests pin what
it accepts and what it calls junk.
"""

from __future__ import annotations

import pytest

from vaspace.registry.ref import parse_region


@pytest.mark.parametrize(("text", "region"), [
    ("400000000000-400000200000\n", (0x4000_0000_0000, 0x4000_0020_0000)),
    ("ff-1ff", (0xFF, 0x1FF)),
    ("0-1", (0, 1)),
    ("ffffffffffffffe-fffffffffffffff", (0xFFF_FFFF_FFFF_FFFE, 0xFFF_FFFF_FFFF_FFFF)),
])
def test_a_region_is_two_hex_bounds(text: str, region: tuple[int, int]) -> None:
    assert parse_region(text) == region


@pytest.mark.parametrize("text", [
    "", "\n", "zz-top", "1000", "1000-", "-1000", "0x1000-0x2000", "1000-2000\n\n", " 1000-2000",
    "1000-2000 ", "2000-1000", "1000-1000", "A000-B000", "1-12345678901234567",
])
def test_junk_and_empty_or_reversed_regions_are_none(text: str) -> None:
    assert parse_region(text) is None
