"""The RFC's 16 calls, with its argument order and errno, plus libmvas aliases.

Every failure is ``OSError(errno, message)``, with the errno the RFC's
system call returns and a message that names the object.  The calls are
thin: the logic lives in ``registry`` (objects as files) and ``process``
(attachments and switches).
"""

from __future__ import annotations

import errno
import os

from . import _core, perms
from . import window as winmod
from ._ntuples import Attr, Holder, ProcMap, ProcVas, SegLink
from .errors import access_type_name, invalid, vas_error
from .process import attach as attachmod
from .process import procfs
from .process import switch as switchmod
from .registry import objects, records
from .registry import root as rootmod
from .registry import seg as segreg
from .registry import vas as vasreg

# ------------------------------------------------------------------ VASes


def vas_create(name: str, mode: int) -> int:
    """Create a VAS named ``name``; return its id (> 0).

    Errors: EINVAL (bad name or mode), EEXIST (the name is taken).  The
    caller owns it; ``mode`` is masked with 0o666.
    """
    return vasreg.create(name, mode)


def vas_delete(vid: int) -> None:
    """Delete a VAS, detaching its segments.

    Errors: EINVAL (unknown id), EBUSY (a process has it attached; checked
    first, as in the RFC), EACCES (no write permission), EPERM (not the
    owner: the registry is sticky, like /tmp).
    """
    vid, name = vasreg.lookup(vid)
    what = vasreg.describe(vid, name)
    with rootmod.locked(), vasreg.quiesced(vid, name, "delete"):
        objects.recheck(vasreg.VAS, vid, name)
        attr = objects.getattr_(vasreg.VAS, vid)
        perms.check(attr.user, attr.group, attr.mode, perms.MAY_WRITE, what)
        objects.unpublish(vasreg.VAS, vid, name)


def vas_find(name: str) -> int:
    """The id of the VAS called ``name``.  Errors: EINVAL (bad name), ESRCH (none)."""
    return objects.find(vasreg.VAS, name)


def vas_getattr(vid: int) -> Attr:
    """The VAS's mode, user and group.  Errors: EINVAL."""
    vid, _ = vasreg.lookup(vid)
    return objects.getattr_(vasreg.VAS, vid)


def vas_setattr(vid: int, attr: Attr) -> None:
    """Set the VAS's mode (masked with 0o666), user and group.

    Errors: EINVAL, EACCES (no write permission), EPERM (the OS refuses a
    chmod by a non-owner or a chown by a non-root user).
    """
    vid, name = vasreg.lookup(vid)
    what = vasreg.describe(vid, name)
    new = objects.check_attr(attr, what)
    cur = objects.getattr_(vasreg.VAS, vid)
    perms.check(cur.user, cur.group, cur.mode, perms.MAY_WRITE, what)
    objects.setattr_(vasreg.VAS, vid, new, lambda a: vasreg.apply_dir_mode(vid, a.mode))


def vas_attach(pid: int, vid: int, type: int) -> None:  # noqa: A002 - the RFC's name
    """Attach a VAS to process ``pid`` (0: the caller) with access ``type``.

    Errors: EINVAL (bad pid, id or type), ESRCH (no such process), EPERM
    (the caller may not signal ``pid``), EACCES (no permission for
    ``type``), EBUSY (the sharing rule: one writer, or any number of
    readers).  Attaching an already attached VAS does nothing.  Another
    process attaches it at its next vaspace call (lazy attach).
    """
    pid = attachmod.check_pid(pid)
    if pid in (0, os.getpid()):
        attachmod.attach_self(vid, type)
    else:
        attachmod.request_other(pid, vid, type)


def vas_detach(pid: int, vid: int) -> None:
    """Detach a VAS from process ``pid`` (0: the caller).

    Errors: EINVAL (not attached), ESRCH, EPERM, EBUSY (a thread of the
    process is inside it).
    """
    pid = attachmod.check_pid(pid)
    if pid in (0, os.getpid()):
        attachmod.detach_self(vid)
    else:
        attachmod.request_detach_other(pid, vid)


# vas_switch is one C function: the cached-plan switch with no Python frame,
# which hands over to process.switch.finish when it must plan (see _core.c).
vas_switch = _core.vas_switch


def active_vas() -> int:
    """The calling thread's active VAS (0: the original AS).  Never fails."""
    return switchmod.active()


# ------------------------------------------------------------------ segments


def vas_seg_create(name: str, start: int, end: int, mode: int) -> int:
    """Create a segment for [start, end); return its id (> 0).

    Errors: EINVAL (bad name, unaligned or empty range), EFAULT (outside
    ``window()``), EEXIST (the name is taken).
    """
    return segreg.create(name, start, end, mode)


def vas_seg_delete(sid: int) -> None:
    """Delete a segment and its data.

    Errors: EINVAL, EBUSY (attached to some VAS), EACCES (no write
    permission), EPERM (not the owner).
    """
    sid, name = segreg.lookup(sid)
    what = segreg.describe(sid, name)
    with rootmod.locked():
        objects.recheck(segreg.SEG, sid, name)
        users = [vid for vid in objects.all_ids(vasreg.VAS)
                 if sid in {link.sid for link in vasreg.seg_links(vid)}]
        if users:
            raise vas_error(errno.EBUSY, f"{what} is attached to VAS id(s) {users}")
        attr = objects.getattr_(segreg.SEG, sid)
        perms.check(attr.user, attr.group, attr.mode, perms.MAY_WRITE, what)
        objects.unpublish(segreg.SEG, sid, name)


def vas_seg_find(name: str) -> int:
    """The id of the segment called ``name``.  Errors: EINVAL, ESRCH."""
    return objects.find(segreg.SEG, name)


def vas_seg_attach(vid: int, sid: int, type: int) -> None:  # noqa: A002
    """Attach segment ``sid`` to VAS ``vid`` with access ``type``.

    Errors: EINVAL (bad ids or type), EACCES (no ``type`` permission on the
    segment, or no write permission on the VAS), EBUSY (a process has the
    VAS attached), EFAULT (overlaps a segment already in the VAS).
    Attaching an attached segment again does nothing.
    """
    vid, vname = vasreg.lookup(vid)
    sid, sname = segreg.lookup(sid)
    vwhat, swhat = vasreg.describe(vid, vname), segreg.describe(sid, sname)
    may = perms.may_for_type(type, swhat)
    sattr = objects.getattr_(segreg.SEG, sid)
    perms.check(sattr.user, sattr.group, sattr.mode, may, swhat)
    vattr = objects.getattr_(vasreg.VAS, vid)
    perms.check(vattr.user, vattr.group, vattr.mode, perms.MAY_WRITE, vwhat)
    with rootmod.locked(), vasreg.quiesced(vid, vname, f"attach {swhat} to"):
        objects.recheck(vasreg.VAS, vid, vname)
        objects.recheck(segreg.SEG, sid, sname)
        links = vasreg.seg_links(vid)
        if sid in {link.sid for link in links}:
            return
        lo, hi = segreg.region(sid)
        for link in links:
            o_lo, o_hi = segreg.region(link.sid)
            if lo < o_hi and o_lo < hi:
                oname = objects.name_of(segreg.SEG, link.sid)
                raise vas_error(errno.EFAULT, f"{swhat} [{lo:#x}, {hi:#x}) overlaps segment "
                                f"{oname!r} [{o_lo:#x}, {o_hi:#x}) in {vwhat}")
        try:
            vasreg.link_seg(vid, sid, type)
        except PermissionError:
            raise vas_error(errno.EACCES, f"the OS refuses to change {vwhat}") from None


def vas_seg_detach(vid: int, sid: int) -> None:
    """Detach segment ``sid`` from VAS ``vid``.

    Errors: EINVAL (unknown ids, or not attached), EBUSY (a process has the
    VAS attached), EACCES (the OS refuses: the VAS is not writable by you).
    """
    vid, vname = vasreg.lookup(vid)
    sid, sname = segreg.lookup(sid)
    vwhat, swhat = vasreg.describe(vid, vname), segreg.describe(sid, sname)
    with rootmod.locked(), vasreg.quiesced(vid, vname, f"detach {swhat} from"):
        objects.recheck(vasreg.VAS, vid, vname)
        try:
            removed = vasreg.unlink_seg(vid, sid)
        except PermissionError:
            raise vas_error(errno.EACCES, f"the OS refuses to change {vwhat}") from None
        if not removed:
            raise invalid(f"{swhat} is not attached to {vwhat}")


def vas_seg_getattr(sid: int) -> Attr:
    """The segment's mode, user and group.  Errors: EINVAL."""
    sid, _ = segreg.lookup(sid)
    return objects.getattr_(segreg.SEG, sid)


def vas_seg_setattr(sid: int, attr: Attr) -> None:
    """Set the segment's attributes; the same rules as ``vas_setattr``."""
    sid, name = segreg.lookup(sid)
    what = segreg.describe(sid, name)
    new = objects.check_attr(attr, what)
    cur = objects.getattr_(segreg.SEG, sid)
    perms.check(cur.user, cur.group, cur.mode, perms.MAY_WRITE, what)
    objects.setattr_(segreg.SEG, sid, new)


# ------------------------------------------------------------------ libmvas names

segment_create = vas_seg_create
segment_delete = vas_seg_delete
segment_find = vas_seg_find
segment_attach = vas_seg_attach
segment_detach = vas_seg_detach
segment_getattr = vas_seg_getattr
segment_setattr = vas_seg_setattr


def segment_create_sz(name: str, start: int, size: int, mode: int) -> int:
    """libmvas's ``segment_create_sz``: a segment of ``size`` bytes at ``start``."""
    if not isinstance(start, int) or not isinstance(size, int) or isinstance(size, bool):
        raise invalid(f"segment {name!r}: start and size must be int")
    if size <= 0:
        raise invalid(f"segment {name!r}: size {size} is not positive")
    return vas_seg_create(name, start, start + size, mode)


# ------------------------------------------------------------------ introspection


def window() -> tuple[int, int]:
    """The [start, end) range where segments may live (``VASPACE_WINDOW``)."""
    return winmod.window()


def proc_vas(pid: int) -> list[ProcVas]:
    """``/proc/<pid>/vas``: the process's attachments (0: the caller)."""
    return procfs.proc_vas(pid)


def proc_maps(pid: int, vid: int) -> list[ProcMap]:
    """``/proc/<pid>/vas/<vid>/maps``: the segments of one attachment."""
    return procfs.proc_maps(pid, vid)


def vas_ids() -> list[int]:
    """Ids of every VAS in the registry."""
    return objects.all_ids(vasreg.VAS)


def seg_ids() -> list[int]:
    """Ids of every segment in the registry."""
    return objects.all_ids(segreg.SEG)


def vas_name(vid: int) -> str:
    """The name of a VAS.  Errors: EINVAL."""
    return vasreg.lookup(vid)[1]


def seg_name(sid: int) -> str:
    """The name of a segment.  Errors: EINVAL."""
    return segreg.lookup(sid)[1]


def vas_segments(vid: int) -> list[SegLink]:
    """The segments attached to a VAS, with their access types.  Errors: EINVAL."""
    vid, _ = vasreg.lookup(vid)
    return vasreg.seg_links(vid)


def seg_region(sid: int) -> tuple[int, int]:
    """A segment's [start, end).  Errors: EINVAL."""
    sid, _ = segreg.lookup(sid)
    return segreg.region(sid)


def vas_holders(vid: int) -> list[Holder]:
    """Live processes that have a VAS attached, with their access types."""
    vid, _ = vasreg.lookup(vid)
    return records.holders(vid)


def registry_root() -> str:
    """The registry directory in use (``$VASPACE_ROOT`` or /dev/shm/vaspace)."""
    return str(rootmod.ensure())


__all__ = [
    "access_type_name", "active_vas", "proc_maps", "proc_vas", "registry_root", "seg_ids",
    "seg_name", "seg_region", "segment_attach", "segment_create", "segment_create_sz",
    "segment_delete", "segment_detach", "segment_find", "segment_getattr", "segment_setattr",
    "vas_attach", "vas_create", "vas_delete", "vas_detach", "vas_find", "vas_getattr",
    "vas_holders", "vas_ids", "vas_name", "vas_segments", "vas_seg_attach", "vas_seg_create",
    "vas_seg_delete", "vas_seg_detach", "vas_seg_find", "vas_seg_getattr", "vas_seg_setattr",
    "vas_setattr", "vas_switch", "window",
]
