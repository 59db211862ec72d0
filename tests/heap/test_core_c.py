"""The heap's Python-free core, tested as a plain C program.

``tests/heap/c/test_core.c`` is compiled with the system C compiler together
with ``src/vaspace/heap/core/*.c`` (no CPython involved) and run.  It drives
the allocator, the undo log (including children that die at every crash point
while holding the robust mutex) and the Dict on an anonymous shared mapping.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "src" / "vaspace" / "heap" / "core"
TEST = Path(__file__).resolve().parent / "c" / "test_core.c"


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH to build the core's C test")
    exe = tmp_path_factory.mktemp("heapcore") / "test_core"
    sources = [str(TEST), *sorted(str(p) for p in CORE.glob("*.c"))]
    cmd = [cc, "-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
           "-Wno-unused-parameter", f"-I{CORE}", *sources, "-o", str(exe), "-lpthread"]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return exe


def test_core_c_program(program: Path) -> None:
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=120)
    failed = [line for line in run.stdout.splitlines() if line.startswith("not ok")]
    assert run.returncode == 0 and not failed, run.stdout + run.stderr
    passed = [line for line in run.stdout.splitlines() if line.startswith("ok - ")]
    # the program ran to its end, and its checks did run
    assert "# 0 failed" in run.stdout
    assert len(passed) >= 40, run.stdout
