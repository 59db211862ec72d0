#!/usr/bin/env python3
"""The cost of ``Heap.flush()`` on a disk file, against the same writes unflushed.

A heap in a file on disk (``--dir``, default: a temporary directory under the
current one, so on its filesystem) takes ``--n`` Dict SETs (12-byte keys,
32-byte values) in batches of k, calling ``flush()`` after every batch.  The
baseline, in the same run, is the same SETs with no flush at all.  Reported
per k: SET throughput, its ratio to the baseline, and the median time of one
flush; plus the time of a flush with nothing to write.  Each figure is the
median of ``--runs`` runs (min..max beside it).

What a flush costs is one ``msync`` of the dirty pages (and two of the header
page), so it is disk-bound: the figures depend on the device far more than on
the CPU.

Usage::

    python bench/heapflush.py [--n 100000] [--runs 5] [--dir DIR] [--out FILE] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
sys.path.insert(0, HERE)

from redisjmp import machine  # noqa: E402
from vaspace.heap import Dict, Heap  # noqa: E402

SIZE = 256 << 20
BATCHES = (1, 100, 10_000)


def new_heap(path: str) -> tuple[mmap.mmap, Heap]:
    """A fresh heap in a new SIZE-byte file at path, mapped shared."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, SIZE)
        m = mmap.mmap(fd, SIZE)
    finally:
        os.close(fd)
    return m, Heap.format(m)


def one_run(path: str, n: int, k: int | None) -> tuple[float, list[float]]:
    """SET n keys, flushing after every k (never if k is None).  Returns the
    SET rate (per second, flushes included) and the flush times."""
    m, heap = new_heap(path)
    heap.flush()
    d = Dict(heap)
    value = b"v" * 32
    flushes = []
    t0 = time.perf_counter()
    for i in range(n):
        d[b"%012d" % i] = value
        if k is not None and (i + 1) % k == 0:
            f0 = time.perf_counter()
            heap.flush()
            flushes.append(time.perf_counter() - f0)
    rate = n / (time.perf_counter() - t0)
    heap.close()
    m.close()
    os.unlink(path)
    return rate, flushes


def idle_flush(path: str, reps: int) -> float:
    """Median time of a flush with nothing written since the last one."""
    m, heap = new_heap(path)
    Dict(heap)[1] = 1
    heap.flush()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        heap.flush()
        times.append(time.perf_counter() - t0)
    heap.close()
    m.close()
    os.unlink(path)
    return statistics.median(times)


def spread(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, to check it runs")
    a = ap.parse_args()
    if a.smoke:
        a.n, a.runs = 2_000, 2
    with tempfile.TemporaryDirectory(dir=a.dir or ".", prefix="heapflush-") as tmp:
        path = os.path.join(tmp, "heap")
        results: dict[str, dict] = {}
        base = [one_run(path, a.n, None)[0] for _ in range(a.runs)]
        results["no flush"] = {"rate": spread(base), "ratio": 1.0}
        for k in BATCHES:
            if k > a.n:
                continue
            rates, flush_times = [], []
            for _ in range(a.runs):
                # one msync per SET is slow: fewer SETs for k = 1
                rate, fl = one_run(path, min(a.n, 50 if a.smoke else 1_000) if k == 1 else a.n, k)
                rates.append(rate)
                flush_times.append(statistics.median(fl))
            results[f"flush every {k}"] = {
                "rate": spread(rates),
                "ratio": statistics.median(rates) / statistics.median(base),
                "flush_seconds": spread(flush_times)}
        results["idle flush"] = {"flush_seconds": idle_flush(path, 20 if a.smoke else 200)}
    report = {"machine": machine(), "n": a.n, "runs": a.runs, "results": results}
    print(f"machine: {report['machine']}")
    print(f"{a.n} SETs (12 B keys, 32 B values), median of {a.runs} runs")
    for name, r in results.items():
        if "rate" in r:
            rr = r["rate"]
            line = (f"  {name:16} {rr['median'] / 1e3:8.1f} k SET/s "
                    f"({rr['min'] / 1e3:.1f}..{rr['max'] / 1e3:.1f})  x{r['ratio']:.3f}")
            if "flush_seconds" in r:
                line += f"  one flush {r['flush_seconds']['median'] * 1e3:.2f} ms"
            print(line)
        else:
            print(f"  {name:16} {r['flush_seconds'] * 1e6:.0f} us")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
