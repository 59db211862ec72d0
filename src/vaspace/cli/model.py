"""What the listing commands show: one read of the registry, and its JSON form.

The registry changes under our feet (other processes create and delete
objects), so an object that vanishes between listing its id and reading it
is skipped rather than reported as an error.  The JSON keys built here are
the documented, stable ones (docs/cli.md); add keys, never rename them.
"""

from __future__ import annotations

import contextlib
import errno
from dataclasses import dataclass, field
from typing import Any

import vaspace

from ..errors import access_type_name, vas_error
from .output import group_name, mode_text, user_name


@dataclass
class SegInfo:
    """A segment and the VASes it is attached to: [(vid, type)]."""

    id: int
    name: str
    start: int
    end: int
    attr: vaspace.Attr
    vases: list[tuple[int, int]] = field(default_factory=list)

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


@dataclass
class Snapshot:
    """Every VAS and segment of the registry, read once."""

    root: str
    window: tuple[int, int]
    vases: list[VasInfo]
    segs: dict[int, SegInfo]


def snapshot() -> Snapshot:
    """Read the whole registry (objects deleted meanwhile are skipped)."""
    root = vaspace.registry_root()
    segs: dict[int, SegInfo] = {}
    for sid in vaspace.seg_ids():
        with contextlib.suppress(OSError):
            start, end = vaspace.seg_region(sid)
            segs[sid] = SegInfo(sid, vaspace.seg_name(sid), start, end,
                                vaspace.vas_seg_getattr(sid))
    vases = []
    for vid in vaspace.vas_ids():
        with contextlib.suppress(OSError):
            info = VasInfo(vid, vaspace.vas_name(vid), vaspace.vas_getattr(vid),
                           vaspace.vas_segments(vid), vaspace.vas_holders(vid))
            info.links = [link for link in info.links if link.sid in segs]
            vases.append(info)
            for link in info.links:
                segs[link.sid].vases.append((vid, link.type))
    return Snapshot(root, vaspace.window(), vases, segs)


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


def _attr_json(attr: vaspace.Attr) -> dict[str, Any]:
    return {"uid": attr.user, "gid": attr.group, "owner": user_name(attr.user),
            "group": group_name(attr.group), "mode": mode_text(attr.mode)}


def vas_json(v: VasInfo, segs: dict[int, SegInfo]) -> dict[str, Any]:
    """The stable JSON form of a VAS."""
    seg_list = []
    for link in sorted(v.links, key=lambda link: segs[link.sid].start):
        s = segs[link.sid]
        seg_list.append({"id": s.id, "name": s.name, "type": access_type_name(link.type),
                         "start": s.start, "end": s.end, "size": s.size})
    return {
        "kind": "vas", "id": v.id, "name": v.name, **_attr_json(v.attr),
        "size": sum(s["size"] for s in seg_list),
        "segments": seg_list,
        "holders": [{"pid": h.pid, "type": access_type_name(h.type)} for h in v.holders],
    }


def seg_json(s: SegInfo, names: dict[int, str]) -> dict[str, Any]:
    """The stable JSON form of a segment; ``names`` maps vid -> VAS name."""
    return {
        "kind": "segment", "id": s.id, "name": s.name, **_attr_json(s.attr),
        "start": s.start, "end": s.end, "size": s.size,
        "vases": [{"id": vid, "name": names.get(vid, "?"), "type": access_type_name(t)}
                  for vid, t in s.vases],
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
