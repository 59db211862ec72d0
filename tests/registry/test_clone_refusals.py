"""Clones refused, and clones let through: a taken name, writers seen through
the lock or through the records, read-only links, private memory, and the OS
refusing a read that the permission bits allow (root without its DAC
capabilities, a writer who narrowed their own private file)."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os

import pytest

import vaspace as v
from vaspace_testing import NOBODY, OTHER_USER, SEG_BASE, MiB, in_child, require_root

START = SEG_BASE + 0x30_0000_0000
RW = mmap.PROT_READ | mmap.PROT_WRITE
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _errno_of(result) -> int:  # type: ignore[no-untyped-def]
    assert isinstance(result.error, OSError), result
    return result.error.errno


def test_a_taken_name_is_refused_before_the_writer_check(registry: str) -> None:
    seg = v.Segment.create("s", START, size=MiB)
    vas = v.VAS.create("a")
    vas.attach_segment(seg, os.O_RDWR)
    vas.mmap(MiB, START + 4 * MiB)
    vas.attach(os.O_RDWR)
    try:
        for call, oid, taken in ((v.vas_seg_clone, seg.id, "s"), (v.vas_clone, vas.id, "a")):
            with pytest.raises(OSError) as e:
                call(oid, taken)
            assert e.value.errno == errno.EEXIST and "already exists" in e.value.strerror
    finally:
        vas.detach()


def test_writers_are_found_in_the_records_when_the_lock_cannot_be_opened(registry: str) -> None:
    """nobody may read the segment but not open the VAS's lock (0o600): the
    attachment records decide, and only a writable holder makes EBUSY."""
    require_root()
    seg = v.Segment.create("s", START, size=MiB, mode=0o644)
    vas = v.VAS.create("a", 0o600)
    vas.attach_segment(seg, os.O_RDWR)
    vas.attach(os.O_RDWR)
    try:
        busy = in_child(v.vas_seg_clone, seg.id, "c1", uid=NOBODY)
        assert _errno_of(busy) == errno.EBUSY
        assert f"pid {os.getpid()} (rw)" in busy.error.strerror
    finally:
        vas.detach()
    vas.attach(os.O_RDONLY)  # a reader only: the segment cannot change under the copy
    try:
        sid = in_child(v.vas_seg_clone, seg.id, "c2", uid=NOBODY).get()
        assert v.vas_seg_getattr(sid).user == NOBODY
    finally:
        vas.detach()
    assert in_child(v.vas_seg_clone, seg.id, "c3", uid=NOBODY).error is None


def test_a_read_only_link_is_no_writer_whoever_has_the_vas(registry: str) -> None:
    seg = v.Segment.create("s", START, size=MiB)
    other = v.Segment.create("o", START + 0x4000_0000, size=MiB)
    vas = v.VAS.create("a")
    vas.attach_segment(seg, os.O_RDONLY)
    vas.attach_segment(other, os.O_RDWR)
    vas.attach(os.O_RDWR)  # writable, but not through its link to seg
    try:
        assert seg.clone("c").size == MiB
        with pytest.raises(OSError) as e:
            other.clone("c2")
        assert e.value.errno == errno.EBUSY
    finally:
        vas.detach()


def test_a_vas_attached_for_writing_is_cloned_unless_it_has_private_memory(
        registry: str) -> None:
    plain = v.VAS.create("plain")
    priv = v.VAS.create("priv")
    priv.mmap(MiB, START)
    for vas in (plain, priv):
        vas.attach(os.O_RDWR)
    try:
        assert plain.clone("plain2").seg_links() == plain.seg_links()
        with pytest.raises(OSError) as e:
            priv.clone("priv2")
        assert e.value.errno == errno.EBUSY and f"pid {os.getpid()} (rw)" in e.value.strerror
    finally:
        for vas in (plain, priv):
            vas.detach()
    assert priv.clone("priv3").private() == priv.private()


def _drop_dac_caps() -> None:
    """Stay uid 0 but lose the capabilities that let root past file modes."""
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[0].effective &= ~((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def _clone_without_dac_caps(call, oid: int, name: str) -> int:  # type: ignore[no-untyped-def]
    _drop_dac_caps()
    return call(oid, name)


def _nobodys_objects() -> tuple[int, int]:
    sid = v.vas_seg_create("theirs", START, START + MiB, 0o600)
    vid = v.vas_create("theirs", 0o600)
    v.vas_mmap(vid, START + 4 * MiB, MiB, RW)
    return sid, vid


def test_root_without_dac_capabilities_gets_eacces_from_the_os(registry: str) -> None:
    """The RFC's check lets uid 0 read anything; the kernel, without
    CAP_DAC_OVERRIDE, does not: EACCES naming the object, not a crash."""
    require_root()
    sid, vid = in_child(_nobodys_objects, uid=NOBODY).get()
    seg = in_child(_clone_without_dac_caps, v.vas_seg_clone, sid, "mine")
    assert _errno_of(seg) == errno.EACCES and "the OS refuses" in seg.error.strerror
    vas = in_child(_clone_without_dac_caps, v.vas_clone, vid, "mine")
    assert _errno_of(vas) == errno.EACCES and "cannot be read" in vas.error.strerror
    assert v.vas_seg_clone(sid, "fine") > 0  # root with its capabilities may


def _map_and_narrow(vid: int) -> None:
    v.vas_mmap(vid, START, MiB, RW)
    vas_dir = f"{os.environ['VASPACE_ROOT']}/vas/{vid}"
    (name,) = (e for e in os.listdir(vas_dir) if e.startswith("mem."))
    os.chmod(f"{vas_dir}/{name}", 0o600)  # their own file: theirs to narrow


def test_a_private_file_narrowed_by_its_owner_is_eacces_for_a_third_user(
        registry: str) -> None:
    require_root()
    vas = v.VAS.create("shared", 0o666)
    in_child(_map_and_narrow, vas.id, uid=NOBODY).get()
    res = in_child(v.vas_clone, vas.id, "copy", uid=OTHER_USER)
    assert _errno_of(res) == errno.EACCES and "cannot be read" in res.error.strerror
    with pytest.raises(OSError) as e:
        v.VAS.find("copy")
    assert e.value.errno == errno.ESRCH


def test_a_planted_reverse_hint_makes_no_writer(registry: str) -> None:
    """seg/<sid>/vases/ is writable by everyone: a hint naming a VAS that does
    not link the segment is checked against the VAS, and ignored."""
    seg = v.Segment.create("s", START, size=MiB)
    vas = v.VAS.create("a")  # attached for writing, but never linked to seg
    os.symlink("rw", f"{registry}/seg/{seg.id}/vases/{vas.id}")
    vas.attach(os.O_RDWR)
    try:
        assert seg.clone("c").size == MiB
    finally:
        vas.detach()
