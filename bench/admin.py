"""Admin calls (issue 11 §3): find, getattr, a warm attach, a delete, the first answer, ``ls``.

Each figure has a baseline measured in the same run:

- ``vas_find`` and ``vas_getattr`` against ``os.stat`` of a file in the
  registry (one system call from Python: the floor of any answer from files);
- a warm ``vas_attach`` of a one-segment VAS (in a process that has attached
  before) against what its kernel work costs by hand: open the data file,
  ``mmap`` it, close it;
- ``vas_seg_delete`` with 0 and with ``many`` unrelated VASes in the
  registry (the reverse index makes it independent of that number);
- the first answer in a fresh (forked, imports done) process: find the VAS,
  attach it, switch in, open the heap and the Dict, get one key; against
  LMDB's ``Environment`` open + ``get`` of the same key;
- ``vaspace ls --json`` with n objects, for several n (linear: the cost per
  object stays flat).

Run ``python -m bench.admin`` (``--smoke`` for tiny sizes).  With
``VASPACE_BENCH_BEFORE=<another checkout>/src``, the main calls are also timed
against that checkout, alternating in fresh processes (the same machine load);
``--syscalls [SRC]`` and ``--before-after SRC`` print just those tables.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import sys
import tempfile
import time

from . import common
from .common import MiB, Section


def _cpu_per_op_ns(body, n: int, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    """``common.per_op_ns`` in the calling thread's CPU time, not wall time.

    On a machine other work shares, wall time also counts the waits for a
    CPU (and the load here came and went by 3x within a run); CPU time counts
    what the call itself costs, so it is the figure to compare across runs.
    """
    return common.per_op_ns(body, n, runs, time.thread_time_ns)


def _lookups(sec: Section, vaspace, root: str, runs: int, n: int) -> None:  # type: ignore[no-untyped-def]
    vid = vaspace.vas_create("bench-find", 0o600)
    path = f"{root}/vas/{vid}/lock"
    for suffix, per_op, how in (("", common.per_op_ns, ""),
                                ("_cpu", _cpu_per_op_ns, " (CPU time)")):
        sec.add("stat" + suffix, f"os.stat of a registry file (one syscall){how}", "ns",
                per_op(lambda k: [os.stat(path) for _ in range(k)], n, runs))
        sec.add("vas_find" + suffix, "vas_find" + how, "ns",
                per_op(lambda k: [vaspace.vas_find("bench-find") for _ in range(k)], n, runs),
                baseline="stat" + suffix)
        sec.add("vas_getattr" + suffix, "vas_getattr" + how, "ns",
                per_op(lambda k: [vaspace.vas_getattr(vid) for _ in range(k)], n, runs),
                baseline="stat" + suffix)


def _attach(sec: Section, vaspace, root: str, runs: int, n: int) -> None:  # type: ignore[no-untyped-def]
    w = vaspace.window()[0]
    vid = vaspace.vas_create("bench-attach", 0o600)
    sid = vaspace.vas_seg_create("bench-attach", w, w + 2 * MiB, 0o600)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    vaspace.vas_attach(0, vid, os.O_RDWR)  # warm: this process has attached before
    vaspace.vas_detach(0, vid)
    data = f"{root}/seg/{sid}/data"

    def by_hand(k: int) -> None:
        for _ in range(k):
            fd = os.open(data, os.O_RDWR | os.O_CLOEXEC)
            m = mmap.mmap(fd, 2 * MiB)
            os.close(fd)
            m.close()

    sec.add("open_mmap", "open + mmap + close of the data file (by hand)", "ns",
            common.per_op_ns(by_hand, n, runs))
    sec.add("open_mmap_cpu", "open + mmap + close of the data file (by hand, CPU time)", "ns",
            _cpu_per_op_ns(by_hand, n, runs))
    for suffix, clock, how in (("", time.perf_counter_ns, ""),
                               ("_cpu", time.thread_time_ns, " (CPU time)")):
        vals = []
        for _ in range(runs):
            total = 0
            for _ in range(n):
                t0 = clock()
                vaspace.vas_attach(0, vid, os.O_RDWR)
                total += clock() - t0
                vaspace.vas_detach(0, vid)
            vals.append(total / n)
        sec.add("vas_attach" + suffix, f"vas_attach, one segment, warm{how}", "ns", vals,
                baseline="open_mmap" + suffix)


def _seg_delete(sec: Section, vaspace, runs: int, many: int) -> None:  # type: ignore[no-untyped-def]
    w = vaspace.window()[0]
    counter = iter(range(10**9))

    def one_delete() -> float:
        sid = vaspace.vas_seg_create(f"d{next(counter)}", w, w + 4096, 0o600)
        holder = vaspace.vas_create(f"h{next(counter)}", 0o600)
        vaspace.vas_seg_attach(holder, sid, os.O_RDWR)
        vaspace.vas_seg_detach(holder, sid)
        t0 = time.perf_counter_ns()
        vaspace.vas_seg_delete(sid)
        dt = time.perf_counter_ns() - t0
        vaspace.vas_delete(holder)
        return dt

    sec.add("seg_delete_0", "vas_seg_delete, no other VASes", "ns",
            [sorted(one_delete() for _ in range(9))[4] for _ in range(runs)])
    others = [vaspace.vas_create(f"other{i}", 0o600) for i in range(many)]
    sec.add("seg_delete_many", f"vas_seg_delete, {many} other VASes", "ns",
            [sorted(one_delete() for _ in range(9))[4] for _ in range(runs)],
            baseline="seg_delete_0")
    for vid in others:
        vaspace.vas_delete(vid)


def _first_answer(sec: Section, vaspace, runs: int) -> None:  # type: ignore[no-untyped-def]
    import lmdb

    from vaspace.heap import Dict, Heap

    w = vaspace.window()[0]
    vid = vaspace.vas_create("bench-first", 0o600)
    sid = vaspace.vas_seg_create("bench-first", w + 64 * MiB, w + 80 * MiB, 0o600)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    vaspace.vas_attach(0, vid, os.O_RDWR)
    with vaspace.VAS(vid).active():
        heap = Heap.format(vaspace.Segment(sid).view())
        d = Dict(heap, root="idx")
        for i in range(1000):
            d[f"key{i}"] = i
        heap.close()
    vaspace.vas_detach(0, vid)
    tmp = tempfile.mkdtemp(dir="/dev/shm", prefix="vaspace-bench-lmdb-")
    env = lmdb.open(tmp, map_size=64 * MiB)
    with env.begin(write=True) as txn:
        for i in range(1000):
            txn.put(f"key{i}".encode(), str(i).encode())
    env.close()

    # Each answer is timed inside a new interpreter, after its imports.
    ours = f"""
import os, time, vaspace
from vaspace.heap import Dict, Heap
c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
v = vaspace.vas_find("bench-first")
vaspace.vas_attach(0, v, os.O_RDONLY)
vaspace.vas_switch(v)
value = Dict.open(Heap.open(vaspace.Segment({sid}).view()), "idx")["key500"]
dt, cpu = time.perf_counter_ns() - t0, time.thread_time_ns() - c0
assert value == 500
print(cpu, dt)
"""
    theirs = f"""
import time, lmdb
c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
env = lmdb.open({tmp!r}, readonly=True, lock=True)
with env.begin() as txn:
    value = txn.get(b"key500")
dt, cpu = time.perf_counter_ns() - t0, time.thread_time_ns() - c0
assert value == b"500"
print(cpu, dt)
"""

    ours_src = os.path.dirname(os.path.dirname(vaspace.__file__))
    before_src = os.environ.get("VASPACE_BENCH_BEFORE")  # another checkout's src/

    def fresh(code: str, src: str = ours_src) -> tuple[float, float]:
        """(CPU time, wall time) of the timed part, in ns; ``src`` first on the path."""
        import subprocess

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        res = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                             capture_output=True, text=True)
        cpu, wall = res.stdout.split()[-2:]
        return float(cpu), float(wall)

    # Alternating, so all see the same load; with VASPACE_BENCH_BEFORE, the
    # other checkout's answer (the same registry, the same code) takes turns too.
    pairs, befores = [], []
    for _ in range(runs):
        pairs.append((fresh(theirs), fresh(ours)))
        if before_src:
            befores.append(fresh(ours, before_src))
    sec.add("lmdb_first", "LMDB: Environment open + begin + get (fresh process)", "ns",
            [t[1] for t, _ in pairs])
    sec.add("first_answer", "find + attach + switch + Heap.open + Dict.open + get (fresh)",
            "ns", [o[1] for _, o in pairs], baseline="lmdb_first")
    sec.add("lmdb_first_cpu", "LMDB: open + begin + get (fresh process, CPU time)", "ns",
            [t[0] for t, _ in pairs])
    sec.add("first_answer_cpu", "find + attach + ... + get (fresh, CPU time)", "ns",
            [o[0] for _, o in pairs], baseline="lmdb_first_cpu")
    if befores:
        sec.add("first_answer_before", "the same answer, VASPACE_BENCH_BEFORE's code, wall",
                "ns", [b[1] for b in befores], baseline="lmdb_first")
        sec.add("first_answer_before_cpu", "the same, VASPACE_BENCH_BEFORE's code, CPU time",
                "ns", [b[0] for b in befores], baseline="lmdb_first_cpu")
    with contextlib.suppress(OSError):
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)


def _listing(sec: Section, vaspace, sizes: list[int], runs: int) -> None:  # type: ignore[no-untyped-def]
    from vaspace.cli import cli
    from vaspace.cli.model import seg_json, snapshot, vas_json

    w = vaspace.window()[0]
    made = 0
    per_object = {}
    for n in sizes:
        while made < n:  # half VASes, half segments, each VAS holding one segment
            sid = vaspace.vas_seg_create(f"ls{made}", w + (made % 1024) * 4096,
                                         w + (made % 1024) * 4096 + 4096, 0o600)
            vid = vaspace.vas_create(f"ls{made}", 0o600)
            vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
            made += 2
        vals = []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            snap = snapshot()
            names = {v.id: v.name for v in snap.vases}
            out = [vas_json(v, snap.segs) for v in snap.vases]
            out += [seg_json(s, names) for s in snap.segs.values()]
            vals.append(time.perf_counter_ns() - t0)
        sec.add(f"ls_{n}", f"ls --json model, {n} objects (total)", "ns", vals)
        per_object[n] = min(vals) / n
    sec.facts["ls_ns_per_object"] = {n: round(v) for n, v in per_object.items()}
    # The command itself once at the largest size, output included.
    from click.testing import CliRunner

    t0 = time.perf_counter_ns()
    res = CliRunner().invoke(cli, ["ls", "--json"], prog_name="vaspace")
    sec.facts[f"vaspace_ls_json_{sizes[-1]}_s"] = round((time.perf_counter_ns() - t0) / 1e9, 3)
    sec.facts["ls_exit"] = res.exit_code


def run(smoke: bool = False) -> Section:
    """Measure the admin calls; returns the section for the report."""
    runs = 5 if smoke else 7  # the report's rule: the median of at least 5 runs
    n = 100 if smoke else 5000
    sec = Section("admin", "Admin calls: find, getattr, attach, delete, first answer, ls")
    with common.temp_registry() as base:
        import vaspace

        vaspace.vas_create("bench-root", 0o600)  # makes the registry
        root = vaspace.registry_root()
        _lookups(sec, vaspace, root, runs, n)
        _attach(sec, vaspace, root, runs, max(20, n // 20))
        _seg_delete(sec, vaspace, runs, 20 if smoke else 1000)
        _first_answer(sec, vaspace, runs)
        _listing(sec, vaspace, [100, 200] if smoke else [1000, 2000, 4000, 10000], 5)
        del base
    before_src = os.environ.get("VASPACE_BENCH_BEFORE")  # another checkout's src/
    if before_src and not smoke:
        sec.facts["before_after"] = before_after(before_src, runs, n // 2)
    if not smoke and shutil.which("strace"):
        sec.facts["syscalls"] = {c: {"before": BEFORE[c], "after": syscalls_per_call(c)}
                                 for c in CASES}
    return sec



# ------------------------------------------------------------------ system calls per call

CASES = ("vas_find", "vas_getattr", "attach+detach", "create+delete", "seg_create+delete")
# The same cases measured on the registry before issue 11 (commit a0c41a9), with
# ``python -m bench.admin --syscalls <that checkout's src>``; kept here so the
# report can show both columns.
BEFORE = {"vas_find": 5.0, "vas_getattr": 5.0, "attach+detach": 69.0, "create+delete": 43.0,
          "seg_create+delete": 63.0}


def _syscall_child(case: str, n: int) -> None:
    """The traced child: set up, then do ``case`` n times."""
    with common.temp_registry():
        import vaspace

        w = vaspace.window()[0]
        vid = vaspace.vas_create("sc", 0o600)
        sid = vaspace.vas_seg_create("sc", w, w + 2 * MiB, 0o600)
        vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
        vaspace.vas_attach(0, vid, os.O_RDWR)
        vaspace.vas_detach(0, vid)
        for i in range(n):
            if case == "vas_find":
                vaspace.vas_find("sc")
            elif case == "vas_getattr":
                vaspace.vas_getattr(vid)
            elif case == "attach+detach":
                vaspace.vas_attach(0, vid, os.O_RDWR)
                vaspace.vas_detach(0, vid)
            elif case == "create+delete":
                vaspace.vas_delete(vaspace.vas_create(f"c{i}", 0o600))
            else:
                vaspace.vas_seg_delete(vaspace.vas_seg_create(f"s{i}", w + 4 * MiB,
                                                              w + 6 * MiB, 0o600))


def syscalls_per_call(case: str, src: str | None = None, n1: int = 50, n2: int = 250) -> float:
    """System calls per ``case``: strace -f -c at two counts, differenced (no start-up noise).

    ``src`` puts another checkout's ``src`` first on the path (the "before" column).
    """
    import subprocess

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, here) if p)

    def total(n: int) -> int:
        with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
            subprocess.run(["strace", "-f", "-c", "-o", out.name, sys.executable, "-m",
                            "bench.admin", "--child", case, str(n)],
                           check=True, env=env, stdout=subprocess.DEVNULL)
            for line in out.read().splitlines():
                parts = line.split()
                if parts and parts[-1] == "total":
                    return int(parts[3])
        raise RuntimeError("strace printed no total")

    return (total(n2) - total(n1)) / (n2 - n1)


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    _syscall_child(sys.argv[2], int(sys.argv[3]))
    sys.exit(0)
if __name__ == "__main__" and sys.argv[1:2] == ["--syscalls"]:
    before = sys.argv[2] if len(sys.argv) > 2 else None
    print("| call | before | after |\n|---|---|---|")
    for c in CASES:
        old = f"{syscalls_per_call(c, before):.1f}" if before else "?"
        print(f"| `{c}` | {old} | {syscalls_per_call(c):.1f} |")
    sys.exit(0)

# ------------------------------------------------------------------ before and after, same run

_PROBE = """
import os, statistics, sys, time
from vaspace.registry import root as rootmod
import vaspace
with rootmod.temporary("vaspace-bench-probe-"):
    w = vaspace.window()[0]
    vid = vaspace.vas_create("x", 0o600)
    sid = vaspace.vas_seg_create("x", w, w + (2 << 20), 0o600)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    vaspace.vas_attach(0, vid, os.O_RDWR)
    vaspace.vas_detach(0, vid)
    c = iter(range(10**9))

    def per(f, n, clock=time.perf_counter_ns):
        t0 = clock()
        for _ in range(n):
            f()
        return (clock() - t0) / n

    def attach(clock=time.perf_counter_ns):
        t0 = clock()
        vaspace.vas_attach(0, vid, os.O_RDWR)
        dt = clock() - t0
        vaspace.vas_detach(0, vid)
        return dt

    def seg_delete():
        s = vaspace.vas_seg_create(f"d{next(c)}", w + (4 << 20), w + (6 << 20), 0o600)
        t0 = time.perf_counter_ns()
        vaspace.vas_seg_delete(s)
        return time.perf_counter_ns() - t0

    n = int(sys.argv[1])
    out = {"vas_find": per(lambda: vaspace.vas_find("x"), n),
           "vas_getattr": per(lambda: vaspace.vas_getattr(vid), n),
           "vas_create": per(lambda: vaspace.vas_create(f"c{next(c)}", 0o600), n // 10),
           "vas_attach": statistics.mean(attach() for _ in range(n // 20)),
           # CPU time of the calling thread: the load of a shared machine left out.
           "vas_find (CPU)": per(lambda: vaspace.vas_find("x"), n, time.thread_time_ns),
           "vas_getattr (CPU)": per(lambda: vaspace.vas_getattr(vid), n, time.thread_time_ns),
           "vas_attach (CPU)": statistics.mean(attach(time.thread_time_ns)
                                               for _ in range(n // 20))}
    for i in range(1000 - n // 10):
        vaspace.vas_create(f"pad{i}", 0o600)
    out["vas_seg_delete, 1000 VASes"] = statistics.median(seg_delete() for _ in range(5))
    print(out)
"""


def before_after(src: str, runs: int, n: int) -> dict[str, dict[str, float]]:
    """The same calls timed with another checkout's ``src`` (before) and this one (after).

    The two alternate, ``runs`` times each, in fresh processes, so both see
    the same machine load; returns {call: {"before": ns, "after": ns}} (medians).
    """
    import ast
    import statistics
    import subprocess

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    import vaspace

    ours = os.path.dirname(os.path.dirname(os.path.abspath(vaspace.__file__)))
    got: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for _ in range(runs):
        for label, path in (("before", src), ("after", ours)):
            env = dict(os.environ, PYTHONPATH=os.pathsep.join((path, here)))
            res = subprocess.run([sys.executable, "-c", _PROBE, str(n)], env=env, check=True,
                                 capture_output=True, text=True)
            got[label].append(ast.literal_eval(res.stdout.strip().splitlines()[-1]))
    return {k: {lab: statistics.median(r[k] for r in got[lab]) for lab in got}
            for k in got["after"][0]}


if __name__ == "__main__" and sys.argv[1:2] == ["--before-after"]:
    for call, v in before_after(sys.argv[2], 5, 2000).items():
        print(f"{call}: before {v['before'] / 1000:.1f} us, after {v['after'] / 1000:.1f} us, "
              f"{v['before'] / v['after']:.1f}x")
    sys.exit(0)


if __name__ == "__main__":
    sys.exit(common.section_main(run, __doc__))
