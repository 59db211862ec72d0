"""Parking into holes: two mremaps per conflicting segment, and why that is safe.

A placed mapping's parking slot is left an unmapped hole (docs/switch.md), so
these tests check the three things that make it safe: the process's own
mappings never land in the parking range, the slow path's audit finds a
foreign mapping that does (and destroys nothing), and plugged parking
(``VASPACE_PARK_PLUGS=1``) still works.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import mmap
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import pytest

import vaspace as v
from vaspace import _core
from vaspace.process import state as statemod
from vaspace.window import park as park_range
from vaspace_testing import SEG_BASE, MiB, in_child

GiB = 1 << 30
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]
_MAP_NORESERVE = 0x4000


def worlds(sizes: list[int], base: int = SEG_BASE, tag: str = "park") -> tuple[int, int]:
    """Two attached VASes whose segments (one per size) sit at the same addresses."""
    vids = []
    for side in "ab":
        vid = v.vas_create(f"{tag}-{side}", 0o600)
        at = base
        for j, size in enumerate(sizes):
            sid = v.vas_seg_create(f"{tag}-{side}{j}", at, at + size, 0o600)
            v.vas_seg_attach(vid, sid, os.O_RDWR)
            at += max(size, 2 * MiB)
        v.vas_attach(0, vid, os.O_RDWR)
        vids.append(vid)
    return vids[0], vids[1]


def park_vmas() -> list[tuple[int, int, str]]:
    """(start, end, rest of the line) of every VMA in the parking range."""
    lo, hi = park_range()
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            rng, rest = line.split(None, 1)
            a, b = (int(x, 16) for x in rng.split("-"))
            if a < hi and lo < b:
                out.append((a, b, rest.strip()))
    return out


def check_parking_range_is_ours() -> None:
    """Every VMA in the parking range is a parked segment file or a plug, and
    (unless in plugged mode) no placed mapping's slot holds anything."""
    statemod.state().refresh_placed()  # the C fast path moves without telling Python
    maps = statemod.state().space.mappings.values()
    parked = {m.park: m.vlen for m in maps if not m.placed}
    holes = [(m.park, m.park + m.vlen) for m in maps if m.placed and not _core.park_plugs()]
    for a, b, rest in park_vmas():
        perms = rest.split()[0]
        is_plug = perms == "---p" and len(rest.split()) == 4
        assert is_plug or (parked.get(a) == b - a and "/seg/" in rest), (hex(a), hex(b), rest)
        for h_lo, h_hi in holes:
            assert not (a < h_hi and h_lo < b), ("in a hole", hex(a), hex(b), rest)


def test_conflicting_switch_plan_leaves_slots_unplugged(registry: str) -> None:
    """The plan: park A's mapping into its slot (home kept as a hole), place B's
    (its slot left a hole).  After the switch B's slot is unmapped."""
    a, b = worlds([MiB])
    v.vas_switch(a)
    v.vas_switch(b)
    park, place = _core.plan_get(a, b)
    assert park[0] == SEG_BASE and park[3] is True
    assert place[1] == SEG_BASE and place[3] is False
    b_slot, b_len = place[0], place[2]
    assert not [vma for vma in park_vmas() if vma[0] < b_slot + b_len and b_slot < vma[1]]
    check_parking_range_is_ours()
    v.vas_switch(0)  # the window's holes are plugged; parked slots hold the files again
    check_parking_range_is_ours()
    home = [line for line in open("/proc/self/maps") if line.startswith(f"{SEG_BASE:x}-")]
    assert home and home[0].split()[1] == "---p", home


_TRACED = """
import os, sys
import vaspace as v
n = int(sys.argv[1])
w = v.window()[0]
vids = []
for side in "ab":
    vid = v.vas_create(f"trace-{side}{n}", 0o600)
    sid = v.vas_seg_create(f"trace-{side}{n}", w, w + 65536, 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    v.vas_attach(0, vid, os.O_RDWR)
    vids.append(vid)
a, b = vids
for vid in (a, b, a):
    v.vas_switch(vid)
sys.stdout.flush()
for _ in range(n):
    v.vas_switch(b)
    v.vas_switch(a)
v.vas_switch(0)
"""


def _memory_calls(n: int, env: dict[str, str]) -> dict[str, int]:
    out = subprocess.run(
        ["strace", "-f", "-qq", "-c", "-U", "name,calls", "-e", "trace=mmap,mremap,munmap",
         sys.executable, "-c", _TRACED, str(n)],
        env=env, capture_output=True, text=True, timeout=120, check=True)
    counts = {}
    for line in out.stderr.splitlines():
        m = re.match(r"\s*(mmap|mremap|munmap)\s+(\d+)\s*$", line)
        if m:
            counts[m[1]] = int(m[2])
    return counts


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
@pytest.mark.parametrize("plugs", ["0", "1"])
def test_two_mremaps_per_conflicting_switch(registry: str, plugs: str) -> None:
    """strace, net of start-up: a one-way conflicting switch is 2 mremaps and
    nothing else; plugged mode adds one mmap (the plug of the slot left)."""
    env = dict(os.environ, VASPACE_PARK_PLUGS=plugs)
    few, many = _memory_calls(10, env), _memory_calls(210, env)
    per_switch = {k: (many.get(k, 0) - few.get(k, 0)) / 400 for k in ("mmap", "mremap",
                                                                        "munmap")}
    assert per_switch == {"mmap": 0.0 if plugs == "0" else 1.0, "mremap": 2.0, "munmap": 0.0}


def _map_hinted(addr: int, size: int) -> int:
    """mmap with an address hint and no MAP_FIXED: the kernel honours a free hint."""
    got = _libc.mmap(addr, size, mmap.PROT_READ | mmap.PROT_WRITE,
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert got not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    return got


def test_audit_finds_a_foreign_mapping_and_destroys_nothing(registry: str) -> None:
    """A mapping made with a hint lands in a hole: the next slow switch raises
    EEXIST naming it, falls back to plugging, and the mapping survives."""

    def child() -> tuple[int, str, int, int, int]:
        a, b = worlds([MiB])
        v.vas_switch(a)
        slot = next(park for _, _, park, _, placed, _, _ in _core.mappings() if placed)
        foreign = _map_hinted(slot, 4096)
        assert foreign == slot  # the hole took it
        ctypes.c_ubyte.from_address(foreign).value = 0x5A
        _core.plan_clear()  # make the next switch plan (and audit) in Python
        try:
            v.vas_switch(b)
            err, msg = 0, ""
        except OSError as exc:
            err, msg = exc.errno or 0, str(exc)
        return (err, msg, v.active_vas() == a, _core.park_plugs(),
                ctypes.c_ubyte.from_address(foreign).value)

    err, msg, stayed, plugs, byte = in_child(child).get()
    assert err == errno.EEXIST and "park-a0" in msg and "parking slot" in msg, msg
    assert stayed and plugs == 1 and byte == 0x5A


def test_plugged_mode_plugs_every_slot(registry: str) -> None:
    """VASPACE_PARK_PLUGS=1: a placed mapping's slot holds a plug, switches work."""

    def child() -> None:
        os.environ["VASPACE_PARK_PLUGS"] = "1"
        a, b = worlds([MiB, 4 * MiB])
        assert _core.park_plugs() == 1
        for vid in (a, b, a, b, 0, b):
            v.vas_switch(vid)
            check_parking_range_is_ours()
            for _, _, park, size, placed, _, _ in _core.mappings():
                if placed:
                    rows = [r for r in park_vmas() if r[0] <= park and park + size <= r[1]]
                    assert rows and rows[0][2].startswith("---p"), (hex(park), rows)
        v.vas_switch(0)

    in_child(child).get()


def _unloaded_extension() -> str:
    """An extension module file of the standard library that is not loaded yet."""
    import _ctypes

    loaded = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    found = sorted(glob.glob(os.path.join(os.path.dirname(_ctypes.__file__), "*.so")))
    return next(p for p in found if p not in loaded)


def test_own_mappings_never_land_in_the_parking_range(registry: str) -> None:
    """Thousands of switches between VASes of several conflicting segments,
    interleaved with what a process maps without a fixed address: anonymous
    mmaps of 4 KiB to 2 GiB, thread stacks, malloc arenas (threads calling
    malloc), big mallocs, and a dlopen.  None lands in the parking range, and
    every slot of a placed mapping stays an empty hole."""

    def child() -> int:
        lo, hi = park_range()
        a, b = worlds([4096, MiB, 64 * MiB])
        # And a pair whose 64 MiB segments get whole-GiB VMAs: 1 GiB holes.
        c, d = worlds([64 * MiB], base=SEG_BASE + 4 * GiB, tag="pud")
        assert max(m.vlen for m in statemod.state().space.mappings.values()) == GiB
        seen: list[tuple[int, int]] = []
        maps: list[tuple[int, int]] = []
        libs: list[ctypes.CDLL] = []
        errors: list[str] = []

        def in_thread() -> None:
            try:
                p = _libc.malloc(200_000)  # a thread's first malloc makes its arena
                seen.append((p, 200_000))
                _libc.free(p)
                check_parking_range_is_ours()
            except BaseException as exc:  # noqa: BLE001 - reported to the test's thread
                errors.append(repr(exc))

        sizes = [4096, 65536, MiB, 3 * MiB + 4096, 64 * MiB, GiB, 2 * GiB]
        for i in range(3000):
            v.vas_switch((a, c, b, d)[i % 4])
            if i % 100 == 0:
                size = sizes[(i // 100) % len(sizes)]
                addr = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE,
                                  mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
                assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
                ctypes.c_ubyte.from_address(addr).value = 1
                seen.append((addr, size))
                maps.append((addr, size))
            if i % 250 == 0:
                ts = [threading.Thread(target=in_thread) for _ in range(4)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                p = _libc.malloc(8 * MiB)  # above the mmap threshold: its own mapping
                seen.append((p, 8 * MiB))
                _libc.free(p)
            if i == 1500:
                libs.append(ctypes.CDLL(_unloaded_extension()))
            if i % 500 == 0:
                check_parking_range_is_ours()
        for addr, size in seen:
            assert not (addr < hi and lo < addr + size), (hex(addr), size)
        check_parking_range_is_ours()
        assert not errors, errors
        v.vas_switch(0)
        for addr, size in maps:
            _libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
        return len(seen) + len(libs)

    assert in_child(child, timeout=240).get() > 50


def test_switch_to_vid0_plugs_the_window(registry: str) -> None:
    """Leaving for the original AS leaves window holes: they are plugged, so a
    mapping made with a hint at a segment's address does not land there."""
    a, _ = worlds([MiB])
    v.vas_switch(a)
    v.vas_switch(0)
    got = _map_hinted(SEG_BASE, 4096)
    try:
        assert got != SEG_BASE
    finally:
        _libc.munmap(ctypes.c_void_p(got), ctypes.c_size_t(4096))


def _vma_at(addr: int) -> tuple[int, int, str]:
    with open("/proc/self/maps") as f:
        for line in f:
            rng, rest = line.split(None, 1)
            a, b = (int(x, 16) for x in rng.split("-"))
            if a <= addr < b:
                return a, b, rest.strip()
    return 0, 0, ""


def test_gib_aligned_segment_gets_a_whole_pud_vma(registry: str) -> None:
    """A 64 MiB segment at a GiB boundary, alone in its GiB, is mapped with a
    VMA to the next GiB (it then moves as one page-table entry); its data and
    page tables survive switches; a neighbour attached later into that tail
    cuts the VMA back first, and both then work."""
    a, b = worlds([64 * MiB])
    v.vas_switch(a)
    lo, hi, rest = _vma_at(SEG_BASE)
    assert (lo, hi) == (SEG_BASE, SEG_BASE + GiB) and "/seg/" in rest, (hex(lo), hex(hi))
    ctypes.c_ubyte.from_address(SEG_BASE + 64 * MiB - 1).value = 7
    for vid in (b, a, b, a):
        v.vas_switch(vid)
    assert ctypes.c_ubyte.from_address(SEG_BASE + 64 * MiB - 1).value == 7
    # A third VAS with a segment inside a's tail: a's VMA is cut back on attach.
    c = v.vas_create("park-c", 0o600)
    sid = v.vas_seg_create("park-c0", SEG_BASE + 512 * MiB, SEG_BASE + 513 * MiB, 0o600)
    v.vas_seg_attach(c, sid, os.O_RDWR)
    v.vas_attach(0, c, os.O_RDWR)
    assert _vma_at(SEG_BASE)[:2] == (SEG_BASE, SEG_BASE + 64 * MiB)
    assert _vma_at(SEG_BASE + 512 * MiB)[2].split()[0] == "---p"  # the tail is plugged
    for vid in (c, a, b, a):
        v.vas_switch(vid)
    assert ctypes.c_ubyte.from_address(SEG_BASE + 64 * MiB - 1).value == 7
    check_parking_range_is_ours()
    v.vas_switch(0)


@pytest.mark.parametrize("whole_pud", ["1", "0"])
def test_access_past_the_segment_faults(registry: str, whole_pud: str) -> None:
    """Past a segment's end there is no memory: SIGBUS inside a whole-PUD VMA
    (the file ends there), SIGSEGV with ``VASPACE_WHOLE_PUD=0`` (a plug)."""

    def child() -> None:
        os.environ["VASPACE_WHOLE_PUD"] = whole_pud
        a, _ = worlds([MiB])
        v.vas_switch(a)
        ctypes.c_ubyte.from_address(SEG_BASE + MiB).value = 1

    out = in_child(child)
    assert out.signal == (signal.SIGBUS if whole_pud == "1" else signal.SIGSEGV), out
