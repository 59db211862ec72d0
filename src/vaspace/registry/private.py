"""VAS-private memory: ``vas_mmap`` / ``vas_munmap``, ranges that belong to one VAS.

The RFC lets memory mapped while a thread is inside a VAS become part of
that VAS: it stays with the VAS after detach and every later attacher sees
it.  Here that is explicit: ``vas_mmap`` adds a range backed by a file in
the VAS's registry directory (memfile.py), whose mode is the VAS's, so the
kernel applies the VAS's permissions to it.  A process maps it like a
segment attached to that VAS alone (process/attach.py); it goes with the
VAS's directory when the VAS is deleted, and survives detach and restarts.
Changing it follows ``vas_seg_attach``'s rule: not while the VAS is attached.
"""

from __future__ import annotations

import contextlib
import errno
import os

from .. import perms
from .. import window as winmod
from .._ntuples import Attr
from ..args import exact_int
from . import memfile, objects
from . import root as rootmod
from . import seg as segreg
from . import vas as vasreg
from .kind import VAS
from .objects import pin
from .ref import Ref


def _check_args(ref: Ref, addr: object, length: object) -> tuple[int, int]:
    given = addr, length
    addr, length = exact_int(addr), exact_int(length)  # by value: checked as it is used
    for label, value, raw in (("addr", addr, given[0]), ("length", length, given[1])):
        if value is None:
            raise ref.error(errno.EINVAL, f"private memory: {label} must be int, "
                            f"not {type(raw).__name__}")
    assert addr is not None and length is not None
    if length <= 0 or length % winmod.PAGE or addr < 0 or addr % winmod.PAGE:
        raise ref.error(errno.EINVAL, f"private memory: addr {addr:#x} and length {length:#x} "
                        "must be page aligned, length > 0")
    return addr, length


def _taken(ref: Ref) -> list[tuple[int, int, str]]:
    """(start, end, name) of everything in the VAS: its segments and private ranges."""
    out = list(segreg.regions(link.sid for link in ref.links()))
    out.extend((r.start, r.end, memfile.NAME) for r in memfile.ranges(ref))
    return sorted(out)


def _free_range(length: int, taken: list[tuple[int, int, str]]) -> int | None:
    """The lowest page-aligned start of ``length`` free bytes in the VAS part of the window."""
    lo, hi = winmod.vas_range()
    cand = lo
    for t_lo, t_hi, _ in taken:
        if cand + length <= t_lo:
            break
        cand = max(cand, t_hi)
    return cand if cand + length <= hi else None


def mmap_(vid: object, addr: object, length: object, prot: object) -> int:
    """``vas_mmap``: make [addr, addr+length) private memory of VAS ``vid``; its address.

    EINVAL (bad id, alignment, prot), EACCES (no write permission on the
    VAS), EBUSY (a process has the VAS attached), EFAULT (outside the
    window, or overlapping a segment or another private range), ENOMEM
    (addr 0 and no free range is big enough).
    """
    with pin(VAS, vid) as ref:
        start, length = _check_args(ref, addr, length)
        if type(prot) is not int or prot not in memfile.PROTS:
            raise ref.error(errno.EINVAL, f"private memory: prot {prot!r} must be PROT_READ "
                            "or PROT_READ|PROT_WRITE")
        attr = ref.require(perms.MAY_WRITE)
        with rootmod.locked(), vasreg.quiesced(ref, "map private memory in"):
            ref.recheck()
            taken = _taken(ref)
            if start == 0:
                found = _free_range(length, taken)
                if found is None:
                    raise ref.error(errno.ENOMEM, f"private memory: no free {length:#x} bytes "
                                    "in the window")
                start = found
            end = start + length
            _check_place(ref, start, end, taken)
            rng = memfile.Range(start, end, prot, memfile.filename(start, end, prot))
            try:
                memfile.finish_file(memfile.create_file(ref.dirfd, rng), attr.mode)
            except PermissionError:
                raise ref.error(errno.EACCES, "private memory: the OS refuses to change "
                                "its directory") from None
            except FileExistsError:
                raise ref.error(errno.EFAULT, f"private memory: [{start:#x}, {end:#x}) "
                                "is already mapped") from None
        return start


def _check_place(ref: Ref, start: int, end: int, taken: list[tuple[int, int, str]]) -> None:
    lo, hi = winmod.vas_range()
    if start < lo or end > hi:
        raise ref.error(errno.EFAULT, f"private memory: [{start:#x}, {end:#x}) is outside "
                        f"the window [{lo:#x}, {hi:#x})")
    hit = segreg.first_overlap(start, end, taken)
    if hit is not None:
        what = "another private range" if hit[2] == memfile.NAME else f"segment {hit[2]!r}"
        raise ref.error(errno.EFAULT, f"private memory: [{start:#x}, {end:#x}) overlaps "
                        f"{what} [{hit[0]:#x}, {hit[1]:#x})")


def munmap_(vid: object, addr: object, length: object) -> None:
    """``vas_munmap``: remove the private ranges of VAS ``vid`` inside [addr, addr+length).

    A range is removed whole: one that [addr, addr+length) cuts gives
    EINVAL, and so does a span that holds no private range.  EACCES, EBUSY
    as for ``vas_mmap``.
    """
    with pin(VAS, vid) as ref:
        start, length = _check_args(ref, addr, length)
        end = start + length
        ref.require(perms.MAY_WRITE)
        with rootmod.locked(), vasreg.quiesced(ref, "unmap private memory in"):
            ref.recheck()
            hits = [r for r in memfile.ranges(ref) if r.start < end and start < r.end]
            cut = [r for r in hits if r.start < start or r.end > end]
            if cut or not hits:
                why = (f"cuts the private range [{cut[0].start:#x}, {cut[0].end:#x}) "
                       "(ranges are removed whole)" if cut else "holds no private memory")
                raise ref.error(errno.EINVAL, f"private memory: [{start:#x}, {end:#x}) {why}")
            for r in hits:
                try:
                    os.unlink(r.file, dir_fd=ref.dirfd)
                except FileNotFoundError:
                    pass
                except PermissionError:
                    raise ref.error(errno.EACCES, f"private memory: the OS refuses to remove "
                                    f"{r.file}") from None


def listing(vid: object) -> list[tuple[int, int, int]]:
    """(start, end, prot) of a VAS's private ranges.  Errors: EINVAL."""
    with pin(VAS, vid) as ref:
        return [(r.start, r.end, r.prot) for r in memfile.ranges(ref)]


def apply_attr(ref: Ref, attr: Attr) -> None:
    """Give the VAS's private files its new attributes (``vas_setattr``), where we may.

    A file another writer of the VAS made stays theirs (only its owner may
    chmod it); the VAS's own permission check still guards every attach.
    """
    for rng in memfile.ranges(ref):
        with contextlib.suppress(OSError):
            objects.setattr_(ref, attr, rng.file)
