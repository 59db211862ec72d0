"""Helpers for the reliability tests: children with a timeout, and registry snapshots.

The top-level ``conftest.py`` cannot be imported by name from here (another
``conftest`` module may own that name in ``sys.modules``), so the few
helpers these tests need live here.  ``run_child`` differs from conftest's
``in_child`` in one way that matters for fuzzing: a child that hangs is
killed after ``timeout`` seconds and reported as hung, so a hang fails the
test instead of stalling the suite.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import select
import signal
import stat
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaspace_testing import require_root

NOBODY = 65534
OTHER_USER = 65533
PAGE = os.sysconf("SC_PAGE_SIZE")
SEG_BASE = 0x4000_0000_0000
MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    """What a child did: returned ``value``, raised ``error``, died of ``signal``, or hung."""

    value: Any = None
    error: BaseException | None = None
    signal: int | None = None
    hung: bool = False

    def get(self) -> Any:
        if self.hung:
            raise AssertionError("child hung and was killed")
        if self.signal is not None:
            raise AssertionError(f"child killed by signal {signal.Signals(self.signal).name}")
        if self.error is not None:
            raise self.error
        return self.value


def drop_privileges(uid: int) -> None:
    """Become ``uid`` (gid = uid, no supplementary groups), as an unprivileged user is."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def run_child(fn: Callable[..., Any], *args: Any, uid: int | None = None,
              timeout: float = 30.0, **kwargs: Any) -> Outcome:
    """Fork, optionally drop to ``uid``, run ``fn``; kill the child if it outlives ``timeout``."""
    if uid is not None:
        require_root()  # becoming another user needs root: skip, with the reason
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            if uid is not None:
                drop_privileges(uid)
            try:
                payload = ("ok", fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                payload = ("err", exc)
            try:
                data = pickle.dumps(payload)
            except Exception:  # noqa: BLE001 - unpicklable result or exception
                data = pickle.dumps(("err", RuntimeError(traceback.format_exc())))
            _write_all(w, data)
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + timeout
    os.set_blocking(r, False)
    hung = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            hung = True
            os.kill(pid, signal.SIGKILL)
            break
        ready, _, _ = select.select([r], [], [], left)
        if not ready:
            continue
        chunk = os.read(r, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if hung:
        return Outcome(hung=True)
    if os.WIFSIGNALED(status):
        return Outcome(signal=os.WTERMSIG(status))
    data = b"".join(chunks)
    if not data:
        return Outcome(error=RuntimeError("child wrote nothing"))
    kind, obj = pickle.loads(data)
    return Outcome(value=obj) if kind == "ok" else Outcome(error=obj)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def as_user(uid: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` as ``uid`` in a child and return its result (re-raising its error)."""
    return run_child(fn, *args, uid=uid, **kwargs).get()


def snapshot(root: str) -> dict[str, tuple]:
    """Everything observable about a registry tree: paths, types, modes, owners, contents.

    Comparing snapshots before and after a failing call proves the call
    changed nothing.  Attachment records of this process are left out:
    they belong to the process, not to the objects.
    """
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                content: Any = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    content = f.read(4096)
            else:
                content = None
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777,
                                             st.st_uid, st.st_gid, st.st_size, content)
    return out


def load_soak() -> Any:
    """Import scripts/soak.py (the fault-injection harness) as a module."""
    name = "vaspace_soak_harness"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "soak.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
