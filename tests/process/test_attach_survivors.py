"""Attach checks that mutation testing found unasserted (issue 17, Deliver 3).

Acting on another process: a pid nobody has is ESRCH before the VAS is looked at.

``vas_attach``/``vas_detach`` on another pid check the process first (it
must exist and be signalable), so a missing process is reported as such
even when the VAS would be refused too (no such id, not attached there).
"""

from __future__ import annotations

import errno
import mmap
import os

import pytest

import vaspace as v
from vaspace.registry import memfile
from vaspace.window import ranges
from vaspace.window import vas_range as winmod_vas_range
from vaspace_testing import (
    NOBODY,
    MiB,
    attach_outcome,
    errno_of,
    in_child,
    require_root,
    set_acl,
    start_child,
)

RW = mmap.PROT_READ | mmap.PROT_WRITE

NO_SUCH_PID = 2**31 - 1  # above pid_max: nobody has it


def test_attach_to_a_missing_process_is_esrch_even_for_a_missing_vas(registry: str) -> None:
    assert errno_of(v.vas_attach, NO_SUCH_PID, 12345, os.O_RDONLY) == errno.ESRCH


def test_detach_from_a_missing_process_is_esrch_not_einval(registry: str) -> None:
    vid = v.vas_create("never-attached", 0o600)
    assert errno_of(v.vas_detach, NO_SUCH_PID, vid) == errno.ESRCH
    assert errno_of(v.vas_detach, NO_SUCH_PID, 12345) == errno.ESRCH


def test_a_segment_in_the_shm_range_is_refused_as_such(registry: str) -> None:
    """The window check lets a segment in the shared-memory range through (it
    is in the window); the mapping step then names the range it lies in."""
    (_, _), (shm_lo, _), _ = ranges()
    vid = v.vas_create("v", 0o600)
    sid = v.vas_seg_create("in-shm", shm_lo, shm_lo + MiB, 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    with pytest.raises(OSError) as info:
        v.vas_attach(0, vid, os.O_RDWR)
    assert info.value.errno == errno.EFAULT
    assert "lies in the shared-memory range" in info.value.strerror


def test_a_private_range_the_os_refuses_is_eacces(registry: str) -> None:
    """Mode bits let others open a 0o666 VAS's private memory file; an ACL
    entry refuses NOBODY: their attach is EACCES naming the file, no crash."""
    require_root()
    lo, _ = winmod_vas_range()
    vid = v.vas_create("v", 0o666)
    v.vas_mmap(vid, lo, MiB, RW)
    (name,) = [e for e in os.listdir(f"{registry}/vas/{vid}") if e.startswith(memfile.PREFIX)]
    set_acl(f"{registry}/vas/{vid}/{name}", nobody=0, other=6)
    err, text = in_child(attach_outcome, vid, uid=NOBODY).get()
    assert err == errno.EACCES and "cannot be opened: the OS refuses" in text, text


def _attach_own_then_switch(go: int, own: int) -> list[int]:
    os.read(go, 1)  # the parent has left its request (before this process published)
    v.vas_attach(0, own, os.O_RDWR)  # publishes the lazy-attach word under this root
    v.vas_switch(own)  # the slow path's sync reads pending/: nothing older is skipped
    v.vas_switch(0)
    return sorted(p.vid for p in v.proc_vas(0))


def test_a_request_left_before_the_word_was_published_is_carried_out(registry: str) -> None:
    own = v.vas_create("own", 0o600)
    asked = v.vas_create("asked", 0o600)
    r, w = os.pipe()
    child = start_child(_attach_own_then_switch, r, own)
    try:
        v.vas_attach(child.pid, asked, os.O_RDONLY)  # no word to set yet: pending/ only
    finally:
        os.write(w, b"x")
        os.close(w)
        os.close(r)
    assert child.result().get() == sorted([own, asked])


def test_private_ranges_are_listed_only_for_a_vas_that_has_them(
        registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attach lists a VAS's private ranges (a directory scan and a parse
    per file) only when its directory holds one: an attach of a VAS of
    segments alone skips it (issue 11 §3's warm attach)."""
    calls: list[object] = []
    real = memfile.ranges

    def counting(vas: object) -> object:
        calls.append(vas)
        return real(vas)

    monkeypatch.setattr(memfile, "ranges", counting)
    plain = v.vas_create("plain", 0o600)
    sid = v.vas_seg_create("s", 0x4000_0000_0000, 0x4000_0000_0000 + MiB, 0o600)
    v.vas_seg_attach(plain, sid, os.O_RDWR)
    private = v.vas_create("private", 0o600)
    lo, _ = winmod_vas_range()
    v.vas_mmap(private, lo + 64 * MiB, MiB, RW)
    calls.clear()  # vas_mmap lists them too
    v.vas_attach(0, plain, os.O_RDWR)
    assert calls == []
    v.vas_attach(0, private, os.O_RDWR)
    assert len(calls) == 1
    for vid in (plain, private):
        v.vas_detach(0, vid)


def _vas_with_range_file_moved_to(start: int, segment: bool = False) -> int:
    """A VAS whose one private range file (1 MiB, as vas_mmap made it) is renamed
    to claim [start, start + 1 MiB), as a writer of the VAS directory could."""
    lo, _ = winmod_vas_range()
    vid = v.vas_create("moved", 0o600)
    if segment:
        sid = v.vas_seg_create("s", lo, lo + MiB, 0o600)
        v.vas_seg_attach(vid, sid, os.O_RDWR)
    v.vas_mmap(vid, lo + 64 * MiB, MiB, RW)
    d = f"{v.registry_root()}/vas/{vid}"
    os.rename(f"{d}/{memfile.filename(lo + 64 * MiB, lo + 65 * MiB, RW)}",
              f"{d}/{memfile.filename(start, start + MiB, RW)}")
    return vid


def test_private_ranges_at_both_ends_of_the_vas_range_attach(registry: str) -> None:
    lo, hi = winmod_vas_range()
    vid = v.vas_create("ends", 0o600)
    v.vas_mmap(vid, lo, MiB, RW)
    v.vas_mmap(vid, hi - MiB, MiB, RW)
    v.vas_attach(0, vid, os.O_RDWR)
    try:
        assert [(m.start, m.end) for m in v.proc_maps(0, vid)] == [(lo, lo + MiB),
                                                                   (hi - MiB, hi)]
    finally:
        v.vas_detach(0, vid)


def test_a_private_range_renamed_out_of_the_vas_range_is_efault(registry: str) -> None:
    lo, hi = winmod_vas_range()
    for start in (hi, hi - MiB // 2, lo - MiB):
        vid = _vas_with_range_file_moved_to(start)
        with pytest.raises(OSError) as info:
            v.vas_attach(0, vid, os.O_RDWR)
        assert info.value.errno == errno.EFAULT, hex(start)
        assert "outside the window" in info.value.strerror
        assert v.proc_vas(0) == []
        v.vas_delete(vid)


def test_a_private_range_renamed_over_a_segment_is_efault(registry: str) -> None:
    lo, _ = winmod_vas_range()
    vid = _vas_with_range_file_moved_to(lo, segment=True)
    with pytest.raises(OSError) as info:
        v.vas_attach(0, vid, os.O_RDWR)
    assert info.value.errno == errno.EFAULT
    assert "has private memory that overlaps 's'" in info.value.strerror
    assert v.proc_vas(0) == []


def test_a_process_gone_before_its_request_is_esrch(registry: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The target passed the signal check and died before the request was
    written (here: the check is skipped for a pid nobody has): ESRCH naming it."""
    from vaspace.process import attach as attachmod  # noqa: PLC0415 - patched below
    monkeypatch.setattr(attachmod, "_signalable", lambda pid: None)
    vid = v.vas_create("v", 0o600)
    with pytest.raises(OSError) as info:
        v.vas_attach(NO_SUCH_PID, vid, os.O_RDONLY)
    assert (info.value.errno, info.value.filename) == (errno.ESRCH, str(NO_SUCH_PID))


def test_detach_refuses_an_id_that_only_equals_an_int(registry: str) -> None:
    """1.0 == 1 and hashes alike: it must not find VAS 1's attachment."""
    vid = v.vas_create("v", 0o600)
    v.vas_attach(0, vid, os.O_RDWR)
    try:
        for bad in (float(vid), [vid]):
            assert errno_of(v.vas_detach, 0, bad) == errno.EINVAL
        assert [p.vid for p in v.proc_vas(0)] == [vid]
    finally:
        v.vas_detach(0, vid)


def test_a_detach_request_for_a_process_gone_meanwhile_is_esrch(
        registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The target passed the signal check and the attached check, then died
    before the request was written (here: both checks answer for a pid
    nobody has, as they did a moment before): ESRCH naming the pid."""
    from vaspace.process import attach as attachmod  # noqa: PLC0415 - patched below
    from vaspace.registry import records  # noqa: PLC0415 - patched below
    vid = v.vas_create("v", 0o600)
    monkeypatch.setattr(attachmod, "_signalable", lambda pid: None)
    monkeypatch.setattr(records, "attached_vids", lambda pid: [(vid, os.O_RDONLY)])
    with pytest.raises(OSError) as info:
        v.vas_detach(NO_SUCH_PID, vid)
    assert (info.value.errno, info.value.filename) == (errno.ESRCH, str(NO_SUCH_PID))


def _unpublished_then_asked(ready: int, go: int, own: int) -> list[int]:
    os.read(go, 1)  # another user's file now sits where this process would publish
    v.vas_attach(0, own, os.O_RDWR)  # publish() refuses that file: no lazy-attach word
    v.vas_switch(own)  # a sync with nothing to do
    v.vas_switch(0)
    os.write(ready, b"x")
    os.read(go, 1)  # the parent's request is in pending/, with no word to set
    v.vas_switch(own)  # so this sync must still read pending/
    v.vas_switch(0)
    return sorted(p.vid for p in v.proc_vas(0))


def test_a_process_that_could_not_publish_keeps_reading_its_requests(registry: str) -> None:
    require_root()
    from vaspace.process import publish  # noqa: PLC0415 - its file's name
    from vaspace.registry import records  # noqa: PLC0415 - a process's start time
    own = v.vas_create("own", 0o600)
    asked = v.vas_create("asked", 0o600)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    child = start_child(_unpublished_then_asked, ready_w, go_r, own)
    try:
        started = records.start_time(child.pid)
        assert started is not None
        planted = publish._path(child.pid, started)
        os.makedirs(os.path.dirname(planted), exist_ok=True)
        with open(planted, "wb"):
            pass
        os.chown(planted, NOBODY, NOBODY)
        os.write(go_w, b"x")
        os.read(ready_r, 1)
        v.vas_attach(child.pid, asked, os.O_RDONLY)
    finally:
        os.write(go_w, b"x")
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
    assert child.result().get() == sorted([own, asked])
