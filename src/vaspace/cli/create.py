"""``vaspace create NAME``: a new, empty VAS."""

from __future__ import annotations

import click

import vaspace

from .output import emit_json, mode_text, out
from .params import MODE


@click.command("create", epilog="\b\nExamples:\n  vaspace create db\n"
               "  vaspace create shared-db --mode 0660 --json")
@click.argument("name")
@click.option("--mode", type=MODE, default="0600", show_default=True,
              help="Permission bits in octal (r: attach read-only, w: attach writable "
              "and change it).")
@click.option("--json", "as_json", is_flag=True, help='Print {"kind", "id", "name"}.')
def command(name: str, mode: int, as_json: bool) -> None:
    """Create a VAS called NAME, owned by you; print its id."""
    vid = vaspace.vas_create(name, mode)
    if as_json:
        emit_json({"kind": "vas", "id": vid, "name": name})
        return
    out().print(f"created VAS {name!r} (vid {vid}, mode {mode_text(mode)})")
