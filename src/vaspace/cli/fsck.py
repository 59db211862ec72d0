"""``vaspace fsck [--repair] [--json]``: check the registry, and repair what is safe."""

from __future__ import annotations

import click
from rich.table import Table

from ..registry import fsck
from .output import emit_json, out


@click.command("fsck", short_help="Check the registry (and repair what is safe).",
               epilog="\b\nExamples:\n  vaspace fsck\n  vaspace fsck --repair --json")
@click.option("--repair", is_flag=True,
              help="Remove orphans, dangling names and records of dead processes.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of findings.")
def command(repair: bool, as_json: bool) -> None:
    """List what is wrong in the registry; with --repair, fix what is provably safe.

    Orphaned object directories (creates or deletes cut short), name links
    that lead nowhere, and records of dead processes are removed by
    --repair.  Damaged objects (a region file with junk in it, a FIFO where
    a file should be) are only reported: they belong to their owners.
    Exits 1 if something is left unrepaired.
    """
    found = fsck.check(repair=repair)
    if as_json:
        emit_json([p._asdict() for p in found])
    elif not found:
        out().print("registry is clean")
    else:
        table = Table("PROBLEM", "PATH", "DETAIL", "REPAIRED", box=None)
        for p in found:
            table.add_row(p.kind, p.path, p.detail, "yes" if p.repaired else "no")
        out().print(table)
    if any(not p.repaired for p in found):
        raise SystemExit(1)
