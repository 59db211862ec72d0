"""``vaspace clone`` and ``vaspace seg clone``: new worlds from existing ones."""

from __future__ import annotations

import click

import vaspace

from .lookup import seg_ref, vas_ref
from .model import complete_seg, complete_vas
from .output import emit_json, out

_JSON = '{"kind", "id", "name", "from"}'


@click.command("clone", epilog="\b\nExample:\n  vaspace clone db-v1 db-v2")
@click.argument("what", metavar="VAS", shell_complete=complete_vas)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=f"Print {_JSON}.")
def command(what: str, name: str, as_json: bool) -> None:
    """Make VAS NAME with the same segments, access and mode as VAS, and a copy of
    its private memory.  The segments stay shared; clone them with `vaspace seg clone`."""
    vid = vas_ref(what)
    new = vaspace.vas_clone(vid, name)
    _report("VAS", new, name, vaspace.vas_name(vid), as_json)


@click.command("clone", epilog="\b\nExample:\n  vaspace seg clone index index-v2")
@click.argument("what", metavar="SEG", shell_complete=complete_seg)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help=f"Print {_JSON}.")
def seg_command(what: str, name: str, as_json: bool) -> None:
    """Make segment NAME at the same addresses and mode as SEG, with a copy of its data.

    The copy shares blocks where the filesystem can (reflink), else copies
    only what was written.  Refused (EBUSY) while a process has SEG attached
    for writing.
    """
    sid = seg_ref(what)
    new = vaspace.vas_seg_clone(sid, name)
    _report("segment", new, name, vaspace.seg_name(sid), as_json)


def _report(kind: str, oid: int, name: str, source: str, as_json: bool) -> None:
    if as_json:
        emit_json({"kind": kind.lower(), "id": oid, "name": name, "from": source})
        return
    idname = "vid" if kind == "VAS" else "sid"
    out().print(f"cloned {kind} {source!r} to {name!r} ({idname} {oid})")
