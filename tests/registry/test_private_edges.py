"""VAS-private memory at its edges: placement by the kernel's rule (addr 0), a
full window, what an error names, removing one of several ranges, and the
OS refusing a change (a second user, a planted file)."""

from __future__ import annotations

import errno
import mmap
import os

import pytest

import vaspace as v
from vaspace.registry import memfile, private
from vaspace.window import vas_range
from vaspace_testing import NOBODY, MiB, in_child

RW = mmap.PROT_READ | mmap.PROT_WRITE
PAGE = 4096


def test_addr_zero_places_the_range_after_what_the_vas_holds(registry: str) -> None:
    lo, hi = vas_range()
    seg = v.Segment.create("first", lo, size=MiB)
    a = v.VAS.create("a")
    a.attach_segment(seg)
    first = v.vas_mmap(a.id, 0, 2 * PAGE, RW)
    assert first == lo + MiB  # right after the segment, not on it
    second = v.vas_mmap(a.id, 0, PAGE, RW)
    assert second == first + 2 * PAGE
    assert a.private() == [(first, first + 2 * PAGE, RW), (second, second + PAGE, RW)]
    # Nothing big enough left: ENOMEM, as mmap(2) says, not a range outside the window.
    with pytest.raises(OSError) as e:
        v.vas_mmap(a.id, 0, hi - lo, RW)
    assert e.value.errno == errno.ENOMEM and "no free" in e.value.strerror
    assert len(a.private()) == 2


def test_an_overlap_names_what_is_in_the_way(registry: str) -> None:
    lo, _ = vas_range()
    seg = v.Segment.create("theseg", lo, size=MiB)
    a = v.VAS.create("a")
    a.attach_segment(seg)
    addr = a.mmap(MiB, lo + 4 * MiB)
    with pytest.raises(OSError) as e:
        v.vas_mmap(a.id, addr + PAGE, PAGE, RW)
    assert e.value.errno == errno.EFAULT and "another private range" in e.value.strerror
    with pytest.raises(OSError) as e:
        v.vas_mmap(a.id, lo, PAGE, RW)
    assert e.value.errno == errno.EFAULT and "segment 'theseg'" in e.value.strerror


def test_munmap_removes_only_the_ranges_it_covers(registry: str) -> None:
    lo, _ = vas_range()
    a = v.VAS.create("a")
    one = a.mmap(MiB, lo + MiB)
    two = a.mmap(MiB, lo + 8 * MiB)
    a.munmap(one, MiB)
    assert a.private() == [(two, two + MiB, RW)]
    a.munmap(lo, 16 * MiB)  # a span holding the whole of a range removes it
    assert a.private() == []


def test_the_os_refusing_a_change_is_eacces(registry: str) -> None:
    """Another user may write the VAS (mode 0o666), but the OS refuses them the
    range files the owner made (sticky directory): EACCES naming the VAS, and
    the range stays.  A directory the owner has narrowed refuses new ones too."""
    lo, _ = vas_range()
    a = v.VAS.create("a", 0o666)
    addr = a.mmap(MiB, lo + MiB)
    err = in_child(v.vas_munmap, a.id, addr, MiB, uid=NOBODY).error
    assert isinstance(err, OSError) and err.errno == errno.EACCES, err
    assert "'a'" in err.strerror and "refuses to remove" in err.strerror
    assert a.private() == [(addr, addr + MiB, RW)]
    os.chmod(f"{registry}/vas/{a.id}", 0o1755)  # the owner took others' w bit away
    err = in_child(v.vas_mmap, a.id, lo + 8 * MiB, PAGE, RW, uid=NOBODY).error
    assert isinstance(err, OSError) and err.errno == errno.EACCES, err
    assert "refuses to change" in err.strerror
    assert a.private() == [(addr, addr + MiB, RW)]


def test_a_file_planted_after_the_scan_is_not_taken_for_ours(registry: str,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """Another writer of the VAS creates the range's file between the overlap
    check and the create (the directory is theirs to write): EFAULT, and the
    planted file is left as it is, not adopted as our range."""
    lo, _ = vas_range()
    a = v.VAS.create("a", 0o666)
    start, end = lo + MiB, lo + 2 * MiB
    real = private._taken

    def taken_then_planted(ref):  # type: ignore[no-untyped-def]
        out = real(ref)
        fd = os.open(memfile.filename(start, end, RW), os.O_CREAT | os.O_WRONLY, 0o600,
                     dir_fd=ref.dirfd)
        os.write(fd, b"planted")
        os.close(fd)
        return out

    monkeypatch.setattr(private, "_taken", taken_then_planted)
    with pytest.raises(OSError) as e:
        v.vas_mmap(a.id, start, end - start, RW)
    assert e.value.errno == errno.EFAULT and "already mapped" in e.value.strerror
    with open(f"{registry}/vas/{a.id}/{memfile.filename(start, end, RW)}", "rb") as f:
        assert f.read() == b"planted"


def test_a_wrong_type_is_named_for_the_argument_that_has_it(registry: str) -> None:
    a = v.VAS.create("a")
    for args, text in (((a.id, "0", PAGE, RW), "addr must be int, not str"),
                       ((a.id, 0, 2.0, RW), "length must be int, not float"),
                       ((a.id, None, PAGE, RW), "addr must be int, not NoneType")):
        with pytest.raises(OSError) as e:
            v.vas_mmap(*args)
        assert e.value.errno == errno.EINVAL and text in e.value.strerror, e.value.strerror
    with pytest.raises(OSError) as e:
        v.vas_munmap(a.id, PAGE, b"1")
    assert "length must be int, not bytes" in e.value.strerror
