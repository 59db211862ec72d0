"""vas_setattr / vas_seg_setattr: user and group are uid_t/gid_t values, mode an int.

(uid_t)-1, which chown reads as "leave unchanged", is not a user: it is
refused, as are negative and too large ids and non-ints.
"""

from __future__ import annotations

import errno
import os

import pytest

import vaspace
from vaspace import Attr
from vaspace_testing import NOBODY, SEG_BASE, in_child, require_root

PAGE = os.sysconf("SC_PAGE_SIZE")
NO_CHANGE = 2**32 - 1  # (uid_t)-1


def _objects() -> list[tuple[object, object, int]]:
    vid = vaspace.vas_create("v", 0o640)
    sid = vaspace.vas_seg_create("s", SEG_BASE, SEG_BASE + PAGE, 0o640)
    return [(vaspace.vas_setattr, vaspace.vas_getattr, vid),
            (vaspace.vas_seg_setattr, vaspace.vas_seg_getattr, sid)]


@pytest.mark.parametrize("field", ["user", "group", "mode"])
@pytest.mark.parametrize("bad", [-1, NO_CHANGE, 2**32, 3**40, True, "0", 1.0, None])
def test_bad_attribute_values_are_einval_and_change_nothing(registry: str, field: str,
                                                            bad: object) -> None:
    for setattr_, getattr_, oid in _objects():
        before = getattr_(oid)
        attr = before._replace(**{field: bad})
        with pytest.raises(OSError) as e:
            setattr_(oid, attr)
        assert e.value.errno == errno.EINVAL and field in str(e.value)
        assert getattr_(oid) == before


@pytest.mark.parametrize("value", [0, 2**31 - 1, 2**31, NO_CHANGE - 1])
def test_every_real_id_is_accepted(registry: str, value: int) -> None:
    require_root()  # giving an object away needs root
    for setattr_, getattr_, oid in _objects():
        setattr_(oid, Attr(mode=0o600, user=value, group=value))
        assert getattr_(oid) == Attr(mode=0o600, user=value, group=value)


@pytest.mark.parametrize(("given", "kept"), [(0o777, 0o666), (0o646, 0o646), (0o1002, 0o002)])
def test_setattr_masks_the_mode_with_0o666(registry: str, given: int, kept: int) -> None:
    for setattr_, getattr_, oid in _objects():
        setattr_(oid, getattr_(oid)._replace(mode=given))
        assert getattr_(oid).mode == kept


def test_a_writer_who_is_not_the_owner_gets_eperm_and_changes_nothing(registry: str) -> None:
    """Write permission lets a user use the object, not chmod it: the kernel's rule."""
    objs = _objects()
    for setattr_, getattr_, oid in objs:
        setattr_(oid, getattr_(oid)._replace(mode=0o666))

    def try_all() -> list[tuple[int, str]]:
        out = []
        for setattr_, getattr_, oid in objs:
            try:
                setattr_(oid, getattr_(oid)._replace(mode=0o600))
                out.append((0, ""))
            except OSError as exc:
                out.append((exc.errno or -1, str(exc)))
        return out

    for err, text in in_child(try_all, uid=NOBODY).get():
        assert err == errno.EPERM and "only the owner may chmod" in text, text
    assert [getattr_(oid).mode for _, getattr_, oid in objs] == [0o666, 0o666]
