"""The RFC's 16 calls, with its argument order and errno, plus libmvas aliases.

Every failure is ``OSError(errno, strerror, filename)``, with the errno the
RFC's system call returns, a message that names the object, and the
object's name (or the registry path) as ``filename``.  The calls are
thin: the logic lives in ``registry`` (objects as files) and ``process``
(attachments and switches).
"""

from __future__ import annotations

import os

from . import _core, perms
from . import window as winmod
from ._ntuples import Attr, Holder, ProcMap, ProcVas, SegLink
from .access import access_type_name
from .args import exact_int
from .errors import invalid
from .process import attach as attachmod
from .process import procfs
from .process import switch as switchmod
from .registry import clone, objects, private, records
from .registry import root as rootmod
from .registry import seg as segreg
from .registry import vas as vasreg
from .registry.kind import SEG, VAS

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
    vasreg.delete(vid)


def vas_find(name: str) -> int:
    """The id of the VAS called ``name``.  Errors: EINVAL (bad name), ESRCH (none)."""
    return objects.find_id(VAS, name)


def vas_getattr(vid: int) -> Attr:
    """The VAS's mode, user and group.  Errors: EINVAL."""
    return objects.getattr_(VAS, vid)


def vas_setattr(vid: int, attr: Attr) -> None:
    """Set the VAS's mode (masked with 0o666), user and group.

    Errors: EINVAL, EACCES (no write permission), EPERM (the OS refuses a
    chmod by a non-owner or a chown by a non-root user).
    """
    with objects.pin(VAS, vid) as ref:
        new = objects.check_attr(attr, ref.what)
        ref.require(perms.MAY_WRITE)
        objects.setattr_(ref, new)
        vasreg.apply_dir_mode(ref, new.mode)
        private.apply_attr(ref, new)


def vas_attach(pid: int, vid: int, type: int) -> None:  # noqa: A002 - the RFC's name
    """Attach a VAS to process ``pid`` (0: the caller) with access ``type``.

    Errors: EINVAL (bad pid, id or type), ESRCH (no such process), EPERM
    (the caller may not signal ``pid``), EACCES (no permission for
    ``type``), EBUSY (the sharing rule: one writer, or any number of
    readers).  Attaching an already attached VAS does nothing.  Another
    process attaches it at its next vaspace call (lazy attach).
    """
    if pid.__class__ is int and pid == 0:  # the common case, without a call
        attachmod.attach_self(vid, type)
        return
    pid = attachmod.check_pid(pid)  # an exact int from here on (0 given as a subclass too)
    if pid == 0 or pid == os.getpid():
        attachmod.attach_self(vid, type)
    else:
        attachmod.request_other(pid, vid, type)


def vas_detach(pid: int, vid: int) -> None:
    """Detach a VAS from process ``pid`` (0: the caller).

    Errors: EINVAL (not attached), ESRCH, EPERM, EBUSY (a thread of the
    process is inside it).
    """
    if pid.__class__ is int and pid == 0:
        attachmod.detach_self(vid)
        return
    pid = attachmod.check_pid(pid)  # an exact int from here on (0 given as a subclass too)
    if pid == 0 or pid == os.getpid():
        attachmod.detach_self(vid)
    else:
        attachmod.request_detach_other(pid, vid)


# vas_switch is one C function: the cached-plan switch with no Python frame,
# which hands over to process.switch.finish when it must plan (see core/switch.c).
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
    segreg.delete(sid)


def vas_seg_find(name: str) -> int:
    """The id of the segment called ``name``.  Errors: EINVAL, ESRCH."""
    return objects.find_id(SEG, name)


def vas_seg_attach(vid: int, sid: int, type: int) -> None:  # noqa: A002
    """Attach segment ``sid`` to VAS ``vid`` with access ``type``.

    Errors: EINVAL (bad ids or type), EACCES (no ``type`` permission on the
    segment, or no write permission on the VAS), EBUSY (a process has the
    VAS attached), EFAULT (overlaps a segment already in the VAS).
    Attaching an attached segment again does nothing.
    """
    segreg.attach_to(vid, sid, type)


def vas_seg_detach(vid: int, sid: int) -> None:
    """Detach segment ``sid`` from VAS ``vid``.

    Errors: EINVAL (unknown ids, or not attached), EBUSY (a process has the
    VAS attached), EACCES (the OS refuses: the VAS is not writable by you).
    """
    segreg.detach_from(vid, sid)


def vas_seg_getattr(sid: int) -> Attr:
    """The segment's mode, user and group.  Errors: EINVAL."""
    return objects.getattr_(SEG, sid)


def vas_seg_setattr(sid: int, attr: Attr) -> None:
    """Set the segment's attributes; the same rules as ``vas_setattr``."""
    with objects.pin(SEG, sid) as ref:
        new = objects.check_attr(attr, ref.what)
        ref.require(perms.MAY_WRITE)
        objects.setattr_(ref, new)


# ------------------------------------------------------------------ clones and private memory


def vas_seg_clone(sid: int, name: str) -> int:
    """A new segment ``name`` with the same region, mode and a copy of the data; its id.

    The copy is a reflink where the filesystem has one, else only the
    written extents are copied (holes stay holes).  Errors: EINVAL (bad id
    or name), EEXIST (the name is taken), EACCES (the caller may not read
    the segment), EBUSY (a process has it attached for writing).
    """
    return clone.seg_clone(sid, name)


def vas_clone(vid: int, name: str) -> int:
    """A new VAS ``name`` with the same segments and access types, and a copy of its
    private memory; its id.  Segments stay shared; the mode is kept; the caller owns it.

    Errors: EINVAL, EEXIST, EACCES (the caller may not read the VAS or may
    not attach one of its segments that way), EBUSY (a process has it
    attached for writing, and it has private memory to copy).
    """
    return clone.vas_clone(vid, name)


def vas_mmap(vid: int, addr: int, length: int, prot: int) -> int:
    """Add private memory [addr, addr+length) to a VAS; return its address.

    ``addr`` 0 picks the lowest free range of the window.  The memory
    belongs to the VAS: it is visible exactly when a thread is inside it,
    zero-filled at first, kept across detach and restarts, deleted with the
    VAS; its permissions are the VAS's.  ``prot`` is PROT_READ or
    PROT_READ|PROT_WRITE.  Errors: EINVAL (bad id, alignment or prot),
    EFAULT (outside the window, or overlapping a segment or private range of
    the VAS), EBUSY (a process has the VAS attached), EACCES (no write
    permission on the VAS), ENOMEM (no free range that big).
    """
    return private.mmap_(vid, addr, length, prot)


def vas_munmap(vid: int, addr: int, length: int) -> None:
    """Remove the private memory of a VAS inside [addr, addr+length), whole ranges only.

    Errors: EINVAL (bad id or alignment, no private memory there, or a
    range the span cuts), EBUSY (attached), EACCES.
    """
    private.munmap_(vid, addr, length)


def vas_private(vid: int) -> list[tuple[int, int, int]]:
    """A VAS's private ranges as (start, end, prot).  Errors: EINVAL."""
    return private.listing(vid)


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
    start, size = exact_int(start), exact_int(size)  # type: ignore[assignment]
    if start is None or size is None:
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
    return objects.all_ids(VAS)


def seg_ids() -> list[int]:
    """Ids of every segment in the registry."""
    return objects.all_ids(SEG)


def vas_name(vid: int) -> str:
    """The name of a VAS.  Errors: EINVAL."""
    with objects.pin(VAS, vid) as ref:
        return ref.name


def seg_name(sid: int) -> str:
    """The name of a segment.  Errors: EINVAL."""
    with objects.pin(SEG, sid) as ref:
        return ref.name


def vas_segments(vid: int) -> list[SegLink]:
    """The segments attached to a VAS, with their access types.  Errors: EINVAL."""
    with objects.pin(VAS, vid) as ref:
        return ref.links()


def seg_region(sid: int) -> tuple[int, int]:
    """A segment's [start, end).  Errors: EINVAL, EIO (its region file is damaged)."""
    with objects.pin(SEG, sid) as ref:
        return ref.region()


def seg_name_region(sid: int) -> tuple[str, tuple[int, int]]:
    """A segment's name and [start, end), from one pin (a ``Segment`` handle wants both).

    Errors: EINVAL, EIO (its region file is damaged).
    """
    return segreg.name_region(sid)


def vas_holders(vid: int) -> list[Holder]:
    """Live processes that have a VAS attached, with their access types."""
    with objects.pin(VAS, vid) as ref:
        return records.holders(ref.id)


def registry_root() -> str:
    """The registry directory in use (``$VASPACE_ROOT`` or /dev/shm/vaspace).

    Errors: ENOENT if it does not exist yet (only creating calls make it).
    """
    return str(rootmod.existing())


__all__ = [
    "access_type_name", "active_vas", "proc_maps", "proc_vas", "registry_root", "seg_ids",
    "seg_name", "seg_name_region", "seg_region", "segment_attach", "segment_create",
    "segment_create_sz", "segment_delete", "segment_detach", "segment_find", "segment_getattr",
    "segment_setattr",
    "vas_attach", "vas_clone", "vas_create", "vas_delete", "vas_detach", "vas_find", "vas_getattr",
    "vas_holders", "vas_ids", "vas_mmap", "vas_munmap", "vas_name", "vas_private",
    "vas_segments", "vas_seg_attach", "vas_seg_clone", "vas_seg_create",
    "vas_seg_delete", "vas_seg_detach", "vas_seg_find", "vas_seg_getattr", "vas_seg_setattr",
    "vas_setattr", "vas_switch", "window",
]
