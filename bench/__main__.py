"""``python -m bench``: run every section, each in a fresh process, and write the report.

Each section runs as ``python -m bench.<section> --json FILE`` so that one
section's memory (a 1 GiB segment, say) and process state cannot skew the
next one, and the fork baseline sees a small process.  Then report.py
writes BENCHMARKS.md and bench/plots/*.png.  The other engineers' workloads
(bench/redisjmp.py, bench/samtools.py) and bench/shared_memory.py, when
present and when they accept ``--smoke``/``--out``, run too and their
markdown is appended.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

from . import machine, report
from .capi import markdown as capi_markdown
from .clone import markdown as clone_markdown
from .common import Section

SECTIONS = ["switch", "create", "gups", "attach", "syscalls", "admin"]
OTHERS = ["redisjmp", "samtools", "shared_memory"]
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# The C API's figures, measured from C (bench/capi/), and segment clones (bench/clone.py):
# their markdown follows the report's.
SECTIONS += ["capi", "clone"]


def _vaspace_dir() -> str:
    """Where the vaspace being benchmarked comes from (an install, or src/ in a checkout)."""
    try:
        import vaspace
    except ImportError:
        return os.path.join(REPO, "src")
    return os.path.dirname(os.path.dirname(os.path.abspath(vaspace.__file__)))


def _env() -> dict[str, str]:
    """The sections' environment: they import this bench package and the same vaspace."""
    env = dict(os.environ)
    paths = [_vaspace_dir(), REPO, env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def run_section(name: str, smoke: bool, workdir: str) -> Section:
    """Run one section in its own process and load its results."""
    path = os.path.join(workdir, f"{name}.json")
    cmd = [sys.executable, "-m", f"bench.{name}", "--json", path] + (["--smoke"] if smoke else [])
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, env=_env(), cwd=REPO)
    print(f"bench: {name} done in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    with open(path) as f:
        return Section.from_json(json.load(f))


def run_other(name: str, smoke: bool, workdir: str, plot_dir: str,
              timeout: float) -> list[str]:
    """Run another engineer's workload if it exists and takes our options; its markdown."""
    if not os.path.exists(os.path.join(HERE, f"{name}.py")):
        return []
    helptext = subprocess.run([sys.executable, "-m", f"bench.{name}", "--help"],
                              capture_output=True, text=True, env=_env(), cwd=REPO).stdout
    if "--smoke" not in helptext or "--out" not in helptext:
        return [f"## {name}", "", f"bench/{name}.py does not take --smoke/--out; not run.", ""]
    out = os.path.join(workdir, f"{name}.md")
    cmd = [sys.executable, "-m", f"bench.{name}", "--out", out]
    if "--plot" in helptext:
        cmd += ["--plot", os.path.join(plot_dir, f"{name}.png")]
    if smoke:
        cmd.append("--smoke")
    try:
        subprocess.run(cmd, check=True, env=_env(), cwd=REPO, timeout=timeout,
                       stdout=subprocess.DEVNULL)
    except (subprocess.SubprocessError, OSError) as exc:
        return [f"## {name}", "", f"`{' '.join(cmd[1:])}` failed: {exc}", ""]
    with open(out) as f:
        text = f.read()
    # Demote its headings one level so they nest under ours.
    body = [("#" + line) if line.startswith("#") else line for line in text.splitlines()]
    rel = os.path.relpath(os.path.join(plot_dir, f"{name}.png"), REPO)
    return [f"## Other workload: bench/{name}.py", "", *body, "",
            f"![{name}]({rel})" if "--plot" in helptext else "", ""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: a few seconds in all")
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"),
                    help="the report to write (default: BENCHMARKS.md at the repo root)")
    ap.add_argument("--plots", help="where the PNGs go (default: bench/plots, or beside "
                    "--out when --out is given)")
    ap.add_argument("--only", help="comma-separated sections to run (default: all of "
                    f"{','.join(SECTIONS)})")
    ap.add_argument("--others", action=argparse.BooleanOptionalAction, default=True,
                    help="also run bench/redisjmp.py and bench/samtools.py if present")
    ap.add_argument("--others-timeout", type=float, default=600.0)
    ap.add_argument("--json", help="also save every section's per-run values here")
    args = ap.parse_args(argv)
    plot_dir = args.plots or (os.path.join(HERE, "plots") if "--out" not in (argv or sys.argv)
                              else os.path.join(os.path.dirname(os.path.abspath(args.out)),
                                                "plots"))
    names = args.only.split(",") if args.only else SECTIONS
    for n in names:
        if n not in SECTIONS:
            ap.error(f"unknown section {n!r}; choose from {SECTIONS}")
    t0 = time.time()
    meta = {"load_before": _load(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": " ".join(["python -m bench", *(argv if argv is not None
                                                       else sys.argv[1:])])}
    secs: dict[str, Section] = {}
    extra: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vaspace-bench-") as work:
        for name in names:
            secs[name] = run_section(name, args.smoke, work)
        if "capi" in secs:  # the C API's figures, from C (bench/capi/)
            extra += capi_markdown(secs["capi"])
        if "clone" in secs:
            extra += clone_markdown(secs["clone"])
        if args.others:
            for name in OTHERS:
                with contextlib.suppress(OSError):
                    extra += run_other(name, args.smoke, work, plot_dir, args.others_timeout)
        meta["load_after"] = _load()
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"meta": meta, "sections": [s.to_json() for s in secs.values()]},
                          f, indent=1)
        meta["duration_s"] = time.time() - t0
        written = report.write(args.out, plot_dir, machine.describe(), secs, meta, extra)
    for path in written:
        print(f"bench: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
