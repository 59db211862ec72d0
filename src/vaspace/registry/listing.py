"""One read of the whole registry, for listings (``vaspace ls``, ``show``, ``map``).

Each object is pinned once and read once; the attachment records are read
once for all VASes.  The cost is linear in the number of objects.  An
object deleted meanwhile is skipped; an object whose files are not what
vaspace writes (junk in ``region``, a FIFO as ``name``) is listed as
*damaged* instead of failing the whole listing.
"""

from __future__ import annotations

from typing import NamedTuple

from .._ntuples import Attr, Holder, SegLink
from . import objects, records
from .kind import SEG, VAS, Kind

NO_ATTR = Attr(mode=0, user=-1, group=-1)


class SegEntry(NamedTuple):
    id: int
    name: str
    start: int
    end: int
    attr: Attr
    damaged: bool


class VasEntry(NamedTuple):
    id: int
    name: str
    attr: Attr
    links: list[SegLink]
    holders: list[Holder]
    damaged: bool


def _name_attr(ref: objects.Ref) -> tuple[str, Attr, bool]:
    """Name and attributes, or a placeholder and damaged=True."""
    try:
        name = ref.name
    except OSError:
        return f"?{ref.id}", NO_ATTR, True
    try:
        return name, ref.attr(), False
    except OSError:
        return name, NO_ATTR, True


def _pinned(kind: Kind):  # type: ignore[no-untyped-def]
    for oid in objects.all_ids(kind):
        try:
            ref = objects.pin(kind, oid)
        except OSError:
            continue  # deleted meanwhile
        with ref:
            yield ref


def segments() -> list[SegEntry]:
    """Every live segment; a damaged one has start = end = 0."""
    out = []
    for ref in _pinned(SEG):
        name, attr, damaged = _name_attr(ref)
        try:
            start, end = ref.region()
        except OSError:
            start = end = 0
            damaged = True
        out.append(SegEntry(ref.id, name, start, end, attr, damaged))
    return out


def vases() -> list[VasEntry]:
    """Every live VAS with its segment links and live holders."""
    holders = records.all_holders()
    out = []
    for ref in _pinned(VAS):
        name, attr, damaged = _name_attr(ref)
        out.append(VasEntry(ref.id, name, attr, ref.links(), holders.get(ref.id, []), damaged))
    return out
