"""Clones: a new segment or VAS made from an existing one (SpaceJMP's ``vas_clone``).

``seg_clone`` makes a segment with the same region and mode and a copy of
the data (a reflink where the filesystem has one, else only the data
extents: filecopy.py).  Data at the same addresses means pointers inside it
stay valid, so a heap in the clone opens as it is.  The copy must be
consistent: while it runs no process may have the source attached for
writing.  That is made true, not just checked: every VAS holding the source
with a writable link gets a shared flock on its lock for the length of the
copy, which conflicts with a writable attachment's exclusive one (EBUSY now
if one exists, EBUSY for a writable attach that comes meanwhile), and the
registry lock keeps new links from appearing.

``vas_clone`` makes a VAS with the same segment links and access types (the
segments are shared, not copied) and copies of its private memory; the mode
is kept, the owner is the caller.  The new VAS is filled before it is
published, so nobody ever sees it half made.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator

from .. import perms
from ..access import BY_NAME, access_type_name
from ..errors import vas_error
from . import filecopy, memfile, objects, records
from . import root as rootmod
from . import seg as segreg
from . import vas as vasreg
from .kind import SEG, VAS, Kind
from .objects import create as create_object
from .objects import pin
from .ref import Ref


def seg_clone(sid: object, name: object) -> int:
    """``vas_seg_clone``: a new segment ``name`` with ``sid``'s region, mode and data.

    EINVAL (bad id or name), EEXIST (the name is taken), EACCES (the source
    is not readable by the caller), EBUSY (a process has the source attached
    for writing).
    """
    with pin(SEG, sid) as src, rootmod.locked(), contextlib.ExitStack() as held:
        src.recheck()
        attr = src.require(perms.MAY_READ)
        _name_free(SEG, name)
        for vid in src.reverse():
            held.enter_context(_no_writer(vid, src))
        try:
            fd, lo, hi = segreg.open_mapping(src, os.O_RDONLY)
        except PermissionError:
            raise src.error(errno.EACCES, "cannot be opened for reading: the OS refuses") from None
        try:
            return segreg.create(name, lo, hi, attr.mode,
                                 lambda dst: filecopy.copy(fd, dst, hi - lo))
        finally:
            os.close(fd)


def _name_free(kind: Kind, name: object) -> None:
    """EINVAL for a bad name, EEXIST for a taken one, before any copying starts.

    Only a fast refusal: the create that publishes the clone decides for good.
    """
    try:
        objects.find(kind, name).close()
    except ProcessLookupError:  # ESRCH: free
        return
    raise vas_error(errno.EEXIST, f"a {kind.label} named {name!r} already exists", str(name))


@contextlib.contextmanager
def _no_writer(vid: int, seg: Ref) -> Iterator[None]:
    """While held, no process has VAS ``vid`` attached for writing if it links ``seg``
    writable; EBUSY if one has it now.

    A shared flock on the VAS's lock conflicts with a writable attachment's
    exclusive flock.  A caller who may open the lock neither way cannot take
    it; then the attachment records decide (they name every live holder).
    """
    writable, fd = _writable_link(vid, seg)
    if not writable:
        yield
        return
    try:
        if fd is None:  # the lock cannot be opened by the caller: the records decide
            writers = [h for h in records.holders(vid) if h.type != os.O_RDONLY]
            if writers:
                raise _busy(seg, vid, records.holders_text(writers))
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _busy(seg, vid, records.holders_text(records.holders(vid))) from None
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _writable_link(vid: int, seg: Ref) -> tuple[bool, int | None]:
    """Whether VAS ``vid`` links ``seg`` writable, and if so its lock fd (None: the
    caller may not open it).  (False, None) for a stale reverse hint, a read-only
    link or a VAS gone."""
    try:
        with pin(VAS, vid) as vas:
            row = BY_NAME.get(os.readlink(f"seg.{seg.id}", dir_fd=vas.dirfd))
            if row is None or row.flag == os.O_RDONLY:
                return False, None
            return True, _open_lock(vas)
    except OSError:
        return False, None


def _open_lock(vas: Ref) -> int | None:
    for flags in (os.O_RDONLY, os.O_WRONLY):
        with contextlib.suppress(PermissionError):
            return vasreg.open_lock(vas, flags)
    return None


def _busy(seg: Ref, vid: int, who: str) -> OSError:
    return seg.error(errno.EBUSY, f"is attached for writing (VAS id {vid}, by {who}); "
                     "a clone needs a consistent copy: detach the writers first")


def vas_clone(vid: object, name: object) -> int:
    """``vas_clone``: a new VAS ``name`` with ``vid``'s links, access and private memory.

    EINVAL (bad id or name), EEXIST (the name is taken), EACCES (the caller
    may not read the VAS, or may not attach one of its segments with the
    access the VAS gives it), EBUSY (a process has the VAS attached for
    writing, so its private memory would not copy consistently).
    """
    with pin(VAS, vid) as src, rootmod.locked(), contextlib.ExitStack() as held:
        src.recheck()
        attr = src.require(perms.MAY_READ)
        _name_free(VAS, name)
        segs: list[tuple[Ref, int]] = []
        for link in src.links():
            try:
                seg = held.enter_context(pin(SEG, link.sid))
            except OSError:
                continue  # deleted meanwhile: the VAS no longer holds it
            seg.require(perms.may_for_type(link.type, seg))
            segs.append((seg, link.type))
        private = memfile.ranges(src)
        if private:
            held.enter_context(_shared(src))
        sources = [(rng, held.enter_context(_opened(src, rng))) for rng in private]

        def populate(dfd: int, new: int) -> None:
            vasreg.write_lock_file(dfd, attr.mode)
            for seg, access in segs:
                # The reverse hint first, as link_seg does: it must cover the link.
                vasreg.add_reverse(seg, new, access)
                os.symlink(access_type_name(access), f"seg.{seg.id}", dir_fd=dfd)
            for rng, fd in sources:
                out = memfile.create_file(dfd, rng)
                try:
                    filecopy.copy(fd, out, rng.end - rng.start)
                finally:
                    memfile.finish_file(out, attr.mode)

        return create_object(VAS, name, vasreg.dir_mode(attr.mode), populate)


@contextlib.contextmanager
def _shared(vas: Ref) -> Iterator[None]:
    """A shared flock on the VAS for the copy of its private memory: EBUSY while a
    writer has it attached (the same sharing rule as ``vas_attach``)."""
    fd = _open_lock(vas)
    if fd is None:
        raise vas.error(errno.EACCES, "cannot be read by the caller")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise vas.error(errno.EBUSY, "is attached for writing by "
                            f"{records.holders_text(records.holders(vas.id))}; a clone needs "
                            "a consistent copy of its private memory") from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _opened(vas: Ref, rng: memfile.Range) -> Iterator[int]:
    try:
        fd = memfile.open_range(vas, rng, os.O_RDONLY)
    except PermissionError:
        raise vas.error(errno.EACCES, f"private memory {rng.file} cannot be read: "
                        "the OS refuses") from None
    try:
        yield fd
    finally:
        os.close(fd)


