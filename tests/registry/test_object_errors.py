"""The registry's errors name the object (RFC-level API: OSError(errno, strerror, filename)).

These pin the public contract of creating, finding and numbering objects,
whatever the registry's modules look like inside.
"""

from __future__ import annotations

import errno
import os

import pytest

import vaspace
from vaspace_testing import SEG_BASE

PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("kind", ["vas", "seg"])
def test_a_taken_name_gives_eexist_naming_it(registry: str, kind: str) -> None:
    def create(name: str) -> int:
        if kind == "vas":
            return vaspace.vas_create(name, 0o600)
        return vaspace.vas_seg_create(name, SEG_BASE, SEG_BASE + PAGE, 0o600)

    first = create("taken")
    with pytest.raises(OSError) as e:
        create("taken")
    assert e.value.errno == errno.EEXIST
    assert e.value.filename == "taken"
    assert "already exists" in str(e.value) and "'taken'" in str(e.value)
    # The loser left nothing behind: the name still finds the first object,
    # and a new name gets a working object of its own.
    find = vaspace.vas_find if kind == "vas" else vaspace.vas_seg_find
    assert find("taken") == first
    assert create("other") != first


class _LyingId(int):
    """An int whose text names another id (as a hostile caller's subclass could)."""

    target = 0

    def __format__(self, spec: str) -> str:
        return str(self.target)

    def __str__(self) -> str:
        return str(self.target)

    __repr__ = __str__

    def __int__(self) -> int:
        return self.target


def test_an_int_subclass_is_used_by_its_value(registry: str) -> None:
    """A VAS id is an int's value, whatever its type's text says it is."""
    vid = vaspace.vas_create("victim", 0o640)
    sid = vaspace.vas_seg_create("victim-seg", SEG_BASE, SEG_BASE + PAGE, 0o640)
    liar = _LyingId(vid + sid + 50)  # no object has this id
    for call in (vaspace.vas_getattr, vaspace.vas_name, vaspace.vas_delete,
                 vaspace.vas_seg_getattr, vaspace.vas_seg_delete):
        _LyingId.target = sid if "seg" in call.__name__ else vid
        with pytest.raises(OSError) as e:
            call(liar)
        assert e.value.errno == errno.EINVAL, call.__name__
    # Nothing the liar pointed at was touched.
    assert vaspace.vas_find("victim") == vid and vaspace.vas_name(vid) == "victim"
    assert vaspace.vas_seg_find("victim-seg") == sid
    # An honest subclass (bool aside) is taken by its value.
    class Plain(int):
        pass

    assert vaspace.vas_name(Plain(vid)) == "victim"
