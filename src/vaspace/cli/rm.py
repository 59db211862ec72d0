"""``vaspace rm NAME|ID``: delete a VAS (its segments stay)."""

from __future__ import annotations

import click

import vaspace

from .lookup import vas_ref
from .model import complete_vas
from .output import out


@click.command("rm", epilog="\b\nExamples:\n  vaspace rm db\n  vaspace rm 3\n"
               "  vaspace rm name:2024")
@click.argument("what", metavar="NAME|ID", shell_complete=complete_vas)
def command(what: str) -> None:
    """Delete a VAS.  Its segments are detached, not deleted.

    Refused (EBUSY) while a process has it attached; the error names the pids.
    """
    vid = vas_ref(what)
    name = vaspace.vas_name(vid)
    vaspace.vas_delete(vid)
    out().print(f"deleted VAS {name!r} (vid {vid})")
