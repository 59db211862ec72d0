"""VASes in the registry: a directory with ``name``, ``index``, ``lock`` and ``seg.<sid>`` links.

``lock``'s metadata holds the VAS's attributes; processes that attach the
VAS hold ``flock``s on it (shared for read-only, exclusive for writable), so
the kernel drops them when a process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator

from .. import perms
from ..access import access_type_name
from ..args import exact_int
from ..errors import invalid, vas_error
from . import fs, records
from . import root as rootmod
from .kind import VAS
from .objects import Ref, pin
from .objects import create as create_object
from .ref import REVERSE


def create(name: object, mode: object) -> int:
    """Create a VAS with no segments; attributes are the caller's, mode & 0o666."""
    given, mode = mode, exact_int(mode)  # by value: a subclass could lie in its `&`
    if mode is None:
        raise invalid(f"VAS {name!r}: mode must be int, not {type(given).__name__}", str(name))

    def populate(dfd: int, _vid: int) -> None:
        write_lock_file(dfd, mode)  # type: ignore[arg-type]

    return create_object(VAS, name, dir_mode(mode & 0o666), populate)


def write_lock_file(dfd: int, mode: int) -> None:
    """The new VAS's ``lock`` file, whose metadata holds its attributes."""
    fs.write_new("lock", "", mode & 0o666, dfd)


def open_lock(ref: Ref, access: int) -> int:
    """Open the lock file with the access being requested; the kernel checks the mode.

    Through the VAS's pinned directory: a directory swapped for a link to
    another VAS's cannot make us lock (and then map) that other VAS.
    """
    return ref.open("lock", access)


def take_lock(ref: Ref, access: int, may: int) -> int:
    """The RFC's check for ``may``, then the sharing lock for ``access``; the fd.

    EACCES (the RFC's check, or the OS refuses the open), EBUSY (the
    sharing rule).  The lock file is opened first and its ``fstat`` gives
    the attributes the check reads (the file whose metadata holds them is
    the one we lock): one system call less than an ``lstat`` before.
    """
    try:
        fd, mode, uid, gid = ref.open_owner("lock", access)
    except PermissionError:
        ref.require(may)  # the RFC's own EACCES when its check fails too
        raise vas_error(errno.EACCES, f"the OS refuses to open {ref.what} for "
                        f"{access_type_name(access)}", ref.name) from None
    op = fcntl.LOCK_SH if access == os.O_RDONLY else fcntl.LOCK_EX
    try:
        perms.check(uid, gid, mode & 0o666, may, ref)
        fcntl.flock(fd, op | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ref.error(errno.EBUSY, "is attached by "
                        f"{records.holders_text(records.holders(ref.id))}; "
                        "the sharing rule allows one writer or many readers") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def quiesced(ref: Ref, action: str) -> Iterator[None]:
    """Hold an exclusive flock on the VAS for a change that needs it unattached.

    If any process has the VAS attached its flock conflicts, and the change is
    refused with EBUSY naming who holds it.
    """
    def refused(err: int, why: str) -> OSError:
        return vas_error(err, f"cannot {action} {ref.what}: {why}", ref.name)

    try:
        fd = open_lock(ref, os.O_RDONLY)
    except PermissionError:
        try:
            fd = open_lock(ref, os.O_WRONLY)
        except PermissionError:
            # The caller may neither read nor write the VAS: the RFC checks
            # EBUSY first, which the records can still tell; then EACCES.
            holders = records.holders(ref.id)
            if holders:
                raise refused(errno.EBUSY, f"attached by {records.holders_text(holders)}") from None
            raise refused(errno.EACCES, "no permission on it") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise refused(errno.EBUSY, "attached by "
                          f"{records.holders_text(records.holders(ref.id))}") from None
        yield
    finally:
        os.close(fd)


def link_seg(ref: Ref, seg: Ref, access: int) -> None:
    """Record an attached segment: the reverse hint, then one atomic ``seg.<sid> -> <type>``.

    The hint goes first, so the reverse index always covers the links
    (``delete`` of the segment relies on that, under the registry lock).
    """
    add_reverse(seg, ref.id, access)
    try:
        os.symlink(access_type_name(access), f"seg.{seg.id}", dir_fd=ref.dirfd)
    except PermissionError:
        raise vas_error(errno.EACCES, f"the OS refuses to change {ref.what}", ref.name) from None


def unlink_seg(ref: Ref, sid: int) -> bool:
    """Remove a segment record (and its reverse hint, if we may); False if it was not there."""
    try:
        os.unlink(f"seg.{sid}", dir_fd=ref.dirfd)
    except FileNotFoundError:
        return False
    except PermissionError:
        raise vas_error(errno.EACCES, f"the OS refuses to change {ref.what}", ref.name) from None
    drop_reverse(sid, ref.id)
    return True


def add_reverse(seg: Ref, vid: int, access: int) -> None:
    """Add ``vid`` to the segment's reverse index (an existing entry is kept)."""
    st = os.fstat(seg.dirfd)
    sub = fs.open_checked_dir(REVERSE, seg.dirfd, st.st_dev, (st.st_uid,))
    if sub is None:
        raise seg.damaged(f"its {REVERSE}/ directory is missing or not its own")
    try:
        with contextlib.suppress(FileExistsError):
            os.symlink(access_type_name(access), str(vid), dir_fd=sub)
    finally:
        os.close(sub)


def drop_reverse(sid: int, vid: int) -> None:
    """Best effort: remove ``vid`` from segment ``sid``'s reverse index.

    It is a hint (``delete`` checks each entry against the VAS), so an entry
    we may not remove (another user's, in the sticky directory) can stay.
    """
    with contextlib.suppress(OSError):
        os.unlink(f"{rootmod.root_str()}/seg/{sid}/{REVERSE}/{vid}")


def delete(vid: object) -> None:
    """Delete a VAS: EINVAL, EBUSY (attached; checked first, as in the RFC), EACCES, EPERM."""
    with pin(VAS, vid) as ref, rootmod.locked(), quiesced(ref, "delete"):
        ref.recheck()
        ref.require(perms.MAY_WRITE)
        for entry in ref.unpublish():
            sid = entry.removeprefix("seg.")
            if sid != entry and rootmod.is_id(sid):
                drop_reverse(int(sid), ref.id)


def dir_mode(mode: int) -> int:
    """The VAS directory is writable by whoever may write the VAS (its w bits).

    It is sticky, so such users can add and remove their own segment links
    but cannot replace the ``name``, ``index`` or ``lock`` files.
    """
    return 0o1755 | (mode & 0o022)


def apply_dir_mode(ref: Ref, mode: int) -> None:
    with contextlib.suppress(PermissionError):
        os.fchmod(ref.dirfd, dir_mode(mode))
