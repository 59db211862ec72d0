"""Segments in the registry: a directory with ``name``, ``region`` and ``data``.

``data`` is the backing file, exactly ``end - start`` bytes and sparse until
touched.  Its owner, group and mode are the segment's attributes, so the
kernel itself refuses to open it for a user the mode excludes.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .. import window as winmod
from ..errors import invalid, vas_error
from . import objects
from . import root as rootmod

SEG = objects.Kind(label="segment", dirname="seg", attr_file="data")


def describe(sid: int, name: str) -> str:
    return objects.describe(SEG, sid, name)


def check_region(name: object, start: object, end: object) -> tuple[int, int]:
    """Check a segment's [start, end): EINVAL if unaligned or empty, EFAULT if outside window()."""
    for label, value in (("start", start), ("end", end)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise invalid(f"segment {name!r}: {label} must be int, not {type(value).__name__}")
    assert isinstance(start, int) and isinstance(end, int)
    if start % winmod.PAGE or end % winmod.PAGE:
        raise invalid(f"segment {name!r}: [{start:#x}, {end:#x}) is not page aligned")
    if end <= start:
        raise invalid(f"segment {name!r}: end {end:#x} is not above start {start:#x}")
    lo, hi = winmod.window()
    if start < lo or end > hi:
        raise vas_error(
            errno.EFAULT,
            f"segment {name!r}: [{start:#x}, {end:#x}) is outside the window [{lo:#x}, {hi:#x})",
        )
    return start, end


def create(name: object, start: object, end: object, mode: object) -> int:
    """Create a segment; its data file is sized, owned by the caller, mode & 0o666."""
    if not isinstance(mode, int) or isinstance(mode, bool):
        raise invalid(f"segment {name!r}: mode must be int, not {type(mode).__name__}")
    lo, hi = check_region(name, start, end)

    def populate(path: str) -> None:
        rootmod.write_file(Path(path, "name"), name)  # type: ignore[arg-type]
        rootmod.write_file(Path(path, "region"), f"{lo:x}-{hi:x}\n")
        fd = os.open(f"{path}/data", os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, hi - lo)
            os.fchmod(fd, mode & 0o666)
        finally:
            os.close(fd)
        os.chmod(path, 0o755)

    return objects.create(SEG, name, populate)


def lookup(sid: object) -> tuple[int, str]:
    return objects.lookup(SEG, sid)


def region(sid: int) -> tuple[int, int]:
    """The segment's [start, end)."""
    try:
        text = rootmod.read_file(SEG.obj_dir(sid) / "region")
    except (FileNotFoundError, NotADirectoryError):
        raise objects.gone(SEG, sid) from None
    lo, hi = text.strip().split("-")
    return int(lo, 16), int(hi, 16)


def data_path(sid: int) -> Path:
    return SEG.obj_dir(sid) / "data"


def open_data(sid: int, access: int) -> int:
    """Open the backing file for mapping (see ``open_mapping``); just the fd."""
    return open_mapping(sid, access)[0]


def open_mapping(sid: int, access: int) -> tuple[int, int, int]:
    """Open the backing file for mapping: (fd, start, end); the kernel checks its mode.

    The region comes from the same pinned directory as the file, so the
    caller maps exactly the file whose region it checks.

    The file is opened through the segment's own directory, pinned and
    checked against the name index (``objects.open_in``), so swapping the
    directory for a link to another one cannot redirect the open.
    O_NOFOLLOW and an fstat check that the file is a regular file of the
    region's size, with no other hard link, protect against a link planted
    in place of the file.
    """
    fd, text = objects.open_in(SEG, sid, "data", access)
    try:
        lo, hi = (int(x, 16) for x in text.strip().split("-"))
    except ValueError:
        os.close(fd)
        raise vas_error(errno.EIO, f"segment id {sid}: unreadable region {text!r}") from None
    st = os.fstat(fd)
    if not (st.st_mode & 0o170000 == 0o100000 and st.st_size == hi - lo):
        os.close(fd)
        raise vas_error(errno.EIO, f"segment id {sid}: backing file has wrong type or size")
    if st.st_nlink != 1:
        # A hard link to someone's file planted as ``data`` (possible where
        # fs.protected_hardlinks=0) would map that file: refuse it.
        os.close(fd)
        raise vas_error(errno.EIO, f"segment id {sid}: backing file has {st.st_nlink} links")
    return fd, lo, hi
