"""Publishing which threads are inside which VAS, for other processes to read.

The C core keeps one slot per thread that is inside a VAS.  At its first
attach a process moves those slots into a shared file,
``procs/<pid>-<start time>.threads``, so ``proc_vas(pid)`` in another
process can say which of its threads are in each VAS: the RFC's
``/proc/<pid>/vas/<vid>/status``.  The switch keeps writing the slots as it
always does, so publishing costs nothing per switch.  After the slots lies
the process's lazy-attach word, which a process that leaves it a request
sets (``wake``), so that even a loop of cached switches picks the request up.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from pathlib import Path

from .. import _core
from ..registry import records
from ..registry import root as rootmod

_SLOT = struct.Struct("=i4xq")  # int32 tid, padding, int64 vid (the C tslot_t)
_WAKE = struct.Struct("=q")  # the lazy-attach word (the C wake_t's pending)


def _path(pid: int, started: int) -> Path:
    return rootmod.root_path() / "procs" / f"{pid}-{started}.threads"


def publish() -> bool:
    """Move this process's thread slots into its shared file; False if it cannot.

    The file name is guessable (pid and start time are public), so another
    user may have planted a file there.  Only a file this process creates
    itself (O_EXCL), or one it owns already, is used; otherwise the process
    simply does not publish: its attachments work, and other processes see
    no threads for it.
    """
    pid = os.getpid()
    started = records.start_time(pid)
    if started is None:
        return False
    path = _path(pid, started)
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        try:
            fd = os.open(path, flags)
        except OSError:
            return False
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            return False
    try:
        os.fchmod(fd, 0o644)
        os.ftruncate(fd, _core.slots_size())
        _core.publish_threads(fd)
    finally:
        os.close(fd)
    _reap()
    return True


def wake(pid: int) -> bool:
    """Set ``pid``'s lazy-attach word, so its switch fast path declines and
    its slow path takes the requests left for it; False if it has not
    published (it then takes them at its next slow-path call).

    The word lies in the target's slots file, after the slots.  Like
    ``threads_of``, only the target's own file counts (regular, one link,
    owned by the target's user); nothing is followed or created.
    """
    started = records.start_time(pid)
    if started is None:
        return False
    try:
        fd = os.open(_path(pid, started), os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if (st.st_uid != _uid_of(pid) or not stat.S_ISREG(st.st_mode) or st.st_nlink != 1
                or st.st_size < _core.slots_size()):
            return False
        os.pwrite(fd, _WAKE.pack(1), _core.wake_offset())
        return True
    finally:
        os.close(fd)


def threads_of(pid: int) -> dict[int, tuple[int, ...]]:
    """{vid: native thread ids} for another process, from its published slots."""
    started = records.start_time(pid)
    if started is None:
        return {}
    try:
        fd = os.open(_path(pid, started), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        # Only the process's own file counts: another user may plant one.
        if os.fstat(fd).st_uid != _uid_of(pid):
            return {}
        data = os.read(fd, _core.slots_size())
    finally:
        os.close(fd)
    out: dict[int, list[int]] = {}
    for tid, vid in _SLOT.iter_unpack(data[: len(data) - len(data) % _SLOT.size]):
        if tid and vid:
            out.setdefault(vid, []).append(tid)
    return {vid: tuple(sorted(tids)) for vid, tids in out.items()}


def _uid_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        return None


def _number(text: str) -> int | None:
    """An ASCII decimal number, or None (``"²".isdigit()`` is True)."""
    return int(text) if text.isascii() and text.isdigit() else None


def _reap() -> None:
    """Remove the slot files of processes that are gone."""
    base = rootmod.root_path() / "procs"
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(base):
            stem, _, ext = entry.partition(".")
            pid_text, _, started_text = stem.partition("-")
            pid, started = _number(pid_text), _number(started_text)
            if ext != "threads" or pid is None or started is None:
                continue
            if records.start_time(pid) != started:
                with contextlib.suppress(OSError):
                    os.unlink(base / entry)
