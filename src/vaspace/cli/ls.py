"""``vaspace ls``: every VAS and segment, like ``ipcs`` for address spaces."""

from __future__ import annotations

import click
from rich.table import Table

import vaspace

from .model import (
    DAMAGED,
    Snapshot,
    listing_holders,
    region_text,
    seg_json,
    seg_label,
    size_text,
    snapshot,
    vas_json,
    vas_label,
    vases_text,
)
from .output import emit_json, group_name, human_size, mode_text, out, user_name


def listing_json(snap: Snapshot) -> dict:
    """The stable JSON document of ``vaspace ls --json``."""
    names = {v.id: v.name for v in snap.vases}
    return {
        "registry": snap.root,
        "window": {"start": snap.window[0], "end": snap.window[1]},
        "vases": [vas_json(v, snap.segs) for v in snap.vases],
        "segments": [seg_json(s, names) for s in sorted(snap.segs.values(),
                                                          key=lambda s: s.id)],
    }


def print_tables(snap: Snapshot, vases: bool = True, segments: bool = True) -> None:
    """The human form: one table of VASes and one of segments."""
    con = out()
    if vases:
        t = Table(title=f"VASes in {snap.root}", title_justify="left")
        for col in ("ID", "NAME", "OWNER", "GROUP", "MODE", "SEGMENTS", "SIZE", "ATTACHED BY"):
            t.add_column(col, justify="right" if col in ("ID", "SIZE") else "left")
        for v in snap.vases:
            segs = sorted((snap.segs[link.sid] for link in v.links), key=lambda s: s.start)
            t.add_row(str(v.id), vas_label(v), *_attr_cells(v.attr, v.damaged),
                      ", ".join(seg_label(s) for s in segs) or "-",
                      human_size(sum(s.size for s in segs)), listing_holders(v))
        con.print(t if snap.vases else f"no VASes in {snap.root}")
    if segments:
        names = {v.id: v.name for v in snap.vases}
        t = Table(title=f"segments (window [{snap.window[0]:#x}, {snap.window[1]:#x}))",
                  title_justify="left")
        for col in ("ID", "NAME", "OWNER", "GROUP", "MODE", "REGION", "SIZE", "IN VASES"):
            t.add_column(col, justify="right" if col in ("ID", "SIZE") else "left")
        for s in sorted(snap.segs.values(), key=lambda s: s.id):
            t.add_row(str(s.id), seg_label(s), *_attr_cells(s.attr, s.damaged),
                      region_text(s), size_text(s), vases_text(s, names) or "-")
        con.print(t if snap.segs else "no segments")


def _attr_cells(attr: vaspace.Attr, damaged: bool) -> tuple[str, str, str]:
    """OWNER, GROUP, MODE; a damaged object whose attributes could not be read shows "-"."""
    if damaged and attr.user < 0:
        return "-", "-", DAMAGED
    return user_name(attr.user), group_name(attr.group), mode_text(attr.mode)


@click.command("ls", short_help="List VASes and segments.",
               epilog="\b\nExamples:\n  vaspace ls\n  vaspace ls --json | "
               "jq '.vases[].name'")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (keys: docs/cli.md).")
def command(as_json: bool) -> None:
    """List VASes and segments: ids, names, owners, modes, regions, sizes, holders."""
    snap = snapshot()
    if as_json:
        emit_json(listing_json(snap))
        return
    print_tables(snap)
