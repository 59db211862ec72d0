"""Shared machinery of the benchmarks: timing, results, registries, baselines.

Every figure is a list of per-run values (one value per run, each the mean
over many iterations inside that run), so the report can give the median,
the min and the max, and the ratio to a baseline measured in the same
invocation.  The baselines that several sections need live here: the pipe
ping-pong (a process switch) and the unmap-and-remap of a file at a fixed
address (what a VAS switch costs without vaspace).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import mmap
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PAGE = mmap.PAGESIZE
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


# ------------------------------------------------------------------ results


@dataclass
class Figure:
    """One measured quantity: a value per run, and what it is compared with.

    ``values`` are in ``unit``; ``lower_is_better`` says which way the ratio
    to ``baseline`` (the key of another figure of the same section) reads.
    """

    key: str
    label: str
    unit: str
    values: list[float]
    baseline: str | None = None
    lower_is_better: bool = True
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)


@dataclass
class Section:
    """The result of one benchmark module: its figures and free-form facts."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, key: str, label: str, unit: str, values: list[float], **kw: Any) -> Figure:
        fig = Figure(key, label, unit, [float(v) for v in values], **kw)
        self.figures.append(fig)
        return fig

    def get(self, key: str) -> Figure:
        for fig in self.figures:
            if fig.key == key:
                return fig
        raise KeyError(key)

    def ratio(self, key: str) -> float | None:
        """How many times better than its baseline (> 1: better), from the medians."""
        fig = self.get(key)
        if fig.baseline is None:
            return None
        base = self.get(fig.baseline)
        if fig.lower_is_better:
            return base.median / fig.median if fig.median else float("inf")
        return fig.median / base.median if base.median else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title,
                "figures": [asdict(f) for f in self.figures], "facts": self.facts}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Section:
        sec = cls(data["name"], data["title"], facts=data.get("facts", {}))
        sec.figures = [Figure(**f) for f in data["figures"]]
        return sec


# ------------------------------------------------------------------ timing


def per_op_ns(body: Callable[[int], None], n: int, runs: int,
              clock: Callable[[], int] = time.perf_counter_ns) -> list[float]:
    """Run ``body(n)`` ``runs`` times; return the mean ns per iteration of each run
    (by ``clock``: wall time, or ``time.thread_time_ns`` for CPU time)."""
    out = []
    for _ in range(runs):
        t0 = clock()
        body(n)
        out.append((clock() - t0) / n)
    return out


def calibrate(body: Callable[[int], None], target_s: float, lo: int = 1,
              hi: int = 1_000_000) -> int:
    """An iteration count that makes one run of ``body`` last about ``target_s``.

    Calibrating per case keeps each run long enough to average out timer and
    scheduler noise without spending minutes on slow cases.
    """
    n = lo
    while True:
        t0 = time.perf_counter()
        body(n)
        dt = time.perf_counter() - t0
        if dt >= target_s / 4 or n >= hi:
            break
        n *= 4
    return max(lo, min(hi, int(n * target_s / max(dt, 1e-9))))


# ------------------------------------------------------------------ a private registry


@contextlib.contextmanager
def temp_registry() -> Iterator[str]:
    """A fresh ``VASPACE_ROOT`` in /dev/shm for one benchmark process.

    Set before vaspace is first used, so the whole run uses it; removed
    afterwards (the memory of segments goes with their files once the
    process has unmapped them, which its exit does at the latest).
    """
    import vaspace
    from vaspace.registry import root as rootmod

    with rootmod.temporary("vaspace-bench-") as root:
        try:
            yield os.path.dirname(root)
        finally:
            with contextlib.suppress(Exception):
                vaspace.vas_switch(0)
                for pv in vaspace.proc_vas(0):
                    vaspace.vas_detach(0, pv.vid)


def array_at(addr: int, size: int, dtype: type = np.uint8) -> np.ndarray:
    """A numpy array over ``size`` bytes of raw memory at ``addr`` (no copy, no access yet).

    Built through a memoryview, like ``Segment.array``: an array made by
    ``np.ctypeslib.as_array`` is 5-8x slower in ``np.bitwise_xor.at`` (numpy
    2.4), which would charge a numpy quirk to the mappings.
    """
    buf = memoryview((ctypes.c_char * size).from_address(addr)).cast("B")
    return np.frombuffer(buf, dtype=dtype)


def u8_at(addr: int, size: int) -> np.ndarray:
    """A numpy uint8 array over raw memory at ``addr``."""
    return array_at(addr, size)


def touch_write(arr: np.ndarray) -> None:
    """Write one byte in every page (how the benchmarks populate memory)."""
    arr[::PAGE] += 1


def touch_read(arr: np.ndarray) -> int:
    """Read one byte in every page; returns their sum so nothing is optimised away."""
    return int(arr[::PAGE].sum())


def minflt() -> int:
    """Minor page faults of this process so far."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# ------------------------------------------------------------------ raw mappings (baselines)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
PROT_NONE = 0
MAP_FIXED = 0x10
MAP_NORESERVE = 0x4000


def raw_mmap(addr: int, size: int, prot: int, flags: int, fd: int) -> int:
    """libc mmap; raises OSError on failure."""
    p = _libc.mmap(addr or None, size, prot, flags, fd, 0)
    if p is None or p == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, f"mmap: {os.strerror(err)}")
    return int(p)


def raw_munmap(addr: int, size: int) -> None:
    if _libc.munmap(addr, size) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"munmap: {os.strerror(err)}")


def reserve_anywhere(size: int) -> int:
    """An inaccessible range of ``size`` bytes chosen by the kernel (outside vaspace's window)."""
    return raw_mmap(0, size, PROT_NONE,
                    mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE, -1)


def map_file_fixed(fd: int, addr: int, size: int) -> None:
    """Map a file read-write and shared at exactly ``addr`` (replacing what is there)."""
    raw_mmap(addr, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | MAP_FIXED, fd)


def shm_file(dirpath: str, name: str, size: int, populate: bool = True) -> int:
    """An open, already unlinked /dev/shm file of ``size`` bytes, every page written once.

    Unlinked at once so that its memory goes back when the last fd and
    mapping go, whatever happens to the benchmark.
    """
    path = os.path.join(dirpath, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink(path)
    os.ftruncate(fd, size)
    if populate:
        with mmap.mmap(fd, size) as m:
            arr = np.frombuffer(m, dtype=np.uint8)
            touch_write(arr)
            del arr
    return fd


class Remapper:
    """SpaceJMP's "MAP" baseline: switch by unmapping one file and mapping another.

    ``switch(i)`` unmaps what is at the fixed addresses and maps file set
    ``i`` there; the page tables are thrown away, so ``touch()`` afterwards
    re-faults every page, which is the real cost of this approach.
    """

    def __init__(self, fdsets: list[list[int]], size: int) -> None:
        self.fdsets = fdsets
        self.size = size
        k = len(fdsets[0])
        self.base = reserve_anywhere(k * size)
        self.addrs = [self.base + j * size for j in range(k)]
        for fd, addr in zip(fdsets[0], self.addrs, strict=True):
            map_file_fixed(fd, addr, size)
        self.arrays = [u8_at(a, size) for a in self.addrs]

    def switch(self, i: int) -> None:
        for fd, addr in zip(self.fdsets[i], self.addrs, strict=True):
            raw_munmap(addr, self.size)
            map_file_fixed(fd, addr, self.size)

    def touch(self) -> int:
        return sum(touch_read(a) for a in self.arrays)

    def close(self) -> None:
        self.arrays.clear()
        raw_munmap(self.base, len(self.addrs) * self.size)


# ------------------------------------------------------------------ process switch baseline


def _read_exact(fd: int, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError("peer closed the pipe")
        buf += chunk
    return buf


def pingpong(n: int, runs: int, pinned: bool, populated: int = 0,
             shm_dir: str | None = None) -> list[float]:
    """Round trips of a 1-byte pipe ping-pong between this process and a child (ns each).

    A round trip is two process switches.  ``pinned`` puts both on CPU 0 (the
    cheap case: no cross-CPU wake-up); otherwise the scheduler places them.
    With ``populated`` > 0 both processes first map and touch a shared file of
    that size, so each has that much memory mapped, like the VAS cases.
    """
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    old_aff = os.sched_getaffinity(0)
    fd = -1
    if populated:
        assert shm_dir is not None
        fd = shm_file(shm_dir, f"pingpong-{os.getpid()}-{time.monotonic_ns()}", populated)
    pid = os.fork()
    if pid == 0:  # the peer: echo every byte until told to stop
        code = 0
        try:
            if pinned:
                os.sched_setaffinity(0, {0})
            if populated:
                m = mmap.mmap(fd, populated)
                touch_read(np.frombuffer(m, dtype=np.uint8))
            os.write(b_w, b"r")
            rd, wr = os.read, os.write
            while True:
                c = rd(a_r, 1)
                if c != b"p":
                    break
                wr(b_w, c)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    try:
        if pinned:
            os.sched_setaffinity(0, {0})
        m = None
        if populated:
            m = mmap.mmap(fd, populated)
            touch_read(np.frombuffer(m, dtype=np.uint8))
        _read_exact(b_r, 1)
        rd, wr = os.read, os.write

        def body(k: int) -> None:
            for _ in range(k):
                wr(a_w, b"p")
                rd(b_r, 1)

        body(min(n, 1000))  # warm up
        return per_op_ns(body, n, runs)
    finally:
        os.write(a_w, b"q")
        os.waitpid(pid, 0)
        os.sched_setaffinity(0, old_aff)
        for f in (a_r, a_w, b_r, b_w):
            os.close(f)
        if fd >= 0:
            os.close(fd)


def fmt_size(n: int) -> str:
    """4096 -> '4 KiB', 64 MiB -> '64 MiB'."""
    for unit, mult in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= mult and n % mult == 0:
            return f"{n // mult} {unit}"
    return f"{n} B"


def fmt_ns(ns: float) -> str:
    """A duration in the unit that keeps 3 significant digits readable."""
    if ns >= 1e9:
        return f"{ns / 1e9:.3g} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.3g} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.3g} µs"
    return f"{ns:.3g} ns"


def print_section(sec: Section) -> None:
    """A plain-text table: median (min - max) and the ratio to the baseline."""
    print(f"# {sec.title}")
    for f in sec.figures:
        r = sec.ratio(f.key)
        ratio = f"  {r:9.2f}x vs {f.baseline}" if r is not None else ""
        if f.unit == "ns":
            med, lo, hi = fmt_ns(f.median), fmt_ns(f.min), fmt_ns(f.max)
        else:
            med, lo, hi = (f"{x:.4g} {f.unit}" for x in (f.median, f.min, f.max))
        print(f"{f.label:<64} {med:>12}  ({lo} - {hi}){ratio}")
    for k, v in sec.facts.items():
        print(f"  {k}: {v}")


def strace_marked(code: str, marks: int) -> list[int] | str:
    """System calls between ``getppid`` marks of ``code`` run in a child under strace.

    ``code`` (Python, run with ``python -c`` and this process's ``sys.path``)
    ends with ``marks`` calls of ``os.getppid()`` around the steps to count;
    the result has the counts of the ``marks - 1`` stretches between them,
    the child's own calls only (not those of processes it talks to).  A
    string saying why instead, without strace.
    """
    import shutil
    import subprocess
    import sys
    import tempfile

    if shutil.which("strace") is None:
        return "not counted: strace is not installed"
    with tempfile.TemporaryDirectory(prefix="vaspace-bench-strace-") as tmp:
        trace = os.path.join(tmp, "trace")
        subprocess.run(["strace", "-f", "-o", trace, sys.executable, "-c", code], check=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                       stdout=subprocess.DEVNULL)
        with open(trace) as f:
            lines = [line.split(None, 1) for line in f if line.strip()]
    main = lines[0][0]  # strace -f prefixes each line with its pid; the first is the child
    mine = [rest for pid, rest in lines if pid == main and "resumed>" not in rest]
    at = [i for i, rest in enumerate(mine) if rest.startswith("getppid(")][-marks:]
    return [b - a - 1 for a, b in zip(at, at[1:], strict=False)]


def figures_markdown(sec: Section) -> list[str]:
    """Every figure of a section as a markdown table: median (min – max), ratio to baseline."""
    lines = ["| figure | median (min – max) | ratio to its baseline |", "|---|---|---|"]
    for f in sec.figures:
        r = sec.ratio(f.key)
        if f.unit == "ns":
            med, lo, hi = fmt_ns(f.median), fmt_ns(f.min), fmt_ns(f.max)
        else:
            med, lo, hi = (f"{x:.4g} {f.unit}" for x in (f.median, f.min, f.max))
        lines.append(f"| {f.label} | {med} ({lo} – {hi}) | "
                     f"{f'{r:.3g}x' if r is not None else '–'} |")
    return lines


def section_main(run: Callable[..., Section], doc: str | None,
                 argv: list[str] | None = None,
                 markdown: Callable[[Section], list[str]] | None = None) -> int:
    """The command line of every section: ``--smoke`` for tiny sizes, ``--json`` to save.

    With ``markdown`` (the section's own report), ``--out FILE.md`` writes
    it, and it is printed instead of the plain table.
    """
    import argparse
    import json

    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    ap.add_argument("--json", help="write the section's results to this file")
    if markdown is not None:
        ap.add_argument("--out", help="write the section's markdown report to this file")
    args = ap.parse_args(argv)
    sec = run(smoke=args.smoke)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(sec.to_json(), f, indent=1)
    if markdown is None:
        print_section(sec)
        return 0
    text = "\n".join(markdown(sec)) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return 0
