"""registry/fs.py: the primitives every registry access goes through (STYLE.md §5)."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from vaspace.registry import fs


@pytest.fixture
def d(tmp_path: Path) -> Path:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep").write_text("keep")
    work = tmp_path / "work"
    work.mkdir()
    return work


def test_open_file_refuses_a_fifo_without_blocking(d: Path) -> None:
    os.mkfifo(d / "fifo")
    done: list[object] = []

    def opener() -> None:
        try:
            fs.open_file("fifo", os.O_RDONLY, fs.open_dir(str(d)))
        except OSError as exc:
            done.append(exc.errno)

    t = threading.Thread(target=opener, daemon=True)
    t.start()
    t.join(5)
    assert done == [errno.EIO]  # refused at once: no writer was ever needed


def test_open_file_refuses_links_and_directories(d: Path) -> None:
    (d / "real").write_text("x")
    os.symlink(d / "real", d / "link")
    (d / "sub").mkdir()
    dfd = fs.open_dir(str(d))
    try:
        with pytest.raises(OSError) as e:
            fs.open_file("link", os.O_RDONLY, dfd)
        assert e.value.errno == errno.ELOOP
        with pytest.raises(fs.NotRegular):
            fs.open_file("sub", os.O_RDONLY, dfd)
        assert fs.read_small("real", dfd) == "x"
    finally:
        os.close(dfd)


def test_open_dir_never_follows_a_link(d: Path) -> None:
    os.symlink(d.parent / "outside", d / "swapped")
    with pytest.raises(OSError) as e:
        fs.open_dir(str(d / "swapped"))
    assert e.value.errno in (errno.ELOOP, errno.ENOTDIR)  # Linux says ENOTDIR with O_DIRECTORY


def test_clear_dir_unlinks_links_and_never_recurses(d: Path) -> None:
    """Links are removed, not followed; a planted non-empty directory is left, not emptied."""
    outside = d.parent / "outside"
    os.symlink(outside, d / "dirlink")
    os.symlink(outside / "keep", d / "filelink")
    (d / "planted").mkdir()
    (d / "planted" / "inner").write_text("x")
    (d / "empty").mkdir()
    (d / "file").write_text("x")
    dfd = fs.open_dir(str(d))
    try:
        removed: list[str] = []
        assert fs.clear_dir(dfd, removed=removed) is False  # "planted" stays
    finally:
        os.close(dfd)
    assert sorted(os.listdir(d)) == ["planted"]
    assert (d / "planted" / "inner").exists()
    assert sorted(removed) == ["dirlink", "file", "filelink"]
    assert (outside / "keep").read_text() == "keep"


def test_known_subdirs_are_cleared_one_level(d: Path) -> None:
    (d / "vases").mkdir()
    os.symlink("rw", d / "vases" / "3")
    (d / "vases" / "deeper").mkdir()
    (d / "vases" / "deeper" / "x").write_text("x")
    dfd = fs.open_dir(str(d))
    try:
        assert fs.clear_dir(dfd, subdirs=("vases",)) is False
    finally:
        os.close(dfd)
    assert os.listdir(d / "vases") == ["deeper"]  # one level only


def test_remove_pinned_does_not_remove_a_swapped_in_directory(d: Path) -> None:
    """Once pinned, a rename of the entry makes the removal stop, never hit the newcomer."""
    (d / "obj").mkdir()
    (d / "obj" / "name").write_text("x")
    parent = fs.open_dir(str(d))
    dfd = fs.open_dir("obj", parent)
    try:
        os.rename(d / "obj", d / "moved")
        (d / "obj").mkdir()  # someone else's directory now has the name
        (d / "obj" / "theirs").write_text("x")
        assert fs.remove_pinned("obj", parent, dfd) is False
        assert (d / "obj" / "theirs").exists()
        assert os.listdir(d / "moved") == []  # the pinned one was emptied
    finally:
        os.close(dfd)
        os.close(parent)


def test_remove_dir_leaves_links_and_other_filesystems(d: Path) -> None:
    os.symlink(d.parent / "outside", d / "link")
    parent = fs.open_dir(str(d))
    try:
        assert fs.remove_dir("link", parent) is False
        assert fs.remove_dir("missing", parent) is False
    finally:
        os.close(parent)
    assert os.path.islink(d / "link") and (d.parent / "outside" / "keep").exists()
