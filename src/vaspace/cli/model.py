"""What the listing commands show: one read of the registry, and its JSON form.

The registry changes under our feet (other processes create and delete
objects), so an object that vanishes between listing its id and reading it
is skipped rather than reported as an error.  The JSON keys built here are
the documented, stable ones (docs/cli.md); add keys, never rename them.
"""

from __future__ import annotations

import errno
import functools
from dataclasses import dataclass, field
from typing import Any

import vaspace

from ..access import access_type_name, open_flags
from ..errors import vas_error
from ..registry import listing
from ..registry.memfile import NAME as PRIVATE
from ..registry.records import holders_text
from .output import group_name, human_size, mode_text, user_name


@dataclass
class SegInfo:
    """A segment and the VASes it is attached to: [(vid, type)].

    ``damaged``: its files are not what vaspace writes (junk in ``region``,
    say); it is listed with start = end = 0 rather than failing the listing.
    """

    id: int
    name: str
    start: int
    end: int
    attr: vaspace.Attr
    vases: list[tuple[int, int]] = field(default_factory=list)
    damaged: bool = False

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class VasInfo:
    """A VAS, its segments [(sid, type)] and the live processes holding it."""

    id: int
    name: str
    attr: vaspace.Attr
    links: list[vaspace.SegLink]
    holders: list[vaspace.Holder]
    damaged: bool = False
    private: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, prot)

    def private_infos(self) -> list[SegInfo]:
        """The private ranges, shaped as segments for drawing (id 0, name ``[private]``)."""
        return [SegInfo(0, PRIVATE, lo, hi, self.attr, [(self.id, _access(prot))])
                for lo, hi, prot in self.private]


@dataclass
class Snapshot:
    """Every VAS and segment of the registry, read once."""

    root: str
    window: tuple[int, int]
    vases: list[VasInfo]
    segs: dict[int, SegInfo]


def snapshot() -> Snapshot:
    """Read the whole registry once (objects deleted meanwhile are skipped)."""
    root = vaspace.registry_root()
    segs = {s.id: SegInfo(s.id, s.name, s.start, s.end, s.attr, damaged=s.damaged)
            for s in listing.segments()}
    vases = []
    for v in listing.vases():
        info = VasInfo(v.id, v.name, v.attr, [link for link in v.links if link.sid in segs],
                       v.holders, v.damaged, v.private)
        vases.append(info)
        for link in info.links:
            segs[link.sid].vases.append((v.id, link.type))
    return Snapshot(root, vaspace.window(), vases, segs)


def _access(prot: int) -> int:
    """The access type a private range's protection gives (as a segment link's)."""
    return open_flags(prot)


# ---------------------------------------------------------------- text

# A damaged object (its files are not what vaspace writes: junk in ``region``,
# a FIFO as ``name``) is listed, never fatal; these say so wherever text shows it.
DAMAGED = "damaged"


def seg_label(s: SegInfo) -> str:
    """A segment's name, marked when it is damaged: ``table (damaged)``."""
    return f"{s.name} ({DAMAGED})" if s.damaged else s.name


def vas_label(v: VasInfo) -> str:
    """A VAS's name, marked when it is damaged."""
    return f"{v.name} ({DAMAGED})" if v.damaged else v.name


def region_text(s: SegInfo) -> str:
    """``[0x..., 0x...)``, or ``damaged`` when the region cannot be read."""
    return DAMAGED if s.damaged else f"[{s.start:#x}, {s.end:#x})"


def size_text(s: SegInfo) -> str:
    """The human size, or ``-`` when the region (so the size) is unknown."""
    return "-" if s.damaged else human_size(s.size)


def vases_text(s: SegInfo, names: dict[int, str]) -> str:
    """The VASes holding a segment: ``db (rw), reader (ro)``."""
    return ", ".join(f"{names.get(vid, vid)} ({access_type_name(t)})" for vid, t in s.vases)


def listing_holders(v: VasInfo) -> str:
    """Who has a VAS attached, as listings print it (``-`` for nobody)."""
    return holders_text(v.holders, none="-")


# ---------------------------------------------------------------- NAME|ID


def _resolve(text: str, kind: str, find: Any, name_of: Any) -> int:
    if text.startswith("name:"):
        return find(text[len("name:"):])
    if text.isdigit():
        oid = int(text)
        try:
            name_of(oid)
        except OSError:
            raise vas_error(errno.EINVAL, f"no {kind} with id {oid} (a name made of digits "
                            f"is given as name:{text})") from None
        return oid
    return find(text)


def resolve_vas(text: str) -> int:
    """A VAS by NAME or ID: all digits is an id, ``name:X`` is always a name."""
    return _resolve(text, "VAS", vaspace.vas_find, vaspace.vas_name)


def resolve_seg(text: str) -> int:
    """A segment by NAME or ID, with the same rule as ``resolve_vas``."""
    return _resolve(text, "segment", vaspace.vas_seg_find, vaspace.seg_name)


# ---------------------------------------------------------------- JSON


# One name lookup per distinct id per listing: with 10k objects owned by a
# handful of users, the password database is read a handful of times.
_user_name = functools.lru_cache(maxsize=256)(user_name)
_group_name = functools.lru_cache(maxsize=256)(group_name)


def _attr_json(attr: vaspace.Attr) -> dict[str, Any]:
    return {"uid": attr.user, "gid": attr.group, "owner": _user_name(attr.user),
            "group": _group_name(attr.group), "mode": mode_text(attr.mode)}


def vas_json(v: VasInfo, segs: dict[int, SegInfo]) -> dict[str, Any]:
    """The stable JSON form of a VAS."""
    seg_list = []
    for link in sorted(v.links, key=lambda link: segs[link.sid].start):
        s = segs[link.sid]
        seg_list.append({"id": s.id, "name": s.name, "type": access_type_name(link.type),
                         "start": s.start, "end": s.end, "size": s.size,
                         "damaged": s.damaged})
    return {
        "kind": "vas", "id": v.id, "name": v.name, **_attr_json(v.attr),
        "size": sum(s["size"] for s in seg_list),
        "segments": seg_list,
        "private": [{"start": lo, "end": hi, "size": hi - lo,
                     "type": access_type_name(_access(prot))} for lo, hi, prot in v.private],
        "holders": [{"pid": h.pid, "type": access_type_name(h.type)} for h in v.holders],
        "damaged": v.damaged,
    }


def seg_json(s: SegInfo, names: dict[int, str]) -> dict[str, Any]:
    """The stable JSON form of a segment; ``names`` maps vid -> VAS name."""
    return {
        "kind": "segment", "id": s.id, "name": s.name, **_attr_json(s.attr),
        "start": s.start, "end": s.end, "size": s.size,
        "vases": [{"id": vid, "name": names.get(vid, "?"), "type": access_type_name(t)}
                  for vid, t in s.vases],
        "damaged": s.damaged,
    }


# ---------------------------------------------------------------- completion


def _complete(names: Any, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    try:
        found = list(names())
    except OSError:
        return []
    return [CompletionItem(n) for n in found if n.startswith(incomplete)]


def complete_vas(ctx: Any, param: Any, incomplete: str) -> list[Any]:
    """Shell completion of a VAS argument: the names that start with what was typed."""
    return _complete(lambda: (vaspace.vas_name(v) for v in vaspace.vas_ids()), incomplete)


def complete_seg(ctx: Any, param: Any, incomplete: str) -> list[Any]:
    """Shell completion of a segment argument."""
    return _complete(lambda: (vaspace.seg_name(s) for s in vaspace.seg_ids()), incomplete)
