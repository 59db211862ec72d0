"""Space of a vaspace ``Dict`` against py-lmdb for the same data (issue 15 §2).

N keys of 12 bytes with values of 32 bytes, loaded into a ``Dict`` in a
heap and into an LMDB environment (one write transaction), in the same run.
The Dict is loaded twice: one crash-consistent SET per key, and one
``Dict.update`` (the bulk load: all keys in one crash-consistent
operation).  LMDB is loaded with ``txn.put`` per key, and with
``cursor.putmulti`` (its own bulk call).  Reported: the bytes each store
occupies (the heap's allocated bytes plus its header; LMDB's used pages,
``(last_pgno + 1) * psize``), the ratio, the load rates, and random GETs
in one process (every key once, in a shuffled order: ``d[key]`` against
``txn.get(key)`` in one read transaction, each the idiomatic call, LMDB's
bound once outside the loop; both stores open side by side, the two loops
alternating five times, each side's median pass; timed as the process's CPU
time, which other work on the machine disturbs less, and as wall time).  Space is
deterministic; the rates are the median of ``--runs`` runs.

    python bench/heap_space.py [--n 200000] [--runs 3] [--out FILE] [--smoke]
"""

from __future__ import annotations

import argparse
import mmap
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench import machine  # noqa: E402

MiB = 1 << 20


def _keys(n: int) -> list[tuple[bytes, bytes]]:
    return [(b"key%09d" % i, b"v%031d" % (i * 7)) for i in range(n)]


def _vaspace(items: list[tuple[bytes, bytes]], bulk: bool) -> tuple[int, float]:
    """(bytes occupied, seconds to load) for a Dict in an anonymous region:
    one SET per key, or (bulk) one Dict.update."""
    from vaspace.heap import Dict, Heap, _heapcore

    size = max(64 * MiB, len(items) * 400)
    buf = mmap.mmap(-1, size)
    heap = Heap.format(buf)
    d = Dict(heap)
    t = time.perf_counter()
    if bulk:
        d.update(items)
    else:
        for k, v in items:
            d[k] = v
    secs = time.perf_counter() - t
    used = heap.stats().used + _heapcore.HEADER_BYTES
    assert len(d) == len(items)
    heap.close()
    buf.close()
    return used, secs


def _timed(loop) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of loop()."""
    c, w = time.process_time(), time.perf_counter()
    loop()
    return time.process_time() - c, time.perf_counter() - w


def _gets(items: list[tuple[bytes, bytes]], work: str,
          passes: int = 5) -> tuple[tuple[float, float], ...]:
    """(CPU, wall) seconds for one random GET of every key: (d[key],
    txn.get(key)), both stores loaded with the same pairs and open side by
    side; the two loops alternate ``passes`` times and each side's median
    pass counts, so that a burst of other work on the machine hits both
    alike."""
    import lmdb

    from vaspace.heap import Dict, Heap

    order = [k for k, _ in items]
    random.Random(7).shuffle(order)
    buf = mmap.mmap(-1, max(64 * MiB, len(items) * 400))
    heap = Heap.format(buf)
    d = Dict(heap)
    d.update(items)
    path = tempfile.mkdtemp(dir=work)
    env = lmdb.open(path, map_size=max(64 * MiB, len(items) * 400), sync=False)
    with env.begin(write=True) as txn:
        txn.cursor().putmulti(items)
    txn = env.begin()
    tget = txn.get

    def dict_loop() -> None:
        for k in order:
            d[k]

    def lmdb_loop() -> None:
        for k in order:
            tget(k)

    times: dict[str, list[tuple[float, float]]] = {"dict": [], "lmdb": []}
    for _ in range(passes):
        times["dict"].append(_timed(dict_loop))
        times["lmdb"].append(_timed(lmdb_loop))
    txn.abort()
    env.close()
    shutil.rmtree(path)
    heap.close()
    buf.close()
    return tuple((statistics.median(c for c, _ in times[side]),
                  statistics.median(w for _, w in times[side])) for side in ("dict", "lmdb"))


def _lmdb(items: list[tuple[bytes, bytes]], work: str, bulk: bool) -> tuple[int, float]:
    """(bytes of used pages, seconds to load in one write transaction): one
    txn.put per key, or (bulk) one cursor.putmulti."""
    import lmdb

    path = tempfile.mkdtemp(dir=work)
    env = lmdb.open(path, map_size=max(64 * MiB, len(items) * 400), sync=False)
    t = time.perf_counter()
    with env.begin(write=True) as txn:
        if bulk:
            txn.cursor().putmulti(items)
        else:
            for k, v in items:
                txn.put(k, v)
    secs = time.perf_counter() - t
    info, stat = env.info(), env.stat()
    used = (info["last_pgno"] + 1) * stat["psize"]
    env.close()
    shutil.rmtree(path)
    return used, secs


def run(n: int, runs: int, work: str) -> str:
    items = _keys(n)
    space: dict[str, list[int]] = {"set": [], "lmdb": []}
    secs: dict[str, list[float]] = {"set": [], "update": [], "lmdb": [], "putmulti": [],
                                    "get": [], "lmdb_get": [], "get_wall": [],
                                    "lmdb_get_wall": []}
    for _ in range(runs):  # interleaved, so that load from elsewhere hits all alike
        for name, fn in (("set", lambda: _vaspace(items, False)),
                         ("update", lambda: _vaspace(items, True)),
                         ("lmdb", lambda: _lmdb(items, work, False)),
                         ("putmulti", lambda: _lmdb(items, work, True))):
            b, s = fn()
            space.setdefault(name, []).append(b)
            secs[name].append(s)
        (g, gw), (lg, lgw) = _gets(items, work)
        secs["get"].append(g)
        secs["lmdb_get"].append(lg)
        secs["get_wall"].append(gw)
        secs["lmdb_get_wall"].append(lgw)
    vb, lb = statistics.median(space["set"]), statistics.median(space["lmdb"])
    rate = {name: n / statistics.median(v) for name, v in secs.items()}
    m = machine.describe()
    # each run pairs the two stores under the same load: its own ratio
    paired = [lg / g for g, lg in zip(secs["get"], secs["lmdb_get"], strict=True)]
    spread = ", ".join(f"{r:.2f}x" for r in paired) + f" (median {statistics.median(paired):.2f}x)"
    return "\n".join([
        f"## Heap space: {n:,} keys of 12 bytes, values of 32 bytes",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs; median of {runs} runs.",
        "",
        "| | vaspace Dict | py-lmdb | ratio |",
        "|---|---|---|---|",
        f"| space | {vb / MiB:.1f} MiB | {lb / MiB:.1f} MiB | {vb / lb:.2f}x (target <= 1.3x) |",
        f"| bytes per key | {vb / n:.0f} | {lb / n:.0f} | |",
        f"| load, key by key | {rate['set'] / 1e6:.2f} M/s (each SET crash-consistent) | "
        f"{rate['lmdb'] / 1e6:.2f} M/s (txn.put, one write txn) | "
        f"{rate['set'] / rate['lmdb']:.2f}x |",
        f"| bulk load | {rate['update'] / 1e6:.2f} M/s (one Dict.update, crash-consistent "
        f"as a whole) | {rate['lmdb'] / 1e6:.2f} M/s (txn.put, one write txn) | "
        f"{rate['update'] / rate['lmdb']:.2f}x (target >= 1x) |",
        f"| bulk load, both bulk calls | {rate['update'] / 1e6:.2f} M/s (Dict.update) | "
        f"{rate['putmulti'] / 1e6:.2f} M/s (cursor.putmulti, one write txn) | "
        f"{rate['update'] / rate['putmulti']:.2f}x |",
        f"| random GET, one process (CPU time) | {rate['get'] / 1e6:.2f} M/s (d[key]) | "
        f"{rate['lmdb_get'] / 1e6:.2f} M/s (txn.get, one read txn) | "
        f"{rate['get'] / rate['lmdb_get']:.2f}x (target >= 2x) |",
        f"| random GET, one process (wall time) | {rate['get_wall'] / 1e6:.2f} M/s (d[key]) | "
        f"{rate['lmdb_get_wall'] / 1e6:.2f} M/s (txn.get, one read txn) | "
        f"{rate['get_wall'] / rate['lmdb_get_wall']:.2f}x |",
        f"| GET ratio, run by run (CPU time) | {spread} | | |",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ap.add_argument("--out", help="write the markdown report here (default: stdout)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a second or two")
    a = ap.parse_args(argv)
    if a.smoke:
        a.n, a.runs = 2000, 1
    text = run(a.n, a.runs, a.dir or tempfile.gettempdir())
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
