"""Listings of damaged objects: shown as damaged, with attributes that claim no owner."""

from __future__ import annotations

import os

import vaspace as v
from vaspace._ntuples import Attr
from vaspace.registry import listing
from vaspace_testing import SEG_BASE, MiB


def test_an_object_whose_attribute_file_is_not_a_file_lists_with_unknown_attributes(
        registry: str) -> None:
    """A FIFO in place of a segment's ``data`` (a writer can swap it): the
    segment is listed, damaged, with mode 0 and owner and group -1 (not uid
    0: nobody must read it as root's); the healthy one beside it is listed as
    it is."""
    bad = v.Segment.create("bad", SEG_BASE, size=MiB, mode=0o640)
    v.Segment.create("good", SEG_BASE + 0x4000_0000, size=MiB, mode=0o640)
    data = f"{registry}/seg/{bad.id}/data"
    os.unlink(data)
    os.mkfifo(data)
    entries = {e.name: e for e in listing.segments()}
    assert entries["bad"].damaged and entries["bad"].attr == Attr(mode=0, user=-1, group=-1)
    assert not entries["good"].damaged
    assert entries["good"].attr == Attr(mode=0o640, user=os.geteuid(), group=os.getegid())
    vas = v.VAS.create("a")
    os.unlink(f"{registry}/vas/{vas.id}/lock")
    (entry,) = listing.vases()
    assert entry.damaged and entry.attr == Attr(mode=0, user=-1, group=-1)


def test_an_unreadable_name_or_region_lists_as_damaged_placeholders(registry: str) -> None:
    """A long name is kept in a ``name`` file (its encoding is too long for a
    link); a FIFO swapped in there must not hang or break the listing: the VAS
    shows as ``?<id>``, damaged.  Junk in a segment's ``region`` shows as an
    empty region at 0, damaged."""
    vas = v.VAS.create("/" * 100)  # 300 bytes encoded: stored by hash
    name_file = f"{registry}/vas/{vas.id}/name"
    os.unlink(name_file)
    os.mkfifo(name_file)
    (entry,) = listing.vases()
    assert (entry.name, entry.damaged) == (f"?{vas.id}", True)
    assert entry.attr == Attr(mode=0, user=-1, group=-1)
    seg = v.Segment.create("s", SEG_BASE, size=MiB)
    region = f"{registry}/seg/{seg.id}/region"
    os.unlink(region)
    with open(region, "w") as f:
        f.write("not a region")
    (sentry,) = listing.segments()
    assert (sentry.name, sentry.start, sentry.end, sentry.damaged) == ("s", 0, 0, True)
