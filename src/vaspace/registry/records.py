"""Records of which processes have which VAS attached, and lazy-attach requests.

The sharing rule itself is enforced by flock (see vas.py); these records only
serve introspection (``proc_vas``, ``vaspace ps``) and error messages.  Each
names a pid and that process's start time, so a record left by a dead
process (or a recycled pid) is recognised as stale, ignored and reaped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from .._ntuples import Holder
from ..errors import access_type_name, vas_error
from . import root as rootmod
from .vas import _TYPES


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks (field 22 of /proc/<pid>/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])


def _alive(pid: int, started: int) -> bool:
    return start_time(pid) == started


def _procs() -> Path:
    return rootmod.root_path() / "procs"


def add(vid: int, pid: int, access: int) -> None:
    """Record that ``pid`` has ``vid`` attached (replacing a stale record).

    A record another user planted under our name cannot be removed (the
    directory is sticky); it is ignored by readers (see ``_all``), and the
    attachment itself, which the flock makes, does not depend on the record.
    """
    path = _procs() / f"{vid}.{pid}"
    target = f"{start_time(pid)}:{access_type_name(access)}"
    with contextlib.suppress(FileNotFoundError, PermissionError):
        os.unlink(path)
    with contextlib.suppress(FileExistsError):
        os.symlink(target, path)


def remove(vid: int, pid: int) -> None:
    with contextlib.suppress(FileNotFoundError, PermissionError):
        os.unlink(_procs() / f"{vid}.{pid}")


def _all() -> list[tuple[int, int, int]]:
    """Every live (vid, pid, type) record; stale ones are reaped on the way."""
    out = []
    try:
        entries = os.listdir(_procs())
    except FileNotFoundError:
        return []
    for entry in entries:
        vid, _, pid = entry.partition(".")
        if not (rootmod.is_id(vid) and rootmod.is_id(pid)):
            continue
        try:
            started, kind = os.readlink(_procs() / entry).split(":")
            owner = os.lstat(_procs() / entry).st_uid
        except (OSError, ValueError):
            continue
        if rootmod.is_id(started) and _alive(int(pid), int(started)):
            if owner not in (0, _uid_or_none(int(pid))):
                continue  # planted by another user: not the process's own record
            out.append((int(vid), int(pid), _TYPES.get(kind, os.O_RDONLY)))
        else:
            remove(int(vid), int(pid))
    return sorted(out)


def holders(vid: int) -> list[Holder]:
    """Live processes that have the VAS attached."""
    return [Holder(pid=p, type=t) for v, p, t in _all() if v == vid]


def attached_vids(pid: int) -> list[tuple[int, int]]:
    """(vid, type) of every VAS whose records name a live ``pid``."""
    return [(v, t) for v, p, t in _all() if p == pid]


# ---------------------------------------------------------------- lazy attach

DETACH = -1  # a request's "type" that asks for a detach


def _pending_dir(pid: int, started: int) -> Path:
    return rootmod.root_path() / "pending" / f"{pid}-{started}"


def request(pid: int, vid: int, access: int) -> None:
    """Ask process ``pid`` to attach ``vid`` at its next vaspace call."""
    started = start_time(pid)
    if started is None:
        raise ProcessLookupError(pid)
    d = _pending_dir(pid, started)
    _request_dir(pid, d)
    link = d / str(vid)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    os.symlink("detach" if access == DETACH else access_type_name(access), link)


def _request_dir(pid: int, d: Path) -> None:
    """Make ``d`` a real directory owned by ``pid``'s user, holding requests for it.

    ``pending/`` is writable by everyone, so what is already at ``d`` may be
    planted: a symlink (root would chown its target) or another user's
    directory (its requests would bypass the check that we may signal
    ``pid``).  Root removes such things; another user cannot, and gets
    EPERM.  The checks go through an O_NOFOLLOW descriptor, never the path.
    """
    owner = _uid_of(pid)
    me = os.geteuid()
    for _ in range(3):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o700)
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (NotADirectoryError, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                continue
            fd = -1
        try:
            st = os.fstat(fd) if fd >= 0 else os.lstat(d)
            if fd >= 0 and st.st_uid in (owner, me):
                if st.st_uid == me:
                    # The target must be able to consume (unlink) requests,
                    # whatever the umask was at mkdir.
                    os.fchmod(fd, 0o700)
                    if me != owner:
                        os.fchown(fd, owner, -1)
                return
        finally:
            if fd >= 0:
                os.close(fd)
        if me != 0:
            raise vas_error(errno.EPERM, f"the lazy-attach request directory {d} for pid {pid} "
                            f"belongs to uid {st.st_uid}, not to the process's user")
        if stat.S_ISDIR(st.st_mode):
            rootmod.remove_tree(d)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(d)
    raise vas_error(errno.EAGAIN, f"cannot make the lazy-attach request directory {d}")


def _uid_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}").st_uid


def _uid_or_none(pid: int) -> int | None:
    try:
        return _uid_of(pid)
    except OSError:
        return None


def take_requests(pid: int) -> list[tuple[int, int]]:
    """Consume this process's pending lazy-attach requests: [(vid, type)]."""
    started = start_time(pid)
    if started is None:
        return []
    d = _pending_dir(pid, started)
    try:
        st = os.lstat(d)
        # Only our own directory holds real requests (a requester of our uid
        # made it, or root made it and gave it to us); anything else there
        # was planted by someone who may not act on us.
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return []
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    out = []
    for n in names:
        with contextlib.suppress(OSError, ValueError, KeyError):
            kind = os.readlink(d / n)
            os.unlink(d / n)
            out.append((int(n), DETACH if kind == "detach" else _TYPES[kind]))
    with contextlib.suppress(OSError):
        os.rmdir(d)
    return sorted(out)


def reap_pending() -> None:
    """Remove request directories of processes that are gone."""
    base = rootmod.root_path() / "pending"
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(base):
            pid, _, started = entry.partition("-")
            if rootmod.is_id(pid) and rootmod.is_id(started) and not _alive(int(pid), int(started)):
                rootmod.remove_tree(base / entry)
