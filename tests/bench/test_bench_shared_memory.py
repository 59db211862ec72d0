"""bench/shared_memory.py runs end to end with tiny sizes and reports sane figures.

Not a speed test: it checks the report's shape and that every figure is a
measurement (positive, at least 5 runs, min <= median <= max, baselines
that exist).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import vaspace

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_shared_memory_bench_smoke(tmp_path):
    env = dict(os.environ)
    pkg_dir = os.path.dirname(os.path.dirname(os.path.abspath(vaspace.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_dir, REPO, env.get("PYTHONPATH", "")])
    env.pop("VASPACE_ROOT", None)  # the bench makes its own registry
    out, js = tmp_path / "shm.md", tmp_path / "shm.json"
    proc = subprocess.run([sys.executable, "-m", "bench.shared_memory", "--smoke", "--out",
                           str(out), "--json", str(js)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = out.read_text()
    assert "## Life cycle" in md and "## A Pool sharing" in md
    assert ("MET" in md) != ("MISSED" in md)
    sec = json.loads(js.read_text())
    keys = {f["key"] for f in sec["figures"]}
    for want in ("cycle_std", "cycle_vaspace", "startup_vaspace", "startup_pickle",
                 "startup_manager", "lookup_vaspace", "lookup_pickle", "lookup_manager"):
        assert want in keys
    for fig in sec["figures"]:
        vals = fig["values"]
        assert len(vals) >= 5 and all(v > 0 for v in vals), fig["key"]
        assert fig["baseline"] is None or fig["baseline"] in keys, fig["key"]
        assert min(vals) <= sorted(vals)[len(vals) // 2] <= max(vals)
    calls = sec["facts"]["syscalls"]
    if shutil.which("strace") is None:
        assert calls == "not counted: strace is not installed"
        return
    # Every step makes calls; the counts docs/shared_memory.md quotes (90 a cycle,
    # against 127 before the cuts) do not creep back up.
    assert all(n > 0 for n in calls["std"].values()), calls
    assert all(n > 0 for n in calls["vaspace"].values()), calls
    assert sum(calls["vaspace"].values()) <= 90, calls
    assert "System calls of one warm cycle" in md
