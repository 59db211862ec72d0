"""Attaching and detaching VASes to processes (RFC vas_attach / vas_detach).

Attaching takes the VAS's sharing lock (flock: shared for read-only,
exclusive for writable; EBUSY on conflict), then maps every segment's file
into a parking slot.  Nothing becomes visible at the segments' addresses
until a thread switches in.  The lock lives in this process's open file, so
the kernel drops it when the process dies, by SIGKILL too.

Another process can be asked to attach a VAS (``pid != 0``); it does so at its
next vaspace call (the RFC's lazy attach, moved to the process level), a
cached switch included: the requester sets the target's lazy-attach word
(``publish.wake``), which the switch's C fast path tests.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

from .. import _core, perms
from .. import window as winmod
from .._ntuples import Attr
from ..errors import access_type_name, invalid, vas_error
from ..registry import objects, records
from ..registry import root as rootmod
from ..registry import seg as segreg
from ..registry import vas as vasreg
from . import publish
from .state import Attachment, state

_PROT = {
    # (VAS attach type, segment link type) -> protection
    "ro": _core.PROT_READ,
    "wo": _core.PROT_READ | _core.PROT_WRITE,  # x86 cannot map write-only
    "rw": _core.PROT_READ | _core.PROT_WRITE,
}


def check_pid(pid: object) -> int:
    """pid must be an int >= 0; EINVAL otherwise."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid < 0 or pid > 2**31 - 1:
        raise invalid(f"bad pid {pid!r}")
    return pid


def _signalable(pid: int) -> None:
    """The caller must be allowed to signal pid (same uid, or root)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise vas_error(errno.ESRCH, f"no process with pid {pid}") from None
    except PermissionError:
        raise vas_error(errno.EPERM, f"not allowed to act on pid {pid}") from None


def _prot(vas_type: int, link_type: int) -> int:
    if vas_type == os.O_RDONLY:
        return _PROT["ro"]
    return _PROT[access_type_name(link_type)]


def _open_flags(prot: int) -> int:
    return os.O_RDWR if prot & _core.PROT_WRITE else os.O_RDONLY


def _take_lock(vid: int, name: str, access: int) -> int:
    try:
        fd = vasreg.open_lock(vid, access)
    except PermissionError:
        raise vas_error(errno.EACCES, f"the OS refuses to open {vasreg.describe(vid, name)} "
                        f"for {access_type_name(access)}") from None
    op = fcntl.LOCK_SH if access == os.O_RDONLY else fcntl.LOCK_EX
    try:
        fcntl.flock(fd, op | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holders = ", ".join(f"pid {h.pid} ({access_type_name(h.type)})"
                            for h in records.holders(vid)) or "another process"
        raise vas_error(errno.EBUSY, f"{vasreg.describe(vid, name)} is attached by {holders}; "
                        "the sharing rule allows one writer or many readers") from None
    return fd


def attach_self(vid: object, access: object) -> None:
    """Attach a VAS to the calling process."""
    st = state()
    vid, name = vasreg.lookup(vid)
    may = perms.may_for_type(access, vasreg.describe(vid, name))
    assert isinstance(access, int)
    with st.changing():
        if vid in st.attachments:
            return
        attr: Attr = objects.getattr_(vasreg.VAS, vid)
        perms.check(attr.user, attr.group, attr.mode, may, vasreg.describe(vid, name))
        fd = _take_lock(vid, name, access)
        try:
            # Deletion may have won the race for the lock: re-check liveness.
            if objects.name_of(vasreg.VAS, vid) != name:
                raise invalid(f"{vasreg.describe(vid, name)} was deleted")
            st.space.ensure_reserved()
            att = Attachment(vid=vid, name=name, type=access, lock_fd=fd)
            try:
                _map_segments(st, att)
            except BaseException:
                for m in att.maps:
                    st.space.put(m)
                raise
            st.attachments[vid] = att
            _core.vas_members(vid, [m.token for m in att.maps])
            records.add(vid, os.getpid(), access)
            root = str(rootmod.root_path())
            if st.published != root:
                publish.publish()
                st.published = root  # tried once per root, published or not
        except BaseException:
            if vid not in st.attachments:
                os.close(fd)
            raise


def _check_region(sid: int, name: str, start: int, end: int,
                  taken: list[tuple[int, int, str]]) -> None:
    """Re-check a segment's region before mapping anything there.

    ``region`` is a file its owner can rewrite after the segment was attached
    to someone's VAS; trusting it could make this process map over its own
    memory.  So the range must still lie in the window and must not overlap
    the VAS's other segments.
    """
    lo, hi = winmod.window()
    what = segreg.describe(sid, name)
    if start % winmod.PAGE or end % winmod.PAGE or not lo <= start < end <= hi:
        raise vas_error(errno.EFAULT, f"{what}: region [{start:#x}, {end:#x}) is outside "
                        f"the window [{lo:#x}, {hi:#x}) or unaligned")
    for o_lo, o_hi, o_name in taken:
        if start < o_hi and o_lo < end:
            raise vas_error(errno.EFAULT, f"{what}: region overlaps segment {o_name!r}")
    taken.append((start, end, name))


def _map_segments(st, att: Attachment) -> None:
    taken: list[tuple[int, int, str]] = []
    for link in vasreg.seg_links(att.vid):
        sname = objects.name_of(segreg.SEG, link.sid)
        if sname is None:
            continue
        prot = _prot(att.type, link.type)
        shared = st.space.mappings.get((link.sid, prot))
        if shared is not None:  # mapped (and checked) for another attachment
            _check_region(link.sid, sname, shared.start, shared.end, taken)
            att.maps.append(st.space.get_or_map(link.sid, sname, shared.start, shared.end,
                                                prot, -1))
            continue
        try:
            fd, start, end = segreg.open_mapping(link.sid, _open_flags(prot))
        except PermissionError:
            how = "writing" if prot & _core.PROT_WRITE else "reading"
            raise vas_error(errno.EACCES, f"the OS refuses to open "
                            f"{segreg.describe(link.sid, sname)} for {how}") from None
        try:
            # The region read through the same pinned directory as the file.
            _check_region(link.sid, sname, start, end, taken)
            att.maps.append(st.space.get_or_map(link.sid, sname, start, end, prot, fd))
        finally:
            os.close(fd)


def detach_self(vid: object) -> None:
    """Detach a VAS from the calling process; EBUSY while a thread is inside it."""
    st = state()
    vid = objects.check_id(vasreg.VAS, vid)
    with st.changing():
        att = st.attachments.get(vid)
        if att is None:
            raise invalid(f"VAS id {vid} is not attached to this process")
        inside = [tid for tid, v in _core.thread_vids() if v == vid]
        if inside:
            raise vas_error(errno.EBUSY, f"{vasreg.describe(vid, att.name)}: threads {inside} "
                            "are inside it; switch away first")
        st.space.put_all(att.maps)
        del st.attachments[vid]
        _core.vas_members(vid, None)
        records.remove(vid, os.getpid())
        os.close(att.lock_fd)


def request_other(pid: int, vid: object, access: object) -> None:
    """Ask another process to attach a VAS (lazy attach)."""
    _signalable(pid)
    vid, name = vasreg.lookup(vid)
    what = vasreg.describe(vid, name)
    may = perms.may_for_type(access, what)
    assert isinstance(access, int)
    attr = objects.getattr_(vasreg.VAS, vid)
    perms.check(attr.user, attr.group, attr.mode, may, what)
    # The sharing rule, checked now; the target takes the lock for real.
    fd = _take_lock(vid, name, access)
    os.close(fd)
    try:
        records.reap_pending()  # requests left for processes that died meanwhile
        records.request(pid, vid, access)
    except ProcessLookupError:
        raise vas_error(errno.ESRCH, f"no process with pid {pid}") from None
    publish.wake(pid)  # after the request: the target clears the word, then reads


def request_detach_other(pid: int, vid: object) -> None:
    """Ask another process to detach a VAS at its next vaspace call."""
    _signalable(pid)
    vid, name = vasreg.lookup(vid)
    if vid not in {v for v, _ in records.attached_vids(pid)}:
        raise invalid(f"{vasreg.describe(vid, name)} is not attached to pid {pid}")
    try:
        records.request(pid, vid, records.DETACH)
    except ProcessLookupError:
        raise vas_error(errno.ESRCH, f"no process with pid {pid}") from None
    publish.wake(pid)


def sync() -> None:
    """Carry out lazy attach/detach requests other processes left for us."""
    # Clear the word first: a request left after this sets it again.
    _core.wake_take()
    for vid, access in records.take_requests(os.getpid()):
        # A request that cannot be carried out now (EBUSY, or views that pin
        # the VAS's segments: BufferError) is dropped, as the RFC's lazy
        # attach drops a failed one; it must not fail the caller's own call.
        with contextlib.suppress(OSError, BufferError):
            if access == records.DETACH:
                detach_self(vid)
            else:
                attach_self(vid, access)
