"""``vaspace show NAME|ID``: one VAS (or segment) in detail."""

from __future__ import annotations

import errno

import click

from .._ntuples import Attr
from ..errors import access_type_name, vas_error
from .lookup import NotFound, seg_ref, typed_name, vas_ref
from .model import (
    SegInfo,
    complete_vas,
    listing_holders,
    region_text,
    seg_json,
    seg_label,
    size_text,
    snapshot,
    vas_json,
    vases_text,
)
from .output import emit_json, group_name, human_size, mode_text, out, perm_string, user_name


def show_object(what: str, as_json: bool, segment: bool) -> None:
    """Show the VAS ``what``, or the segment ``what`` when ``segment`` is true."""
    snap = snapshot()
    names = {v.id: v.name for v in snap.vases}
    con = out()
    if segment:
        sid = seg_ref(what)
        s = snap.segs.get(sid)
        if s is None:
            raise vas_error(errno.EINVAL, f"segment {what!r} was deleted meanwhile")
        if as_json:
            emit_json(seg_json(s, names))
            return
        con.print(f"segment {seg_label(s)!r} (sid {s.id})" if not s.damaged else
                  f"segment {s.name!r} (sid {s.id}): damaged, its files are not what vaspace "
                  "writes (`vaspace fsck` lists it)")
        con.print(f"  region  {region_text(s)}  {size_text(s)}")
        con.print(f"  owner   {_owner_text(s.attr)}")
        con.print(f"  in      {vases_text(s, names) or 'no VAS'}")
        return
    vid = vas_ref(what)
    v = next((v for v in snap.vases if v.id == vid), None)
    if v is None:
        raise vas_error(errno.EINVAL, f"VAS {what!r} was deleted meanwhile")
    if as_json:
        emit_json(vas_json(v, snap.segs))
        return
    segs = sorted(((snap.segs[link.sid], link.type) for link in v.links),
                  key=lambda pair: pair[0].start)
    con.print(f"VAS {v.name!r} (vid {v.id})" if not v.damaged else
              f"VAS {v.name!r} (vid {v.id}): damaged, its files are not what vaspace writes "
              "(`vaspace fsck` lists it)")
    con.print(f"  owner     {_owner_text(v.attr)}")
    con.print(f"  attached  {listing_holders(v)}")
    con.print(f"  segments  {len(segs)}, {human_size(sum(s.size for s, _ in segs))}")
    for s, t in segs:
        where = f"{s.start:#014x}-{s.end:#014x}" if not s.damaged else _region_cell(s)
        con.print(f"    {where} {access_type_name(t):2} "
                  f"{size_text(s):>6}  {seg_label(s)} (sid {s.id})")
    private = v.private_infos()
    if private:
        con.print(f"  private   {len(private)}, {human_size(sum(p.size for p in private))} "
                  "(this VAS's own memory)")
    for p in private:
        con.print(f"    {p.start:#014x}-{p.end:#014x} {access_type_name(p.vases[0][1]):2} "
                  f"{human_size(p.size):>6}  {p.name}")


def _owner_text(attr: Attr) -> str:
    """``user:group  mode 0640 (rw-r-----)``; ``unknown`` when they could not be read."""
    if attr.user < 0:
        return "unknown (damaged)"
    return (f"{user_name(attr.user)}:{group_name(attr.group)}  "
            f"mode {mode_text(attr.mode)} ({perm_string(attr.mode)})")


def _region_cell(s: SegInfo) -> str:
    """``damaged``, as wide as the address range it stands in for in ``show``'s lines."""
    return region_text(s).center(29)


@click.command("show", short_help="Show one VAS (or segment) in detail.",
               epilog="\b\nExamples:\n  vaspace show db\n  vaspace show 3 --json\n"
               "  vaspace show --seg table")
@click.argument("what", metavar="NAME|ID", shell_complete=complete_vas)
@click.option("--seg", "segment", is_flag=True, help="WHAT is a segment, not a VAS.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (keys: docs/cli.md).")
def command(what: str, segment: bool, as_json: bool) -> None:
    """Show one VAS: owner, mode, holders and its segments at their addresses.

    With --seg, or when no VAS has that name, show the segment of that name.
    """
    if not segment and not what.isdigit():
        try:
            vas_ref(what)
        except NotFound:
            try:
                seg_ref(what)
            except NotFound:
                raise NotFound(f"no VAS or segment named {typed_name(what)!r}") from None
            segment = True
    show_object(what, as_json, segment)

