"""``vaspace demo``: the idea in a few seconds, with real processes."""

from __future__ import annotations

import click

from .output import emit_json, out


@click.command("demo", short_help="Show the idea in a few seconds.",
               epilog="\b\nExamples:\n  vaspace demo\n  vaspace demo --quick --json")
@click.option("--quick", is_flag=True, help="Fewer timing rounds (for tests and slow machines).")
@click.option("--json", "as_json", is_flag=True,
              help="Print only the measurements as JSON (keys: docs/cli.md).")
def command(quick: bool, as_json: bool) -> None:
    """Show pointers shared across processes and switching between VASes.

    In a temporary registry (removed at the end): one process builds a
    linked list of raw pointers in a segment, a second attaches it and walks
    it at the same addresses, a third switches between two VASes holding
    different data at one address and times vas_switch against a process
    switch measured in the same run.
    """
    from . import demo_steps

    con = out()
    n, rounds = (500, 5) if quick else (2000, 7)
    if as_json:
        res = demo_steps.run(lambda line: None, n=n, rounds=rounds)
        keys = ("vas_switch_ns", "vas_switch_nomove_ns", "proc_switch_pinned_ns",
                "proc_switch_unpinned_ns", "machine")
        emit_json({key: res[key] for key in keys}
                  | {"nodes": len(res["walker"]["nodes"]), "rounds": rounds, "n": n})
        return
    def say(line: str) -> None:
        con.print(line, style="bold" if line.startswith("step ") else "", soft_wrap=True)

    demo_steps.run(say, n=n, rounds=rounds)
