"""This process's view of the window: reservations, parking slots and mappings.

A *mapping* is one ``mmap`` of a segment's file with one protection.  It sits
either *placed* (at the segment's own address, visible) or *parked* (in the
parking range, invisible).  Attachments that use the same segment with the
same protection share one mapping, so a switch between two VASes that share
a segment moves nothing for it.

``_core`` keeps the truth about each mapping under its *token*: where it is,
and how many exports (live views) pin it.  A pinned mapping is never moved or
unmapped; whatever would do so raises ``BufferError`` (see docs/safety.md).
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import weakref
from dataclasses import dataclass, field

from .. import _core
from .. import window as winmod
from ..errors import vas_error


@dataclass(eq=False)
class Mapping:
    """One mapping of a segment file in this process (identity-hashed)."""

    sid: int
    name: str
    start: int
    end: int
    prot: int
    park: int
    placed: bool = False
    refs: int = 0
    token: int = 0  # _core's name for this mapping (never reused, never 0)
    vlen: int = 0  # the VMA's length (>= size; whole GiB when it may be, see vma_length)
    # Weak references to the memoryviews Segment.view() made of it, for
    # release_views().  A plain list, pruned of dead ones as it grows: made on
    # first use (most mappings never get a view), and a WeakValueDictionary
    # cost a fresh process's first view about 100 bytecodes more.
    _views: list[weakref.ReferenceType[memoryview]] | None = field(default=None, repr=False)
    _prune_at: int = field(default=8, repr=False)

    def add_view(self, view: memoryview) -> None:
        """Remember a view made of this mapping (weakly: a view that dies leaves by itself)."""
        refs = self._views
        if refs is None:
            self._views = [weakref.ref(view)]
            return
        if len(refs) >= self._prune_at:  # amortised: the list at most doubles between prunes
            refs[:] = [r for r in refs if r() is not None]
            self._prune_at = 2 * len(refs) + 8
        refs.append(weakref.ref(view))

    def live_views(self) -> list[memoryview]:
        """The views made of this mapping that are still alive."""
        return [mv for r in self._views or () if (mv := r()) is not None]

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def tail(self) -> tuple[int, int]:
        """The addresses the VMA covers past the segment's end (empty if none)."""
        return self.end, self.start + max(self.vlen, self.size)

    def overlaps(self, other: Mapping) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass
class Space:
    """The reserved ranges and the mappings in them."""

    window: tuple[int, int] | None = None
    park: tuple[int, int] | None = None
    mappings: dict[tuple[int, int], Mapping] = field(default_factory=dict)

    def ensure_reserved(self) -> None:
        """Reserve the window and the parking range (PROT_NONE) on first use."""
        if self.window is not None:
            return
        # The shared-memory part of the window stays out: it is mapped outside VAS switching.
        win, park = winmod.vas_range(), winmod.park()
        _reserve(win, "window")
        try:
            _reserve(park, "parking range")
        except BaseException:
            _core.unmap(win[0], win[1] - win[0])
            raise
        self.window, self.park = win, park
        if winmod.park_plugs():
            _core.park_plugs(True)

    def after_fork(self, ghosts: int) -> Space:
        """The space of a forked child.

        ``_core.reset_after_fork`` re-plugged the reservations and made
        ``ghosts`` ranges of zero pages where inherited views point.  With
        none, the child starts from nothing (it may pick another window);
        otherwise the reservations stay, so those views never fault.
        """
        if ghosts:
            return Space(window=self.window, park=self.park)
        for lo_hi in (self.window, self.park):
            if lo_hi is not None:
                _core.unmap(lo_hi[0], lo_hi[1] - lo_hi[0])
        return Space()

    def park_slot(self, start: int, size: int) -> int:
        """First free parking address congruent to ``start`` modulo 1 GiB.

        Congruence lets mremap move whole page-table entries (PMD/PUD level),
        so moving a big populated segment costs about as much as a small one.
        """
        assert self.park is not None
        lo, hi = self.park
        cand = _congruent_at_or_above(lo, start)
        maps = self.mappings
        used = sorted([(m.park, m.park + max(m.vlen, m.end - m.start)) for m in maps.values()]
                      if maps else ())
        for u_lo, u_hi in used:
            if cand + size <= u_lo:
                break
            if u_hi > cand:
                cand = _congruent_at_or_above(u_hi, start)
        if cand + size > hi:
            raise vas_error(errno.ENOMEM, "the parking range is full")
        return cand

    def audit_parking(self) -> None:
        """Check that every hole in the parking range is still empty.

        A placed mapping's parking slot is left unmapped (unless in plugged
        mode), and parking it again is an ``mremap(MREMAP_FIXED)`` into that
        hole, which would silently unmap anything that landed there.  The
        kernel's top-down allocator keeps the process's own mappings far
        above (docs/switch.md), but a mapping made with an address hint can
        land anywhere.  So the slow path asks the kernel: if anything is
        mapped in a hole, vaspace falls back to plugged parking (plugging
        every hole that is still empty, leaving the foreign mapping alone)
        and raises EEXIST naming it; switches keep raising while it stays,
        because parking that segment would destroy it.
        """
        holes = [(m.park, m.park + max(m.vlen, m.size), m.name)
                 for m in self.mappings.values() if m.placed]
        if not holes:
            return
        fd = os.open("/proc/self/maps", os.O_RDONLY | os.O_CLOEXEC)
        try:
            for lo, hi, name in holes:
                vma = _first_vma_from(fd, lo)
                if vma is None or vma[0] >= hi:
                    continue
                if _core.park_plugs() and _is_plug(vma, lo, hi):
                    continue
                _core.park_plugs(True)
                _core.plan_clear()
                raise vas_error(
                    errno.EEXIST,
                    f"a mapping vaspace did not make, [{vma[0]:#x}, {vma[1]:#x}), lies in the "
                    f"parking slot [{lo:#x}, {hi:#x}) of segment {name!r}; parking the segment "
                    f"would destroy it.  vaspace now plugs its parking slots "
                    f"(VASPACE_PARK_PLUGS=1); switches refuse until that mapping goes")
        finally:
            os.close(fd)

    def get_or_map(self, sid: int, name: str, start: int, end: int, prot: int, fd: int) -> Mapping:
        """The shared mapping of (sid, prot), mapping the file into a parking slot if new."""
        key = (sid, prot)
        m = self.mappings.get(key)
        if m is None:
            _, shm, vas = winmod.ranges()  # one look at the window for the checks below
            if start < shm[1] and shm[0] < end:
                _refuse_shm_range(name, start, end, shm)
            if self.mappings:  # no call when there is no other mapping to cut back
                self._shrink_tails_over(start, end)
            vlen = self.vma_length(start, end, vas[1])
            park = self.park_slot(start, vlen)
            token = _core.map_shared(fd, park, end - start, prot, start, name, vlen)
            m = Mapping(sid=sid, name=name, start=start, end=end, prot=prot, park=park,
                        token=token, vlen=vlen)
            self.mappings[key] = m
        m.refs += 1
        return m

    def vma_length(self, start: int, end: int, top: int) -> int:
        """How long to make a new mapping's VMA: up to the next GiB when that is free.

        mremap moves page tables entry by entry at the highest level both
        ends allow, with a TLB flush per entry (docs/switch.md): a 64 MiB
        segment moves as 32 PMD entries, a GiB-aligned GiB as one PUD entry.
        So a segment that starts on a GiB boundary gets a VMA to the next
        one when no other mapping's home, nor the shared-memory range, lies
        in that tail; it then moves as one entry per GiB, whatever its size.
        ``VASPACE_WHOLE_PUD=0`` turns this off.  ``top``: the end of the
        window's VAS part (``window.vas_range()[1]``).
        """
        size = end - start
        if start % winmod.PARK_ALIGN or not winmod.whole_pud():
            return size
        hi = -(-end // winmod.PARK_ALIGN) * winmod.PARK_ALIGN
        if hi == end or hi > top:
            return size
        for m in self.mappings.values():
            if m.start < hi and end < m.end:
                return size
        return hi - start

    def _shrink_tails_over(self, start: int, end: int) -> None:
        """Cut back every VMA whose tail covers [start, end): a new mapping lives there."""
        for m in self.mappings.values():
            t_lo, t_hi = m.tail
            if t_lo < end and start < t_hi:
                _core.shrink(m.token)
                m.vlen = m.size

    def put(self, m: Mapping) -> None:
        """Drop one reference; the last one unmaps the mapping (BufferError,
        and nothing changed, while it has live views)."""
        if m.refs == 1:
            _core.unmap_mapping(m.token)
            del self.mappings[(m.sid, m.prot)]
        m.refs -= 1

    def put_all(self, maps: list[Mapping]) -> None:
        """``put`` each one, after checking that none that would go is pinned,
        so that a refusal changes nothing."""
        going = [m for m in maps if m.refs == 1]
        if going:
            check_unpinned(going, "detaching its VAS")
        for m in maps:
            self.put(m)


def exports() -> dict[int, int]:
    """Live exports per mapping token, as _core counts them."""
    return {token: n for token, _, _, _, _, n, _ in _core.mappings()}


def check_unpinned(maps: list[Mapping], what: str) -> None:
    """BufferError naming the first of ``maps`` that still has live views."""
    live = exports()
    for m in maps:
        n = live.get(m.token, 0)
        if n:
            raise BufferError(
                f"segment {m.name!r} at [{m.start:#x}, {m.end:#x}) still has {n} live view(s) "
                f"(memoryviews, numpy arrays or ctypes objects made from Segment.view()/array(), "
                f"or a heap on it): {what} would unmap that memory; release them first "
                f"(mv.release() or 'with seg.view() as mv:', del the arrays) and retry")


# PROCMAP_QUERY (linux/fs.h, Linux 6.11): ask /proc/<pid>/maps for one VMA by
# address, without reading the whole text.  struct procmap_query: 9 u64, 4 u32, 2 u64.
_QUERY = struct.Struct("=9Q4I2Q")
_PROCMAP_QUERY = 0xC000_0000 | _QUERY.size << 16 | ord("f") << 8 | 17
_COVERING_OR_NEXT_VMA = 0x10
_VM_FLAGS_RWXS = 0x0F  # vma_flags: readable, writable, executable, shared


def _first_vma_from(fd: int, addr: int) -> tuple[int, int, int, int] | None:
    """(start, end, flags, inode) of the first VMA ending above ``addr``, or None.

    Kernels without PROCMAP_QUERY (ENOTTY, EINVAL) get the answer from the text.
    """
    buf = bytearray(_QUERY.pack(_QUERY.size, _COVERING_OR_NEXT_VMA, addr, *[0] * 12))
    try:
        fcntl.ioctl(fd, _PROCMAP_QUERY, buf)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        if exc.errno not in (errno.ENOTTY, errno.EINVAL):
            raise
        return _first_vma_from_text(addr)
    f = _QUERY.unpack(buf)
    return f[3], f[4], f[5], f[8]


def _first_vma_from_text(addr: int) -> tuple[int, int, int, int] | None:
    with open("/proc/self/maps") as f:
        for line in f:
            rng, perms, _, _, inode, *_ = line.split(None, 5) + [""]
            lo, hi = (int(x, 16) for x in rng.split("-"))
            if hi > addr:
                bits = zip((1, 2, 4, 8), perms[:4], strict=True)
                flags = sum(bit for bit, ch in bits if ch in "rwxs")
                return lo, hi, flags, int(inode)
    return None


def _is_plug(vma: tuple[int, int, int, int], lo: int, hi: int) -> bool:
    """Whether the VMA over [lo, hi) looks like vaspace's own plug (inaccessible,
    private, anonymous) and covers it whole."""
    start, end, flags, inode = vma
    return start <= lo and hi <= end and not flags & _VM_FLAGS_RWXS and inode == 0


def _refuse_shm_range(name: str, start: int, end: int, shm: tuple[int, int]) -> None:
    """EFAULT for a VAS segment in the shared-memory range ``shm``: a switch would map over it.

    ``get_or_map`` calls it only when the ranges overlap (no call on the hot path).
    """
    lo, hi = shm
    if start < hi and lo < end:
        raise vas_error(errno.EFAULT, f"segment {name!r} [{start:#x}, {end:#x}) lies in the "
                        f"shared-memory range [{lo:#x}, {hi:#x}), which VASes may not map")


def _congruent_at_or_above(floor: int, start: int) -> int:
    align = winmod.PARK_ALIGN
    base = floor - floor % align + start % align
    return base if base >= floor else base + align


def _reserve(lo_hi: tuple[int, int], what: str) -> None:
    lo, hi = lo_hi
    try:
        _core.reserve(lo, hi - lo)
    except FileExistsError:
        raise vas_error(
            errno.EFAULT,
            f"cannot reserve the vaspace {what} [{lo:#x}, {hi:#x}): it collides with "
            f"{_colliding(lo, hi)}; set VASPACE_WINDOW to a free range",
        ) from None


def _colliding(lo: int, hi: int) -> str:
    with open(f"/proc/{os.getpid()}/maps") as f:
        for line in f:
            rng, *rest = line.split(None, 5)
            a, b = (int(x, 16) for x in rng.split("-"))
            if a < hi and lo < b:
                return f"mapping {line.strip()!r}"
    return "an existing mapping"
