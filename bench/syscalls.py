"""System calls per switch, beside the minimum the design needs, and what each costs.

A child process sets up two VASes with k conflicting segments and does N
round trips; it runs twice, with N1 and N2 round trips, under ``strace -f
-c`` and under ``perf stat`` (syscall tracepoints), and the difference of
the two counts divided by 2 * (N2 - N1) is the number of system calls per
one-way switch, free of start-up noise.  The design's minimum (issue 12):
one conflicting segment moves out with one mremap into its parking slot,
which is a hole, and the other moves in with one mremap into the home just
left (the plan keeps that hole for it): 2 calls per conflicting segment;
nothing to move is 0.  The plugged mode (VASPACE_PARK_PLUGS=1) adds an mmap
plugging each parking slot a mapping leaves.

The kernel's cost of those calls is then measured directly (ctypes, no
vaspace): one 4 KiB mremap between two reserved ranges, with and without the
plug, in a 16 TiB reservation like vaspace's window and in a 1 GiB one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

from . import common
from .common import GiB, KiB, Section

MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
PLUG_FLAGS = 0x02 | 0x20 | common.MAP_NORESERVE | common.MAP_FIXED  # PRIVATE|ANON|...


def _child(case: str, n: int) -> None:
    """The traced child: set up, then do ``case`` n times.

    ``k<number>``: a round trip between two VASes with that many conflicting
    segments; ``attach``: vas_attach + vas_detach of a VAS with one segment;
    ``create``: vas_create + vas_delete.
    """
    from .switch import SLOT, Pair

    with common.temp_registry():
        import vaspace

        w = vaspace.window()[0]
        if case == "attach":
            vid = vaspace.vas_create("sc-attach", 0o600)
            sid = vaspace.vas_seg_create("sc-attach", w, w + SLOT, 0o600)
            vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
            for _ in range(n):
                vaspace.vas_attach(0, vid, os.O_RDWR)
                vaspace.vas_detach(0, vid)
            return
        if case == "create":
            for i in range(n):
                vaspace.vas_delete(vaspace.vas_create(f"sc-create{i}", 0o600))
            return
        k = int(case.removeprefix("k"))
        segs = [(w + j * SLOT, 4 * KiB) for j in range(k)]
        p = Pair(f"sc{k}", segs, segs)
        sw = vaspace.vas_switch
        sw(p.a)
        sw(p.b)
        sw(p.a)
        for _ in range(n):
            sw(p.b)
            sw(p.a)
        sw(0)
        p.close()


def _child_cmd(case: str, n: int) -> list[str]:
    return [sys.executable, "-m", "bench.syscalls", "--child", case, str(n)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return env


def strace_counts(case: str, n: int) -> dict[str, int]:
    """Syscall name -> count for one child run under ``strace -f -c``."""
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        subprocess.run(["strace", "-f", "-c", "-o", out.name, *_child_cmd(case, n)],
                       check=True, env=_env(), stdout=subprocess.DEVNULL)
        counts = {}
        for line in out.read().splitlines():
            parts = line.split()
            # "% time seconds usecs/call calls [errors] syscall"
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                counts[parts[-1]] = int(parts[3])
        return counts


PERF_EVENTS = ["raw_syscalls:sys_enter", "syscalls:sys_enter_mremap",
               "syscalls:sys_enter_mmap", "syscalls:sys_enter_munmap"]


def perf_counts(case: str, n: int) -> dict[str, int] | None:
    """Tracepoint counts from ``perf stat``, or None if perf cannot count here."""
    if shutil.which("perf") is None:
        return None
    cmd = ["perf", "stat", "-x", ",", *[a for e in PERF_EVENTS for a in ("-e", e)],
           *_child_cmd(case, n)]
    res = subprocess.run(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    counts = {}
    for line in res.stderr.splitlines():
        f = line.split(",")
        if len(f) > 2 and f[2] in PERF_EVENTS and f[0].strip().isdigit():
            counts[f[2].split(":")[1]] = int(f[0])
    return counts or None


def perf_insns_supported() -> str:
    """What ``perf stat -e instructions`` says on this machine."""
    if shutil.which("perf") is None:
        return "perf not installed"
    res = subprocess.run(["perf", "stat", "-x", ",", "-e", "instructions", "true"],
                         capture_output=True, text=True)
    m = re.search(r"^([^,]*),[^,]*,instructions", res.stderr, re.M)
    return m.group(1) if m else "unknown"


def kernel_move_cost(window: int, plug: bool, n: int, runs: int) -> list[float]:
    """ns per 4 KiB move (mremap, plus the plug mmap if ``plug``) between two reserved ranges."""
    libc = common._libc
    libc.mremap.restype = common.ctypes.c_void_p
    libc.mremap.argtypes = [common.ctypes.c_void_p, common.ctypes.c_size_t,
                            common.ctypes.c_size_t, common.ctypes.c_int,
                            common.ctypes.c_void_p]
    base = common.reserve_anywhere(2 * window)
    win, park = base, base + window
    tmp = tempfile.mkdtemp(dir="/dev/shm", prefix="vaspace-bench-")
    fd = common.shm_file(tmp, "move", 4 * KiB)
    try:
        common.map_file_fixed(fd, park, 4 * KiB)
        flags = MREMAP_MAYMOVE | MREMAP_FIXED
        mremap, mmap_ = libc.mremap, libc.mmap
        sz = 4 * KiB

        def body(k: int) -> None:
            for _ in range(k):
                mremap(park, sz, sz, flags, win)
                if plug:
                    mmap_(park, sz, 0, PLUG_FLAGS, -1, 0)
                mremap(win, sz, sz, flags, park)
                if plug:
                    mmap_(win, sz, 0, PLUG_FLAGS, -1, 0)

        body(100)
        return [v / 2 for v in common.per_op_ns(body, n, runs)]
    finally:
        common.raw_munmap(base, 2 * window)
        os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)


PROFILE_SYMBOLS = {
    "do_syscall_64": "all system calls",
    "do_mremap": "mremap, all of it",
    "do_vmi_align_munmap": "unmapping inside mremap/mmap (the placeholder at the "
                           "destination, the vacated source)",
    "__mmap_region": "mmap (the plug), all of it",
    "move_page_tables": "moving the page tables",
    "free_pgtables": "freeing page-table pages of the vacated range",
    "__pud_alloc": "allocating PUD pages again",
    "__pmd_alloc": "allocating PMD pages again",
    "__pte_alloc": "allocating PTE pages again",
    "tlb_finish_mmu": "TLB flush on unmap",
}


def kernel_profile(n: int) -> dict[str, float] | None:
    """Where the kernel spends a move + plug: ``perf record -g`` of the ctypes probe.

    Returns the inclusive ("children") share of the samples for the kernel
    functions in PROFILE_SYMBOLS, or None if perf cannot sample here.
    """
    if shutil.which("perf") is None:
        return None
    with tempfile.TemporaryDirectory(prefix="vaspace-bench-perf-") as tmp:
        data = os.path.join(tmp, "perf.data")
        rec = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-g", "-o", data,
                              sys.executable, "-m", "bench.syscalls", "--probe", str(n)],
                             env=_env(), capture_output=True, text=True)
        if rec.returncode != 0:
            return None
        rep = subprocess.run(["perf", "report", "-i", data, "--children", "--stdio", "-g",
                              "none", "--percent-limit", "0.1"],
                             capture_output=True, text=True)
    shares: dict[str, float] = {}
    for line in rep.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0].endswith("%") and parts[-1] in PROFILE_SYMBOLS:
            shares.setdefault(parts[-1], float(parts[0].rstrip("%")))
    return shares or None


def run(smoke: bool = False) -> Section:
    """Count syscalls per switch for each k; measure what one move costs the kernel."""
    ks = [0, 1] if smoke else [0, 1, 4, 16]
    n1, n2 = (10, 60) if smoke else (200, 2200)
    runs = 5 if smoke else 7
    sec = Section("syscalls", "System calls per one-way switch")
    rows = []
    have_strace = shutil.which("strace") is not None

    def per_op(case: str, ops_per_n: int, n1: int, n2: int) -> dict[str, object]:
        """Calls per operation: the difference of an n1 and an n2 run, divided."""
        row: dict[str, object] = {}
        if have_strace:
            c1, c2 = strace_counts(case, n1), strace_counts(case, n2)
            diff = {name: (c2.get(name, 0) - c1.get(name, 0)) / (ops_per_n * (n2 - n1))
                    for name in set(c1) | set(c2)}
            diff = {name: round(v, 3) for name, v in diff.items() if abs(v) >= 0.01}
            row["strace"] = diff
            row["strace_total"] = round(sum(diff.values()), 3)
        # perf doubles the child runs; the smoke run checks strace's path only.
        p1, p2 = (None, None) if smoke else (perf_counts(case, n1), perf_counts(case, n2))
        if p1 and p2:
            row["perf"] = {name: round((p2[name] - p1[name]) / (ops_per_n * (n2 - n1)), 3)
                           for name in p1 if name in p2}
        return row

    for k in ks:
        rows.append({"k": k, "minimum": 2 * k, **per_op(f"k{k}", 2, n1, n2)})
    if not smoke:  # these operations are slower than switches: fewer of them
        sec.facts["other_ops"] = {
            "vas_attach + vas_detach (one segment)": per_op("attach", 1, n1 // 4, n2 // 4),
            "vas_create + vas_delete": per_op("create", 1, n1 // 4, n2 // 4)}
    sec.facts["rows"] = rows
    sec.facts["perf_instructions"] = perf_insns_supported()
    sec.facts["n1_n2"] = [n1, n2]

    n = 200 if smoke else 5000
    big = 16 << 40
    sec.add("move_plug_16t", "kernel: 4 KiB mremap + plug mmap, 16 TiB reservation", "ns",
            kernel_move_cost(big, True, n, runs))
    sec.add("move_plug_1g", "kernel: 4 KiB mremap + plug mmap, 1 GiB reservation", "ns",
            kernel_move_cost(GiB, True, n, runs), baseline="move_plug_16t")
    sec.add("move_16t", "kernel: 4 KiB mremap alone, 16 TiB reservation", "ns",
            kernel_move_cost(big, False, n, runs), baseline="move_plug_16t")
    sec.add("move_1g", "kernel: 4 KiB mremap alone, 1 GiB reservation", "ns",
            kernel_move_cost(GiB, False, n, runs), baseline="move_plug_16t")
    if not smoke:
        sec.facts["profile"] = kernel_profile(20_000)
    return sec


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--probe":  # the profiled loop
        kernel_move_cost(16 << 40, True, int(sys.argv[2]), 1)
        sys.exit(0)
    sys.exit(common.section_main(run, __doc__))
