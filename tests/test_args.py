"""vaspace.args: int arguments are taken by value, whatever their class says.

An int subclass can lie in ``__format__``, ``__str__``, ``%``, ``&`` and its
comparisons.  Each public call must check and use the same number: the tests
pass liars whose lies would, if believed, name another object, pass an
alignment check, or widen a mode.
"""

from __future__ import annotations

import errno
import os

import pytest

import vaspace
from vaspace.args import exact_int


class Liar(int):
    """An int that misreports itself everywhere a subclass can."""

    def __format__(self, spec: str) -> str:
        return format(int.__int__(self) + 1, spec)

    def __str__(self) -> str:
        return str(int.__int__(self) + 1)

    __repr__ = __str__

    def __mod__(self, other: object) -> int:
        return 0

    def __and__(self, other: object) -> int:
        return 0o666

    __rand__ = __and__

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = int.__hash__

    def __int__(self) -> int:
        raise AssertionError("exact_int must not call __int__")

    def __index__(self) -> int:
        raise AssertionError("exact_int must not call __index__")


def test_exact_int_reads_the_value_not_the_class() -> None:
    got = exact_int(Liar(7))
    assert got == 7 and got.__class__ is int
    assert exact_int(7) == 7
    for junk in (True, False, 1.0, "7", None, b"7"):
        assert exact_int(junk) is None


def test_a_lying_id_reads_its_own_vas(registry: str) -> None:
    a = vaspace.vas_create("liar-a", 0o600)
    b = vaspace.vas_create("liar-b", 0o640)
    assert b == a + 1  # the liar formats a as b's id
    assert vaspace.vas_getattr(Liar(a)).mode == 0o600
    vaspace.vas_delete(Liar(a))
    assert vaspace.vas_find("liar-b") == b  # the delete did not reach b
    with pytest.raises(OSError) as e:
        vaspace.vas_find("liar-a")
    assert e.value.errno == errno.ESRCH  # the RFC: no VAS by that name


def test_a_lying_mode_is_stored_as_its_value(registry: str) -> None:
    vid = vaspace.vas_create("liar-mode", Liar(0o600))
    assert vaspace.vas_getattr(vid).mode == 0o600  # not the 0o666 its `&` claims
    sid = vaspace.vas_seg_create("liar-seg-mode", 0x4500_0000_0000, 0x4500_0001_0000,
                                 Liar(0o600))
    assert vaspace.vas_seg_getattr(sid).mode == 0o600
    attr = vaspace.vas_getattr(vid)
    vaspace.vas_setattr(vid, attr._replace(mode=Liar(0o400)))
    assert vaspace.vas_getattr(vid).mode == 0o400


def test_a_lying_address_is_checked_as_its_value(registry: str) -> None:
    start = 0x4500_0000_0000
    with pytest.raises(OSError) as e:  # unaligned, though its % says 0
        vaspace.vas_seg_create("liar-start", Liar(start + 8), start + 0x10000, 0o600)
    assert e.value.errno == errno.EINVAL
    sid = vaspace.vas_seg_create("liar-region", Liar(start), Liar(start + 0x10000), 0o600)
    assert vaspace.Segment(sid).start == start  # written as checked, not as formatted
    with pytest.raises(OSError) as e:
        vaspace.segment_create_sz("liar-sz", Liar(start + 8), 0x10000, 0o600)
    assert e.value.errno == errno.EINVAL


def test_a_lying_zero_pid_means_the_caller(registry: str) -> None:
    vid = vaspace.vas_create("liar-pid", 0o600)
    vaspace.vas_attach(Liar(0), vid, os.O_RDWR)  # its == says it is not 0
    assert vid in [p.vid for p in vaspace.proc_vas(os.getpid())]
    vaspace.vas_detach(Liar(0), vid)
    assert vid not in [p.vid for p in vaspace.proc_vas(os.getpid())]
