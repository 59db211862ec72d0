"""``vaspace ps [PID]``: which processes have which VAS attached (lsof for VASes)."""

from __future__ import annotations

import contextlib

import click
import psutil
from rich.table import Table

import vaspace

from ..errors import access_type_name
from .lookup import NotFound
from .output import emit_json, out
from .params import PID


def _command_of(pid: int) -> str:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).name()
    return "?"


def check_process(pid: int) -> None:
    """``NotFound``, naming the pid, when no such process exists."""
    if not psutil.pid_exists(pid):
        raise NotFound(f"no process with pid {pid}")


def attachments(pid: int | None) -> list[dict]:
    """Rows of ``vaspace ps``: one per (process, attached VAS)."""
    if pid is None:
        pids = sorted({h.pid for vid in vaspace.vas_ids() for h in _holders(vid)})
    else:
        check_process(pid)
        pids = [pid]
    rows = []
    for p in pids:
        command = _command_of(p)
        for pv in vaspace.proc_vas(p):
            rows.append({"pid": p, "command": command, "vid": pv.vid, "name": pv.name,
                         "type": access_type_name(pv.type), "threads": list(pv.threads)})
    return rows


def _holders(vid: int) -> list:
    try:
        return vaspace.vas_holders(vid)
    except OSError:  # deleted meanwhile
        return []


@click.command("ps", short_help="Which processes have which VAS attached.",
               epilog="\b\nExamples:\n  vaspace ps\n  vaspace ps 1234 --json")
@click.argument("pid", type=PID, required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (keys: docs/cli.md).")
def command(pid: int | None, as_json: bool) -> None:
    """Show which processes have which VAS attached, with type and active threads.

    Without PID, every process that holds a VAS.  Active threads (those
    switched into the VAS) are known for processes that publish them; "-"
    means none or unknown.
    """
    rows = attachments(pid)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        who = f"pid {pid} has" if pid else "no process has"
        out().print(f"{who} no VAS attached" if pid else f"{who} a VAS attached")
        return
    t = Table()
    for col in ("PID", "COMMAND", "VID", "VAS", "TYPE", "ACTIVE THREADS"):
        t.add_column(col, justify="right" if col in ("PID", "VID") else "left")
    for r in rows:
        t.add_row(str(r["pid"]), r["command"], str(r["vid"]), r["name"], r["type"],
                  ", ".join(map(str, r["threads"])) or "-")
    out().print(t)
