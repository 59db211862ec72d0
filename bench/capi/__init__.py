"""The C API's benchmark: the RFC cover letter's table measured from C.

``python -m bench.capi`` compiles ``capi_bench.c`` with the system compiler
and ``vaspace config --cflags --libs``, runs it with a bare environment on a
temporary registry, and turns its output into a ``Section``:

  * a pipe ping-pong between two processes pinned to CPU 0 (the baseline);
  * a VAS switch that moves nothing (two VASes with no segments), and the
    same once a second thread has called in (the GIL is then taken and
    given back through the public API on every call: no sticky GIL);
  * a VAS switch of one conflicting 4 KiB segment (A's and B's at one address);
  * ``vas_create`` against ``fork()`` + ``_exit`` + ``waitpid`` of a small C
    process (a helper forked before the interpreter starts), and the fork
    once the embedded interpreter runs, for reference;
  * the first call's cost (interpreter start-up and ``import vaspace``), one
    fresh process per run, and a second call after it.

Each figure is measured in turn with its baseline, run by run (ping-pong,
switches, ping-pong, switches...; fork, create, fork, create...), with the
switches on CPU 0 like the ping-pong, so a change of load hits both alike.
All switch figures are round trips (``switch(B); switch(A)``), as a ping-pong
measures two process switches.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from ..common import Section, figures_markdown, fmt_ns

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "capi_bench.c")
TARGETS = [
    # (figure, baseline, wanted ratio, words)
    ("switch_nothing", "pingpong_pinned", 20.0,
     "A switch with nothing to move is >= 20x faster than a pinned process switch (from C)"),
    ("vas_create", "fork", 7.5, "vas_create is >= 7.5x faster than a C fork() (the RFC's ratio)"),
]
LABELS = {
    "pingpong_pinned": "process switch: pipe ping-pong, both on CPU 0 (round trip)",
    "switch_nothing": "VAS switch from C, nothing to move (round trip)",
    "pingpong_pinned_again": "process switch: pipe ping-pong, measured again with the next",
    "switch_nothing_threaded": "VAS switch from C, nothing to move, once two threads have "
                               "called in (GIL taken and released by the public API on every "
                               "call; round trip)",
    "switch_one_conflicting": "VAS switch from C, one conflicting 4 KiB segment (round trip)",
    "fork": "fork() + _exit + waitpid, a small C process (forked before the interpreter starts)",
    "vas_create": "vas_create from C",
    "fork_embedded": "fork() + _exit + waitpid once the interpreter runs (reference)",
    "first_call": "first call (interpreter start-up + import vaspace)",
    "second_call": "second call (vas_find of a missing name)",
}
BASELINES = {"switch_nothing": "pingpong_pinned",
             "switch_nothing_threaded": "pingpong_pinned_again",
             "switch_one_conflicting": "pingpong_pinned",
             "vas_create": "fork"}


def _compile(outdir: str) -> str:
    from vaspace.cli import config

    exe = os.path.join(outdir, "capi_bench")
    subprocess.run(["cc", "-O2", "-Wall", SOURCE, "-o", exe, *config.cflags().split(),
                    *config.libs().split()], check=True)
    return exe


def _figures(cmd: list[str], registry: str) -> dict[str, list[float]]:
    env = {"PATH": "/usr/bin:/bin", "VASPACE_ROOT": registry}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return {parts[1]: [float(v) for v in parts[2:]]
            for parts in (line.split() for line in out.splitlines()) if parts[:1] == ["fig"]}


def run(smoke: bool = False) -> Section:
    """Compile and run the C benchmark; the section for the report."""
    sec = Section("capi", "The C API: the cover letter's table from C")
    if shutil.which("cc") is None:
        sec.facts["skipped"] = "no C compiler (cc) on PATH"
        return sec
    from vaspace.cli import config
    from vaspace.registry import root as rootmod

    if not (config.lib_dir() / config.LIBRARY).exists():
        sec.facts["skipped"] = f"the C API was not built (no {config.LIBRARY})"
        return sec
    runs = 5 if smoke else 7
    with tempfile.TemporaryDirectory(prefix="vaspace-capi-") as tmp, \
            rootmod.temporary("vaspace-bench-capi-") as registry:
        exe = _compile(tmp)
        values: dict[str, list[float]] = {"first_call": [], "second_call": []}
        for _ in range(runs):
            for key, vals in _figures([exe, "first"], registry).items():
                values[key] += vals
        values.update(_figures([exe, "table", str(runs), "0.05" if smoke else "0.4"], registry))
    for key, label in LABELS.items():
        if key in values:
            sec.add(key, label, "ns", values[key], baseline=BASELINES.get(key))
    sec.facts["compiler"] = subprocess.run(["cc", "--version"], capture_output=True,
                                           text=True).stdout.splitlines()[0]
    return sec


def markdown(sec: Section) -> list[str]:
    """The section's part of BENCHMARKS.md: its targets, then every figure."""
    lines = ["## The C API (issue 13): the cover letter's table from C", ""]
    if "skipped" in sec.facts:
        return [*lines, f"Not run: {sec.facts['skipped']}.", ""]
    lines += ["Measured from C through the C API (`bench/capi/capi_bench.c`, built with "
              "`vaspace config --cflags --libs`, run with a bare environment). Switches are "
              "round trips. Each figure ran in turn with its baseline, run by run: the "
              "switches with the pinned ping-pong (all on CPU 0), `vas_create` with the forks "
              "of a small C process forked before the interpreter started.", "",
              "| target | verdict | measured |", "|---|---|---|"]
    for key, base, want, words in TARGETS:
        r = sec.ratio(key) or 0.0
        lines.append(f"| {words} | **{'MET' if r >= want else 'MISSED'}** | "
                     f"{fmt_ns(sec.get(key).median)} vs {fmt_ns(sec.get(base).median)}: "
                     f"{r:.3g}x |")
    lines += ["", *figures_markdown(sec)]
    lines += ["", f"Compiler: {sec.facts.get('compiler', '?')}. A C call enters the embedded "
              "interpreter: while one thread calls in, it keeps the GIL between calls "
              "(CPython 3.11, embedded: the sticky GIL); otherwise each call takes and gives "
              "back the GIL through the public API, which costs more than the switch itself "
              "(docs/capi.md).", ""]
    return lines
