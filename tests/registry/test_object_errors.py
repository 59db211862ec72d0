"""The registry's errors name the object (RFC-level API: OSError(errno, strerror, filename)).

These pin the public contract of creating, finding and numbering objects,
whatever the registry's modules look like inside.
"""

from __future__ import annotations

import errno
import os

import pytest

import vaspace
from vaspace_testing import NOBODY, SEG_BASE, in_child

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


@pytest.mark.parametrize("kind", ["vas", "seg"])
def test_a_create_that_fails_after_its_claim_leaves_nothing(registry: str, kind: str) -> None:
    """Publishing the name fails (its index directory is not writable to the creator):
    the error reaches the caller, and the claimed id's directory is gone."""
    os.chmod(f"{registry}/names/{kind}", 0o755)  # root's own: no one else may link there

    def create() -> object:
        try:
            if kind == "vas":
                return vaspace.vas_create("late", 0o600)
            return vaspace.vas_seg_create("late", SEG_BASE, SEG_BASE + PAGE, 0o600)
        except OSError as exc:
            return exc.errno

    assert in_child(create, uid=NOBODY).get() == errno.EACCES
    assert os.listdir(f"{registry}/{kind}") == []
    os.chmod(f"{registry}/names/{kind}", 0o1777)
    find = vaspace.vas_find if kind == "vas" else vaspace.vas_seg_find
    with pytest.raises(ProcessLookupError):
        find("late")


TOP_ID = 2**31 - 1  # ids are positive C ints (the RFC's vid_t/sid_t)


@pytest.mark.parametrize("kind", ["vas", "seg"])
def test_ids_stay_below_two_to_the_31(registry: str, kind: str) -> None:
    """Anyone may mkdir ``<kind>/2147483647``; the next object still gets an id
    that fits a C int, and the planted entry's id is refused as no object."""
    in_child(os.mkdir, f"{registry}/{kind}/{TOP_ID}", uid=NOBODY).get()
    if kind == "vas":
        oid = vaspace.vas_create("next", 0o600)
        getattr_ = vaspace.vas_getattr
    else:
        oid = vaspace.vas_seg_create("next", SEG_BASE, SEG_BASE + PAGE, 0o600)
        getattr_ = vaspace.vas_seg_getattr
    assert oid == 1  # the lowest free id, not one past the planted top
    assert getattr_(oid).mode == 0o600
    for bad in (TOP_ID, TOP_ID + 1):
        with pytest.raises(OSError) as e:
            getattr_(bad)
        assert e.value.errno == errno.EINVAL


def _plant_object(registry: str, kind: str, oid: int) -> None:
    """As another user: a directory ``<kind>/<oid>`` laid out like a live object,
    its index and name links pointing at each other (anyone may write both)."""
    enc = f"planted{oid}".replace("-", "m")
    d = f"{registry}/{kind}/{oid}"
    os.mkdir(d, 0o755)
    os.symlink(enc, f"{d}/index")
    os.symlink(str(oid), f"{registry}/names/{kind}/{enc}")
    for f in ("lock", "data", "name"):
        with open(f"{d}/{f}", "w") as out:
            out.write(enc)


@pytest.mark.parametrize("kind", ["vas", "seg"])
def test_an_id_out_of_range_is_no_object_even_if_planted(registry: str, kind: str) -> None:
    """Ids are 1 .. 2**31-1: an entry planted under any other number is never used."""
    for oid in (0, -1, TOP_ID + 1):
        in_child(_plant_object, registry, kind, oid, uid=NOBODY).get()
    calls = ((vaspace.vas_getattr, vaspace.vas_name, vaspace.vas_delete) if kind == "vas"
             else (vaspace.vas_seg_getattr, vaspace.vas_seg_delete))
    for oid in (0, -1, TOP_ID + 1):
        for call in calls:
            with pytest.raises(OSError) as e:
                call(oid)
            assert e.value.errno == errno.EINVAL, (call.__name__, oid)
        assert os.path.isdir(f"{registry}/{kind}/{oid}")  # nothing was acted upon
