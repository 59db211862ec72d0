"""The registry root's checks: a link in its place, a world-writable root that
is not sticky, and ``$VASPACE_ROOT`` read from whatever ``os.environ`` is."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from vaspace.registry import root as rootmod
from vaspace_testing import NOBODY, in_child, require_root


def _use(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    monkeypatch.setenv("VASPACE_ROOT", path)
    rootmod.forget()


def test_a_symlink_in_place_of_the_root_is_refused(registry: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A link is never followed, even to a good registry: ENOTDIR naming the link."""
    link = os.path.join(os.path.dirname(registry), "link")
    os.symlink(registry, link)
    _use(monkeypatch, link)
    for call in (rootmod.existing, rootmod.ensure):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.ENOTDIR and e.value.filename == link
        assert "is not a directory" in e.value.strerror


def _existing_as_other(path: str) -> str:
    os.environ["VASPACE_ROOT"] = path
    rootmod.forget()
    return rootmod.existing()


def test_a_world_writable_root_must_be_sticky_unless_it_is_mine(
        registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the sticky bit anyone could delete or replace others' entries:
    refused for everyone but the root's owner (who controls it anyway)."""
    require_root()
    os.chmod(registry, 0o777)
    rootmod.forget()
    assert rootmod.existing() == registry  # mine: my own business
    err = in_child(_existing_as_other, registry, uid=NOBODY).error
    assert isinstance(err, OSError) and err.errno == errno.EACCES, err
    assert "world-writable but not sticky" in err.strerror
    os.chmod(registry, 0o1777)
    assert in_child(_existing_as_other, registry, uid=NOBODY).get() == registry


def test_the_root_follows_a_replaced_os_environ(registry: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Code that assigns a new mapping to os.environ (rather than changing it)
    is asked, not the bytes of the process's original environment."""
    other = os.path.join(os.path.dirname(registry), "other")
    assert rootmod.existing() == registry  # the answer for the real os.environ, kept
    with monkeypatch.context() as m:
        m.setattr(os, "environ", {**os.environ, "VASPACE_ROOT": other})
        with pytest.raises(OSError) as e:  # not the kept answer: no registry there yet
            rootmod.existing()
        assert e.value.errno == errno.ENOENT and e.value.filename == other
        rootmod.forget()
        assert rootmod.root_str() == other
        with pytest.raises(OSError) as e:
            rootmod.existing()
        assert e.value.errno == errno.ENOENT and e.value.filename == other
        assert rootmod.ensure() == other and os.path.isdir(f"{other}/vas")
    rootmod.forget()
    assert rootmod.root_str() == registry


def test_the_first_create_makes_missing_parents_too(registry: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    deep = os.path.join(os.path.dirname(registry), "a", "b", "root")
    _use(monkeypatch, deep)
    assert rootmod.ensure() == deep
    assert sorted(os.listdir(deep)) == sorted(["lock", "names", "pending", "procs", "seg",
                                               "vas"])


def _plant_lock(path: str) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))


def test_the_registry_lock_missing_or_planted(registry: str) -> None:
    """A change needs the registry's lock file: gone, the error says so with
    its errno; made by another user (before the registry's owner made it),
    it is refused, since that user could hold it forever."""
    os.unlink(f"{registry}/lock")
    rootmod.forget()
    with pytest.raises(OSError) as e, rootmod.locked():
        pass
    assert e.value.errno == errno.ENOENT and e.value.filename == registry
    assert "cannot open the registry lock" in e.value.strerror
    require_root()
    in_child(_plant_lock, f"{registry}/lock", uid=NOBODY).get()
    with pytest.raises(OSError) as e, rootmod.locked():
        pass
    assert e.value.errno == errno.EACCES and "belongs to another user" in e.value.strerror



def _lock_once() -> bool:
    rootmod.forget()
    with rootmod.locked():
        return True


def test_a_lock_made_by_root_is_trusted_in_a_users_registry(registry: str) -> None:
    """A registry root owned by a user, whose lock file root made (root ran the
    first create, then gave the root away): the lock is trusted, as root is."""
    require_root()
    os.chown(registry, NOBODY, NOBODY)
    assert os.stat(f"{registry}/lock").st_uid == 0
    assert in_child(_lock_once, uid=NOBODY).get() is True


def test_a_temporary_registry_removed_by_its_user_exits_cleanly() -> None:
    with rootmod.temporary(prefix="vaspace-gone-") as path:
        base = os.path.dirname(path)
        rootmod.remove_tree(Path(base))  # what was there is gone already
    assert not os.path.exists(base)
