"""VAS-private memory (issue 16): vas_mmap / vas_munmap, with real processes and mappings."""

from __future__ import annotations

import ctypes
import errno
import itertools
import mmap
import os
import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vaspace as v
from vaspace_testing import SEG_BASE, MiB, in_child

START = SEG_BASE + 0x20_0000_0000
RW = mmap.PROT_READ | mmap.PROT_WRITE


def _write(vas_name: str, addr: int, data: bytes, at: int = 0) -> None:
    vas = v.VAS.find(vas_name)
    vas.attach()
    with vas.active(), vas.view(addr) as mv:
        mv[at : at + len(data)] = data


def _read(vas_name: str, addr: int, n: int, access: int = os.O_RDWR,
          at: int = 0) -> tuple[bytes, bool]:
    vas = v.VAS.find(vas_name)
    vas.attach(access)
    with vas.active(), vas.view(addr) as mv:
        return bytes(mv[at : at + n]), mv.readonly


def _poke(addr: int) -> None:
    ctypes.c_char.from_address(addr).value = b"!"


def _poke_from(vas_name: str | None, addr: int, access: int = os.O_RDWR) -> None:
    """Write one byte at ``addr`` from inside ``vas_name`` (None: the original AS)."""
    other = v.VAS.find("other")
    other.attach()
    if vas_name is not None:
        vas = v.VAS.find(vas_name)
        vas.attach(access)
        v.vas_switch(vas.id)
    else:
        v.vas_switch(other.id)
        v.vas_switch(0)
    _poke(addr)


def test_private_memory_persists_across_processes_and_dies_with_the_vas(registry: str) -> None:
    a = v.VAS.create("a")
    addr = a.mmap(MiB, START)
    assert addr == START and a.private() == [(START, START + MiB, RW)]
    in_child(_write, "a", addr, b"kept", 4096).get()  # attach, write, exit (detach)
    assert in_child(_read, "a", addr, 4, at=4096).get() == (b"kept", False)
    # A read-only attachment sees it read-only, and a write through it faults.
    assert in_child(_read, "a", addr, 4, os.O_RDONLY, 4096).get() == (b"kept", True)
    v.VAS.create("other")
    assert in_child(_poke_from, "a", addr, os.O_RDONLY).signal == signal.SIGSEGV
    assert in_child(_poke_from, "a", addr).get() is None
    a.delete()
    assert not any(e.startswith("mem.") for d in os.listdir(f"{registry}/vas")
                   for e in _entries(f"{registry}/vas/{d}"))
    b = v.VAS.create("a")
    assert b.private() == []


def _entries(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except NotADirectoryError:
        return []


def test_private_memory_is_visible_only_in_its_vas(registry: str) -> None:
    a = v.VAS.create("a")
    addr = a.mmap(MiB)
    v.VAS.create("other")
    assert in_child(_poke_from, "a", addr).get() is None
    # In another VAS and in the original address space the range is not mapped.
    assert in_child(_poke_from, "other", addr).signal == signal.SIGSEGV
    assert in_child(_poke_from, None, addr).signal == signal.SIGSEGV


def test_private_ranges_in_proc_maps(registry: str) -> None:
    seg = v.Segment.create("s", START, size=MiB)
    a = v.VAS.create("a")
    a.attach_segment(seg)
    addr = a.mmap(2 * MiB, START + 4 * MiB, mmap.PROT_READ)
    a.attach()
    maps = v.proc_maps(0, a.id)
    assert (addr, addr + 2 * MiB, "r--", "[private]") in maps
    assert (START, START + MiB, "rw-", "s") in maps
    # Another process reads the same from the registry and the records.
    assert (addr, addr + 2 * MiB, "r--", "[private]") in in_child(
        lambda: v.proc_maps(os.getppid(), a.id)).get()
    a.detach()


def test_private_memory_errors(registry: str) -> None:
    seg = v.Segment.create("s", START, size=MiB)
    a = v.VAS.create("a")
    a.attach_segment(seg)
    addr = a.mmap(MiB, START + MiB)
    lo, hi = v.window()
    cases = [
        ((START, MiB, RW), errno.EFAULT),  # on the segment
        ((START + MiB, 4096, RW), errno.EFAULT),  # on the private range
        ((START + MiB - 4096, 8192, RW), errno.EFAULT),  # across both
        ((hi, MiB, RW), errno.EFAULT),  # outside the window
        ((0x1000, 4096, RW), errno.EFAULT),
        ((START + 8 * MiB + 1, 4096, RW), errno.EINVAL),  # unaligned
        ((START + 8 * MiB, 100, RW), errno.EINVAL),
        ((START + 8 * MiB, 0, RW), errno.EINVAL),
        ((START + 8 * MiB, -4096, RW), errno.EINVAL),
        ((START + 8 * MiB, 4096, 0), errno.EINVAL),  # bad prot
        ((START + 8 * MiB, 4096, mmap.PROT_EXEC | RW), errno.EINVAL),
        ((True, 4096, RW), errno.EINVAL),
        (("0", 4096, RW), errno.EINVAL),
        ((START + 8 * MiB, 2.0, RW), errno.EINVAL),
    ]
    for args, code in cases:
        with pytest.raises(OSError) as e:
            v.vas_mmap(a.id, *args)
        assert e.value.errno == code, args
        assert "'a'" in e.value.strerror and e.value.filename == "a"
    for bad in (0, -1, 424242, None):
        with pytest.raises(OSError) as e:
            v.vas_mmap(bad, 0, 4096, RW)
        assert e.value.errno == errno.EINVAL
    # A segment may not be attached over private memory either.
    s2 = v.Segment.create("s2", START + MiB, size=MiB)
    with pytest.raises(OSError) as e:
        a.attach_segment(s2)
    assert e.value.errno == errno.EFAULT and "private" in e.value.strerror
    # munmap removes whole ranges only.
    for args in ((addr, 4096), (addr + 4096, MiB), (START + 16 * MiB, MiB), (addr, 3)):
        with pytest.raises(OSError) as e:
            a.munmap(*args)
        assert e.value.errno == errno.EINVAL, args
    # An attached VAS is not changed: EBUSY, as vas_seg_attach.
    a.attach()
    for call, args in ((v.vas_mmap, (a.id, 0, 4096, RW)), (v.vas_munmap, (a.id, addr, MiB))):
        with pytest.raises(OSError) as e:
            call(*args)
        assert e.value.errno == errno.EBUSY
    a.detach()
    a.munmap(addr - MiB, 4 * MiB)
    assert a.private() == []


def test_private_memory_follows_the_vas_permissions(registry: str) -> None:
    a = v.VAS.create("a", 0o600)
    err = in_child(v.vas_mmap, a.id, 0, 4096, RW, uid=65534).error
    assert isinstance(err, OSError) and err.errno == errno.EACCES
    addr = a.mmap(MiB)
    err = in_child(_read, "a", addr, 1, os.O_RDONLY, uid=65534).error
    assert isinstance(err, OSError) and err.errno == errno.EACCES
    a.attr = v.Attr(0o644, os.geteuid(), os.getegid())
    assert os.stat(f"{registry}/vas/{a.id}/mem.{addr:x}-{addr + MiB:x}.rw").st_mode & 0o777 == 0o644
    assert in_child(_read, "a", addr, 1, os.O_RDONLY, uid=65534).get() == (b"\0", True)


def test_planted_private_files_are_refused(registry: str, tmp_path) -> None:
    """A writer of the VAS plants entries: a symlink, a FIFO, a file of the wrong size."""
    a = v.VAS.create("a", 0o666)
    victim = tmp_path / "victim"
    victim.write_bytes(b"secret" * 1000)
    d = f"{registry}/vas/{a.id}"
    plants = [
        lambda name: os.symlink(victim, f"{d}/{name}"),
        lambda name: os.mkfifo(f"{d}/{name}"),
        lambda name: open(f"{d}/{name}", "wb").close(),  # size 0, not 1 MiB
    ]
    for plant in plants:
        name = f"mem.{START:x}-{START + MiB:x}.rw"
        plant(name)
        with pytest.raises(OSError) as e:
            a.attach()
        assert e.value.errno == errno.EIO, plant
        os.unlink(f"{d}/{name}")
    assert victim.read_bytes() == b"secret" * 1000
    # Junk names are not ranges at all.
    for junk in ("mem.", "mem.zz-1.rw", f"mem.{START + MiB:x}-{START:x}.rw", "mem.1-2.rwx"):
        open(f"{d}/{junk}", "wb").close()
    assert a.private() == []
    a.attach()
    a.detach()


def test_a_view_of_private_memory_pins_it(registry: str) -> None:
    """Issue 10's rule: a view is an export; a switch away or a detach refuses."""
    a = v.VAS.create("a")
    addr = a.mmap(MiB)
    a.attach()
    v.vas_switch(a.id)
    mv = a.view(addr)
    arr = memoryview(mv)[:16]  # a second export made from the first
    with pytest.raises(BufferError) as e:
        v.vas_switch(0)
    assert "[private]" in str(e.value)
    assert v.active_vas() == a.id
    mv.release()
    with pytest.raises(BufferError):
        v.vas_switch(0)
    arr.release()
    v.vas_switch(0)
    # Outside the VAS there is no view to get.
    with pytest.raises(OSError) as e2:
        a.view(addr)
    assert e2.value.errno == errno.EFAULT
    a.detach()


def test_fsck_reports_a_damaged_private_file(registry: str) -> None:
    from vaspace.registry import fsck

    a = v.VAS.create("a")
    addr = a.mmap(MiB)
    assert fsck.check() == []
    os.truncate(f"{registry}/vas/{a.id}/mem.{addr:x}-{addr + MiB:x}.rw", 4096)
    (problem,) = fsck.check()
    assert problem.kind == "damaged" and problem.path == f"vas/{a.id}"
    assert "private memory" in problem.detail


_PAGE = mmap.PAGESIZE
_ints = st.one_of(st.integers(min_value=-2**65, max_value=2**65),
                  st.integers(min_value=0, max_value=1 << 12).map(lambda n: n * _PAGE),
                  st.integers(min_value=0, max_value=1 << 12).map(
                      lambda n: START + n * _PAGE))
_args = st.one_of(_ints, st.booleans(), st.none(), st.floats(), st.text(max_size=3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.tuples(st.booleans(), _args, _args, _args), max_size=8))
def test_hostile_ranges_never_break_the_invariants(registry: str, calls: list) -> None:
    """Any arguments: an OSError with the RFC's errno, or a range that is in the
    window, aligned and overlaps nothing else of the VAS."""
    name = f"h{len(os.listdir(f'{registry}/vas'))}"
    a = v.VAS.create(name)
    seg = v.Segment.find("hs") if v.seg_ids() else v.Segment.create("hs", START, size=MiB)
    a.attach_segment(seg)
    lo, hi = v.window()
    for is_map, addr, length, prot in calls:
        try:
            if is_map:
                got = v.vas_mmap(a.id, addr, length, prot)
                assert got % _PAGE == 0 and lo <= got
            else:
                v.vas_munmap(a.id, addr, length)
        except OSError as e:
            assert e.errno in (errno.EINVAL, errno.EFAULT, errno.ENOMEM), e
    ranges = sorted([(s, e) for s, e, _ in a.private()] + [(seg.start, seg.end)])
    assert all(e1 <= s2 for (_, e1), (s2, _) in itertools.pairwise(ranges))
    assert all(lo <= s < e <= hi for s, e in ranges)
    a.attach()  # what is registered maps
    a.detach()
    a.delete()
