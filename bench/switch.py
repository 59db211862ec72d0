"""VAS switch against process switch and against unmap-and-remap.

All times are *round trips*, because that is what a pipe ping-pong measures:
a VAS round trip is ``vas_switch(B); vas_switch(A)`` starting in A, and a
process round trip is one byte there and one byte back (two process
switches).  Halve them for one-way figures.

Cases (A and B are two attached VASes, both writable):
  * nothing to move: A and B have no segments; or both hold the same segment;
  * k = 1, 4, 16 conflicting 4 KiB segments: A's and B's at the same addresses;
  * one conflicting segment populated with 4 KiB, 64 MiB, 1 GiB (every page
    written once before timing).
Baselines, in the same run: the pipe ping-pong, pinned to CPU 0 and unpinned
(also with each process holding the populated size mapped); and SpaceJMP's
MAP approach, munmap + mmap(MAP_FIXED) of the files plus a read of every page,
because the page tables are gone after a remap.

``python -m bench.switch`` prints issue 3's figures; ``--floor`` prints issue
12's (one-way: a conflicting switch against two bare mremaps into holes of
the same size, the size curve, the threads curve, strace counts, GUPS at
batch 1024).  ``python -m bench.switch
--ab OLD_TREE`` compares the fast path ("nothing to move" and "one conflicting
4 KiB segment") with another checkout built in place (e.g. before a change to
src/vaspace/core/): the two run alternately in fresh processes, and the medians and
their ratio are printed.  ``--ab-ir OLD_TREE`` counts user-space instructions
per round trip instead (valgrind's callgrind; slow, but immune to the load
that other processes put on the machine).
"""

from __future__ import annotations

import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from . import common
from .common import GiB, KiB, MiB, Remapper, Section

SLOT = 2 * MiB  # distance between the k conflicting segments


class Pair:
    """Two attached VASes A and B; seg lists give (start, size) of each one's segments."""

    def __init__(self, tag: str, a_segs: list[tuple[int, int]], b_segs: list[tuple[int, int]],
                 shared: list[tuple[int, int]] = ()) -> None:
        import vaspace

        self.v = vaspace
        self.vids: list[int] = []
        self.sids: list[int] = []
        shared_sids = [self._seg(f"{tag}-s{j}", s, n) for j, (s, n) in enumerate(shared)]
        for side, segs in (("a", a_segs), ("b", b_segs)):
            vid = vaspace.vas_create(f"{tag}-{side}", 0o600)
            for j, (start, size) in enumerate(segs):
                vaspace.vas_seg_attach(vid, self._seg(f"{tag}-{side}{j}", start, size),
                                       os.O_RDWR)
            for sid in shared_sids:
                vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
            vaspace.vas_attach(0, vid, os.O_RDWR)
            self.vids.append(vid)
            # Populate: write a byte in every page of every segment.
            vaspace.vas_switch(vid)
            for start, size in [*segs, *shared]:
                common.touch_write(common.u8_at(start, size))
            vaspace.vas_switch(0)
        self.a, self.b = self.vids

    def _seg(self, name: str, start: int, size: int) -> int:
        sid = self.v.vas_seg_create(name, start, start + size, 0o600)
        self.sids.append(sid)
        return sid

    def body(self) -> Callable[[int], None]:
        """n round trips A -> B -> A, after a warm-up that caches both plans."""
        sw, a, b = self.v.vas_switch, self.a, self.b
        sw(a)
        sw(b)
        sw(a)  # the slow path has now cached both plans

        def body(n: int) -> None:
            for _ in range(n):
                sw(b)
                sw(a)

        return body

    def round_trips(self, runs: int, target_s: float) -> list[float]:
        body = self.body()
        n = common.calibrate(body, target_s)
        out = common.per_op_ns(body, n, runs)
        self.v.vas_switch(0)
        return out

    def faults_after(self, segs: list[tuple[int, int]], trips: int = 10) -> float:
        """Page faults per round trip when every page is read after each switch.

        The same reads without switching are the control: their faults (numpy's
        temporaries, the interpreter) are subtracted, so what is left is what
        the switches cost in faults.
        """
        sw, a, b = self.v.vas_switch, self.a, self.b
        arrays = [common.u8_at(s, n) for s, n in segs]

        def reads() -> None:
            for arr in arrays:
                common.touch_read(arr)

        sw(a)
        reads()
        f0 = common.minflt()
        for _ in range(trips):
            reads()
            reads()
        control = common.minflt() - f0
        f0 = common.minflt()
        for _ in range(trips):
            sw(b)
            reads()
            sw(a)
            reads()
        switched = common.minflt() - f0
        sw(0)
        return max(0, switched - control) / trips

    def close(self) -> None:
        self.v.vas_switch(0)
        for vid in self.vids:
            self.v.vas_detach(0, vid)
            self.v.vas_delete(vid)
        for sid in self.sids:
            self.v.vas_seg_delete(sid)


def remap_round_trips(shm_dir: str, k: int, size: int, runs: int, target_s: float) -> list[float]:
    """Unmap-and-remap of k files of ``size`` bytes, plus reading every page, per round trip."""
    fdsets = [[common.shm_file(shm_dir, f"remap-{side}{j}", size) for j in range(k)]
              for side in "ab"]
    r = Remapper(fdsets, size)
    try:
        def body(n: int) -> None:
            for _ in range(n):
                r.switch(1)
                r.touch()
                r.switch(0)
                r.touch()

        body(1)
        n = common.calibrate(body, target_s, hi=100_000)
        return common.per_op_ns(body, n, runs)
    finally:
        r.close()
        for fds in fdsets:
            for fd in fds:
                os.close(fd)


def run(smoke: bool = False) -> Section:
    """Measure every case; returns the section for the report."""
    runs = 5 if smoke else 7
    target = 0.01 if smoke else 0.15
    pp_n = 200 if smoke else 20_000
    ks = [1, 4] if smoke else [1, 4, 16]
    sizes = [4 * KiB, 64 * KiB] if smoke else [4 * KiB, 64 * MiB, 1 * GiB]
    sec = Section("switch", "VAS switch vs process switch vs unmap-and-remap (round trips)")
    with common.temp_registry() as base:
        import vaspace

        w = vaspace.window()[0]
        sec.add("pp_pinned", "process switch: pipe ping-pong, both on CPU 0", "ns",
                common.pingpong(pp_n, runs, pinned=True))
        sec.add("pp_free", "process switch: pipe ping-pong, unpinned", "ns",
                common.pingpong(pp_n // 4, runs, pinned=False))

        p = Pair("empty", [], [])
        sec.add("empty", "VAS switch, nothing to move (no segments)", "ns",
                p.round_trips(runs, target), baseline="pp_pinned")
        p.close()
        shared_size = 64 * KiB if smoke else 64 * MiB
        p = Pair("shared", [], [], shared=[(w, shared_size)])
        sec.add("shared", f"VAS switch, nothing to move (both hold one "
                f"{common.fmt_size(shared_size)} segment)", "ns",
                p.round_trips(runs, target), baseline="pp_pinned")
        sec.facts["faults_shared"] = p.faults_after([(w, shared_size)], trips=3)
        p.close()

        for k in ks:
            segs = [(w + j * SLOT, 4 * KiB) for j in range(k)]
            p = Pair(f"k{k}", segs, segs)
            sec.add(f"k{k}", f"VAS switch, k={k} conflicting 4 KiB segments", "ns",
                    p.round_trips(runs, target), baseline="pp_pinned")
            p.close()
            sec.add(f"remap_k{k}", f"unmap-and-remap + re-read, k={k} x 4 KiB", "ns",
                    remap_round_trips(base, k, 4 * KiB, runs, target), baseline=f"k{k}",
                    lower_is_better=False)

        for size in sizes:
            tag = common.fmt_size(size)
            key = f"size{size}"
            segs = [(w, size)]
            p = Pair(f"sz{size}", segs, segs)
            sec.add(key, f"VAS switch, one conflicting segment, {tag} populated", "ns",
                    p.round_trips(runs, target), baseline="pp_pinned")
            sec.facts[f"faults_{key}"] = p.faults_after(segs, trips=3 if size >= GiB else 10)
            p.close()
            sec.add(f"remap_{key}", f"unmap-and-remap + re-read, {tag}", "ns",
                    remap_round_trips(base, 1, size, runs, target), baseline=key,
                    lower_is_better=False)
            pp_runs_n = max(20, pp_n // 4)
            sec.add(f"pp_pinned_{key}", f"process switch (pinned), each holding {tag}", "ns",
                    common.pingpong(pp_runs_n, runs, pinned=True, populated=size, shm_dir=base),
                    baseline=key, lower_is_better=False)
            sec.add(f"pp_free_{key}", f"process switch (unpinned), each holding {tag}", "ns",
                    common.pingpong(pp_runs_n, runs, pinned=False, populated=size,
                                    shm_dir=base),
                    baseline=key, lower_is_better=False)
        sec.facts["sizes"] = sizes
        sec.facts["ks"] = ks
    return sec


class BareMremaps:
    """The floor of a conflicting switch, with no vaspace: two files X and Y
    whose homes are the same GiB-aligned address, parked (like vaspace) at
    slots congruent modulo 1 GiB, every page read once so the page tables are
    full.  A one-way "switch" is two mremaps into holes: X home -> its slot,
    Y slot -> home.  ``vma`` > ``size`` maps the files with that longer VMA
    (past the end of file), as vaspace does for a GiB-aligned segment.
    """

    def __init__(self, shm_dir: str, size: int, vma: int = 0) -> None:
        self.size, self.vma = size, vma or size
        span = 12 * GiB
        self.raw = common.reserve_anywhere(span + GiB)
        base = -(-self.raw // GiB) * GiB
        self.home, self.px, self.py = base, base + 4 * GiB, base + 8 * GiB
        self.fds = [common.shm_file(shm_dir, f"floor-{t}{size}", size) for t in "xy"]
        common.map_file_fixed(self.fds[0], self.home, self.vma)
        common.map_file_fixed(self.fds[1], self.py, self.vma)
        for at in (self.home, self.py):
            common.touch_read(common.u8_at(at, size))
        common.raw_munmap(self.px, self.vma)  # X's slot: a hole, as in vaspace
        libc = common._libc
        libc.mremap.restype = ctypes.c_void_p
        libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                                ctypes.c_int, ctypes.c_void_p]
        self.mremap = libc.mremap

    def _mv(self, src: int, dst: int) -> None:
        if self.mremap(src, self.vma, self.vma, 3, dst) != dst:  # MAYMOVE | FIXED
            raise OSError(ctypes.get_errno(), "mremap")

    def body(self) -> Callable[[int], None]:
        """n round trips: X out and Y in, then Y out and X in."""
        h, px, py, mv = self.home, self.px, self.py, self._mv

        def body(n: int) -> None:
            for _ in range(n):
                mv(h, px)
                mv(py, h)
                mv(h, py)
                mv(px, h)

        return body

    def close(self) -> None:
        common.raw_munmap(self.raw, 13 * GiB)
        for fd in self.fds:
            os.close(fd)


def thread_switches(nthreads: int, per_thread: int, runs: int) -> list[float]:
    """ns per switch (wall time / all switches) with ``nthreads`` threads, each
    alternating between its own two VASes (one conflicting 4 KiB segment, at
    an address of its own)."""
    import threading

    import vaspace

    w = vaspace.window()[0]
    pairs = [Pair(f"thr{nthreads}-{t}", [(w + t * SLOT, 4 * KiB)], [(w + t * SLOT, 4 * KiB)])
             for t in range(nthreads)]
    out = []
    try:
        for _ in range(runs):
            start = threading.Barrier(nthreads + 1)
            errors: list[BaseException] = []

            def work(p: Pair, start: threading.Barrier = start,
                     errors: list[BaseException] = errors) -> None:
                try:
                    sw = vaspace.vas_switch
                    start.wait()
                    for _ in range(per_thread // 2):
                        sw(p.b)
                        sw(p.a)
                    sw(0)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            ts = [threading.Thread(target=work, args=(p,)) for p in pairs]
            for t in ts:
                t.start()
            t0 = time.perf_counter_ns()
            start.wait()
            for t in ts:
                t.join()
            out.append((time.perf_counter_ns() - t0) / (nthreads * (per_thread // 2) * 2))
            if errors:
                raise errors[0]
    finally:
        for p in pairs:
            p.close()
    return out


def _strace_per_switch(case: str) -> dict[str, float] | None:
    """mmap/mremap/munmap per one-way switch, net of start-up (strace, two runs)."""
    import shutil

    from .syscalls import strace_counts

    if shutil.which("strace") is None:
        return None
    n1, n2 = 20, 220
    c1, c2 = strace_counts(case, n1), strace_counts(case, n2)
    return {k: (c2.get(k, 0) - c1.get(k, 0)) / (2 * (n2 - n1))
            for k in ("mmap", "mremap", "munmap")}


def interleaved(bodies: dict[str, Callable[[int], None]], runs: int,
                target_s: float) -> dict[str, list[float]]:
    """ns per iteration of each body, its runs interleaved with the others'
    (ABCABC...), so that load from other work on the machine hits all of
    them alike and their ratio stays meaningful."""
    ns = {k: common.calibrate(b, target_s) for k, b in bodies.items()}
    out: dict[str, list[float]] = {k: [] for k in bodies}
    for _ in range(runs):
        for k, b in bodies.items():
            out[k] += common.per_op_ns(b, ns[k], 1)
    return out


def floor(smoke: bool = False) -> Section:
    """Issue 12's figures, from one run: the switch at its floor."""
    runs = 5 if smoke else 7
    target = 0.01 if smoke else 0.1
    sizes = [4 * KiB, 2 * MiB] if smoke else [4 * KiB, 64 * MiB, 1 * GiB]
    sec = Section("switch_floor", "The switch at its floor (issue 12), one-way figures")
    sec.facts["strace_conflicting"] = _strace_per_switch("k1")
    sec.facts["strace_nothing"] = _strace_per_switch("k0")
    with common.temp_registry() as base:
        import vaspace

        w = vaspace.window()[0]
        p = Pair("fl-empty", [], [])
        sec.add("empty", "VAS switch, nothing to move", "ns",
                [t / 2 for t in p.round_trips(runs, target)])
        p.close()
        for size in sizes:
            tag = common.fmt_size(size)
            bare = BareMremaps(base, size)
            pud = BareMremaps(base, size, vma=GiB) if size < GiB else None
            p = Pair(f"fl{size}", [(w, size)], [(w, size)])
            bodies = {"bare": bare.body(), "vas": p.body()}
            if pud is not None:
                bodies["pud"] = pud.body()
            got = interleaved(bodies, runs, target)
            sec.add(f"bare{size}", f"two bare mremaps into holes, {tag} (VMA = size)", "ns",
                    [t / 2 for t in got["bare"]])
            if pud is not None:
                sec.add(f"bare_pud{size}", f"two bare mremaps into holes, {tag} in a 1 GiB VMA",
                        "ns", [t / 2 for t in got["pud"]])
            sec.add(f"vas{size}", f"VAS switch, one conflicting {tag} segment", "ns",
                    [t / 2 for t in got["vas"]], baseline=f"bare{size}")
            p.close()
            bare.close()
            if pud is not None:
                pud.close()
        per_thread = 200 if smoke else 2000
        for n in (1, 2, 4, 8):
            sec.add(f"threads{n}", f"{n} thread(s), each between its own two VASes, "
                    "per switch", "ns", thread_switches(n, per_thread, 3 if smoke else 5),
                    baseline="threads1")
    from . import gups

    g = gups.run(smoke=smoke, batch_sizes=[1024])
    for f in g.figures:
        if f.key in ("ideal_b1024", "vas_b1024", "map_b1024"):
            sec.figures.append(f)
    sec.facts["gups"] = {k: g.facts[k] for k in ("nparts", "part_bytes")}
    sec.facts["sizes"] = sizes
    return sec


def fast_path(runs: int = 9, target: float = 0.05) -> dict[str, float]:
    """Round trips of the two fast-path cases in this process's vaspace: the
    median and the minimum (the least disturbed run) of ``runs`` runs."""
    with common.temp_registry():
        import vaspace

        w = vaspace.window()[0]
        out = {}
        for key, segs in (("empty", []), ("one", [(w, 4 * KiB)])):
            p = Pair(f"ab-{key}", segs, segs)
            times = p.round_trips(runs, target)
            out[key], out[f"{key}_min"] = statistics.median(times), min(times)
            p.close()
    return out


def ab(old_tree: str, rounds: int = 6) -> dict[str, dict[str, float]]:
    """``fast_path`` of this tree against ``old_tree``, alternating processes;
    prints the median over processes of each figure, and new/old."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"old": old_tree, "new": here}
    got: dict[str, dict[str, list[float]]] = {t: {} for t in trees}
    code = "import json; from bench.switch import fast_path; print(json.dumps(fast_path()))"
    for _ in range(rounds):
        for tag, tree in trees.items():
            env = dict(os.environ, PYTHONPATH=f"{tree}/src:{tree}")
            line = subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, check=True,
                                  capture_output=True, text=True).stdout.strip().splitlines()[-1]
            for key, ns in json.loads(line).items():
                got[tag].setdefault(key, []).append(ns)
    med = {t: {k: statistics.median(v) for k, v in d.items()} for t, d in got.items()}
    for key in med["new"]:
        print(f"{key:9} old {med['old'][key]:10.0f} ns  new {med['new'][key]:10.0f} ns  "
              f"new/old {med['new'][key] / med['old'][key]:.3f}  ({rounds} alternating runs)")
    return med


def _ir_body(case: str, n: int) -> None:
    """``n`` round trips of one fast-path case, for instruction counting."""
    with common.temp_registry():
        import vaspace

        w = vaspace.window()[0]
        segs = [(w, 4 * KiB)] if case == "one" else []
        p = Pair(f"ir-{case}", segs, segs)
        sw, a, b = vaspace.vas_switch, p.a, p.b
        sw(a)
        sw(b)
        sw(a)
        for _ in range(n):
            sw(b)
            sw(a)
        sw(0)
        p.close()


def _instructions(tree: str, case: str, n: int) -> int:
    code = f"from bench.switch import _ir_body; _ir_body({case!r}, {n})"
    env = dict(os.environ, PYTHONPATH=f"{tree}/src:{tree}", PYTHONHASHSEED="0")
    # Count only inside the C switch (and what it calls): the interpreter's
    # loop around it is the same in both trees, and start-up work varies.
    err = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          "--toggle-collect=vaspace_switch", sys.executable, "-c", code],
                         env=env, cwd=tree, check=True, capture_output=True, text=True).stderr
    return int(next(line for line in err.splitlines() if "Collected" in line).split()[-1])


def ab_instructions(old_tree: str, n: int = 100_000) -> dict[str, dict[str, float]]:
    """User-space instructions per round trip spent in the C switch, this tree
    against ``old_tree``: (count at n round trips - count at 0) / n, so the
    warm-up switches (which run the Python slow path) cancel out."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out: dict[str, dict[str, float]] = {}
    for case in ("empty", "one"):
        out[case] = {tag: (_instructions(tree, case, n) - _instructions(tree, case, 0)) / n
                     for tag, tree in (("old", old_tree), ("new", here))}
        print(f"{case:6} old {out[case]['old']:7.0f}  new {out[case]['new']:7.0f} "
              f"instructions/round trip  new/old {out[case]['new'] / out[case]['old']:.3f}")
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--floor"]:
        sys.exit(common.section_main(floor, floor.__doc__, sys.argv[2:]))
    if sys.argv[1:2] == ["--ab-ir"]:
        ab_instructions(sys.argv[2])
        sys.exit(0)
    if sys.argv[1:2] == ["--ab"]:
        ab(sys.argv[2], rounds=int(sys.argv[3]) if len(sys.argv) > 3 else 6)
        sys.exit(0)
    sys.exit(common.section_main(run, __doc__))
