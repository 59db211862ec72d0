"""Segments in the registry: a directory with ``name``, ``index``, ``region``, ``data``, ``vases/``.

``data`` is the backing file, exactly ``end - start`` bytes and sparse until
touched.  Its owner, group and mode are the segment's attributes, so the
kernel itself refuses to open it for a user the mode excludes.  ``vases/``
is the reverse index: one entry per VAS that may hold the segment, so a
delete looks at those VASes only, not at every VAS in the registry.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterable

from .. import _core, names, perms
from .. import window as winmod
from ..args import exact_int
from ..errors import invalid, vas_error
from . import fs, memfile
from . import root as rootmod
from . import vas as vasreg
from .kind import MAX_ID, SEG, VAS
from .kind import describe as describe_obj
from .objects import Ref, pin
from .objects import create as create_object
from .ref import REVERSE


def describe(sid: int, name: str) -> str:
    return describe_obj(SEG, sid, name)


def check_region(name: object, start: object, end: object) -> tuple[int, int]:
    """Check a segment's [start, end): EINVAL if unaligned or empty, EFAULT if outside window()."""
    given = start, end
    start, end = exact_int(start), exact_int(end)  # by value: checked as it is written
    for label, value, raw in (("start", start, given[0]), ("end", end, given[1])):
        if value is None:
            raise invalid(f"segment {name!r}: {label} must be int, not {type(raw).__name__}",
                          str(name))
    assert start is not None and end is not None
    if start % winmod.PAGE or end % winmod.PAGE:
        raise invalid(f"segment {name!r}: [{start:#x}, {end:#x}) is not page aligned", str(name))
    if end <= start:
        raise invalid(f"segment {name!r}: end {end:#x} is not above start {start:#x}", str(name))
    lo, hi = winmod.window()
    if start < lo or end > hi:
        raise vas_error(
            errno.EFAULT,
            f"segment {name!r}: [{start:#x}, {end:#x}) is outside the window [{lo:#x}, {hi:#x})",
            str(name),
        )
    return start, end


def first_overlap(lo: int, hi: int,
                  others: Iterable[tuple[int, int, str]]) -> tuple[int, int, str] | None:
    """The first of ``others`` (start, end, name) that overlaps [lo, hi), or None.

    The one overlap check: attaching a segment to a VAS and mapping a VAS's
    segments both use it.
    """
    return next(((o_lo, o_hi, o_name) for o_lo, o_hi, o_name in others
                 if lo < o_hi and o_lo < hi), None)


def create(name: object, start: object, end: object, mode: object,
           fill: Callable[[int], None] | None = None,
           before_publish: Callable[[int, int], None] | None = None) -> int:
    """Create a segment; its data file is sized, owned by the caller, mode & 0o666.

    ``fill``, if given, gets the new data file's descriptor (read-write)
    before the segment is published: a clone writes its copy (clone.py),
    shared memory keeps a duplicate to map.  ``before_publish``, if given,
    gets (directory descriptor, sid) once the files are made, before the
    segment is published: shared memory records its creator there, so no
    published block is ever without that record.
    """
    given, mode = mode, exact_int(mode)  # by value: a subclass could lie in its `&`
    if mode is None:
        raise invalid(f"segment {name!r}: mode must be int, not {type(given).__name__}",
                      str(name))
    lo, hi = check_region(name, start, end)

    def populate(dfd: int, _sid: int) -> None:
        fs.write_new("region", f"{lo:x}-{hi:x}\n", 0o644, dfd)
        fd = os.open("data", os.O_CREAT | os.O_EXCL | os.O_RDWR | fs.FILE_FLAGS, 0o600,
                     dir_fd=dfd)
        try:
            os.ftruncate(fd, hi - lo)
            if fill is not None:
                fill(fd)
            os.fchmod(fd, mode & 0o666)
        finally:
            os.close(fd)
        _make_reverse(dfd)
        if before_publish is not None:
            before_publish(dfd, _sid)

    return create_object(SEG, name, 0o755, populate)


def open_mapping(ref: Ref, access: int) -> tuple[int, int, int]:
    """Open the backing file for mapping: (fd, start, end); the kernel checks its mode.

    File and region come from the same pinned directory, so the caller maps
    exactly the file whose region it checks.  ``Ref.open`` refuses a link, a
    FIFO or a device without blocking; the file must then be of the
    region's size, with no other hard link (a hard link to someone's file
    planted as ``data``, possible where fs.protected_hardlinks=0, would map
    that file).
    """
    lo, hi = ref.region()
    fd, st = ref.open_stat("data", access)  # a regular file, or refused
    why = ("has the wrong size" if st.st_size != hi - lo
           else f"has {st.st_nlink} links" if st.st_nlink != 1 else None)
    if why is not None:
        os.close(fd)
        raise ref.damaged(f"its backing file {why}")
    return fd, lo, hi


def pin_open_mapping(sid: int, root: str, access: int) -> tuple[Ref, int, int, int] | None:
    """``pin(SEG, sid, root=root)`` + ``open_mapping``: (ref, fd, start, end); None if not live.

    The attach's segment step: one ``_core.open_segment`` makes the pin's
    three system calls, the region's open, fstat, read and close, and the
    data file's open and fstat, instead of nine calls from Python and their
    wrappers (issue 11 §3, a warm attach in ≤ 50 µs).  The checks are the
    same and are made here: the name link points back at ``sid``, the region
    parses, the data file has the region's size and one link.  Anything off
    goes the Python way (``pin`` + ``open_mapping``), which reads again and
    raises the exact error: EIO naming what is damaged, EINVAL if deleted
    meanwhile, EACCES if the OS refuses to open the data file for
    ``access``.  The caller owns ``fd`` and the ``Ref``.
    """
    path = f"{root}/seg/{sid}"
    try:
        dfd, index, target, region, fd, size, nlink, _ = _core.open_segment(
            path, f"{root}/names/seg/", access)
    except OSError as exc:
        if exc.filename == path and exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise  # as pin: only "no such directory" means "not live"
        if exc.filename not in ("region", "data"):
            return None  # no such directory, or not a live object
        return _pin_open_mapping_slowly(sid, root, access)
    m = _REGION.fullmatch(region)
    lo, hi = (int(m[1], 16), int(m[2], 16)) if m is not None else (0, 0)
    if target != str(sid) or lo >= hi or size != hi - lo or nlink != 1:
        os.close(fd)
        os.close(dfd)
        if target != str(sid):
            return None
        return _pin_open_mapping_slowly(sid, root, access)
    return Ref(SEG, sid, index, dfd, root), fd, lo, hi


def name_region(sid: object) -> tuple[str, tuple[int, int]]:
    """A segment's name and [start, end) (a ``Segment`` handle's facts): EINVAL, EIO.

    ``pin`` + ``Ref.name`` + ``Ref.region`` with the same checks, the system
    calls made by one ``_core.open_segment`` (the pin's three, the region's
    four, then the close): a fresh process's ``Segment(sid)`` runs far less
    Python for the first time.  Anything off (a name stored by hash, a
    damaged region, an object that is not live) goes the ``pin`` way, which
    gives the exact answer or error.
    """
    if sid.__class__ is int and 0 < sid <= MAX_ID:  # type: ignore[operator]
        root = rootmod.existing()
        try:
            dfd, index, target, region, _, _, _, _ = _core.open_segment(
                f"{root}/seg/{sid}", f"{root}/names/seg/", -1)
        except OSError:
            pass
        else:
            os.close(dfd)
            m = _REGION.fullmatch(region)
            name = names.decode(index) if target == str(sid) and m is not None else None
            if name is not None and m is not None:
                lo, hi = int(m[1], 16), int(m[2], 16)
                if lo < hi:
                    return name, (lo, hi)
    with pin(SEG, sid) as ref:
        return ref.name, ref.region()


# ``ref._REGION`` for bytes: the region as read, before any decoding.
_REGION = re.compile(rb"([0-9a-f]{1,16})-([0-9a-f]{1,16})\n?")


def _pin_open_mapping_slowly(sid: int, root: str, access: int) -> tuple[Ref, int, int, int] | None:
    try:
        ref = pin(SEG, sid, root=root)
    except OSError:
        return None
    try:
        fd, lo, hi = open_mapping(ref, access)
    except PermissionError:
        ref.close()
        how = "reading" if access == os.O_RDONLY else "writing"
        raise ref.error(errno.EACCES, f"cannot be opened for {how}: the OS refuses") from None
    except BaseException:
        ref.close()
        raise
    return ref, fd, lo, hi


def delete(sid: object) -> None:
    """Delete a segment and its data: EINVAL, EBUSY (attached to some VAS), EACCES, EPERM.

    Under the registry lock (which every attach and detach of segments also
    takes), only the VASes named by the segment's reverse index are looked
    at, each checked against its own ``seg.<sid>`` link: O(VASes holding it).
    """
    with pin(SEG, sid) as ref:
        delete_pinned(ref)


def delete_pinned(ref: Ref) -> None:
    """``delete`` of a segment the caller has pinned already (found by name, say)."""
    with rootmod.locked():
        ref.recheck()
        # Nothing changes before the commit point (unpublish): a delete that
        # is refused, or killed, leaves the segment whole.  (Removing an
        # empty reverse index with rmdir first, as proof that no VAS holds
        # the segment, saved a listing but left a segment without its index,
        # which every attach then reports as damaged, when the deleter was
        # killed before the unpublish: the fault-injection run found it.)
        users = _users(ref)
        if users:
            raise ref.error(errno.EBUSY, f"is attached to {', '.join(users)}")
        ref.require(perms.MAY_WRITE)
        ref.unpublish()


def _make_reverse(dfd: int) -> None:
    """The segment's reverse index: anyone who may attach it records that here (sticky)."""
    os.mkdir(REVERSE, dir_fd=dfd)
    os.chmod(REVERSE, 0o1777, dir_fd=dfd)


def _users(ref: Ref) -> list[str]:
    """The VASes that hold the segment (its reverse index, each entry checked); stale hints go."""
    users = []
    for vid in ref.reverse():
        try:
            with pin(VAS, vid) as vref:
                if vref.has_link(ref.id):
                    users.append(vref.what)
                    continue
        except OSError:
            pass
        vasreg.drop_reverse(ref.id, vid)  # a stale hint
    return users


def attach_to(vid: object, sid: object, access: object) -> None:
    """Attach segment ``sid`` to VAS ``vid`` (the RFC's ``vas_seg_attach``; see api.py)."""
    with pin(VAS, vid) as vref, pin(SEG, sid) as sref:
        sref.require(perms.may_for_type(access, sref))
        assert isinstance(access, int)
        vref.require(perms.MAY_WRITE)
        with rootmod.locked(), vasreg.quiesced(vref, f"attach {sref.what} to"):
            vref.recheck()
            sref.recheck()
            links = vref.links()
            if sref.id in {link.sid for link in links}:
                return
            lo, hi = sref.region()
            others = [*regions(link.sid for link in links),
                      *((r.start, r.end, memfile.NAME) for r in memfile.ranges(vref))]
            hit = first_overlap(lo, hi, others)
            if hit is not None:
                o_lo, o_hi, o_name = hit
                what = "private memory" if o_name == memfile.NAME else f"segment {o_name!r}"
                raise sref.error(errno.EFAULT, f"[{lo:#x}, {hi:#x}) overlaps {what} "
                                 f"[{o_lo:#x}, {o_hi:#x}) in {vref.what}")
            vasreg.link_seg(vref, sref, access)


def regions(sids: Iterable[int]) -> Iterable[tuple[int, int, str]]:
    """(start, end, name) of live segments; gone or damaged ones hold no range."""
    for sid in sids:
        try:
            with pin(SEG, sid) as ref:
                lo, hi = ref.region()
                yield lo, hi, ref.name
        except OSError:
            continue


def detach_from(vid: object, sid: object) -> None:
    """Detach segment ``sid`` from VAS ``vid`` (the RFC's ``vas_seg_detach``)."""
    with pin(VAS, vid) as vref, pin(SEG, sid) as sref:
        with rootmod.locked(), vasreg.quiesced(vref, f"detach {sref.what} from"):
            vref.recheck()
            if not vasreg.unlink_seg(vref, sref.id):
                raise sref.error(errno.EINVAL, f"is not attached to {vref.what}")
