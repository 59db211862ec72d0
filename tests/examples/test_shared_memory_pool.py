"""examples/shared_memory_pool.py runs as documented (small sizes) and every lookup matches."""

from __future__ import annotations

import os
import subprocess
import sys

import vaspace

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_pool_example_runs(registry: str) -> None:
    env = dict(os.environ)
    pkg_dir = os.path.dirname(os.path.dirname(os.path.abspath(vaspace.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_dir, env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "examples/shared_memory_pool.py", "--entries",
                           "20000", "--lookups", "2000"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "8,000 of 8,000 lookups matched" in proc.stdout
    # The example unlinks its block: nothing is left in the registry.
    assert vaspace.seg_ids() == []
