"""Running the compiled C test programs the way a user would: a bare environment."""

from __future__ import annotations

import subprocess


def bare_env(registry: str) -> dict[str, str]:
    """The environment of ``env -i PATH=/usr/bin:/bin``, plus the test's registry."""
    return {"PATH": "/usr/bin:/bin", "VASPACE_ROOT": registry}


def run(program: str, *args: str, registry: str, timeout: float = 60) -> str:
    """Run a compiled program with a bare environment; its stdout (exit 0 asserted)."""
    r = subprocess.run([program, *args], env=bare_env(registry), capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"{program} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def checks(output: str) -> dict[str, str]:
    """The ``check <what> <1|0>`` lines of a program's output."""
    return {parts[1]: parts[2] for parts in (line.split() for line in output.splitlines())
            if len(parts) == 3 and parts[0] == "check"}
