"""Clones (issue 16): vas_seg_clone and vas_clone, with real processes and real files."""

from __future__ import annotations

import errno
import os

import pytest

import vaspace as v
from vaspace.heap import Dict, Heap
from vaspace.registry import filecopy
from vaspace_testing import SEG_BASE, MiB, as_nobody, in_child

START = SEG_BASE + 0x10_0000_0000


def _fill_heap(seg_name: str, vas_name: str, n: int) -> None:
    """In a child: attach the VAS, build a Dict of n entries in the segment's heap."""
    vid = v.vas_find(vas_name)
    v.vas_attach(0, vid, os.O_RDWR)
    v.vas_switch(vid)
    with Heap.format(v.Segment.find(seg_name).view()) as h:
        d = Dict(h, root="d")
        d.update({f"k{i}": i for i in range(n)})
    v.vas_switch(0)


def _read_heap(seg_name: str, vas_name: str, update: dict | None = None) -> dict:
    """In a child: open the heap read-write, check it, apply ``update``, return its dict."""
    vid = v.vas_find(vas_name)
    v.vas_attach(0, vid, os.O_RDWR)
    v.vas_switch(vid)
    with Heap.open(v.Segment.find(seg_name).view()) as h:
        h.check()
        d = Dict.open(h, "d")
        d.check()
        d.update(update or {})
        out = dict(d.items())
    v.vas_switch(0)
    return out


def test_segment_clone_of_a_heap_opens_in_another_vas(registry: str) -> None:
    seg = v.Segment.create("orig", START, size=4 * MiB)
    a = v.VAS.create("a")
    a.attach_segment(seg)
    in_child(_fill_heap, "orig", "a", 500).get()
    copy = seg.clone("copy")
    assert (copy.start, copy.end) == (seg.start, seg.end)
    assert copy.attr.mode == seg.attr.mode and copy.id != seg.id
    b = v.VAS.create("b")
    b.attach_segment(copy)
    # The clone opens as it is (same addresses) and passes check(); a change
    # to it does not reach the original, and the reverse.
    got = in_child(_read_heap, "copy", "b", {"k1": -1, "new": 7}).get()
    assert got["k1"] == -1 and got["new"] == 7 and len(got) == 501
    orig = in_child(_read_heap, "orig", "a", {"k2": -2}).get()
    assert orig["k1"] == 1 and "new" not in orig and orig["k2"] == -2
    again = in_child(_read_heap, "copy", "b").get()
    assert again["k2"] == 2 and again["k1"] == -1


def test_clone_of_a_segment_attached_for_writing_is_refused(registry: str) -> None:
    seg = v.Segment.create("s", START, size=MiB)
    ro = v.VAS.create("ro")
    ro.attach_segment(seg, os.O_RDONLY)
    rw = v.VAS.create("rw")
    rw.attach_segment(seg, os.O_RDWR)
    rw.attach(os.O_RDONLY)  # a read-only attachment: nobody can write, a clone is fine
    seg.clone("fine")
    rw.detach()
    rw.attach(os.O_RDWR)
    with pytest.raises(OSError) as e:
        seg.clone("busy")
    assert e.value.errno == errno.EBUSY and "'s'" in e.value.strerror
    with pytest.raises(OSError) as e2:
        v.Segment.find("busy")
    assert e2.value.errno == errno.ESRCH
    rw.detach()
    assert seg.clone("later").size == MiB


def test_clone_refuses_a_writer_that_comes_during_the_copy(registry: str) -> None:
    """The shared flock taken for the copy makes a writable attach EBUSY meanwhile."""
    seg = v.Segment.create("s", START, size=MiB)
    rw = v.VAS.create("rw")
    rw.attach_segment(seg, os.O_RDWR)
    real = filecopy.copy
    seen = []

    def slow_copy(src: int, dst: int, size: int) -> str:
        seen.append(in_child(v.vas_attach, 0, rw.id, os.O_RDWR).error)
        return real(src, dst, size)

    filecopy.copy = slow_copy
    try:
        seg.clone("c")
    finally:
        filecopy.copy = real
    assert isinstance(seen[0], OSError) and seen[0].errno == errno.EBUSY


def test_sparse_copy_copies_only_the_data(tmp_path) -> None:
    size = 64 * MiB
    src = os.open(tmp_path / "src", os.O_RDWR | os.O_CREAT, 0o600)
    dst = os.open(tmp_path / "dst", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(src, size)
        os.pwrite(src, b"x" * MiB, 8 * MiB)
        os.pwrite(src, b"y" * 4096, size - 4096)
        how = filecopy.copy(src, dst, size)
        assert os.fstat(dst).st_size == size
        assert os.pread(dst, MiB, 8 * MiB) == b"x" * MiB
        assert os.pread(dst, 4096, size - 4096) == b"y" * 4096
        assert os.pread(dst, 4096, 0) == bytes(4096)
        if how != "reflink":
            # Holes stay holes: about the 1 MiB written is allocated, not 64 MiB.
            assert os.fstat(dst).st_blocks * 512 < 4 * MiB
    finally:
        os.close(src)
        os.close(dst)


def test_vas_clone_keeps_links_access_and_mode(registry: str) -> None:
    s1 = v.Segment.create("s1", START, size=MiB)
    s2 = v.Segment.create("s2", START + 0x4000_0000, size=MiB)
    a = v.VAS.create("a", 0o640)
    a.attach_segment(s1, os.O_RDWR)
    a.attach_segment(s2, os.O_RDONLY)
    b = a.clone("b")
    assert b.seg_links() == a.seg_links()
    assert b.attr.mode == 0o640 and b.attr.user == os.geteuid()
    # Shared segments stay shared: the clone holds the same segment ids, and
    # the segments' reverse index knows about it (a delete is refused).
    with pytest.raises(OSError) as e:
        a.detach_segment(s1)
        s1.delete()
    assert e.value.errno == errno.EBUSY and "'b'" in e.value.strerror
    b.delete()
    s1.delete()


def test_vas_clone_copies_private_memory(registry: str) -> None:
    a = v.VAS.create("a")
    addr = a.mmap(2 * MiB, START)
    a.attach()
    with a.active():
        a.view(addr)[:5] = b"hello"
    a.detach()
    b = a.clone("b")
    assert b.private() == a.private()
    b.attach()
    with b.active():
        mv = b.view(addr)
        assert bytes(mv[:5]) == b"hello"
        mv[:5] = b"world"
        mv.release()
    b.detach()
    a.attach(os.O_RDONLY)
    with a.active(), a.view(addr) as mv:
        assert bytes(mv[:5]) == b"hello" and mv.readonly
    a.detach()


@pytest.mark.parametrize("name", ["", "x\0y", 7, None])
def test_clone_refuses_bad_names(registry: str, name: object) -> None:
    seg = v.Segment.create("s", START, size=MiB)
    vas = v.VAS.create("a")
    for call, oid in ((v.vas_seg_clone, seg.id), (v.vas_clone, vas.id)):
        with pytest.raises(OSError) as e:
            call(oid, name)
        assert e.value.errno == errno.EINVAL


def test_clone_errors(registry: str) -> None:
    seg = v.Segment.create("s", START, size=MiB)
    vas = v.VAS.create("a")
    for call, oid, taken in ((v.vas_seg_clone, seg.id, "s"), (v.vas_clone, vas.id, "a")):
        for bad in (0, -1, 424242, True, "1"):
            with pytest.raises(OSError) as e:
                call(bad, "n")
            assert e.value.errno == errno.EINVAL, (call, bad)
        with pytest.raises(OSError) as e:
            call(oid, taken)
        assert e.value.errno == errno.EEXIST


def test_clone_needs_read_permission(registry: str) -> None:
    seg = v.Segment.create("s", START, size=MiB, mode=0o600)
    vas = v.VAS.create("a", 0o600)
    for call, oid in ((v.vas_seg_clone, seg.id), (v.vas_clone, vas.id)):
        err = in_child(call, oid, "mine", uid=65534).error
        assert isinstance(err, OSError) and err.errno == errno.EACCES, call
    # Readable by others: nobody clones it and owns the clone.
    v.vas_seg_setattr(seg.id, v.Attr(0o644, os.geteuid(), os.getegid()))
    sid = as_nobody(v.vas_seg_clone, seg.id, "theirs")
    assert v.vas_seg_getattr(sid).user == 65534 and v.vas_seg_getattr(sid).mode == 0o644
