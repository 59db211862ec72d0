"""A VAS's segment links and a segment's reverse index, as other users may leave them."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

import vaspace
from vaspace_testing import NOBODY, SEG_BASE, in_child

PAGE = os.sysconf("SC_PAGE_SIZE")


def test_delete_ignores_planted_entries_that_are_not_segment_links(registry: str) -> None:
    """A VAS's writers may add entries to its directory: names like ``seg.junk``
    are not segment links, and do not stop (or crash) the owner's delete."""
    vid = vaspace.vas_create("v", 0o666)
    sid = vaspace.vas_seg_create("s", SEG_BASE, SEG_BASE + PAGE, 0o666)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    d = Path(registry) / "vas" / str(vid)
    os.symlink("rw", d / "seg.junk")
    os.symlink("rw", d / "seg.")
    (d / "stray").write_text("")
    vaspace.vas_delete(vid)
    with pytest.raises(ProcessLookupError):
        vaspace.vas_find("v")
    # The real link's reverse entry went with it: the segment is free to delete.
    assert os.listdir(Path(registry) / "seg" / str(sid) / "vases") == []
    vaspace.vas_seg_delete(sid)


def test_attach_to_a_segment_without_its_reverse_index_is_refused(
        registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``vases/`` directory gone (or replaced): a clear error naming the
    segment, and nothing written anywhere else (not in the working directory)."""
    monkeypatch.chdir(tmp_path)
    vid = vaspace.vas_create("v", 0o600)
    sid = vaspace.vas_seg_create("s", SEG_BASE, SEG_BASE + PAGE, 0o600)
    shutil.rmtree(Path(registry) / "seg" / str(sid) / "vases")
    with pytest.raises(OSError) as e:
        vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    assert e.value.errno == errno.EIO
    assert "'s'" in str(e.value) and "vases" in str(e.value)
    assert list(tmp_path.iterdir()) == []
    assert vaspace.vas_segments(vid) == []


def test_the_os_refusing_a_link_change_is_eacces_naming_the_vas(registry: str) -> None:
    """The VAS's mode lets everyone write it, but its owner took the write bits
    off its directory: the kernel refuses the link, and the caller gets EACCES
    (no attach or detach that silently did nothing)."""
    vid = vaspace.vas_create("v", 0o666)
    attached = vaspace.vas_seg_create("a", SEG_BASE, SEG_BASE + PAGE, 0o666)
    free = vaspace.vas_seg_create("f", SEG_BASE + PAGE, SEG_BASE + 2 * PAGE, 0o666)
    vaspace.vas_seg_attach(vid, attached, os.O_RDWR)
    os.chmod(Path(registry) / "vas" / str(vid), 0o1755)

    def try_both() -> list[tuple[int, str]]:
        out = []
        for call, sid in ((vaspace.vas_seg_attach, free), (vaspace.vas_seg_detach, attached)):
            try:
                call(vid, sid, *([os.O_RDWR] if call is vaspace.vas_seg_attach else []))
                out.append((0, ""))
            except OSError as exc:
                out.append((exc.errno or -1, str(exc)))
        return out

    for err, text in in_child(try_both, uid=NOBODY).get():
        assert err == errno.EACCES and "'v'" in text, text
    assert [s.sid for s in vaspace.vas_segments(vid)] == [attached]
