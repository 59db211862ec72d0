"""The object half of the RFC: every call's success path and errno paths."""

from __future__ import annotations

import errno
import os

import pytest

import vaspace as v
from vaspace_testing import SEG_BASE, MiB, in_child, needs_root


def err(exc_info: pytest.ExceptionInfo[OSError]) -> int:
    return exc_info.value.errno


def test_create_find_getattr(registry: str) -> None:
    vid = v.vas_create("db", 0o640)
    assert isinstance(vid, int) and vid > 0
    assert v.vas_find("db") == vid
    attr = v.vas_getattr(vid)
    assert attr == v.Attr(mode=0o640, user=os.geteuid(), group=os.getegid())
    assert v.vas_name(vid) == "db"


def test_mode_is_masked(registry: str) -> None:
    vid = v.vas_create("m", 0o7777)
    assert v.vas_getattr(vid).mode == 0o666
    sid = v.vas_seg_create("s", SEG_BASE, SEG_BASE + MiB, 0o4755)
    assert v.vas_seg_getattr(sid).mode == 0o644


def test_ids_unique_and_separate_namespaces(registry: str) -> None:
    a = v.vas_create("x", 0o600)
    b = v.vas_create("y", 0o600)
    s = v.vas_seg_create("x", SEG_BASE, SEG_BASE + MiB, 0o600)  # same name, other kind
    assert a != b
    assert v.vas_seg_find("x") == s and v.vas_find("x") == a


@pytest.mark.parametrize("name", ["", "a\0b", "x" * 256, "é" * 128, "\ud800"])
def test_bad_names_einval(registry: str, name: str) -> None:
    with pytest.raises(OSError) as e:
        v.vas_create(name, 0o600)
    assert err(e) == errno.EINVAL
    with pytest.raises(OSError) as e:
        v.vas_seg_create(name, SEG_BASE, SEG_BASE + MiB, 0o600)
    assert err(e) == errno.EINVAL


@pytest.mark.parametrize("name", ["a/b", "/", "..", ".", "x" * 255, "é" * 127, "ünï cødé ✓", "%41"])
def test_odd_but_valid_names(registry: str, name: str) -> None:
    vid = v.vas_create(name, 0o600)
    assert v.vas_find(name) == vid
    assert v.vas_name(vid) == name
    # Nothing escapes the registry.
    assert not os.path.exists(os.path.join(registry, "..", "b"))


def test_name_not_str_einval(registry: str) -> None:
    with pytest.raises(OSError) as e:
        v.vas_create(b"bytes", 0o600)  # type: ignore[arg-type]
    assert err(e) == errno.EINVAL


def test_duplicate_eexist(registry: str) -> None:
    v.vas_create("dup", 0o600)
    with pytest.raises(FileExistsError) as e:
        v.vas_create("dup", 0o600)
    assert "dup" in str(e.value)
    v.vas_seg_create("dup", SEG_BASE, SEG_BASE + MiB, 0o600)
    with pytest.raises(FileExistsError):
        v.vas_seg_create("dup", SEG_BASE, SEG_BASE + MiB, 0o600)


def test_unknown_name_esrch(registry: str) -> None:
    with pytest.raises(ProcessLookupError) as e:
        v.vas_find("nope")
    assert err(e) == errno.ESRCH and "nope" in str(e.value)
    with pytest.raises(ProcessLookupError):
        v.vas_seg_find("nope")


@pytest.mark.parametrize("bad", [0, -1, 999, 2**31, 2**64, 1.0, "1", None, True])
def test_bad_ids_einval(registry: str, bad: object) -> None:
    for call in (v.vas_delete, v.vas_getattr, v.vas_seg_delete, v.vas_seg_getattr):
        with pytest.raises(OSError) as e:
            call(bad)  # type: ignore[arg-type]
        assert err(e) == errno.EINVAL, call


def test_deleted_id_einval_and_name_free(registry: str) -> None:
    vid = v.vas_create("gone", 0o600)
    v.vas_delete(vid)
    with pytest.raises(OSError) as e:
        v.vas_getattr(vid)
    assert err(e) == errno.EINVAL
    with pytest.raises(ProcessLookupError):
        v.vas_find("gone")
    assert v.vas_create("gone", 0o600) > 0


@needs_root  # gives a segment to another group (chown)
def test_setattr(registry: str) -> None:
    vid = v.vas_create("s", 0o600)
    v.vas_setattr(vid, v.Attr(mode=0o7644, user=os.geteuid(), group=os.getegid()))
    assert v.vas_getattr(vid).mode == 0o644
    sid = v.vas_seg_create("seg", SEG_BASE, SEG_BASE + MiB, 0o600)
    v.vas_seg_setattr(sid, v.Attr(mode=0o640, user=os.geteuid(), group=12))
    assert v.vas_seg_getattr(sid) == v.Attr(0o640, os.geteuid(), 12)
    with pytest.raises(OSError) as e:
        v.vas_setattr(vid, (0o600, 0, 0))  # type: ignore[arg-type]
    assert err(e) == errno.EINVAL


def test_attr_record() -> None:
    a = v.Attr(mode=0o600, user=1, group=2)
    assert (a.mode, a.user, a.group) == (0o600, 1, 2)
    with pytest.raises(AttributeError):
        a.mode = 0  # type: ignore[misc]


# ------------------------------------------------------------------ segments


@pytest.mark.parametrize("start,end", [
    (SEG_BASE + 1, SEG_BASE + MiB),
    (SEG_BASE, SEG_BASE + MiB + 7),
    (SEG_BASE + MiB, SEG_BASE + MiB),
    (SEG_BASE + MiB, SEG_BASE),
])
def test_seg_bad_range_einval(registry: str, start: int, end: int) -> None:
    with pytest.raises(OSError) as e:
        v.vas_seg_create("s", start, end, 0o600)
    assert err(e) == errno.EINVAL


@pytest.mark.parametrize("start,end", [
    (0x1000, 0x2000),
    (SEG_BASE - MiB, SEG_BASE + MiB),
    (0x5000_0000_0000 - MiB, 0x5000_0000_0000 + MiB),
    (0x7000_0000_0000, 0x7000_0010_0000),
])
def test_seg_outside_window_efault(registry: str, start: int, end: int) -> None:
    with pytest.raises(OSError) as e:
        v.vas_seg_create("s", start, end, 0o600)
    assert err(e) == errno.EFAULT


def test_window_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert v.window() == (0x4000_0000_0000, 0x5000_0000_0000)
    monkeypatch.setenv("VASPACE_WINDOW", "200000000000-300000000000")
    assert v.window() == (0x2000_0000_0000, 0x3000_0000_0000)
    monkeypatch.setenv("VASPACE_WINDOW", "nonsense")
    with pytest.raises(ValueError):
        v.window()


def test_segment_create_sz_alias(registry: str) -> None:
    sid = v.segment_create_sz("sz", SEG_BASE, 4 * MiB, 0o600)
    assert v.seg_region(sid) == (SEG_BASE, SEG_BASE + 4 * MiB)
    assert v.segment_find("sz") == sid
    assert v.segment_getattr(sid).mode == 0o600
    with pytest.raises(OSError) as e:
        v.segment_create_sz("neg", SEG_BASE, -4096, 0o600)
    assert err(e) == errno.EINVAL
    v.segment_delete(sid)


def test_seg_name_region_and_segment_handle(registry: str) -> None:
    """A Segment handle takes its name and region from one pin: same answers and errors."""
    sid = v.vas_seg_create("nr", SEG_BASE, SEG_BASE + MiB, 0o600)
    assert v.seg_name_region(sid) == ("nr", (SEG_BASE, SEG_BASE + MiB))
    seg = v.Segment(sid)
    assert (seg.id, seg.name, seg.start, seg.end) == (sid, "nr", SEG_BASE, SEG_BASE + MiB)
    region = f"{registry}/seg/{sid}/region"
    with open(region) as f:
        good = f.read()
    with open(region, "w") as f:
        f.write("not a region")
    for call in (v.seg_name_region, v.Segment):
        with pytest.raises(OSError) as e:
            call(sid)
        assert err(e) == errno.EIO and "unreadable region" in str(e.value)
    with open(region, "w") as f:
        f.write(good)
    v.vas_seg_delete(sid)
    for bad in (sid, 0, -1, True, "1"):
        for call in (v.seg_name_region, v.Segment):
            with pytest.raises(OSError) as e:
                call(bad)
            assert err(e) == errno.EINVAL


def test_seg_attach_detach(registry: str) -> None:
    vid = v.vas_create("v", 0o600)
    s1 = v.vas_seg_create("s1", SEG_BASE, SEG_BASE + MiB, 0o600)
    v.vas_seg_attach(vid, s1, os.O_RDWR)
    v.vas_seg_attach(vid, s1, os.O_RDWR)  # already attached: returns normally
    assert v.vas_segments(vid) == [v.SegLink(s1, os.O_RDWR)]
    v.vas_seg_detach(vid, s1)
    assert v.vas_segments(vid) == []
    with pytest.raises(OSError) as e:
        v.vas_seg_detach(vid, s1)
    assert err(e) == errno.EINVAL


@pytest.mark.parametrize("bad_type", [3, -1, 4, os.O_CREAT, "r", None])
def test_seg_attach_bad_type_einval(registry: str, bad_type: object) -> None:
    vid = v.vas_create("v", 0o600)
    sid = v.vas_seg_create("s", SEG_BASE, SEG_BASE + MiB, 0o600)
    with pytest.raises(OSError) as e:
        v.vas_seg_attach(vid, sid, bad_type)  # type: ignore[arg-type]
    assert err(e) == errno.EINVAL


def test_overlap_in_one_vas_efault_but_not_across(registry: str) -> None:
    a = v.vas_create("a", 0o600)
    b = v.vas_create("b", 0o600)
    s1 = v.vas_seg_create("s1", SEG_BASE, SEG_BASE + 2 * MiB, 0o600)
    s2 = v.vas_seg_create("s2", SEG_BASE + MiB, SEG_BASE + 3 * MiB, 0o600)
    v.vas_seg_attach(a, s1, os.O_RDWR)
    with pytest.raises(OSError) as e:
        v.vas_seg_attach(a, s2, os.O_RDWR)
    assert err(e) == errno.EFAULT and "s1" in str(e.value)
    v.vas_seg_attach(b, s2, os.O_RDWR)  # other VAS, same addresses: the point


def test_seg_delete_busy_while_attached(registry: str) -> None:
    vid = v.vas_create("v", 0o600)
    sid = v.vas_seg_create("s", SEG_BASE, SEG_BASE + MiB, 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDONLY)
    with pytest.raises(OSError) as e:
        v.vas_seg_delete(sid)
    assert err(e) == errno.EBUSY
    v.vas_delete(vid)  # deleting the VAS detaches its segments
    v.vas_seg_delete(sid)
    assert v.seg_ids() == []


def test_objects_persist_across_processes(registry: str) -> None:
    def make() -> tuple[int, int]:
        vid = v.vas_create("persist", 0o644)
        sid = v.vas_seg_create("pseg", SEG_BASE, SEG_BASE + MiB, 0o644)
        v.vas_seg_attach(vid, sid, os.O_RDWR)
        return vid, sid

    vid, sid = in_child(make).get()
    assert v.vas_find("persist") == vid and v.vas_seg_find("pseg") == sid
    assert v.vas_segments(vid) == [v.SegLink(sid, os.O_RDWR)]


def test_racing_create_exactly_one_wins(registry: str) -> None:
    """Many real processes race to create the same names: one winner per name."""
    def racer(i: int) -> list[str]:
        got = []
        for n in range(20):
            try:
                v.vas_create(f"race-{n}", 0o600)
                got.append(f"race-{n}")
            except FileExistsError:
                pass
        return got

    pids = []
    r, w = os.pipe()
    for i in range(6):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            won = racer(i)
            os.write(w, ("\n".join(won) + "\n").encode())
            os._exit(0)
        pids.append(pid)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    winners = [line for line in data.decode().split("\n") if line]
    assert sorted(winners) == sorted(f"race-{n}" for n in range(20))
    assert len(v.vas_ids()) == 20


def test_disk_backed_root_persists(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A root on a disk filesystem (not tmpfs) keeps objects and data on disk."""
    from vaspace.registry import root as rootmod

    monkeypatch.setenv("VASPACE_ROOT", str(tmp_path / "root"))
    rootmod.forget()

    def write() -> int:
        vid = v.vas_create("disk", 0o600)
        sid = v.vas_seg_create("disk-seg", SEG_BASE, SEG_BASE + MiB, 0o600)
        v.vas_seg_attach(vid, sid, os.O_RDWR)
        v.vas_attach(0, vid, os.O_RDWR)
        with v.VAS(vid).active():
            v.Segment(sid).view()[:4] = b"disk"
        return sid

    sid = in_child(write).get()
    rootmod.forget()
    data = (tmp_path / "root" / "seg" / str(sid) / "data").read_bytes()
    assert data[:4] == b"disk" and len(data) == MiB
    assert v.vas_find("disk") > 0
    rootmod.forget()
