"""The fixture every test uses (a fresh registry root per test), and suite-wide rules."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaspace.registry import root as rootmod
from vaspace_testing import reset_process_state


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts background commands (`cmd &` without job control) with
    # SIGINT ignored, and Python then leaves it ignored.  Tests check that
    # vaspace leaves SIGINT to its host (the C API's programs, the stdlib's
    # SharedMemoryServer test), so give the run Python's usual handler: the
    # suite must pass however it was started.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # An assert that fails in a worker thread only ends that thread; pytest
    # notices the unhandled exception but merely warns.  Make it fail the test.
    config.addinivalue_line("filterwarnings",
                            "error::pytest.PytestUnhandledThreadExceptionWarning")


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh registry root in /dev/shm, usable by unprivileged children too."""
    base = tempfile.mkdtemp(prefix="vaspace-test-", dir="/dev/shm")
    os.chmod(base, 0o755)
    root = os.path.join(base, "root")
    monkeypatch.setenv("VASPACE_ROOT", root)
    rootmod.forget()
    rootmod.ensure()  # made by root, like /tmp, so every test user can share it
    try:
        yield root
    finally:
        reset_process_state()
        rootmod.forget()
        rootmod.remove_tree(Path(base))


