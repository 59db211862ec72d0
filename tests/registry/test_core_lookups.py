"""``_core.open_live``, ``stat_live`` and ``open_segment``: one object's system calls in one call.

Their contract (what they return, which step an error names, what they
refuse) and their security behaviour on a hand-made object layout: a link
is never followed, a FIFO is never waited on, an index that could climb out
of ``names/`` is never used as a path, and nothing stays open on any error.
Then the same through the API: the attach and ``Segment(sid)`` paths that
use them still refuse planted files with the errors the Python path gave.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

import pytest

import vaspace as v
from vaspace import _core
from vaspace_testing import SEG_BASE, MiB, in_child

PAGE = os.sysconf("SC_PAGE_SIZE")


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """objs/7 (index -> "seven", lock, region, data) and names/seven -> "7"."""
    obj = tmp_path / "objs" / "7"
    obj.mkdir(parents=True)
    (tmp_path / "names").mkdir()
    os.symlink("seven", obj / "index")
    os.symlink("7", tmp_path / "names" / "seven")
    (obj / "lock").write_bytes(b"")
    os.chmod(obj / "lock", 0o640)
    (obj / "region").write_text("400000000000-400000002000\n")
    (obj / "data").write_bytes(b"\0" * (2 * PAGE))
    return tmp_path


def _args(base: Path) -> tuple[str, str]:
    return str(base / "objs" / "7"), f"{base}/names/"


def _error(fn, *args) -> OSError:  # type: ignore[no-untyped-def]
    before = _fds()
    with pytest.raises(OSError) as info:
        fn(*args)
    assert _fds() == before, "a descriptor stayed open after an error"
    return info.value


# ------------------------------------------------------------ contract


def test_open_live_returns_the_directory_and_both_links(layout: Path) -> None:
    fd, index, target = _core.open_live(*_args(layout))
    try:
        assert (index, target) == ("seven", "7")
        assert os.path.samestat(os.fstat(fd), os.stat(layout / "objs" / "7"))
        assert os.get_inheritable(fd) is False  # O_CLOEXEC
    finally:
        os.close(fd)
    fd, index, target = _core.open_live(str(layout / "objs" / "7"), None)
    os.close(fd)
    assert (index, target) == ("seven", None)  # no prefix: the name link is not read


def test_stat_live_returns_the_attribute_files_metadata(layout: Path) -> None:
    before = _fds()
    index, target, mode, uid, gid = _core.stat_live(*_args(layout), "lock")
    st = os.lstat(layout / "objs" / "7" / "lock")
    assert (index, target) == ("seven", "7")
    assert (mode, uid, gid) == (st.st_mode, st.st_uid, st.st_gid)
    assert stat.S_IMODE(mode) == 0o640 and stat.S_ISREG(mode)
    assert _fds() == before


def test_open_segment_reads_the_region_and_opens_the_data(layout: Path) -> None:
    for flags in (os.O_RDONLY, os.O_RDWR):
        dfd, index, target, region, fd, size, nlink, mode = _core.open_segment(
            *_args(layout), flags)
        try:
            assert (index, target) == ("seven", "7")
            assert region == b"400000000000-400000002000\n"
            assert (size, nlink) == (2 * PAGE, 1) and stat.S_ISREG(mode)
            fl = fcntl.fcntl(fd, fcntl.F_GETFL)
            assert fl & os.O_ACCMODE == flags and fl & os.O_NONBLOCK
        finally:
            os.close(fd)
            os.close(dfd)


def test_open_segment_region_only(layout: Path) -> None:
    dfd, _, _, region, fd, size, nlink, mode = _core.open_segment(*_args(layout), -1)
    os.close(dfd)
    assert region.startswith(b"4000") and (fd, size, nlink, mode) == (-1, 0, 0, 0)


@pytest.mark.parametrize("args", [(1, None), (b"x", 3), ("x",), ()])
def test_bad_argument_types_raise_type_error(args: tuple) -> None:
    with pytest.raises(TypeError):
        _core.open_live(*args)


def test_bad_arguments_are_refused(layout: Path) -> None:
    with pytest.raises(TypeError):
        _core.stat_live(*_args(layout), 3)
    with pytest.raises(ValueError):
        _core.stat_live(*_args(layout), "lo\0ck")
    for flags in (os.O_WRONLY, os.O_RDWR | os.O_CREAT, os.O_RDONLY | os.O_TRUNC, -2):
        with pytest.raises(ValueError, match="data_flags"):
            _core.open_segment(*_args(layout), flags)


def test_errors_name_the_step_that_failed(layout: Path) -> None:
    obj = layout / "objs" / "7"
    assert _error(_core.open_live, str(layout / "objs" / "8"), None).filename.endswith("/8")
    err = _error(_core.stat_live, *_args(layout), "missing")
    assert (err.errno, err.filename, type(err)) == (errno.ENOENT, "missing", FileNotFoundError)
    os.unlink(layout / "names" / "seven")
    err = _error(_core.open_live, *_args(layout))
    assert err.errno == errno.ENOENT and err.filename == f"{layout}/names/seven"
    os.unlink(obj / "index")
    err = _error(_core.open_live, *_args(layout))
    assert (err.errno, err.filename) == (errno.ENOENT, "index")
    (obj / "index").write_text("seven")  # planted: a file, not a link
    assert _error(_core.open_live, *_args(layout)).errno == errno.EINVAL


def test_open_regular_returns_the_descriptor_and_owner(layout: Path) -> None:
    obj = layout / "objs" / "7"
    dfd = os.open(obj, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for access in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR):
            fd, mode, uid, gid = _core.open_regular(dfd, "lock", access)
            st = os.fstat(fd)
            assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == access
            os.close(fd)
            assert (mode, uid, gid) == (st.st_mode, st.st_uid, st.st_gid)
        with pytest.raises(ValueError, match="access"):
            _core.open_regular(dfd, "lock", os.O_RDWR | os.O_TRUNC)
        err = _error(_core.open_regular, dfd, "index", os.O_RDONLY)  # a link
        assert (err.errno, err.filename) == (errno.ELOOP, "index")
        os.mkfifo(obj / "fifo")
        err = _error(_core.open_regular, dfd, "fifo", os.O_RDONLY)  # O_NONBLOCK: no wait
        assert (err.errno, err.filename) == (errno.EIO, "fifo")
        (obj / "sub").mkdir()
        assert _error(_core.open_regular, dfd, "sub", os.O_RDONLY).errno == errno.EIO
        assert _error(_core.open_regular, dfd, "missing", os.O_RDONLY).errno == errno.ENOENT
    finally:
        os.close(dfd)


def test_same_entry_tells_whether_the_entry_is_the_pinned_directory(layout: Path) -> None:
    obj = layout / "objs" / "7"
    link = f"{layout}/names/seven"
    dfd = os.open(obj, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _core.same_entry(link, str(obj), dfd) == ("7", True)
        os.rename(obj, layout / "objs" / "old")
        (layout / "objs" / "7").mkdir()  # another directory under the id
        assert _core.same_entry(link, str(obj), dfd) == ("7", False)
        os.rmdir(obj)
        os.symlink(layout / "objs" / "old", obj)  # a link to the pinned one: lstat, not followed
        assert _core.same_entry(link, str(obj), dfd) == ("7", False)
        err = _error(_core.same_entry, f"{layout}/names/none", str(obj), dfd)
        assert err.errno == errno.ENOENT and err.filename.endswith("/none")
        assert _error(_core.same_entry, link, str(obj), -1).errno == errno.EBADF
    finally:
        os.close(dfd)


# ------------------------------------------------------------ security behaviour


def test_a_symlinked_directory_is_never_followed(layout: Path) -> None:
    os.symlink(layout / "objs" / "7", layout / "objs" / "8")
    for call in (lambda: _core.open_live(str(layout / "objs" / "8"), None),
                 lambda: _core.stat_live(str(layout / "objs" / "8"), None, "lock"),
                 lambda: _core.open_segment(str(layout / "objs" / "8"), None, os.O_RDONLY)):
        # O_DIRECTORY|O_NOFOLLOW on a link: ENOTDIR (Linux) or ELOOP, never the target.
        assert _error(call).errno in (errno.ENOTDIR, errno.ELOOP)


@pytest.mark.parametrize("what", ["lock", "region", "data"])
def test_a_symlinked_file_is_never_followed(layout: Path, tmp_path: Path, what: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("400000000000-400000002000\n")
    path = layout / "objs" / "7" / what
    os.unlink(path)
    os.symlink(victim, path)
    if what == "lock":
        # lstat: the link itself is described, never its target.
        mode = _core.stat_live(*_args(layout), "lock")[2]
        assert stat.S_ISLNK(mode)
    else:
        err = _error(_core.open_segment, *_args(layout), os.O_RDWR)
        assert (err.errno, err.filename) == (errno.ELOOP, what)
    assert victim.read_text() == "400000000000-400000002000\n"


@pytest.mark.parametrize("what", ["region", "data"])
def test_a_fifo_is_refused_without_blocking(layout: Path, what: str) -> None:
    path = layout / "objs" / "7" / what
    os.unlink(path)
    os.mkfifo(path)

    def child() -> tuple[int, str]:
        try:
            _core.open_segment(*_args(layout), os.O_RDONLY)
        except OSError as exc:
            return exc.errno, exc.filename
        return 0, ""

    # A blocking open or read would hang the child: the bounded wait fails the test.
    assert in_child(child, timeout=20).get() == (errno.EIO, what)


def test_a_directory_planted_as_region_is_eio(layout: Path) -> None:
    path = layout / "objs" / "7" / "region"
    os.unlink(path)
    path.mkdir()
    err = _error(_core.open_segment, *_args(layout), os.O_RDONLY)
    assert err.filename == "region" and err.errno in (errno.EIO, errno.EISDIR)


@pytest.mark.parametrize("index", ["../../objs/7/x", "..", ".", "a/b", ""])
def test_an_index_that_climbs_is_never_used_as_a_path(layout: Path, index: str) -> None:
    obj = layout / "objs" / "7"
    os.unlink(obj / "index")
    if index:
        os.symlink(index, obj / "index")
        err = _error(_core.open_live, *_args(layout))
        assert (err.errno, err.filename) == (errno.ENOENT, "index")
    # Without a prefix nothing is followed: the raw index comes back for Python to check.
    if index:
        fd, got, target = _core.open_live(str(obj), None)
        os.close(fd)
        assert (got, target) == (index, None)


def test_a_long_index_is_refused(layout: Path) -> None:
    obj = layout / "objs" / "7"
    os.unlink(obj / "index")
    os.symlink("x" * 4000, obj / "index")
    err = _error(_core.open_live, *_args(layout))
    assert err.errno in (errno.ENOENT, errno.ENAMETOOLONG)


# ------------------------------------------------------------ through the API


def _segment(registry: str, size: int = 2 * PAGE) -> tuple[int, int]:
    vid = v.vas_create("lk", 0o600)
    sid = v.vas_seg_create("lk", SEG_BASE, SEG_BASE + size, 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    return vid, sid


@pytest.mark.parametrize("what", ["region", "data"])
def test_attach_refuses_a_fifo_planted_in_the_segment(registry: str, what: str) -> None:
    vid, sid = _segment(registry)
    path = f"{registry}/seg/{sid}/{what}"
    mode = os.lstat(path).st_mode
    os.unlink(path)
    os.mkfifo(path, stat.S_IMODE(mode))

    def child() -> int:
        try:
            v.vas_attach(0, vid, os.O_RDWR)
        except OSError as exc:
            return exc.errno
        return 0

    assert in_child(child, timeout=20).get() == errno.EIO


@pytest.mark.parametrize("junk", ["zz-top\n", "2000-1000", ""])
def test_attach_and_segment_handle_report_a_damaged_region(registry: str, junk: str) -> None:
    vid, sid = _segment(registry)
    with open(f"{registry}/seg/{sid}/region", "w") as f:
        f.write(junk)
    for call in (lambda: v.vas_attach(0, vid, os.O_RDWR), lambda: v.Segment(sid)):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EIO and "damaged" in str(info.value)
    assert v.proc_vas(0) == []


def test_attach_refuses_a_data_file_of_the_wrong_size(registry: str) -> None:
    vid, sid = _segment(registry)
    os.truncate(f"{registry}/seg/{sid}/data", PAGE)
    with pytest.raises(OSError) as info:
        v.vas_attach(0, vid, os.O_RDWR)
    assert info.value.errno == errno.EIO and "wrong size" in str(info.value)


def test_attach_skips_a_segment_deleted_meanwhile(registry: str) -> None:
    """A ``seg.<sid>`` link whose segment is gone maps nothing (as before)."""
    vid, sid = _segment(registry)
    os.unlink(f"{registry}/names/seg/lk")  # the first step of a delete
    v.vas_attach(0, vid, os.O_RDWR)
    try:
        assert v.proc_maps(0, vid) == []
    finally:
        v.vas_detach(0, vid)


def test_segment_handle_of_a_hashed_name(registry: str) -> None:
    """A name too long for the index link is read from its ``name`` file (the slow way)."""
    name = "é" * 100  # 200 bytes, 900 once percent-encoded
    sid = v.vas_seg_create(name, SEG_BASE, SEG_BASE + MiB, 0o600)
    seg = v.Segment(sid)
    assert (seg.name, seg.start, seg.end) == (name, SEG_BASE, SEG_BASE + MiB)
