"""VASes in the registry: a directory with ``name``, ``lock`` and ``seg.<sid>`` links.

``lock``'s metadata holds the VAS's attributes; processes that attach the
VAS hold ``flock``s on it (shared for read-only, exclusive for writable), so
the kernel drops them when a process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from .._ntuples import SegLink
from ..errors import access_type_name, invalid, vas_error
from . import objects
from . import root as rootmod

VAS = objects.Kind(label="VAS", dirname="vas", attr_file="lock")
_TYPES = {"ro": os.O_RDONLY, "wo": os.O_WRONLY, "rw": os.O_RDWR}


def describe(vid: int, name: str) -> str:
    return objects.describe(VAS, vid, name)


def create(name: object, mode: object) -> int:
    """Create a VAS with no segments; attributes are the caller's, mode & 0o666."""
    if not isinstance(mode, int) or isinstance(mode, bool):
        raise invalid(f"VAS {name!r}: mode must be int, not {type(mode).__name__}")

    def populate(path: str) -> None:
        rootmod.write_file(Path(path, "name"), name)  # type: ignore[arg-type]
        rootmod.write_file(Path(path, "lock"), "", mode & 0o666)
        os.chmod(path, dir_mode(mode & 0o666))

    return objects.create(VAS, name, populate)


def lookup(vid: object) -> tuple[int, str]:
    return objects.lookup(VAS, vid)


def lock_path(vid: int) -> Path:
    return VAS.obj_dir(vid) / "lock"


def open_lock(vid: int, access: int) -> int:
    """Open the lock file with the access being requested; the kernel checks the mode.

    Through the VAS's own directory, pinned and checked against the name
    index (``objects.open_in``): a directory swapped for a link to another
    VAS's cannot make us lock (and then map) that other VAS.
    """
    return objects.open_in(VAS, vid, "lock", access)[0]


@contextlib.contextmanager
def quiesced(vid: int, name: str, action: str):
    """Hold an exclusive flock on the VAS for a change that needs it unattached.

    If any process has the VAS attached its flock conflicts, and the change is
    refused with EBUSY naming who holds it.
    """
    try:
        fd = open_lock(vid, os.O_RDONLY)
    except PermissionError:
        try:
            fd = open_lock(vid, os.O_WRONLY)
        except PermissionError:
            # The caller may neither read nor write the VAS: the RFC checks
            # EBUSY first, which the records can still tell; then EACCES,
            # naming the VAS rather than the lock file's path.
            from . import records

            if records.holders(vid):
                raise vas_error(errno.EBUSY, f"cannot {action} {describe(vid, name)}: "
                                f"attached by {_holders_text(vid)}") from None
            raise vas_error(errno.EACCES, f"cannot {action} {describe(vid, name)}: "
                            "no permission on it") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise vas_error(errno.EBUSY, f"cannot {action} {describe(vid, name)}: "
                            f"attached by {_holders_text(vid)}") from None
        yield
    finally:
        os.close(fd)


def _holders_text(vid: int) -> str:
    from . import records

    holders = records.holders(vid)
    if not holders:
        return "another process"
    return ", ".join(f"pid {h.pid} ({access_type_name(h.type)})" for h in holders)


def seg_links(vid: int) -> list[SegLink]:
    """Segments attached to the VAS, with their access types.

    Read through the VAS's pinned directory (``objects.pin_dir``): a
    directory swapped for a link to another VAS's would otherwise hand an
    attacher that other VAS's segments.  A VAS that is gone, or whose
    directory is not its own, has no segments.
    """
    try:
        dfd = objects.pin_dir(VAS, vid)
    except OSError:
        return []
    out = []
    try:
        entries = os.listdir(dfd)
        for entry in entries:
            prefix, _, sid = entry.partition(".")
            if prefix == "seg" and rootmod.is_id(sid):
                with contextlib.suppress(OSError, KeyError):
                    out.append(SegLink(sid=int(sid), type=_TYPES[os.readlink(entry, dir_fd=dfd)]))
    finally:
        os.close(dfd)
    return sorted(out)


def link_seg(vid: int, sid: int, access: int) -> None:
    """Record an attached segment: one atomic symlink ``seg.<sid> -> <type>``."""
    try:
        os.symlink(access_type_name(access), VAS.obj_dir(vid) / f"seg.{sid}")
    except (FileNotFoundError, NotADirectoryError):
        raise objects.gone(VAS, vid) from None


def unlink_seg(vid: int, sid: int) -> bool:
    """Remove a segment record; False if it was not there."""
    try:
        os.unlink(VAS.obj_dir(vid) / f"seg.{sid}")
    except FileNotFoundError:
        return False
    return True


def dir_mode(mode: int) -> int:
    """The VAS directory is writable by whoever may write the VAS (its w bits).

    It is sticky, so such users can add and remove their own segment links
    but cannot replace the ``name`` or ``lock`` files.
    """
    return 0o1755 | (mode & 0o022)


def apply_dir_mode(vid: int, mode: int) -> None:
    with contextlib.suppress(PermissionError):
        os.chmod(VAS.obj_dir(vid), dir_mode(mode))
