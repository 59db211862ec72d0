"""Private ranges side by side: each page is its own memory, in every VAS."""

from __future__ import annotations

import errno
import mmap
import os

import vaspace
from vaspace_testing import NOBODY, SEG_BASE, in_child, peek, poke

PAGE = os.sysconf("SC_PAGE_SIZE")
RW = mmap.PROT_READ | mmap.PROT_WRITE


def test_adjacent_private_ranges_of_two_vases_stay_apart(registry: str) -> None:
    vids = [vaspace.vas_create(f"v{i}", 0o600) for i in range(2)]
    starts = [SEG_BASE + i * PAGE for i in range(4)]  # four neighbouring pages
    for vid in vids:
        for s in starts:
            assert vaspace.vas_mmap(vid, s, PAGE, RW) == s

    def fill_and_read() -> list[list[int]]:
        for vid in vids:
            vaspace.vas_attach(0, vid, os.O_RDWR)
        for n, vid in enumerate(vids):
            with vaspace.VAS(vid).active():
                for i, s in enumerate(starts):
                    poke(s, 10 * n + i + 1)
        out = []
        for vid in vids:
            with vaspace.VAS(vid).active():
                out.append([peek(s) for s in starts])
        return out

    res = in_child(fill_and_read)
    assert res.signal is None, f"child died of signal {res.signal}"
    assert res.get() == [[1, 2, 3, 4], [11, 12, 13, 14]]


def test_private_memory_takes_the_vas_mode_for_other_users(registry: str) -> None:
    """A VAS everyone may write: another user attaches it read-write and writes
    its private memory (the private file got the VAS's mode, w bits included)."""
    vid = vaspace.vas_create("shared", 0o666)
    assert vaspace.vas_mmap(vid, SEG_BASE, PAGE, RW) == SEG_BASE

    def write_as_other() -> int:
        vaspace.vas_attach(0, vid, os.O_RDWR)
        with vaspace.VAS(vid).active():
            poke(SEG_BASE, 42)
            return peek(SEG_BASE)

    assert in_child(write_as_other, uid=NOBODY).get() == 42

    def read_back() -> int:
        vaspace.vas_attach(0, vid, os.O_RDONLY)
        with vaspace.VAS(vid).active():
            return peek(SEG_BASE)

    assert in_child(read_back).get() == 42


def test_private_memory_needs_a_positive_aligned_length_and_address(registry: str) -> None:
    vid = vaspace.vas_create("bad", 0o600)
    for addr, length in ((SEG_BASE, 0), (SEG_BASE, -PAGE), (-PAGE, PAGE), (SEG_BASE, 1),
                         (SEG_BASE + 1, PAGE)):
        try:
            vaspace.vas_mmap(vid, addr, length, RW)
        except OSError as exc:
            assert exc.errno == errno.EINVAL, (addr, length)
        else:
            raise AssertionError(f"vas_mmap({addr:#x}, {length:#x}) was accepted")
    assert vaspace.vas_private(vid) == []
    picked = vaspace.vas_mmap(vid, 0, PAGE, RW)  # address 0: the library picks one
    assert picked > 0 and picked % PAGE == 0
