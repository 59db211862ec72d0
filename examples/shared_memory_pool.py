"""A multiprocessing.Pool whose workers share one 1M-entry dict, with no pickling.

The parent builds a ``vaspace.heap.Dict`` inside a ``vaspace.shared_memory``
block (``sm.heap()``).  The block sits at the same address in every process,
so the Dict's internal pointers are valid in the workers as they are: each
worker attaches the block by name and opens the Dict in microseconds, and a
lookup reads shared memory directly, with no copy of the data per worker and
no server round trip.

    python examples/shared_memory_pool.py [--entries N] [--workers W]

Compare with the standard library's recipes: pickling the dict to every
worker (each one then holds its own copy), or a ``Manager().dict()`` proxy
(one round trip to the manager process per lookup).  ``bench/shared_memory.py``
measures all three.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import time

from vaspace.heap import Dict, Heap
from vaspace.shared_memory import SharedMemory

ROOT = "index"
# Room for the entries and the table, with slack: the block is sparse, so
# pages never touched cost nothing.
BYTES_PER_ENTRY = 160

_worker: dict[str, object] = {}


def value_of(key: int) -> bytes:
    """The value stored under ``key`` (so any process can check a lookup)."""
    return b"v%08d" % key


def build(entries: int) -> tuple[SharedMemory, Heap, Dict]:
    """A new block holding a Dict of ``entries`` int -> bytes items, at root ``ROOT``."""
    sm = SharedMemory(create=True, size=entries * BYTES_PER_ENTRY + (16 << 20))
    heap = sm.heap()  # a fresh block: formatted here, opened by the workers
    index = Dict(heap, root=ROOT)
    index.update((k, value_of(k)) for k in range(entries))
    return sm, heap, index


def attach(name: str) -> None:
    """Pool initializer: attach the block by name and open the Dict (no data copied)."""
    sm = SharedMemory(name)
    heap = sm.heap()
    _worker.update(sm=sm, heap=heap, index=Dict.open(heap, ROOT))


def lookups(args: tuple[int, int, int]) -> tuple[int, float]:
    """Look up ``n`` random keys below ``entries``; (how many matched, ns per lookup)."""
    n, entries, seed = args
    index = _worker["index"]
    assert isinstance(index, Dict)
    keys = random.Random(seed).choices(range(entries), k=n)
    t0 = time.perf_counter_ns()
    got = [index[k] for k in keys]
    ns = (time.perf_counter_ns() - t0) / n
    return sum(v == value_of(k) for k, v in zip(keys, got, strict=True)), ns


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lookups", type=int, default=100_000, help="per task")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    sm, heap, index = build(args.entries)
    print(f"built {len(index):,} entries in {sm!r} at {sm.address:#x} "
          f"in {time.perf_counter() - t0:.2f} s")
    try:
        t0 = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(args.workers, attach,
                                                       (sm.name,)) as pool:
            tasks = [(args.lookups, args.entries, seed) for seed in range(args.workers * 2)]
            results = pool.map(lookups, tasks)
        elapsed = time.perf_counter() - t0
        matched = sum(r[0] for r in results)
        per = sorted(r[1] for r in results)[len(results) // 2]
        print(f"{args.workers} spawned workers: {matched:,} of {len(tasks) * args.lookups:,} "
              f"lookups matched, {per:.0f} ns per lookup (median task), {elapsed:.2f} s in all")
        return 0 if matched == len(tasks) * args.lookups else 1
    finally:
        heap.close()
        sm.close()
        sm.unlink()


if __name__ == "__main__":
    raise SystemExit(main())
