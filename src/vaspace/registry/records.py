"""Records of which processes have which VAS attached, and lazy-attach requests.

The sharing rule itself is enforced by flock (see vas.py); these records only
serve introspection (``proc_vas``, ``vaspace ps``) and error messages.  Each
names a pid and that process's start time, so a record left by a dead
process (or a recycled pid) is recognised as stale, ignored and reaped.

``procs/`` and ``pending/`` are writable by everyone: entries are read with
``readlink`` and ``lstat`` (never opened), and request directories are
worked on through a pinned, checked descriptor (fs.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from .. import _core
from .._ntuples import Holder
from ..access import BY_FLAG, BY_NAME, access_type_name
from ..errors import vas_error
from . import fs
from . import root as rootmod


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks (field 22 of /proc/<pid>/stat), or None.

    One C call makes the open, read and close and parses the field: a fresh
    interpreter's first ``int(bytes)``, ``rindex`` and ``split`` cost more than
    the three system calls, and every liveness check goes through here.
    """
    return _core.start_time(pid)


_mine: list[int] = []  # [start time of this process], computed once (reset in a forked child)


def my_start_time(pid: int | None = None) -> int:
    """This process's start time: read once per process, not on every call.

    ``pid``: this process's pid, when the caller holds it already (a
    ``getpid`` less; its start time cannot change while it runs).
    """
    if not _mine:
        started = start_time(os.getpid() if pid is None else pid)
        assert started is not None  # we are alive
        _mine.append(started)
    return _mine[0]


os.register_at_fork(after_in_child=_mine.clear)


def _alive(pid: int, started: int) -> bool:
    if pid == os.getpid():
        return started == my_start_time(pid)
    return start_time(pid) == started


def _procs() -> str:
    return f"{rootmod.root_str()}/procs"


def add(vid: int, pid: int, access: int, root: str | None = None) -> None:
    """Record that ``pid`` (this process) has ``vid`` attached, replacing a stale record.

    A record another user planted under our name cannot be removed (the
    directory is sticky); it is ignored by readers (see ``_read``), and the
    attachment itself, which the flock makes, does not depend on the record.
    ``root``: the registry root the caller already holds (saves looking it up).
    """
    path = f"{root}/procs/{vid}.{pid}" if root else f"{_procs()}/{vid}.{pid}"
    started = my_start_time(pid)  # pid is this process's (its only caller is attach)
    row = BY_FLAG.get(access)  # access_type_name, inline
    target = f"{started}:{row.name if row else '?'}"
    try:
        os.symlink(target, path)
    except FileExistsError:  # a stale record (or a planted one, which stays)
        with contextlib.suppress(FileNotFoundError, PermissionError):
            os.unlink(path)
        with contextlib.suppress(FileExistsError):
            os.symlink(target, path)


def remove(vid: int, pid: int) -> None:
    """Remove ``pid``'s record of ``vid`` (gone already, or planted by another user: left)."""
    try:  # not contextlib.suppress: every detach runs this, and that costs 3 calls
        os.unlink(f"{rootmod.root_str()}/procs/{vid}.{pid}")
    except (FileNotFoundError, PermissionError):
        pass


def _read(want_vid: int | None = None, want_pid: int | None = None) -> list[tuple[int, int, int]]:
    """Live (vid, pid, type) records, optionally of one VAS or one pid; stale ones are reaped."""
    base = _procs()
    try:
        entries = os.listdir(base)
    except FileNotFoundError:
        return []
    uids: dict[int, int | None] = {}
    out = []
    for entry in entries:
        vid_text, _, pid_text = entry.partition(".")
        if not (rootmod.is_id(vid_text) and rootmod.is_id(pid_text)):
            continue
        vid, pid = int(vid_text), int(pid_text)
        if (want_vid is not None and vid != want_vid) or (want_pid is not None and pid != want_pid):
            continue
        try:
            started, kind = os.readlink(f"{base}/{entry}").split(":")
            owner = os.lstat(f"{base}/{entry}").st_uid
        except (OSError, ValueError):
            continue
        if not (rootmod.is_id(started) and _alive(pid, int(started))):
            remove(vid, pid)
            continue
        if pid not in uids:
            uids[pid] = _uid_or_none(pid)
        if owner not in (0, uids[pid]):
            continue  # planted by another user: not the process's own record
        row = BY_NAME.get(kind)
        out.append((vid, pid, row.flag if row else os.O_RDONLY))
    return sorted(out)


def holders(vid: int) -> list[Holder]:
    """Live processes that have the VAS attached."""
    return [Holder(pid=p, type=t) for _, p, t in _read(want_vid=vid)]


def all_holders() -> dict[int, list[Holder]]:
    """{vid: holders} for every VAS, from one pass over the records (for listings)."""
    out: dict[int, list[Holder]] = {}
    for v, p, t in _read():
        out.setdefault(v, []).append(Holder(pid=p, type=t))
    return out


def holders_text(holders_: list[Holder], none: str = "another process") -> str:
    """The one way messages and listings show holders: ``pid 12 (rw), pid 13 (ro)``.

    ``none`` is what an empty list reads as: an EBUSY message names "another
    process" (the flock says someone holds it, the records may not say who);
    a listing prints "-".
    """
    if not holders_:
        return none
    return ", ".join(f"pid {h.pid} ({access_type_name(h.type)})" for h in holders_)


def attached_vids(pid: int) -> list[tuple[int, int]]:
    """(vid, type) of every VAS whose records name a live ``pid``."""
    return [(v, t) for v, _, t in _read(want_pid=pid)]


# ---------------------------------------------------------------- lazy attach

DETACH = -1  # a request's "type" that asks for a detach


def _pending_name(pid: int, started: int) -> str:
    return f"{pid}-{started}"


def _pending_dir(pid: int, started: int) -> str:
    return f"{rootmod.root_str()}/pending/{_pending_name(pid, started)}"


def request(pid: int, vid: int, access: int) -> None:
    """Ask process ``pid`` to attach ``vid`` at its next vaspace call."""
    started = start_time(pid)
    if started is None:
        raise ProcessLookupError(pid)
    fd = _request_dir(pid, started)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(vid), dir_fd=fd)
        os.symlink("detach" if access == DETACH else access_type_name(access), str(vid),
                   dir_fd=fd)
    finally:
        os.close(fd)


def _request_dir(pid: int, started: int) -> int:
    """A pinned descriptor of the real directory holding requests for ``pid``.

    ``pending/`` is writable by everyone, so what is already there may be
    planted: a symlink (root would chown its target) or another user's
    directory (its requests would bypass the check that we may signal
    ``pid``).  Root removes such things; another user cannot, and gets
    EPERM.  Everything goes through O_NOFOLLOW descriptors, never the path.
    """
    owner = _uid_of(pid)
    me = os.geteuid()
    name = _pending_name(pid, started)
    with fs.pinned_dir(f"{rootmod.existing()}/pending") as base:
        for _ in range(3):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=base)
            st = fs.lstat_at(name, base)
            if st is None:
                continue
            fd = fs.open_checked_dir(name, base, st.st_dev, (owner, me))
            if fd is not None:
                if os.fstat(fd).st_uid == me:
                    # The target must be able to consume (unlink) requests,
                    # whatever the umask was at mkdir.
                    os.fchmod(fd, 0o700)
                    if me != owner:
                        os.fchown(fd, owner, -1)
                return fd
            if me != 0:
                raise vas_error(errno.EPERM, f"the lazy-attach request directory pending/{name} "
                                f"for pid {pid} belongs to uid {st.st_uid}, not to the process's "
                                "user", name)
            # Root: remove what was planted (a link is unlinked, never followed).
            if stat.S_ISDIR(st.st_mode):
                fs.remove_dir(name, base)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=base)
    raise vas_error(errno.EAGAIN, f"cannot make the lazy-attach request directory for pid {pid}",
                    name)


def _uid_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}").st_uid


def _uid_or_none(pid: int) -> int | None:
    try:
        return _uid_of(pid)
    except OSError:
        return None


def take_requests(pid: int) -> list[tuple[int, int]]:
    """Consume this process's pending lazy-attach requests: [(vid, type)].

    Only our own directory holds real requests (a requester of our uid made
    it, or root made it and gave it to us); anything else there was planted
    by someone who may not act on us.
    """
    root = rootmod.root_str()
    name = _pending_name(pid, my_start_time(pid))  # pid is this process's (its one caller: sync)
    # The usual answer, in one system call: no request directory, nothing to take.
    # Only a hint: what is there is opened and checked below, through ``pending``.
    try:
        os.lstat(f"{root}/pending/{name}")
    except OSError:
        return []
    try:
        base = fs.open_dir(f"{root}/pending")
    except OSError:
        return []
    try:
        fd = fs.open_checked_dir(name, base, os.fstat(base).st_dev, (os.geteuid(),))
        if fd is None:
            return []
        out = []
        try:
            for n in os.listdir(fd):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    kind = os.readlink(n, dir_fd=fd)
                    os.unlink(n, dir_fd=fd)
                    out.append((int(n), DETACH if kind == "detach" else BY_NAME[kind].flag))
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.rmdir(name, dir_fd=base)
        return sorted(out)
    finally:
        os.close(base)


def stale_pending(limit: int | None = None) -> list[str]:
    """Names of request directories in ``pending/`` whose process is gone."""
    try:
        entries = os.listdir(f"{rootmod.root_str()}/pending")
    except FileNotFoundError:
        return []
    out = []
    for entry in entries if limit is None else entries[:limit]:
        pid, _, started = entry.partition("-")
        if rootmod.is_id(pid) and rootmod.is_id(started) and not _alive(int(pid), int(started)):
            out.append(entry)
    return out


def reap_pending(limit: int | None = 64) -> list[str]:
    """Remove request directories of processes that are gone (at most ``limit`` looked at).

    Only real directories are removed, through a pinned descriptor and
    without recursion (fs.remove_dir); a symlink planted under such a name
    is left where it is, and what it points at is never touched.
    """
    try:
        base = fs.open_dir(f"{rootmod.root_str()}/pending")
    except OSError:
        return []
    gone = []
    try:
        for entry in stale_pending(limit):
            if fs.remove_dir(entry, base):
                gone.append(entry)
    finally:
        os.close(base)
    return gone


# ---------------------------------------------------------------- thread slot files


def _number(text: str) -> int | None:
    """An ASCII decimal number, or None (``"²".isdigit()`` is True)."""
    return int(text) if text.isascii() and text.isdigit() else None


def stale_slot_files(limit: int | None = None) -> list[str]:
    """Names of ``procs/<pid>-<start>.threads`` files whose process is gone."""
    try:
        entries = os.listdir(_procs())
    except FileNotFoundError:
        return []
    out = []
    for entry in entries if limit is None else entries[:limit]:
        stem, _, ext = entry.partition(".")
        pid_text, _, started_text = stem.partition("-")
        pid, started = _number(pid_text), _number(started_text)
        if ext == "threads" and pid is not None and started is not None \
                and not _alive(pid, started):
            out.append(entry)
    return out


def reap_slot_files(limit: int | None = None) -> list[str]:
    """Remove the slot files of processes that are gone (``unlink`` never follows a link)."""
    gone = []
    for entry in stale_slot_files(limit):
        with contextlib.suppress(OSError):
            os.unlink(f"{_procs()}/{entry}")
            gone.append(entry)
    return gone
