"""Every record type vaspace returns, as typed named tuples (psutil's habit).

They are immutable, compare by value, and unpack like tuples, so callers can
use either field names or positions.
"""

from __future__ import annotations

from typing import NamedTuple


class Attr(NamedTuple):
    """Attributes of a VAS or a segment: the RFC's ``struct vas_attr``.

    ``mode`` holds permission bits (masked with 0o666 on set); ``user`` and
    ``group`` are numeric ids.
    """

    mode: int
    user: int
    group: int


class SegLink(NamedTuple):
    """One segment attached to a VAS, with the access type it was attached with."""

    sid: int
    type: int


class Holder(NamedTuple):
    """A process that has a VAS attached (from the registry's records)."""

    pid: int
    type: int


class ProcVas(NamedTuple):
    """One attachment of a process: the RFC's ``/proc/<pid>/vas/<vid>/status``.

    ``threads`` are the native thread ids of the process's threads that are
    currently inside this VAS (known for the calling process; for another
    process, the ids it last published).
    """

    vid: int
    name: str
    type: int
    threads: tuple[int, ...]


class ProcMap(NamedTuple):
    """One segment mapping of an attachment: a line of ``/proc/<pid>/vas/<vid>/maps``."""

    start: int
    end: int
    access: str
    segment: str
