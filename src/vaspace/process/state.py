"""Per-process attachment state, and what happens to it across fork.

One ``State`` per process.  Its lock serializes the slow paths (attach,
detach, planning a switch); the fast switch path lives in C and is told to
stand aside (``_core.busy``) while a slow path changes anything.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field

from .. import _core
from .space import Mapping, Space


@dataclass
class Attachment:
    """A VAS attached to this process: its sharing lock and its mappings."""

    vid: int
    name: str
    type: int
    lock_fd: int
    maps: list[Mapping] = field(default_factory=list)


@dataclass
class State:
    space: Space = field(default_factory=Space)
    attachments: dict[int, Attachment] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    pid: int = field(default_factory=os.getpid)
    published: str = ""  # the root whose procs/ holds our thread slots (publish.py)
    # True once our lazy-attach word is in ``published``'s procs/ (requesters can
    # set it) and pending/ was read after that: requests then set the word.
    wake_ready: bool = False
    wake_published: bool = False  # publish.publish() succeeded for ``published``

    def changing(self, attachments: bool = True) -> Changing:
        """Hold the lock, keep the fast path out, refresh ``placed``.

        When ``attachments`` may change (attach, detach), cached plans are
        dropped: they name mappings and parking slots.  A switch changes
        neither, so it keeps every cached plan (a cycle over many VASes then
        runs entirely on the fast path after one warm-up round).
        """
        # Made once per State (a Changing keeps no state of its own between uses).
        return self._changers[attachments]

    def __post_init__(self) -> None:
        self._changers = {True: Changing(self, True), False: Changing(self, False)}

    def refresh_placed(self) -> None:
        """Read which mappings are placed from _core, which moved them.

        The C fast path moves mappings without telling Python, and a mapping
        pinned by live views stays placed even after the thread that used it
        died, so only C knows for sure.
        """
        placed = {token for token, _, _, _, here, _, _ in _core.mappings() if here}
        for m in self.space.mappings.values():
            m.placed = m.token in placed

    def placed(self) -> set[Mapping]:
        return {m for m in self.space.mappings.values() if m.placed}


class Changing:
    """``State.changing``'s context manager (a class: every attach and detach
    enters one, and a generator-based one costs about a microsecond more)."""

    __slots__ = ("st", "attachments")

    def __init__(self, st: State, attachments: bool) -> None:
        self.st, self.attachments = st, attachments

    def __enter__(self) -> State:
        st = self.st
        st.lock.acquire()
        try:
            _core.busy(1)
        except BaseException:
            st.lock.release()
            raise
        try:
            if self.attachments:
                _core.plan_clear()
            # prune_dead_threads and refresh_placed, without their calls when
            # there is nothing to do (a warm attach: no thread inside, no mapping).
            if _core.thread_vids():
                prune_dead_threads()
            if st.space.mappings:
                st.refresh_placed()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return st

    def __exit__(self, *exc: object) -> None:
        try:
            _core.busy(-1)
        finally:
            self.st.lock.release()


def prune_dead_threads() -> None:
    """Forget threads that died inside a VAS without leaving it.

    A thread's guard normally switches it out as it exits; one that ended
    at the OS level (the exit system call) skipped it, and its slot would
    keep its VAS placed and undetachable for the life of the process.  A
    thread that could not leave because views pinned its VAS also stays in
    the slots until this runs.
    """
    for tid, _ in _core.thread_vids():
        if not os.path.exists(f"/proc/self/task/{tid}"):
            _core.forget_tid(tid)


STATE = State()


def _after_fork_in_child() -> None:
    """A forked child starts with no attachments, in the original AS.

    The segment mappings were MADV_DONTFORK, so they are already gone; the
    inherited lock fds would otherwise keep the parent's flocks alive after
    the parent dies, so they are closed.  The window and parking range stay
    reserved (``_core.reset_after_fork`` re-plugs them, and gives a view the
    child inherited private zero pages, so touching it does not fault).
    """
    global STATE
    old = STATE
    for att in old.attachments.values():
        with contextlib.suppress(OSError):
            os.close(att.lock_fd)
    ghosts = _core.reset_after_fork()
    space = Space()
    with contextlib.suppress(OSError, ValueError):
        space = old.space.after_fork(ghosts)
    STATE = State(space=space)


os.register_at_fork(after_in_child=_after_fork_in_child)


def state() -> State:
    return STATE
