"""The lookup hot paths (``vas_find``, ``vas_getattr``): fast, but checked as ``pin`` checks.

``find_id`` and ``getattr_`` skip building a ``Ref``; these tests pin down
that they still follow no planted link, accept no half-made or planted
object, never block on a FIFO, and see a change of ``$VASPACE_ROOT`` at once.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile

import pytest

import vaspace as v
from vaspace.registry import root as rootmod
from vaspace_testing import as_nobody, errno_of


def _plant_symlinked_object(registry: str, oid: int, name: str) -> str:
    """As another user: a dir that looks like object ``name`` and a symlink to it as ``oid``."""
    fake = tempfile.mkdtemp(prefix="vaspace-fake-", dir="/dev/shm")
    os.symlink(name, f"{fake}/index")
    with open(f"{fake}/lock", "w"):
        pass
    os.symlink(fake, f"{registry}/vas/{oid}")
    os.symlink(str(oid), f"{registry}/names/vas/{name}")
    return fake


def test_find_and_getattr_follow_no_planted_directory_link(registry: str) -> None:
    fake = as_nobody(_plant_symlinked_object, registry, 900, "evil")
    try:
        # Read by path, the fake's index would name "evil" back: only a
        # directory opened O_NOFOLLOW refuses it.
        assert errno_of(v.vas_find, "evil") == errno.ESRCH
        assert errno_of(v.vas_getattr, 900) == errno.EINVAL
    finally:
        shutil.rmtree(fake)


def test_find_refuses_a_planted_name_link_to_a_real_object(registry: str) -> None:
    vid = v.vas_create("real", 0o644)
    as_nobody(os.symlink, str(vid), f"{registry}/names/vas/alias")
    assert errno_of(v.vas_find, "alias") == errno.ESRCH  # the index names "real"
    assert v.vas_find("real") == vid
    assert v.vas_getattr(vid).mode == 0o644


def test_getattr_of_a_half_deleted_object_is_einval(registry: str) -> None:
    vid = v.vas_create("half", 0o600)
    os.unlink(f"{registry}/names/vas/half")  # the first step of a delete
    assert errno_of(v.vas_getattr, vid) == errno.EINVAL
    assert errno_of(v.vas_find, "half") == errno.ESRCH


def test_getattr_never_blocks_on_a_fifo_attribute_file(registry: str) -> None:
    vid = v.vas_create("fifo", 0o600)
    os.unlink(f"{registry}/vas/{vid}/lock")
    os.mkfifo(f"{registry}/vas/{vid}/lock")
    with pytest.raises(OSError) as info:
        v.vas_getattr(vid)
    assert info.value.errno == errno.EIO and "damaged" in str(info.value)


def test_a_new_root_is_seen_at_once(registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    vid = v.vas_create("here", 0o600)
    assert v.vas_find("here") == vid  # the root is now remembered
    other = tempfile.mkdtemp(prefix="vaspace-other-", dir="/dev/shm")
    try:
        monkeypatch.setenv("VASPACE_ROOT", f"{other}/missing")
        assert errno_of(v.vas_find, "here") == errno.ENOENT  # never created, never cached
        assert not os.path.exists(f"{other}/missing")
        monkeypatch.setenv("VASPACE_ROOT", registry)  # a new str of the same text
        assert v.vas_find("here") == vid
        assert rootmod.root_str() == registry
    finally:
        os.rmdir(other)


@pytest.mark.parametrize("bad", [True, 0, -1, 2**31, 1.0, "1"])
def test_getattr_bad_ids_take_the_checked_path(registry: str, bad: object) -> None:
    assert errno_of(v.vas_getattr, bad) == errno.EINVAL
    assert errno_of(v.vas_seg_getattr, bad) == errno.EINVAL


def test_find_bad_names_einval(registry: str) -> None:
    for bad in ("", "a\0b", "x" * 256, b"bytes", None):
        assert errno_of(v.vas_find, bad) == errno.EINVAL
        assert errno_of(v.vas_seg_find, bad) == errno.EINVAL
