"""Ways to drive the ``vaspace`` command in tests: click's runner and a real subprocess.

Both go through the same ``VaspaceGroup.main``, so an error is one stderr
line either way; the subprocess form also proves the console entry point
(``python -m vaspace.cli``) and the real stdout/stderr split.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from vaspace.cli import cli

SRC = str(Path(__file__).resolve().parents[2] / "src")


@dataclass
class Run:
    """The outcome of one command: exit status and the two streams."""

    code: int
    stdout: str
    stderr: str

    def err_line(self) -> str:
        """The single stderr line of a failure (asserts there is exactly one)."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
        assert "Traceback" not in self.stderr
        return lines[0]


def invoke(*args: str, **env: str) -> Run:
    """Run the command in this process with click's runner (no exception swallowing)."""
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False, prog_name="vaspace",
                             env=env or None)
    return Run(res.exit_code, res.stdout, res.stderr)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess: our sources first, this test's registry."""
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def run(*args: str, timeout: float = 60.0, **extra_env: str) -> Run:
    """Run ``python -m vaspace.cli ARGS`` as a real process."""
    p = subprocess.run([sys.executable, "-m", "vaspace.cli", *args], capture_output=True,
                       text=True, env=cli_env(**extra_env), timeout=timeout)
    return Run(p.returncode, p.stdout, p.stderr)


HOLDER = """
import os, sys, vaspace
vid = vaspace.vas_find(sys.argv[1])
vaspace.vas_attach(0, vid, {"ro": os.O_RDONLY, "rw": os.O_RDWR}[sys.argv[2]])
vaspace.vas_switch(vid)
print("ready", flush=True)
sys.stdin.read()
"""


class Holder:
    """A separate process that keeps a VAS attached (and is inside it) until closed."""

    def __init__(self, vas: str, access: str = "rw") -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, vas, access],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=cli_env())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"holder failed to attach: {line!r}"
        self.pid = self.proc.pid

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dead_pid() -> int:
    """The pid of a process that has just exited (and was reaped)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid
