"""``vaspace maps PID VAS``: the segments one process sees through one VAS (pmap)."""

from __future__ import annotations

import click

import vaspace

from ..registry.memfile import NAME as PRIVATE
from .lookup import vas_ref
from .model import complete_vas
from .output import emit_json, human_size, out
from .params import PID
from .ps import check_process


@click.command("maps", short_help="The segments a process sees through a VAS.",
               epilog="\b\nExamples:\n  vaspace maps 1234 db\n"
               "  vaspace maps 1234 3 --json")
@click.argument("pid", type=PID)
@click.argument("vas", metavar="VAS", shell_complete=complete_vas)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (keys: docs/cli.md).")
def command(pid: int, vas: str, as_json: bool) -> None:
    """Show the mappings of VAS (NAME or ID) in process PID, like /proc/PID/vas/VID/maps.

    The VAS's private memory is listed as ``[private]``.
    """
    check_process(pid)
    vid = vas_ref(vas)
    maps = vaspace.proc_maps(pid, vid)
    if as_json:
        emit_json([{"start": m.start, "end": m.end, "size": m.end - m.start,
                    "access": m.access, "segment": m.segment,
                    "private": m.segment == PRIVATE} for m in maps])
        return
    con = out()
    if not maps:
        con.print(f"VAS {vaspace.vas_name(vid)!r} has no segments or private memory")
    for m in maps:
        con.print(f"{m.start:012x}-{m.end:012x} {m.access} {human_size(m.end - m.start):>6}  "
                  f"{m.segment}")
