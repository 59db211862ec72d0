"""bench/clone.py runs end to end with tiny sizes and reports real measurements.

Not a speed test: it checks the section's shape, that the clone it timed
holds every entry, and that the clone copied only the written extents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import vaspace

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_clone_bench_smoke(tmp_path) -> None:
    env = dict(os.environ)
    pkg_dir = os.path.dirname(os.path.dirname(os.path.abspath(vaspace.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_dir, REPO, env.get("PYTHONPATH", "")])
    env.pop("VASPACE_ROOT", None)  # the bench makes its own registry
    js = tmp_path / "clone.json"
    proc = subprocess.run([sys.executable, "-m", "bench.clone", "--smoke", "--json", str(js)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sec = json.loads(js.read_text())
    figs = {f["key"]: f for f in sec["figures"]}
    assert set(figs) == {"rebuild", "clone", "cp"}
    assert figs["clone"]["baseline"] == "rebuild" and figs["cp"]["baseline"] == "rebuild"
    for fig in figs.values():
        vals = fig["values"]
        assert len(vals) >= 3 and all(v > 0 for v in vals), fig["key"]
    facts = sec["facts"]
    assert facts["clone_entries"] == facts["entries"]
    # Sparse: the clone holds about what was written, far below the segment's size.
    assert facts["clone_allocated_bytes"] <= 2 * facts["written_bytes"] < facts["segment_bytes"]
