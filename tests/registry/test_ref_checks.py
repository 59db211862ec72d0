"""The checks in ``registry.ref``, one attack or bad entry per check (issue 17 §3).

Each test plants what a check exists for (a retargeted name link, a swapped
directory, a FIFO or symlink where a file belongs, a hashed name with a
damaged ``name`` file) and asserts the exact errno, the name the error
carries, and that nothing was followed, opened or deleted.
"""

from __future__ import annotations

import errno
import os

import pytest

import vaspace as v
from vaspace.registry import ref as refmod
from vaspace.registry.kind import VAS
from vaspace_testing import errno_of, in_child

# Percent-encoded, this name is far over 255 bytes: it is registered by hash,
# so only its ``name`` file spells it.
LONG = "é" * 100


def _pin(vid: int) -> refmod.Ref:
    return refmod.pin(VAS, vid)


def _raises(errno_: int, fn, *args) -> OSError:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as info:
        fn(*args)
    assert info.value.errno == errno_, info.value
    return info.value


def _errno_as_nobody(vid: int, method: str | None = None, *args: object) -> int:
    """In a child as uid 65534: pin VAS ``vid`` and call ``method``; the errno (0: none)."""
    return in_child(_pin_and_call, vid, method, *args, uid=65534).get()


def _pin_and_call(vid: int, method: str | None, *args: object) -> int:
    try:
        with refmod.pin(VAS, vid) as ref:
            if method is not None:
                getattr(ref, method)(*args)
    except OSError as exc:
        return exc.errno
    return 0


def _retarget(registry: str, name: str, target: str) -> None:
    """Point the name link ``name`` at ``target`` (what a delete and a new create leave)."""
    os.unlink(f"{registry}/names/vas/{name}")
    os.symlink(target, f"{registry}/names/vas/{name}")


# ------------------------------------------------------------ lifetime


def _close_twice_then_stdin_alive() -> bool:
    ref = refmod.pin(VAS, v.vas_create("twice", 0o600))
    ref.close()
    ref.close()  # a second close must close nothing (not EBADF, not fd 0)
    os.fstat(0)
    return ref.dirfd < 0


def test_close_twice_closes_nothing_else(registry: str) -> None:
    assert in_child(_close_twice_then_stdin_alive).get() is True


def _pin_on_fd_zero_then_close() -> int:
    vid = v.vas_create("zero", 0o600)
    os.close(0)
    ref = refmod.pin(VAS, vid)
    assert ref.dirfd == 0  # the lowest free descriptor
    ref.close()
    try:
        os.fstat(0)
    except OSError as exc:
        return exc.errno
    return 0


def test_close_closes_a_directory_on_descriptor_zero(registry: str) -> None:
    assert in_child(_pin_on_fd_zero_then_close).get() == errno.EBADF


# ------------------------------------------------------------ name


def test_a_short_name_is_read_from_the_index_not_the_name_file(registry: str) -> None:
    vid = v.vas_create("short", 0o600)
    assert not os.path.lexists(f"{registry}/vas/{vid}/name")  # the index spells it
    os.mkfifo(f"{registry}/vas/{vid}/name")  # would block, or be damaged, if opened
    with _pin(vid) as ref:
        assert ref.name == "short"


def test_a_hashed_name_comes_from_its_name_file(registry: str) -> None:
    vid = v.vas_create(LONG, 0o600)
    with _pin(vid) as ref:
        assert ref.enc.startswith("#") and ref.name == LONG


def test_a_hashed_name_whose_name_file_is_gone_is_einval(registry: str) -> None:
    vid = v.vas_create(LONG, 0o600)
    os.unlink(f"{registry}/vas/{vid}/name")
    with _pin(vid) as ref:
        err = _raises(errno.EINVAL, lambda: ref.name)
        assert err.filename == str(vid) and "deleted" in str(err)


def test_a_hashed_name_whose_name_file_is_a_fifo_is_eio(registry: str) -> None:
    vid = v.vas_create(LONG, 0o600)
    os.unlink(f"{registry}/vas/{vid}/name")
    os.mkfifo(f"{registry}/vas/{vid}/name")
    with _pin(vid) as ref:
        err = _raises(errno.EIO, lambda: ref.name)
        assert "not a regular text file" in str(err) and err.filename == str(vid)


def test_a_hashed_name_whose_name_file_lies_is_eio(registry: str) -> None:
    vid = v.vas_create(LONG, 0o600)
    os.unlink(f"{registry}/vas/{vid}/name")
    with open(f"{registry}/vas/{vid}/name", "w") as f:
        f.write("é" * 99)  # another name: it does not hash to the index entry
    with _pin(vid) as ref:
        err = _raises(errno.EIO, lambda: ref.name)
        assert "does not match the name index" in str(err)


# ------------------------------------------------------------ errors name the object


def test_errors_carry_the_name_once_read_else_the_id(registry: str) -> None:
    vid = v.vas_create("named", 0o600)
    with _pin(vid) as ref:
        assert ref.gone().filename == str(vid)
        assert ref.damaged("x").filename == str(vid)
        assert ref.name == "named"
        assert ref.gone().filename == "named"
        err = ref.error(errno.EBUSY, "is busy")
        assert err.filename == "named" and "'named'" in str(err)
        assert ref.damaged("x").filename == "named"


# ------------------------------------------------------------ recheck


@pytest.mark.parametrize("method", ["recheck", "unpublish"])
def test_a_name_link_retargeted_to_another_id_is_einval_and_left_alone(
        registry: str, method: str) -> None:
    vid = v.vas_create("mine", 0o600)
    other = v.vas_create("other", 0o600)
    with _pin(vid) as ref:
        _retarget(registry, "mine", str(other))
        _raises(errno.EINVAL, getattr(ref, method))
    assert os.readlink(f"{registry}/names/vas/mine") == str(other)
    assert os.path.exists(f"{registry}/vas/{vid}/lock")  # nothing reclaimed


def test_recheck_after_a_delete_is_einval(registry: str) -> None:
    vid = v.vas_create("del", 0o600)
    with _pin(vid) as ref:
        os.unlink(f"{registry}/names/vas/del")
        _raises(errno.EINVAL, ref.recheck)


def test_recheck_refuses_a_directory_swapped_for_a_link_to_it(registry: str) -> None:
    vid = v.vas_create("moved", 0o600)
    with _pin(vid) as ref:
        ref.recheck()
        os.rename(f"{registry}/vas/{vid}", f"{registry}/vas/{vid}.away")
        os.symlink(f"{registry}/vas/{vid}.away", f"{registry}/vas/{vid}")
        # Followed, the link would lead to the very pinned directory.
        _raises(errno.EINVAL, ref.recheck)


# ------------------------------------------------------------ read, attr


def test_read_of_a_symlinked_file_is_eio_and_not_followed(registry: str) -> None:
    vid = v.vas_create("rd", 0o600)
    target = f"{registry}/target"
    with open(target, "w") as f:
        f.write("secret")
    os.symlink(target, f"{registry}/vas/{vid}/region")
    with _pin(vid) as ref:
        err = _raises(errno.EIO, ref.read, "region")
        assert "region is not a regular text file" in str(err)


def test_read_and_open_of_a_missing_file_are_einval(registry: str) -> None:
    vid = v.vas_create("gone", 0o600)
    with _pin(vid) as ref:
        _raises(errno.EINVAL, ref.read, "region")
        _raises(errno.EINVAL, ref.open, "region", os.O_RDONLY)
        os.unlink(f"{registry}/vas/{vid}/lock")
        _raises(errno.EINVAL, ref.attr)  # no lock file: half deleted


def test_open_returns_a_descriptor_of_the_regular_file(registry: str) -> None:
    vid = v.vas_create("op", 0o600)
    with _pin(vid) as ref:
        fd = ref.open("lock", os.O_RDONLY)
        try:
            assert os.path.samestat(os.fstat(fd), os.stat(f"{registry}/vas/{vid}/lock"))
        finally:
            os.close(fd)


def test_open_of_a_fifo_or_symlink_is_eio_and_never_blocks(registry: str) -> None:
    vid = v.vas_create("op", 0o600)
    os.mkfifo(f"{registry}/vas/{vid}/fifo")
    os.symlink("lock", f"{registry}/vas/{vid}/link")
    with _pin(vid) as ref:
        err = _raises(errno.EIO, ref.open, "fifo", os.O_RDONLY)
        assert "fifo is not a regular file" in str(err)
        err = _raises(errno.EIO, ref.open, "link", os.O_RDONLY)
        assert "link is a symlink" in str(err)


def test_pin_passes_permission_errors_through(registry: str) -> None:
    vid = v.vas_create("closed", 0o600)
    os.chmod(f"{registry}/vas/{vid}", 0o700)
    assert _errno_as_nobody(vid) == errno.EACCES


def test_read_passes_permission_errors_through(registry: str) -> None:
    vid = v.vas_create("perm", 0o644)
    path = f"{registry}/vas/{vid}/secret"
    with open(path, "w") as f:
        f.write("x")
    os.chmod(path, 0o600)
    assert _errno_as_nobody(vid, "read", "secret") == errno.EACCES
    assert _errno_as_nobody(vid, "open", "secret", os.O_RDONLY) == errno.EACCES


def test_attr_follows_no_symlinked_attribute_file(registry: str) -> None:
    vid = v.vas_create("ln", 0o600)
    target = f"{registry}/target"
    with open(target, "w"):
        pass
    os.unlink(f"{registry}/vas/{vid}/lock")
    os.symlink(target, f"{registry}/vas/{vid}/lock")
    with _pin(vid) as ref:
        _raises(errno.EIO, ref.attr)
    assert refmod.attr_of(VAS, vid, registry) is None


def test_attr_of_a_fifo_attribute_file_is_eio(registry: str) -> None:
    vid = v.vas_create("fifo", 0o600)
    os.unlink(f"{registry}/vas/{vid}/lock")
    os.mkfifo(f"{registry}/vas/{vid}/lock")
    with _pin(vid) as ref:
        err = _raises(errno.EIO, ref.attr)
        assert "lock is not a regular file" in str(err)
    assert refmod.attr_of(VAS, vid, registry) is None


def test_attr_keeps_only_the_read_write_bits(registry: str) -> None:
    vid = v.vas_create("bits", 0o644)
    os.chmod(f"{registry}/vas/{vid}/lock", 0o755)  # x bits: not an RFC mode bit
    with _pin(vid) as ref:
        assert ref.attr().mode == 0o644
    got = refmod.attr_of(VAS, vid, registry)
    assert got is not None and got.mode == 0o644


# ------------------------------------------------------------ unpublish


def test_unpublish_of_an_already_unpublished_object_reclaims_nothing(registry: str) -> None:
    vid = v.vas_create("half", 0o600)
    with _pin(vid) as ref:
        os.unlink(f"{registry}/names/vas/half")  # another delete got here first
        _raises(errno.EINVAL, ref.unpublish)
    assert os.path.exists(f"{registry}/vas/{vid}/lock")


# ------------------------------------------------------------ pin and _open_live


def test_pin_of_a_missing_id_is_einval(registry: str) -> None:
    err = _raises(errno.EINVAL, refmod.pin, VAS, 4242)
    assert err.filename == "4242"


def test_pin_of_a_planted_file_or_link_is_einval(registry: str) -> None:
    with open(f"{registry}/vas/77", "w"):
        pass
    _raises(errno.EINVAL, refmod.pin, VAS, 77)  # ENOTDIR
    vid = v.vas_create("real", 0o600)
    os.symlink(f"{registry}/vas/{vid}", f"{registry}/vas/{vid + 1}")
    _raises(errno.EINVAL, refmod.pin, VAS, vid + 1)  # ELOOP: never followed


def test_an_index_with_a_slash_is_not_live(registry: str) -> None:
    planted = 500
    os.mkdir(f"{registry}/vas/{planted}")
    with open(f"{registry}/vas/{planted}/lock", "w"):
        pass
    # Read as a path under names/vas/, this index leads to a link planted
    # beside it that points back at ``planted``: only its spelling refuses it.
    os.symlink(f"../../vas/{planted}/self", f"{registry}/vas/{planted}/index")
    os.symlink(str(planted), f"{registry}/vas/{planted}/self")
    _raises(errno.EINVAL, refmod.pin, VAS, planted)
    assert refmod.attr_of(VAS, planted, registry) is None
    assert not refmod.is_live(VAS, planted, registry)


def test_find_with_a_mismatched_index_is_not_live(registry: str) -> None:
    a = v.vas_create("a", 0o600)
    v.vas_create("b", 0o600)
    assert refmod.live_id(VAS, "a", registry) == a
    # The name link "b" retargeted at ``a``: a's index names "a", not "b".
    _retarget(registry, "b", str(a))
    assert refmod.live_id(VAS, "b", registry) is None


def test_a_name_link_that_does_not_point_back_is_not_live(registry: str) -> None:
    a = v.vas_create("a", 0o600)
    b = v.vas_create("b", 0o600)
    os.unlink(f"{registry}/vas/{b}/index")
    os.symlink("a", f"{registry}/vas/{b}/index")  # claims a's name
    _raises(errno.EINVAL, refmod.pin, VAS, b)
    assert refmod.attr_of(VAS, b, registry) is None
    assert not refmod.is_live(VAS, b, registry)
    assert refmod.is_live(VAS, a, registry)


def test_unpublish_by_another_user_is_eperm_and_removes_nothing(registry: str) -> None:
    vid = v.vas_create("owned", 0o666)
    assert _errno_as_nobody(vid, "unpublish") == errno.EPERM
    assert os.readlink(f"{registry}/names/vas/owned") == str(vid)
    assert v.vas_find("owned") == vid


def test_is_live_of_a_missing_id_is_false(registry: str) -> None:
    assert not refmod.is_live(VAS, 9999, registry)


def _plant(registry: str, oid: str, enc: str) -> None:
    """An object made by hand, as vaspace lays it out, under a chosen id."""
    os.mkdir(f"{registry}/vas/{oid}")
    os.symlink(enc, f"{registry}/vas/{oid}/index")
    with open(f"{registry}/vas/{oid}/lock", "w"):
        pass
    os.symlink(oid, f"{registry}/names/vas/{enc}")


@pytest.mark.parametrize("oid", ["10", "2147483647"])
def test_find_accepts_every_id_as_vaspace_writes_it(registry: str, oid: str) -> None:
    _plant(registry, oid, "edge")
    assert refmod.live_id(VAS, "edge", registry) == int(oid)
    assert v.vas_find("edge") == int(oid)


@pytest.mark.parametrize("target", ["abc", "x/", "2147483648", "99999999999", "٣"])
def test_find_refuses_a_name_link_that_is_no_id(registry: str, target: str) -> None:
    os.symlink(target, f"{registry}/names/vas/junk")
    assert refmod.live_id(VAS, "junk", registry) is None
    assert errno_of(v.vas_find, "junk") == errno.ESRCH


def test_find_refuses_an_id_spelt_with_a_leading_zero(registry: str) -> None:
    _plant(registry, "7", "zero")
    assert refmod.live_id(VAS, "zero", registry) == 7
    _retarget(registry, "zero", "07")  # not how vaspace writes an id
    assert refmod.live_id(VAS, "zero", registry) is None


class _Exploding(str):
    """An encoded name whose comparison fails with a non-OSError."""

    def __ne__(self, other: object) -> bool:
        raise ValueError("boom")


def test_open_live_closes_its_descriptor_on_any_exception(registry: str) -> None:
    v.vas_create("a", 0o600)
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(ValueError, match="boom"):
        refmod.live_id(VAS, _Exploding("a"), registry)
    assert set(os.listdir("/proc/self/fd")) == before
