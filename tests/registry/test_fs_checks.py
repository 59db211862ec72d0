"""The checks in ``registry.fs``, one planted entry or other user per check (issue 17 §3).

Real files, FIFOs, symlinks, a real mount point (``/proc``) for the
same-filesystem check and a real second user (uid 65534) for the sticky
directory rules; each test asserts what was (not) opened or removed.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator

import pytest

from vaspace.registry import fs
from vaspace_testing import in_child

NOBODY = 65534


@pytest.fixture
def tmp() -> Iterator[str]:
    """A sticky, world-writable scratch directory owned by root, like /tmp."""
    d = tempfile.mkdtemp(prefix="vaspace-fs-", dir="/dev/shm")
    os.chmod(d, 0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d)  # as root: other users' entries included


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# ------------------------------------------------------------ small files


def test_read_small_reads_4_kib_and_no_more(tmp: str) -> None:
    _write(f"{tmp}/exact", b"a" * 4096)
    _write(f"{tmp}/long", b"b" * 5000)
    dfd = fs.open_dir(tmp)
    try:
        assert fs.read_small("exact", dfd) == "a" * 4096
        assert fs.read_small("long", dfd) == "b" * 4096
    finally:
        os.close(dfd)


def test_read_small_of_bytes_that_are_not_utf8_is_eio(tmp: str) -> None:
    _write(f"{tmp}/bin", b"\xff\xfe")
    with pytest.raises(OSError) as info:
        fs.read_small(f"{tmp}/bin")
    assert info.value.errno == errno.EIO and "not UTF-8" in str(info.value)


def test_open_file_returns_the_regular_file(tmp: str) -> None:
    _write(f"{tmp}/f", b"x")
    fd = fs.open_file(f"{tmp}/f", os.O_RDONLY)
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(f"{tmp}/f"))
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["fifo", "dir"])
def test_open_file_refuses_a_fifo_or_directory_without_blocking_or_leaking(
        tmp: str, kind: str) -> None:
    path = f"{tmp}/{kind}"
    (os.mkfifo if kind == "fifo" else os.mkdir)(path)
    before = _fds()
    with pytest.raises(fs.NotRegular) as info:
        fs.open_file(path, os.O_RDONLY)
    assert info.value.errno == errno.EIO
    assert _fds() == before  # the descriptor it opened to check was closed


def test_write_new_writes_its_text_with_the_exact_mode(tmp: str) -> None:
    dfd = fs.open_dir(tmp)
    old = os.umask(0o077)
    try:
        fs.write_new("t", "hello", 0o644, dfd)
        fs.write_new("e", "", 0o640, dfd)
    finally:
        os.umask(old)
        os.close(dfd)
    with open(f"{tmp}/t") as f:
        assert f.read() == "hello"
    assert stat.S_IMODE(os.stat(f"{tmp}/t").st_mode) == 0o644
    assert os.path.getsize(f"{tmp}/e") == 0
    assert stat.S_IMODE(os.stat(f"{tmp}/e").st_mode) == 0o640


def test_lstat_at_does_not_follow_a_link(tmp: str) -> None:
    os.mkdir(f"{tmp}/d")
    os.symlink("d", f"{tmp}/l")
    st = fs.lstat_at(f"{tmp}/l", None)
    assert st is not None and stat.S_ISLNK(st.st_mode)
    assert fs.lstat_at(f"{tmp}/missing", None) is None


# ------------------------------------------------------------ open_checked_dir


def _checked(name: str, parent: str, dev: int, owners: tuple[int, ...] | None = None) -> bool:
    pfd = fs.open_dir(parent)
    try:
        fd = fs.open_checked_dir(name, pfd, dev, owners)
        if fd is None:
            return False
        try:
            assert os.path.samestat(os.fstat(fd), os.stat(f"{parent}/{name}",
                                                          follow_symlinks=False))
        finally:
            os.close(fd)
        return True
    finally:
        os.close(pfd)


def test_open_checked_dir_refuses_anything_but_a_real_directory(tmp: str) -> None:
    dev = os.stat(tmp).st_dev
    os.mkdir(f"{tmp}/d")
    os.symlink("d", f"{tmp}/link")
    _write(f"{tmp}/file", b"")
    assert _checked("d", tmp, dev)
    assert not _checked("link", tmp, dev)
    assert not _checked("file", tmp, dev)
    assert not _checked("missing", tmp, dev)


def test_open_checked_dir_refuses_another_filesystem() -> None:
    # /proc is a real mount point: a directory of another filesystem under "/".
    assert not _checked("proc", "/", os.stat("/").st_dev)
    assert _checked("proc", "/", os.stat("/proc").st_dev)


def test_open_checked_dir_refuses_another_users_directory(tmp: str) -> None:
    dev = os.stat(tmp).st_dev
    in_child(os.mkdir, f"{tmp}/theirs", uid=NOBODY).get()
    assert not _checked("theirs", tmp, dev, (0,))
    assert _checked("theirs", tmp, dev, (0, NOBODY))
    assert _checked("theirs", tmp, dev, None)


# ------------------------------------------------------------ clear_dir, remove_pinned


def test_clear_dir_empties_known_subdirs_and_leaves_planted_ones(tmp: str) -> None:
    os.mkdir(f"{tmp}/obj")
    _write(f"{tmp}/obj/a", b"")
    os.mkdir(f"{tmp}/obj/vases")
    _write(f"{tmp}/obj/vases/7", b"")
    dfd = fs.open_dir(f"{tmp}/obj")
    try:
        removed: list[str] = []
        assert fs.clear_dir(dfd, ("vases",), removed) is True
        assert removed == ["a"] and os.listdir(f"{tmp}/obj") == []
        os.mkdir(f"{tmp}/obj/junk")
        _write(f"{tmp}/obj/junk/keep", b"")
        assert fs.clear_dir(dfd, ("vases",)) is False  # not recursed into
        assert os.listdir(f"{tmp}/obj/junk") == ["keep"]
    finally:
        os.close(dfd)


def _clear_as_nobody(path: str) -> tuple[bool, list[str]]:
    dfd = fs.open_dir(path)
    try:
        return fs.clear_dir(dfd), sorted(os.listdir(dfd))
    finally:
        os.close(dfd)


def test_clear_dir_leaves_another_users_files_and_says_so(tmp: str) -> None:
    os.mkdir(f"{tmp}/shared")
    os.chmod(f"{tmp}/shared", 0o1777)
    _write(f"{tmp}/shared/roots", b"")
    in_child(_write, f"{tmp}/shared/mine", b"", uid=NOBODY).get()
    empty, left = in_child(_clear_as_nobody, f"{tmp}/shared", uid=NOBODY).get()
    assert empty is False and left == ["roots"]


def _remove_pinned(path: str, name: str | None = None) -> bool:
    dfd = fs.open_dir(path)
    try:
        return fs.remove_pinned(name or path, None, dfd)
    finally:
        os.close(dfd)


def test_remove_pinned_removes_the_pinned_directory(tmp: str) -> None:
    os.mkdir(f"{tmp}/d")
    _write(f"{tmp}/d/f", b"")
    assert _remove_pinned(f"{tmp}/d") is True
    assert not os.path.lexists(f"{tmp}/d")


def test_remove_pinned_leaves_a_directory_it_cannot_empty(tmp: str) -> None:
    os.mkdir(f"{tmp}/d")
    os.mkdir(f"{tmp}/d/planted")
    _write(f"{tmp}/d/planted/f", b"")
    assert _remove_pinned(f"{tmp}/d") is False
    assert os.path.isdir(f"{tmp}/d/planted")


def test_remove_pinned_leaves_a_directory_swapped_in(tmp: str) -> None:
    os.mkdir(f"{tmp}/d")
    dfd = fs.open_dir(f"{tmp}/d")
    try:
        os.rename(f"{tmp}/d", f"{tmp}/away")
        os.mkdir(f"{tmp}/d")  # someone else's, empty: rmdir would take it
        assert fs.remove_pinned(f"{tmp}/d", None, dfd) is False
        assert os.path.isdir(f"{tmp}/d") and os.path.isdir(f"{tmp}/away")
        os.rmdir(f"{tmp}/d")
        assert fs.remove_pinned(f"{tmp}/d", None, dfd) is True  # already gone
    finally:
        os.close(dfd)


def test_remove_pinned_of_a_directory_it_may_not_unlink_is_false(tmp: str) -> None:
    os.mkdir(f"{tmp}/roots")
    os.chmod(f"{tmp}/roots", 0o777)  # empty and writable, but root's, in a sticky dir
    assert in_child(_remove_pinned, f"{tmp}/roots", uid=NOBODY).get() is False
    assert os.path.isdir(f"{tmp}/roots")


def test_remove_dir_leaves_a_symlink_and_its_target(tmp: str) -> None:
    os.mkdir(f"{tmp}/target")
    _write(f"{tmp}/target/f", b"")
    os.symlink("target", f"{tmp}/link")
    pfd = fs.open_dir(tmp)
    try:
        assert fs.remove_dir("link", pfd) is False
        assert os.path.islink(f"{tmp}/link") and os.listdir(f"{tmp}/target") == ["f"]
        assert fs.remove_dir("target", pfd) is True
        assert not os.path.lexists(f"{tmp}/target")
    finally:
        os.close(pfd)
