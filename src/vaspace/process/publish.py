"""Publishing which threads are inside which VAS, for other processes to read.

The C core keeps one slot per thread that is inside a VAS.  At its first
attach a process moves those slots into a shared file,
``procs/<pid>-<start time>.threads``, so ``proc_vas(pid)`` in another
process can say which of its threads are in each VAS: the RFC's
``/proc/<pid>/vas/<vid>/status``.  The switch keeps writing the slots as it
always does, so publishing costs nothing per switch.  After the slots lies
the process's lazy-attach word, which a process that leaves it a request
sets (``wake``), so that even a loop of cached switches picks the request up.
Files left by dead processes are reaped by a process's first create
(bounded) and by ``vaspace fsck --repair`` (registry/records.py), not on the
attach path.
"""

from __future__ import annotations

import os
import struct

from .. import _core
from ..registry import fs, records
from ..registry import root as rootmod

_SLOT = struct.Struct("=i4xq")  # int32 tid, padding, int64 vid (the C tslot_t)
_WAKE = struct.Struct("=q")  # the lazy-attach word (the C wake_t's pending)


def _path(pid: int, started: int) -> str:
    return f"{rootmod.root_str()}/procs/{pid}-{started}.threads"


def publish(pid: int) -> bool:
    """Move this process's thread slots into its shared file; False if it cannot.

    ``pid``: this process's pid (the caller's state holds it: no ``getpid``).

    The file name is guessable (pid and start time are public), so another
    user may have planted a file there.  Only a file this process creates
    itself (O_EXCL), or one it owns already, is used; otherwise the process
    simply does not publish: its attachments work, and other processes see
    no threads for it.
    """
    path = _path(pid, records.my_start_time(pid))
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | fs.FILE_FLAGS, 0o644)
    except FileExistsError:
        try:
            fd = fs.open_file(path, os.O_RDWR)  # no link, no FIFO, no blocking
        except OSError:
            return False
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_nlink != 1:
            os.close(fd)
            return False
        fresh = False
    else:
        fresh = True
    try:
        if not fresh:
            os.ftruncate(fd, 0)  # publish_threads wants a file that reads as zeros
        # Mode 0o644 (unless the umask left exactly that: no fchmod) and the
        # slots' size, then the mapping: one call (issue 11 §3, the first answer).
        _core.publish_threads(fd, 0o644)
    finally:
        os.close(fd)
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
        # No link followed, no FIFO waited on, nothing but a regular file.
        fd, st = fs.open_file_stat(_path(pid, started), os.O_WRONLY)
    except OSError:
        return False
    try:
        if (st.st_uid != _uid_of(pid) or st.st_nlink != 1
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
        # A FIFO or a link planted under this guessable name is refused, not waited on.
        fd = fs.open_file(_path(pid, started), os.O_RDONLY)
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
