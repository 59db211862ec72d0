"""The files behind VAS-private memory: one per range, named by its range.

Each private range of a VAS (private.py) is one file
``mem.<start>-<end>.<r|rw>`` (hex addresses) in the VAS's registry
directory, exactly ``end - start`` bytes and sparse until touched.  The name
carries the range, so creating the file publishes the range atomically and
removing it unpublishes it.  The VAS directory is writable by the VAS's
writers, so an entry may be planted: a file is opened through the pinned
directory, never through a link, and its size and link count are checked
before anyone maps it.
"""

from __future__ import annotations

import mmap
import os
import re
from typing import NamedTuple

from . import fs
from .ref import Ref

PREFIX = "mem."
_NAME = re.compile(r"mem\.([0-9a-f]{1,16})-([0-9a-f]{1,16})\.(r|rw)")
NAME = "[private]"  # how proc_maps and messages name a private range
PROTS = {mmap.PROT_READ: "r", mmap.PROT_READ | mmap.PROT_WRITE: "rw"}


class Range(NamedTuple):
    """One private range of a VAS: [start, end), its protection and its file's name."""

    start: int
    end: int
    prot: int
    file: str

    @property
    def access(self) -> int:
        """The access type the range gives, as a segment link's (O_RDWR or O_RDONLY)."""
        return os.O_RDWR if self.prot & mmap.PROT_WRITE else os.O_RDONLY


def private_key(vid: int, start: int) -> int:
    """The id under which a process keeps a private range's mapping: negative, so
    never a segment's, and one per (VAS, start)."""
    return -((vid << 40) | (start >> 12))


def filename(start: int, end: int, prot: int) -> str:
    return f"{PREFIX}{start:x}-{end:x}.{PROTS[prot]}"


def parse(entry: str) -> Range | None:
    """The range a directory entry names, or None if it is not a private range's file."""
    m = _NAME.fullmatch(entry)
    if m is None:
        return None
    lo, hi = int(m[1], 16), int(m[2], 16)
    if lo >= hi:
        return None
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if m[3] == "rw" else 0)
    return Range(lo, hi, prot, entry)


def ranges(ref: Ref) -> list[Range]:
    """The private ranges a VAS's directory names, sorted (entries are hints:
    whoever maps one checks its file first, see ``open_range``)."""
    mine = (parse(e) for e in ref.entries() if e.startswith(PREFIX))
    return sorted(r for r in mine if r is not None)


def open_range(ref: Ref, rng: Range, flags: int) -> int:
    """Open a private range's file for mapping; EIO if it is not what vas_mmap made."""
    fd, st = ref.open_stat(rng.file, flags)
    if st.st_size != rng.end - rng.start or st.st_nlink != 1:
        os.close(fd)
        raise ref.damaged(f"its private memory file {rng.file} has the wrong size or links")
    return fd


def create_file(dfd: int, rng: Range) -> int:
    """Create a private range's file in the VAS directory ``dfd``; the open fd (O_RDWR)."""
    fd = os.open(rng.file, os.O_CREAT | os.O_EXCL | os.O_RDWR | fs.FILE_FLAGS, 0o600,
                 dir_fd=dfd)
    try:
        os.ftruncate(fd, rng.end - rng.start)
    except BaseException:
        os.close(fd)
        os.unlink(rng.file, dir_fd=dfd)
        raise
    return fd


def finish_file(fd: int, mode: int) -> None:
    """Give a new private file the VAS's mode (after it was filled) and close it."""
    try:
        os.fchmod(fd, mode & 0o666)
    finally:
        os.close(fd)
