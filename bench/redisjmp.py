#!/usr/bin/env python3
"""RedisJMP: GET/SET on a key-value store held in a vaspace segment vs Redis.

SpaceJMP's RedisJMP puts the Redis data set in a shared address space, and a
client GETs by switching into it and copying: no IPC.  Here the data set is a
:class:`vaspace.heap.Dict` in a vaspace segment; each of ``k`` client
processes attaches the VAS, switches into it, opens the heap and runs GET or
SET directly.  The baseline is a real ``redis-server`` on 127.0.0.1, driven
with redis-py (hiredis parser) one command at a time, and pipelined (Redis's
best case).

Reported per (system, operation, clients): throughput (median of ``--runs``
runs, with min and max), p50 and p99 latency of single operations, and the
ratio of per-client throughput to redis-py.  Every operation is timed with
``perf_counter_ns``; that overhead (tens of ns) is included for all systems,
which penalises the in-process store most.  Pipelined latency is the batch
time divided by the batch size.

Usage::

    python bench/redisjmp.py [--n 1000000] [--clients 1,2,4] [--runs 5]
                             [--out results.md] [--plot results.png] [--smoke]
"""

from __future__ import annotations

import argparse
import array
import contextlib
import multiprocessing as mp
import os
import platform
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from vaspace.heap import Dict, Heap  # noqa: E402

KEY_LEN, VALUE_LEN = 16, 64
SEG_START = 0x4400_0000_0000  # inside vaspace's default segment window
PIPELINE_BATCH = 100
TARGETS = {"GET": 20.0, "SET": 10.0}  # per-client speed-up over redis-py


def key_of(i: int) -> bytes:
    """The i-th key: exactly 16 bytes."""
    return b"key:%012d" % i


VALUE = bytes(range(VALUE_LEN))


# ---------------------------------------------------------------- machine


def machine() -> dict[str, str]:
    """CPU model, core count, kernel and virtualisation, for the report."""
    cpu = "unknown"
    hyper = False
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and " hypervisor" in line:
                hyper = True
    virt = ""
    if shutil.which("systemd-detect-virt"):
        r = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True)
        virt = r.stdout.strip()
    if not virt or virt == "none":
        virt = "hypervisor flag set" if hyper else "none detected"
    elif hyper:
        virt += " (hypervisor flag set)"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "kernel": platform.release(),
            "virtualization": virt, "python": platform.python_version()}


# ---------------------------------------------------------------- the vaspace store


def region_size(n: int) -> int:
    """Bytes for n items with room for growth, page rounded.  Generous: a
    segment is sparse (untouched pages cost nothing), and a Dict that grows
    needs its old and its new index and entry area at once."""
    entry = 16 + 16 + KEY_LEN + VALUE_LEN  # an upper bound of an entry's bytes
    table = 16 * max(16, 1 << (2 * n).bit_length())
    size = 4 * n * entry + table * 2 + (16 << 20)
    return (size + (1 << 21) - 1) & ~((1 << 21) - 1)


class VaspaceStore:
    """A Dict in a real vaspace segment (or, if the vaspace API is unusable
    here, a shared anonymous mapping inherited by the forked clients)."""

    def __init__(self, n: int) -> None:
        self.size = region_size(n)
        self.kind = "vaspace segment"
        self.tmp = tempfile.mkdtemp(prefix="redisjmp-", dir="/dev/shm")
        os.environ["VASPACE_ROOT"] = os.path.join(self.tmp, "root")
        self.anon = None
        try:
            import vaspace

            self.sid = vaspace.vas_seg_create("redisjmp-data", SEG_START,
                                              SEG_START + self.size, 0o600)
            self.vaspace = vaspace
        except Exception as e:  # report and fall back, never fail the benchmark
            print(f"note: vaspace API unavailable ({e!r}); using a shared mapping",
                  file=sys.stderr)
            import mmap

            self.kind = "shared anonymous mapping (vaspace API unavailable)"
            self.anon = mmap.mmap(-1, self.size)
            self.vaspace = None

    def open(self, create: bool = False) -> Heap:
        """In a (forked) process: enter the VAS and open (or format) the heap."""
        if self.vaspace is None:
            return Heap.format(self.anon) if create else Heap.open(self.anon)
        # A VAS has one writer or many readers, so every client process gets
        # its own VAS holding the one shared segment (as in SpaceJMP, where
        # segments are shared between address spaces).
        vs = self.vaspace
        vid = vs.vas_create(f"redisjmp-{os.getpid()}", 0o600)
        vs.vas_seg_attach(vid, self.sid, os.O_RDWR)
        vs.vas_attach(0, vid, os.O_RDWR)
        vs.vas_switch(vid)
        view = vs.Segment.find("redisjmp-data").view()
        return Heap.format(view) if create else Heap.open(view)

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------- clients


@dataclass
class RunResult:
    ops: int
    seconds: float
    latencies_ns: np.ndarray
    cpu_seconds: float  # CPU time of all clients during their runs
    corrected: float  # load-corrected ops/s (see run_delay), or 0 if unknown


def run_delay() -> float:
    """Seconds this process has waited, runnable, for a CPU (the kernel's
    schedstat run_delay), or NaN where the kernel does not report it."""
    try:
        with open("/proc/self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def _client(target: Callable[[], Callable[[list[bytes]], array.array]], keys: list[bytes],
            barrier, conn) -> None:
    """Child: prepare, wait for the others, run, send (start, end, latencies)."""
    try:
        run = target()
        barrier.wait(timeout=120)
        t0, c0, r0 = time.perf_counter(), time.process_time(), run_delay()
        lat = run(keys)
        t1, c1, r1 = time.perf_counter(), time.process_time(), run_delay()
        conn.send((t0, t1, lat.tobytes(), c1 - c0, r1 - r0))
    except BaseException as e:
        barrier.abort()  # release the other clients instead of hanging them
        conn.send(RuntimeError(f"client {os.getpid()} failed: {e!r}"))
    finally:
        conn.close()


def run_clients(make_runner: Callable[[], Callable[[list[bytes]], array.array]], k: int,
                ops: int, n: int, seed: int) -> RunResult:
    """Fork k clients running ops operations each on uniform random keys."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(k)
    rng = np.random.default_rng(seed)
    procs, pipes = [], []
    for _c in range(k):
        keys = [key_of(int(i)) for i in rng.integers(0, n, ops)]
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_client, args=(make_runner, keys, barrier, child))
        p.start()
        child.close()
        procs.append(p)
        pipes.append(parent)
    results = [pipe.recv() for pipe in pipes]
    for p in procs:
        p.join()
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise RuntimeError("; ".join(map(str, errors)))
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    lat = np.concatenate([np.frombuffer(r[2], dtype=np.int64) for r in results])
    # Load-corrected rate: each client's operations over its run time minus
    # the time it waited for a CPU (run_delay), i.e. the time it ran or was
    # blocked (on the heap lock, in the kernel) -- what it would have taken
    # with no other jobs on the machine.  Lock waits, spinning and cache
    # misses between clients stay in; other jobs' load comes out.  With more
    # clients than cores they would share the cores even on an idle
    # machine, hence the min(1, cores / k).
    share = min(1.0, (os.cpu_count() or 1) / k)
    busy = [(r[1] - r[0]) - r[4] for r in results]
    corrected = (share * sum(ops / b for b in busy)
                 if all(b > 0 for b in busy) else 0.0)
    return RunResult(ops=k * ops, seconds=end - start, latencies_ns=lat,
                     cpu_seconds=sum(r[3] for r in results), corrected=corrected)


def vaspace_runner(store: VaspaceStore, op: str):
    def make() -> Callable[[list[bytes]], array.array]:
        heap = store.open()
        d = Dict.open(heap, "redisjmp")
        clock = time.perf_counter_ns

        def run(keys: list[bytes]) -> array.array:
            lat = array.array("q")
            append = lat.append
            if op == "GET":
                for key in keys:
                    t = clock()
                    d[key]
                    append(clock() - t)
            else:
                for key in keys:
                    t = clock()
                    d[key] = VALUE
                    append(clock() - t)
            return lat

        return run

    return make


def redis_runner(port: int, op: str, pipelined: bool):
    def make() -> Callable[[list[bytes]], array.array]:
        import redis

        r = redis.Redis(host="127.0.0.1", port=port)
        r.ping()
        clock = time.perf_counter_ns

        def run(keys: list[bytes]) -> array.array:
            lat = array.array("q")
            append = lat.append
            if not pipelined:
                call = r.get if op == "GET" else (lambda k: r.set(k, VALUE))
                for key in keys:
                    t = clock()
                    call(key)
                    append(clock() - t)
                return lat
            for i in range(0, len(keys), PIPELINE_BATCH):
                batch = keys[i:i + PIPELINE_BATCH]
                t = clock()
                p = r.pipeline(transaction=False)
                for key in batch:
                    if op == "GET":
                        p.get(key)
                    else:
                        p.set(key, VALUE)
                p.execute()
                per = (clock() - t) // len(batch)
                lat.extend([per] * len(batch))
            return lat

        return run

    return make


# ---------------------------------------------------------------- redis server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def redis_server() -> Iterator[int | None]:
    """Start redis-server on a free port (no persistence); yield the port, or
    None if redis-server is not installed."""
    exe = shutil.which("redis-server")
    if exe is None:
        yield None
        return
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="redisjmp-redis-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        r = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(200):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- driver


@dataclass
class Row:
    system: str
    op: str
    clients: int
    ops_s: list[float]
    p50_us: float
    p99_us: float
    cpu_us: list[float]  # client CPU time per operation, per run
    corrected: list[float]  # load-corrected ops/s, per run (see run_clients)

    @property
    def median(self) -> float:
        return statistics.median(self.ops_s)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_us)

    @property
    def corrected_median(self) -> float:
        return statistics.median(self.corrected)


def measure(system: str, op: str, clients: list[int], runs: int, ops: int, n: int,
            make) -> list[Row]:
    """One row per client count.  The runs are interleaved (run 1 of every
    client count, then run 2, ...), so that a change in the machine's load
    (other jobs on a shared VM) hits every count alike and their ratios stay
    meaningful."""
    tputs: dict[int, list[float]] = {k: [] for k in clients}
    cpus: dict[int, list[float]] = {k: [] for k in clients}
    corr: dict[int, list[float]] = {k: [] for k in clients}
    lats: dict[int, list[np.ndarray]] = {k: [] for k in clients}
    for run in range(runs):
        for k in clients:
            res = run_clients(make, k, ops, n, seed=run * 100 + k)
            tputs[k].append(res.ops / res.seconds)
            cpus[k].append(res.cpu_seconds / res.ops * 1e6)
            corr[k].append(res.corrected)
            lats[k].append(res.latencies_ns)
    rows = []
    for k in clients:
        lat = np.concatenate(lats[k]) / 1000.0
        row = Row(system, op, k, tputs[k], float(np.percentile(lat, 50)),
                  float(np.percentile(lat, 99)), cpus[k], corr[k])
        print(f"  {system:18s} {op} k={k}: {row.median:,.0f} ops/s  p50 {row.p50_us:.2f} us  "
              f"p99 {row.p99_us:.2f} us  cpu {row.cpu_median:.2f} us/op  "
              f"load-corrected {row.corrected_median:,.0f} ops/s", file=sys.stderr)
        rows.append(row)
    return rows


def load_vaspace(store: VaspaceStore, n: int) -> float:
    """Fill the Dict in a child process (the parent never enters the VAS)."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def fill() -> None:
        heap = store.open(create=True)
        d = Dict(heap, root="redisjmp")
        t = time.perf_counter()
        for i in range(n):
            d[key_of(i)] = VALUE
        q.put(time.perf_counter() - t)
        heap.close()

    p = ctx.Process(target=fill)
    p.start()
    secs = None
    while secs is None:  # a child that dies (a full heap, say) must not hang us
        try:
            secs = q.get(timeout=1.0)
        except queue.Empty:
            if not p.is_alive():
                break
    p.join()
    if p.exitcode != 0 or secs is None:
        raise RuntimeError(f"loading the vaspace Dict failed (exit code {p.exitcode})")
    return secs


def load_redis(port: int, n: int) -> float:
    import redis

    r = redis.Redis(host="127.0.0.1", port=port)
    t = time.perf_counter()
    for i in range(0, n, 10000):
        p = r.pipeline(transaction=False)
        for j in range(i, min(n, i + 10000)):
            p.set(key_of(j), VALUE)
        p.execute()
    return time.perf_counter() - t


def scaling(rows: list[Row], cores: int) -> list[str]:
    """Total throughput of k clients against one client (issue 15's target:
    SET with 2 and 4 writer processes each >= 1.5x one writer).

    Three figures per count, from the same interleaved runs:
    - wall: the ratio of the median throughputs;
    - load-corrected: the same from each client's run time minus the time it
      waited for a CPU (run_clients): what an otherwise idle machine would
      show.  Waiting for the heap lock (spinning, or blocked in the kernel)
      and cache misses between writers stay in it;
    - CPU: min(k, cores) x (CPU per op of 1 client) / (CPU per op of k):
      spinning and cache misses show in it, time blocked does not.
    On a shared machine whose other jobs keep the cores busy, k clients do
    not get k cores, and the wall ratio cannot reach k (nor 1.5 at 2 cores
    when another job takes one of them)."""
    out = ["", f"Scaling with client processes (total throughput of k clients vs 1 client, "
           f"{cores} cores; wall, load-corrected and CPU ratios, see `scaling()`):", ""]
    for r in rows:
        one = next((o for o in rows if o.system == r.system and o.op == r.op
                    and o.clients == 1), None)
        if one is None or r.clients == 1:
            continue
        wall = r.median / one.median
        # 0 = unknown (no schedstat, or runs too short for its accounting)
        corr = (r.corrected_median / one.corrected_median
                if min(r.corrected_median, one.corrected_median) > 0 else float("nan"))
        cpu = min(r.clients, cores) * one.cpu_median / r.cpu_median
        corr_text = "n/a" if corr != corr else f"{corr:.2f}x"
        line = (f"- {r.system} {r.op}, {r.clients} clients: wall {wall:.2f}x, "
                f"load-corrected {corr_text}, CPU {cpu:.2f}x")
        if r.system == "vaspace Dict" and r.op == "SET":
            verdict = "met" if wall >= 1.5 else (
                "met load-corrected only" if corr >= 1.5 else "MISSED")
            line += f" (target 1.5x: **{verdict}**)"
            get = [g.median for g in rows if g.system == r.system and g.op == "GET"
                   and g.clients in (1, r.clients)]
            if len(get) == 2:
                # lock-free readers share nothing: the most this machine gave
                # k processes in this run
                line += f"; the lock-free GET control: wall {get[1] / get[0]:.2f}x"
        out.append(line)
    return out


def report(rows: list[Row], args, info: dict[str, str], store_kind: str,
           load: dict[str, float], redis_note: str) -> str:
    out = ["## RedisJMP benchmark: vaspace Dict vs Redis", ""]
    out.append(f"- Machine: {info['cpu']}, {info['cores']} cores, kernel {info['kernel']}, "
               f"virtualization: {info['virtualization']}, Python {info['python']}; "
               f"1-minute load average at start -> end: {info.get('load', 'n/a')}")
    out.append(f"- Data: {args.n:,} keys of {KEY_LEN} B, values of {VALUE_LEN} B; vaspace store "
               f"in a {store_kind}; uniform random keys")
    out.append(f"- Each cell: median of {args.runs} runs (min..max); vaspace "
               f"{args.ops:,} ops/client/run, redis-py {args.redis_ops:,}, pipelined "
               f"{args.ops:,} in batches of {PIPELINE_BATCH}")
    out.append("- Load time: " + ", ".join(f"{k} {v:.2f} s" for k, v in load.items()))
    if redis_note:
        out.append(f"- {redis_note}")
    out += ["", "| system | op | clients | ops/s (median) | min..max | per client | p50 us | "
            "p99 us | client CPU us/op | load-corrected ops/s | per-client x redis-py |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    base = {(r.op, r.clients): r.median for r in rows if r.system == "redis-py"}
    for r in rows:
        b = base.get((r.op, r.clients))
        ratio = f"{r.median / b:.1f}x" if b else "n/a"
        out.append(f"| {r.system} | {r.op} | {r.clients} | {r.median:,.0f} | "
                   f"{min(r.ops_s):,.0f}..{max(r.ops_s):,.0f} | {r.median / r.clients:,.0f} | "
                   f"{r.p50_us:.2f} | {r.p99_us:.2f} | {r.cpu_median:.2f} | "
                   f"{r.corrected_median:,.0f} | {ratio} |")
    out += scaling(rows, int(info["cores"]))
    out += ["", "Targets (per-client throughput of the vaspace Dict over redis-py, same clients):"]
    for op, target in TARGETS.items():
        for r in rows:
            if r.system == "vaspace Dict" and r.op == op and (op, r.clients) in base:
                ratio = r.median / base[(op, r.clients)]
                verdict = "met" if ratio >= target else "MISSED"
                out.append(f"- {op} with {r.clients} client(s): {ratio:.1f}x vs target "
                           f"{target:.0f}x: **{verdict}**")
    if not base:
        out.append("- not evaluated: redis-server unavailable")
    return "\n".join(out) + "\n"


def plot(rows: list[Row], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, op in zip(axes, ("GET", "SET"), strict=True):
        systems = [s for s in ("vaspace Dict", "redis-py", "redis-py pipelined")
                   if any(r.system == s and r.op == op for r in rows)]
        clients = sorted({r.clients for r in rows})
        width = 0.8 / max(1, len(systems))
        for i, s in enumerate(systems):
            ys = [next((r.median for r in rows if r.system == s and r.op == op
                        and r.clients == k), 0) for k in clients]
            lo = [y - next((min(r.ops_s) for r in rows if r.system == s and r.op == op
                            and r.clients == k), 0) for y, k in zip(ys, clients, strict=True)]
            hi = [next((max(r.ops_s) for r in rows if r.system == s and r.op == op
                        and r.clients == k), 0) - y for y, k in zip(ys, clients, strict=True)]
            xs = [j + i * width for j in range(len(clients))]
            ax.bar(xs, ys, width, yerr=[lo, hi], label=s, capsize=3)
        ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(clients))])
        ax.set_xticklabels([str(k) for k in clients])
        ax.set_yscale("log")
        top = max((max(r.ops_s) for r in rows if r.op == op), default=1)
        ax.set_ylim(top=top * 30)  # headroom so the legend does not cover bars
        ax.set_xlabel("client processes")
        ax.set_ylabel("ops/s (median, log scale)")
        ax.set_title(op)
        ax.legend(fontsize=8)
    fig.suptitle("RedisJMP: vaspace Dict vs Redis")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="number of keys")
    ap.add_argument("--clients", default="1,2,4", help="comma-separated client counts")
    ap.add_argument("--runs", type=int, default=5, help="runs per cell (median reported)")
    ap.add_argument("--ops", type=int, default=200_000, help="ops per client per run (vaspace, "
                    "pipelined redis)")
    ap.add_argument("--redis-ops", type=int, default=20_000, help="ops per client per run for "
                    "unpipelined redis-py")
    ap.add_argument("--out", help="write the markdown report here (default: stdout)")
    ap.add_argument("--plot", help="write a PNG plot here")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    ap.add_argument("--no-redis", action="store_true", help="skip the Redis baseline")
    ap.add_argument("--op", choices=("GET", "SET", "both"), default="both",
                    help="operations to measure")
    args = ap.parse_args(argv)
    if args.smoke:
        args.n, args.runs, args.ops, args.redis_ops = 2000, 1, 2000, 200
        args.clients = "1,2"
    clients = [int(c) for c in args.clients.split(",")]
    info = machine()
    rows: list[Row] = []
    load: dict[str, float] = {}
    ops = ("GET", "SET") if args.op == "both" else (args.op,)
    loadavg = [os.getloadavg()[0]]
    store = VaspaceStore(args.n)
    try:
        load["vaspace Dict"] = load_vaspace(store, args.n)
        for op in ops:
            rows += measure("vaspace Dict", op, clients, args.runs, args.ops, args.n,
                            vaspace_runner(store, op))
    finally:
        store.close()
    redis_note = ""
    if args.no_redis:
        redis_note = "Redis baseline skipped (--no-redis)"
    else:
        with redis_server() as port:
            if port is None:
                redis_note = ("Redis baseline skipped: redis-server is not installed "
                              "(apt-get install -y redis-server)")
            else:
                load["redis (pipelined load)"] = load_redis(port, args.n)
                for op in ops:
                    rows += measure("redis-py", op, clients, args.runs, args.redis_ops,
                                    args.n, redis_runner(port, op, False))
                    rows += measure("redis-py pipelined", op, clients, args.runs, args.ops,
                                    args.n, redis_runner(port, op, True))
    if redis_note:
        print(redis_note, file=sys.stderr)
    loadavg.append(os.getloadavg()[0])
    info["load"] = " -> ".join(f"{x:.1f}" for x in loadavg)
    text = report(rows, args, info, store.kind, load, redis_note)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
