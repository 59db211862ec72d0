"""``vas_getattr`` and ``vas_find`` answer a healthy object the one-call way.

``ref.attr_of`` (one ``_core.stat_live``) and ``ref.live_id`` check an
object without building a ``Ref``; when anything is off they give up and
``objects`` asks ``pin``/``find`` again for the exact error.  Both ways give
the same answers, so the tests tell them apart by which way was taken
(issue 11 §3's ``vas_getattr`` and ``vas_find`` costs depend on it): the
slow functions are wrapped to count their calls, and still run.
"""

from __future__ import annotations

import errno
import os

import pytest

import vaspace as v
from vaspace.registry import objects
from vaspace_testing import NOBODY, SEG_BASE, MiB, count_calls, in_child


def _nobodys() -> tuple[int, int]:
    return (v.vas_create("theirs", 0o640),
            v.vas_seg_create("theirs", SEG_BASE, SEG_BASE + MiB, 0o604))


def test_getattr_of_a_healthy_object_takes_the_fast_way(registry: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    vid, sid = in_child(_nobodys, uid=NOBODY).get()
    pins = count_calls(monkeypatch, objects, "pin")
    assert tuple(v.vas_getattr(vid)) == (0o640, NOBODY, NOBODY)
    assert tuple(v.vas_seg_getattr(sid)) == (0o604, NOBODY, NOBODY)
    assert pins == []


@pytest.mark.parametrize("damage", ["name link", "attribute file"])
def test_getattr_of_a_damaged_object_takes_the_slow_way(registry: str, damage: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    vid = v.vas_create("bad", 0o600)
    if damage == "name link":
        other = v.vas_create("other", 0o600)
        os.unlink(f"{registry}/names/vas/bad")
        os.symlink(str(other), f"{registry}/names/vas/bad")  # points at another id
    else:
        os.unlink(f"{registry}/vas/{vid}/lock")
        os.mkfifo(f"{registry}/vas/{vid}/lock", 0o600)
    pins = count_calls(monkeypatch, objects, "pin")
    with pytest.raises(OSError) as info:
        v.vas_getattr(vid)
    assert info.value.errno == (errno.EINVAL if damage == "name link" else errno.EIO)
    assert len(pins) == 1


def test_find_of_a_healthy_object_takes_the_fast_way(registry: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [v.vas_create(f"n{i}", 0o600) for i in range(12)]  # ids of one and two digits
    finds = count_calls(monkeypatch, objects, "find")
    assert [v.vas_find(f"n{i}") for i in range(12)] == ids
    assert finds == []


def test_find_of_a_damaged_object_takes_the_slow_way(registry: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    vid = v.vas_create("bad", 0o600)
    os.unlink(f"{registry}/vas/{vid}/index")
    os.symlink("other", f"{registry}/vas/{vid}/index")  # the directory disowns the name
    finds = count_calls(monkeypatch, objects, "find")
    with pytest.raises(OSError) as info:
        v.vas_find("bad")
    assert info.value.errno == errno.ESRCH
    assert len(finds) == 1
