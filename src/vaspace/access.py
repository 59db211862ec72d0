"""The one table of access types (STYLE.md checklist 11).

An access type is what ``vas_attach`` and ``vas_seg_attach`` take: one of
``O_RDONLY``, ``O_WRONLY``, ``O_RDWR``.  Each has a short name (the RFC's
``ro``/``wo``/``rw``, also what the registry writes in its links), the
permission bits it needs (``MAY_*``) and the page protection it maps with
(``PROT_*``; x86 cannot map write-only, so ``wo`` maps read-write).  Every
other module derives these facts from here.
"""

from __future__ import annotations

import mmap
import os
from typing import NamedTuple

MAY_READ = 4
MAY_WRITE = 2


class Access(NamedTuple):
    """One row of the table."""

    flag: int  # O_RDONLY / O_WRONLY / O_RDWR
    name: str  # "ro" / "wo" / "rw"
    may: int  # MAY_* bits the type needs
    prot: int  # PROT_* it maps with


TABLE = (
    Access(os.O_RDONLY, "ro", MAY_READ, mmap.PROT_READ),
    Access(os.O_WRONLY, "wo", MAY_WRITE, mmap.PROT_READ | mmap.PROT_WRITE),
    Access(os.O_RDWR, "rw", MAY_READ | MAY_WRITE, mmap.PROT_READ | mmap.PROT_WRITE),
)
BY_FLAG = {a.flag: a for a in TABLE}
BY_NAME = {a.name: a for a in TABLE}


def access_type_name(access: int) -> str:
    """The RFC's short name of an access type: ``ro``, ``wo`` or ``rw`` ("?" if unknown)."""
    row = BY_FLAG.get(access)
    return row.name if row else "?"


def flag_of(name: str) -> int:
    """The access type called ``name`` ("ro", "wo", "rw"); KeyError otherwise."""
    return BY_NAME[name].flag


def prot_for(vas_type: int, link_type: int) -> int:
    """The protection of a segment attached ``link_type`` in a VAS attached ``vas_type``.

    A read-only attachment maps everything read-only, whatever the links say.
    """
    return BY_FLAG[os.O_RDONLY if vas_type == os.O_RDONLY else link_type].prot


def open_flags(prot: int) -> int:
    """How to open a backing file to map it with ``prot``."""
    return os.O_RDWR if prot & mmap.PROT_WRITE else os.O_RDONLY


def prot_text(prot: int) -> str:
    """``rw-`` or ``r--``, as /proc/<pid>/vas/<vid>/maps shows a mapping."""
    return "rw-" if prot & mmap.PROT_WRITE else "r--"


def may_text(may: int) -> str:
    """What a permission check wanted, for messages: "read", "write", "read and write"."""
    return {MAY_READ: "read", MAY_WRITE: "write"}.get(may, "read and write")
