"""Run both benchmarks with --smoke: they must work end to end (not timed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench")


def _run(script: str, *args: str, tmp_path) -> str:
    out = tmp_path / "report.md"
    plot = tmp_path / "plot.png"
    r = subprocess.run([sys.executable, os.path.join(BENCH, script), "--smoke", "--out",
                        str(out), "--plot", str(plot), *args],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert plot.stat().st_size > 1000
    return out.read_text()


def test_redisjmp_smoke_vaspace_only(tmp_path):
    if shutil.which("redis-server") is not None:
        pytest.skip("covered by test_redisjmp_smoke_with_redis (saves test time)")
    text = _run("redisjmp.py", "--no-redis", tmp_path=tmp_path)
    assert "| vaspace Dict | GET | 1 |" in text
    assert "| vaspace Dict | SET | 2 |" in text
    assert "Machine:" in text and "virtualization" in text
    assert "- vaspace Dict SET, 2 clients: wall" in text and "target 1.5x" in text


def test_redisjmp_smoke_with_redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server); "
                    "the Redis baseline of bench/redisjmp.py cannot run")
    text = _run("redisjmp.py", tmp_path=tmp_path)
    assert "| redis-py | GET | 1 |" in text
    assert "| redis-py pipelined | SET | 2 |" in text
    assert "vs target" in text
    assert "- vaspace Dict SET, 2 clients: wall" in text and "target 1.5x" in text


def test_samtools_smoke(tmp_path):
    text = _run("samtools.py", "--dir", str(tmp_path), tmp_path=tmp_path)
    for store in ("vaspace Dict", "pickle", "sqlite3", "lmdb"):
        assert f"| warm | {store} |" in text
    assert "Target:" in text


def test_heap_space_smoke(tmp_path):
    """bench/heap_space.py runs and reports the space ratio against py-lmdb."""
    out = tmp_path / "space.md"
    r = subprocess.run([sys.executable, os.path.join(BENCH, "heap_space.py"), "--smoke",
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "| space |" in text and "py-lmdb" in text
    assert "| bulk load | " in text and "Dict.update" in text and "putmulti" in text
    assert "| random GET, one process (CPU time) | " in text and "(wall time)" in text


def test_heapflush_smoke(tmp_path):
    import json

    out = tmp_path / "flush.json"
    r = subprocess.run([sys.executable, os.path.join(BENCH, "heapflush.py"), "--smoke",
                        "--dir", str(tmp_path), "--out", str(out)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(out.read_text())
    results = report["results"]
    assert set(results) == {"no flush", "flush every 1", "flush every 100", "idle flush"}
    for name in ("flush every 1", "flush every 100"):
        assert results[name]["rate"]["median"] > 0 and results[name]["ratio"] > 0
        assert results[name]["flush_seconds"]["median"] > 0
    assert "cpu" in report["machine"]
