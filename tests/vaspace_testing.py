"""Shared test helpers: real child processes, unprivileged users, constants.

Test modules import these with ``from vaspace_testing import ...`` (the
``tests`` directory is on sys.path once its conftest.py is loaded; a module
named ``conftest`` would clash with the subdirectories' own conftest files).

Multi-process behaviour is tested with real processes: ``in_child`` forks,
runs a function in the child and brings back its result (or the signal that
killed it).  ``as_nobody`` does the same after dropping to uid/gid 65534, the
way the OS sees an unprivileged user (the interpreter lives under a root-only
home, so ``su nobody -c python`` cannot work here: the child imports first,
then drops privileges).
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import vaspace
from vaspace.process import state as statemod

NOBODY = 65534
OTHER_USER = 65533  # a second unprivileged user, for cross-user tests


@dataclass
class ChildResult:
    """What a child process did: its return value, or its exception, or its signal."""

    value: Any = None
    error: BaseException | None = None
    signal: int | None = None
    exitcode: int | None = None

    def get(self) -> Any:
        """The child's return value; re-raise its exception; fail if it was killed."""
        if self.signal is not None:
            raise AssertionError(f"child killed by signal {signal.Signals(self.signal).name}")
        if self.error is not None:
            raise self.error
        return self.value


def _drop_to(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def in_child(fn: Callable[..., Any], *args: Any, uid: int | None = None,
             timeout: float = 60.0, **kwargs: Any) -> ChildResult:
    """Fork, optionally drop to ``uid`` (gid = uid), run ``fn``, report the outcome."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        # A child that must die of SIGSEGV should not print pytest's traceback.
        faulthandler.disable()
        code = 0
        try:
            if uid is not None:
                _drop_to(uid, uid)
            try:
                payload = ("ok", fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                code = 1
                try:
                    pickle.dumps(exc)
                    payload = ("err", exc)
                except Exception:
                    payload = ("err", RuntimeError(traceback.format_exc()))
            data = pickle.dumps(payload)
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return ChildResult(signal=os.WTERMSIG(status))
    kind, obj = pickle.loads(data) if data else ("err", RuntimeError("child wrote nothing"))
    code = os.WEXITSTATUS(status)
    return ChildResult(value=obj, exitcode=code) if kind == "ok" else ChildResult(
        error=obj, exitcode=code)


def as_nobody(fn: Callable[..., Any], *args: Any, uid: int = NOBODY, **kwargs: Any) -> Any:
    """Run ``fn`` in a child as an unprivileged user and return its result."""
    return in_child(fn, *args, uid=uid, **kwargs).get()


def reset_process_state() -> None:
    """Leave every VAS this process entered or attached (between tests)."""
    st = statemod.state()
    vaspace.vas_switch(0)
    for vid in list(st.attachments):
        att = st.attachments.pop(vid)
        for m in att.maps:
            st.space.put(m)
        os.close(att.lock_fd)
    import vaspace._core as core

    for tid, _ in core.thread_vids():
        core.forget_tid(tid)
    core.plan_clear()


SEG_BASE = 0x4000_0000_0000
MiB = 1 << 20
