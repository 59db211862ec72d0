"""Publishing which threads are inside which VAS, for other processes to read.

The C core keeps one slot per thread that is inside a VAS.  At its first
attach a process moves those slots into a shared file,
``procs/<pid>-<start time>.threads``, so ``proc_vas(pid)`` in another
process can say which of its threads are in each VAS: the RFC's
``/proc/<pid>/vas/<vid>/status``.  The switch keeps writing the slots as it
always does, so publishing costs nothing per switch.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

from .. import _core
from ..registry import records
from ..registry import root as rootmod

_SLOT = struct.Struct("=i4xq")  # int32 tid, padding, int64 vid (the C tslot_t)


def _path(pid: int, started: int) -> Path:
    return rootmod.root_path() / "procs" / f"{pid}-{started}.threads"


def publish() -> None:
    """Move this process's thread slots into its shared file (once per process)."""
    pid = os.getpid()
    started = records.start_time(pid)
    if started is None:
        return
    path = _path(pid, started)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.ftruncate(fd, _core.slots_size())
        _core.publish_threads(fd)
    finally:
        os.close(fd)
    _reap()


def threads_of(pid: int) -> dict[int, tuple[int, ...]]:
    """{vid: native thread ids} for another process, from its published slots."""
    started = records.start_time(pid)
    if started is None:
        return {}
    try:
        data = _path(pid, started).read_bytes()
    except (FileNotFoundError, PermissionError):
        return {}
    out: dict[int, list[int]] = {}
    for tid, vid in _SLOT.iter_unpack(data[: len(data) - len(data) % _SLOT.size]):
        if tid and vid:
            out.setdefault(vid, []).append(tid)
    return {vid: tuple(sorted(tids)) for vid, tids in out.items()}


def _reap() -> None:
    """Remove the slot files of processes that are gone."""
    base = rootmod.root_path() / "procs"
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(base):
            stem, dot, ext = entry.partition(".")
            pid, _, started = stem.partition("-")
            if ext != "threads" or not (pid.isdigit() and started.isdigit()):
                continue
            if records.start_time(int(pid)) != int(started):
                with contextlib.suppress(OSError):
                    os.unlink(base / entry)
