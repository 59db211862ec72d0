"""``vaspace seg ...``: create, delete, attach and detach segments."""

from __future__ import annotations

import errno

import click

import vaspace

from ..access import flag_of
from .lookup import busy_segment, seg_ref, vas_ref
from .ls import print_tables
from .model import complete_seg, complete_vas, snapshot
from .output import emit_json, human_size, mode_text, out
from .params import ADDR, MODE, SIZE
from .show import show_object


@click.group("seg", epilog="\b\nExamples:\n  vaspace seg create table --start 0x400000000000 "
             "--size 64M\n  vaspace seg attach db table --rw\n  vaspace seg detach db table\n"
             "  vaspace seg rm table")
def command() -> None:
    """Manage segments: memory at a fixed address that VASes share."""


@command.command("create", epilog="\b\nExamples:\n  vaspace seg create table --start "
                 "0x4000_0000_0000 --size 64M\n  vaspace seg create idx --start 0x400010000000 "
                 "--end 0x400010200000 --mode 0640")
@click.argument("name")
@click.option("--start", type=ADDR, required=True,
              help="First address (0x... or any int(x, 0) form), page-aligned.")
@click.option("--size", type=SIZE, help="Size: bytes, or with K, M, G, T (binary units).")
@click.option("--end", type=ADDR, help="End address (exclusive), instead of --size.")
@click.option("--mode", type=MODE, default="0600", show_default=True,
              help="Permission bits in octal.")
@click.option("--json", "as_json", is_flag=True, help='Print {"kind", "id", "name", "start", '
              '"end", "size"}.')
def create(name: str, start: int, size: int | None, end: int | None, mode: int,
           as_json: bool) -> None:
    """Create a segment NAME for [START, START+SIZE) or [START, END).

    The range must be page-aligned and inside the window (see `vaspace ls`).
    """
    if (size is None) == (end is None):
        raise click.UsageError("give exactly one of --size and --end")
    end = start + size if size is not None else end
    assert end is not None
    sid = vaspace.vas_seg_create(name, start, end, mode)
    if as_json:
        emit_json({"kind": "segment", "id": sid, "name": name, "start": start, "end": end,
                   "size": end - start})
        return
    out().print(f"created segment {name!r} (sid {sid}) at [{start:#x}, {end:#x}), "
                f"{human_size(end - start)}, mode {mode_text(mode)}")


@command.command("rm", epilog="\b\nExamples:\n  vaspace seg rm table\n  vaspace seg rm 4")
@click.argument("what", metavar="NAME|ID", shell_complete=complete_seg)
def rm(what: str) -> None:
    """Delete a segment and its data.  Refused (EBUSY) while a VAS holds it."""
    sid = seg_ref(what)
    name = vaspace.seg_name(sid)
    try:
        vaspace.vas_seg_delete(sid)
    except OSError as exc:
        busy = busy_segment(sid, name) if exc.errno == errno.EBUSY else None
        if busy is None:
            raise
        raise busy from None
    out().print(f"deleted segment {name!r} (sid {sid})")


@command.command("attach", epilog="\b\nExamples:\n  vaspace seg attach db table --rw\n"
                 "  vaspace seg attach reader table --ro")
@click.argument("vas", metavar="VAS", shell_complete=complete_vas)
@click.argument("seg", metavar="SEG", shell_complete=complete_seg)
@click.option("--ro", is_flag=True, help="Read-only in this VAS.")
@click.option("--rw", is_flag=True, help="Readable and writable in this VAS.")
def attach(vas: str, seg: str, ro: bool, rw: bool) -> None:
    """Put segment SEG into VAS (each NAME or ID), read-only or read-write.

    Refused (EBUSY) while a process has the VAS attached, and (EFAULT) if SEG
    overlaps a segment already in it.
    """
    # Two flags, not one shared destination: click would let the last one
    # win silently, and "--ro --rw" must not quietly mean read-write.
    if ro == rw:
        raise click.UsageError("give --ro or --rw, not both" if ro else "give --ro or --rw")
    access = "ro" if ro else "rw"
    vid, sid = vas_ref(vas), seg_ref(seg)
    vaspace.vas_seg_attach(vid, sid, flag_of(access))
    out().print(f"attached segment {vaspace.seg_name(sid)!r} to VAS "
                f"{vaspace.vas_name(vid)!r} ({access})")


@command.command("detach", epilog="\b\nExample:\n  vaspace seg detach db table")
@click.argument("vas", metavar="VAS", shell_complete=complete_vas)
@click.argument("seg", metavar="SEG", shell_complete=complete_seg)
def detach(vas: str, seg: str) -> None:
    """Take segment SEG out of VAS.  Refused (EBUSY) while the VAS is attached."""
    vid, sid = vas_ref(vas), seg_ref(seg)
    vaspace.vas_seg_detach(vid, sid)
    out().print(f"detached segment {vaspace.seg_name(sid)!r} from VAS "
                f"{vaspace.vas_name(vid)!r}")


@command.command("ls", epilog="\b\nExample:\n  vaspace seg ls --json")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (keys: docs/cli.md).")
def ls(as_json: bool) -> None:
    """List segments only."""
    snap = snapshot()
    if as_json:
        from .ls import listing_json

        emit_json(listing_json(snap)["segments"])
        return
    print_tables(snap, vases=False)


@command.command("show", epilog="\b\nExample:\n  vaspace seg show table --json")
@click.argument("what", metavar="NAME|ID", shell_complete=complete_seg)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (keys: docs/cli.md).")
def show(what: str, as_json: bool) -> None:
    """Show one segment: region, size, owner, mode and the VASes holding it."""
    show_object(what, as_json, segment=True)
