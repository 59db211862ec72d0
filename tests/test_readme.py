"""The README's Python examples run as written: each on its own, and all in order, twice.

A new user pastes them into one interpreter, one after the other, and may
run one again; that must not end in a FileExistsError, nor leave objects in
the registry.  Each run is a child process (its attachments and switches are
its own) on this test's temporary registry.  A ``print(...)  # TEXT`` line
in an example promises that it prints TEXT; the test holds it to that.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import vaspace

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PROMISE = re.compile(r"^\s*print\(.*\)\s+# (.+?)\s*$", re.M)

# Runs the examples it reads on stdin in order, twice, in one interpreter.
RUNNER = """
import json, sys
blocks = json.loads(sys.stdin.read())
for _ in range(2):
    for path, code in blocks:
        exec(compile(code, path, "exec"), {"__name__": "__main__"})
"""


def examples() -> list[tuple[str, str]]:
    """``(README.md:LINE, code)`` for each python block; the code is padded with
    blank lines so that its line numbers are the README's."""
    text = README.read_text()
    found = []
    for m in BLOCK.finditer(text):
        line = text.count("\n", 0, m.start(1))
        found.append((f"README.md:{line + 1}", "\n" * line + m.group(1)))
    return found


def _promised(code: str) -> list[str]:
    return PROMISE.findall(code)


def _run_twice(codes: list[tuple[str, str]]) -> list[str]:
    """Run the examples in order, twice, in one child process; return its output lines."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONWARNINGS="error")
    # Each example is padded with blank lines to its README line numbers, and
    # compiled under the README's path, so a traceback points at the line to fix.
    p = subprocess.run([sys.executable, "-c", RUNNER],
                       input=json.dumps([(str(README), code) for _, code in codes]),
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    return p.stdout.splitlines()


def _assert_kept(codes: list[tuple[str, str]], lines: list[str]) -> None:
    """Every promised output appears, in order, once per run; the registry is empty again."""
    want = [text for _, code in codes for text in _promised(code)] * 2
    it = iter(lines)
    for text in want:
        assert any(line == text for line in it), f"missing {text!r} in {lines!r}"
    assert vaspace.vas_ids() == [] and vaspace.seg_ids() == []


def test_readme_has_the_examples() -> None:
    codes = examples()
    assert len(codes) >= 3
    assert any(_promised(code) for _, code in codes)


@pytest.mark.parametrize("index", range(len(examples())), ids=[n for n, _ in examples()])
def test_each_example_runs_twice(registry: str, index: int) -> None:
    codes = [examples()[index]]
    _assert_kept(codes, _run_twice(codes))


def test_all_examples_in_order_twice(registry: str) -> None:
    codes = examples()
    _assert_kept(codes, _run_twice(codes))


SHELL_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)


def commands() -> list[list[str]]:
    """The ``vaspace`` lines of the README's shell examples, as argument lists.

    A line with a placeholder (an all-capitals word such as PID) stands for
    a value the reader fills in, so it cannot run as written and is skipped.
    """
    found = []
    for block in SHELL_BLOCK.findall(README.read_text()):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["vaspace"] and not any(w.isalpha() and w.isupper() for w in words):
                found.append(words[1:])
    return found


def test_command_line_examples_run_twice(registry: str, tmp_path: Path) -> None:
    """The shell example works as written, in order, twice: its clean-up lines clean up."""
    cmds = commands()
    assert ["rm", "db"] in cmds and ["seg", "rm", "table"] in cmds
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    for _ in range(2):
        for args in cmds:
            p = subprocess.run([sys.executable, "-m", "vaspace.cli", *args], cwd=tmp_path,
                               capture_output=True, text=True, env=env, timeout=120)
            assert (p.returncode, p.stderr) == (0, ""), (args, p.stderr)
    assert vaspace.vas_ids() == [] and vaspace.seg_ids() == []
