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

Every child gets a bounded wait: one that outlives its ``timeout`` is
killed and the test fails naming the function and the timeout, instead of
hanging the suite until faulthandler fires.  Tests that need a second user
(``uid=``) need root to become it: run as anyone else they are skipped with
that reason (``needs_root``), not failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import os
import pickle
import select
import signal
import struct
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import vaspace
from vaspace.process import state as statemod

NOBODY = 65534
OTHER_USER = 65533  # a second unprivileged user, for cross-user tests
CHILD_TIMEOUT = 30.0  # seconds; a child is killed after this (well under faulthandler's 120)

IS_ROOT = os.geteuid() == 0
NEEDS_ROOT_REASON = ("needs root: the test becomes a second user (setuid) or gives objects "
                     "away (chown); run the full suite as root")
needs_root = pytest.mark.skipif(not IS_ROOT, reason=NEEDS_ROOT_REASON)


def require_root() -> None:
    """Skip the calling test, with the reason, unless it runs as root."""
    if not IS_ROOT:
        pytest.skip(NEEDS_ROOT_REASON)


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


def _drop_to(uid: int, gid: int, groups: list[int]) -> None:
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)


def _run_in_child(w: int, fn: Callable[..., Any], args: tuple, kwargs: dict,
                  ids: tuple[int, int, list[int]] | None) -> None:
    """The child's half of ``in_child``: never returns."""
    # A child that must die of SIGSEGV should not print pytest's traceback.
    faulthandler.disable()
    code = 0
    try:
        if ids is not None:
            _drop_to(*ids)
        try:
            payload = ("ok", fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            code = 1
            payload = ("err", exc)
        try:
            data = pickle.dumps(payload)
        except Exception:  # noqa: BLE001 - an unpicklable result or exception
            data = pickle.dumps(("err", RuntimeError(traceback.format_exc())))
        with os.fdopen(w, "wb") as f:
            f.write(data)
    finally:
        os._exit(code)


def _collect(pid: int, r: int, timeout: float, what: str) -> tuple[bytes, int]:
    """Read the child's report and reap it; kill it and fail once ``timeout`` runs out.

    The child may have forked a process that still holds the pipe's write
    end, so the report ends when the child is gone, not at EOF.
    """
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    status = None
    os.set_blocking(r, False)
    try:
        while status is None:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"child running {what} did not finish within "
                                     f"{timeout:g} s and was killed")
            ready, _, _ = select.select([r], [], [], min(left, 0.05))
            if ready:
                chunk = os.read(r, 1 << 16)
                if chunk:
                    chunks.append(chunk)
                    continue
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
        while True:  # whatever it wrote before it exited
            try:
                chunk = os.read(r, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
    return b"".join(chunks), status


class Child:
    """A forked child running a function; ``result()`` waits for it (bounded)."""

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict,
                 ids: tuple[int, int, list[int]] | None, timeout: float) -> None:
        self.what = getattr(fn, "__qualname__", repr(fn))
        self.timeout = timeout
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(r)
            _run_in_child(w, fn, args, kwargs, ids)
        os.close(w)
        self._r: int | None = r

    def result(self) -> ChildResult:
        """Wait for the child; the test fails if it outlives its timeout (counted from now)."""
        assert self._r is not None, "result() already collected"
        r, self._r = self._r, None
        data, status = _collect(self.pid, r, self.timeout, self.what)
        if os.WIFSIGNALED(status):
            return ChildResult(signal=os.WTERMSIG(status))
        kind, obj = pickle.loads(data) if data else ("err", RuntimeError("child wrote nothing"))
        code = os.WEXITSTATUS(status)
        return ChildResult(value=obj, exitcode=code) if kind == "ok" else ChildResult(
            error=obj, exitcode=code)

    def kill(self) -> None:
        """SIGKILL the child and reap it (for children that never end by themselves)."""
        if self._r is None:
            return
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self._r)
        self._r = None


def start_child(fn: Callable[..., Any], *args: Any, uid: int | None = None,
                gid: int | None = None, groups: list[int] | None = None,
                timeout: float = CHILD_TIMEOUT, **kwargs: Any) -> Child:
    """Like ``in_child`` but returns at once: for several children that run together."""
    ids = None
    if uid is not None:
        require_root()
        ids = (uid, uid if gid is None else gid, list(groups or []))
    return Child(fn, args, kwargs, ids, timeout)


def in_child(fn: Callable[..., Any], *args: Any, uid: int | None = None,
             gid: int | None = None, groups: list[int] | None = None,
             timeout: float = CHILD_TIMEOUT, **kwargs: Any) -> ChildResult:
    """Fork, optionally become ``uid`` (gid ``gid``, default uid; supplementary
    ``groups``, default none), run ``fn``, report the outcome.

    The child is killed, and the test fails naming ``fn``, if it has not
    finished after ``timeout`` seconds.  Becoming another user needs root:
    otherwise the test is skipped with that reason.
    """
    return start_child(fn, *args, uid=uid, gid=gid, groups=groups, timeout=timeout,
                       **kwargs).result()


def as_nobody(fn: Callable[..., Any], *args: Any, uid: int = NOBODY, **kwargs: Any) -> Any:
    """Run ``fn`` in a child as an unprivileged user and return its result."""
    return in_child(fn, *args, uid=uid, **kwargs).get()


def reset_process_state() -> None:
    """Leave every VAS this process entered or attached (between tests)."""
    st = statemod.state()
    vaspace.vas_switch(0)
    # Under the state's lock with fresh ``placed`` flags (a fast-path switch
    # does not update them), so put() unmaps each mapping where it really is.
    with st.changing():
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


def peek(addr: int) -> int:
    """The byte at ``addr`` of this process (it faults if nothing readable is there)."""
    return ctypes.c_ubyte.from_address(addr).value


def poke(addr: int, value: int) -> None:
    ctypes.c_ubyte.from_address(addr).value = value


def vas_with_byte(name: str, byte: int, start: int = SEG_BASE, size: int = MiB) -> int:
    """A VAS with one segment at ``start`` whose first byte is ``byte``; left attached O_RDWR."""
    vid = vaspace.vas_create(name, 0o600)
    sid = vaspace.vas_seg_create(f"{name}-seg", start, start + size, 0o600)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    vaspace.vas_attach(0, vid, os.O_RDWR)
    with vaspace.VAS(vid).active():
        poke(start, byte)
    return vid


def maps_line(addr: int) -> str:
    """The line of /proc/self/maps that covers ``addr`` ("" if none does)."""
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= addr < hi:
                return line
    return ""


def errno_of(fn: Callable[..., Any], *args: Any) -> int:
    """The errno a call fails with (-1 for an OSError without one), or 0 if it succeeds."""
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno or -1
    return 0


_UNDEFINED = 0xFFFFFFFF
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20


def set_acl(path: str, nobody: int, other: int) -> None:
    """Give ``path`` a POSIX ACL: owner rw, an entry of its own for NOBODY (``nobody``),
    group none, mask rw, others ``other`` (the raw ``system.posix_acl_access`` xattr).

    The kernel then grants NOBODY what its entry says, while the mode bits (what
    the RFC's check reads) show ``other`` for them: the two can be made to disagree.
    """
    entries = [(_USER_OBJ, 6, _UNDEFINED), (_USER, nobody, NOBODY),
               (_GROUP_OBJ, 0, _UNDEFINED), (_MASK, 6, _UNDEFINED), (_OTHER, other, _UNDEFINED)]
    os.setxattr(path, "system.posix_acl_access",
                struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries))


def attach_outcome(vid: int, access: int = os.O_RDWR) -> tuple[int, str]:
    """Attach ``vid`` to the calling process: (errno, message), or (0, "") if it attached.

    For children (``in_child``) whose refusal is the result under test.
    """
    try:
        vaspace.vas_attach(0, vid, access)
    except OSError as exc:
        return exc.errno, exc.strerror
    return 0, ""


def count_calls(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[tuple]:
    """Wrap ``module.<name>`` for the test to record its calls (the real one still runs).

    Tells which of two ways that give the same answer a call took (a fast path
    and its fallback): the list holds each call's positional arguments.
    """
    calls: list[tuple] = []
    real = getattr(module, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


@contextlib.contextmanager
def thread_inside(vid: int, timeout: float = 10,
                  before_leaving: Callable[[], None] | None = None) -> Iterator[None]:
    """For the ``with`` body, another thread of this process sits inside VAS ``vid``.

    On exit the thread runs ``before_leaving`` (still inside), switches back
    to the original AS and is joined, so no thread is left inside a VAS.
    """
    inside, leave = threading.Event(), threading.Event()

    def sit() -> None:
        vaspace.vas_switch(vid)
        inside.set()
        leave.wait(timeout)
        if before_leaving is not None:
            before_leaving()
        vaspace.vas_switch(0)

    t = threading.Thread(target=sit)
    t.start()
    try:
        assert inside.wait(timeout), f"the thread did not enter VAS {vid}"
        yield
    finally:
        leave.set()
        t.join()
