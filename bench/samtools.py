#!/usr/bin/env python3
"""SAMTools-style benchmark: time to the first answer from a pointer-rich index.

SpaceJMP's SAMTools experiment keeps pointer-rich genomics data in a
persistent address space instead of serialising it to files.  Here one
process builds an index (a :class:`vaspace.heap.Dict` of ``--n`` read names to
positions, 10 million by default) in a vaspace segment whose backing file is
on disk (``VASPACE_ROOT`` under ``--dir``), and exits.  Then a fresh process
maps the segment and answers one lookup.  The same data is also stored with
``pickle`` (the whole dict), ``sqlite3`` (a ``WITHOUT ROWID`` table keyed by
the name) and ``lmdb``; for each, a fresh process loads/opens it and answers
the same lookup.

Reported (median of ``--runs`` runs, min..max): the time inside the fresh
process from "start opening the data" to "have the answer" (imports already
done), and the whole process wall time (interpreter start-up included, the
same ~tens of ms for every store).  Runs are done with a warm page cache and,
with ``--cold`` (default on), also after evicting the stores' files from the
page cache with ``posix_fadvise(DONTNEED)`` (no root needed).

Target: the first answer from the vaspace segment >= 100x sooner than after
``pickle.load`` (in-process time).

Usage::

    python bench/samtools.py [--n 10000000] [--runs 5] [--dir DIR] [--out FILE]
                             [--plot FILE] [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import pickle
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
sys.path.insert(0, SRC)
sys.path.insert(0, HERE)

from redisjmp import machine  # noqa: E402
from vaspace.heap import Dict, Heap  # noqa: E402

SEG_START = 0x4600_0000_0000
TARGET = 100.0
STORES = ("vaspace Dict", "pickle", "sqlite3", "lmdb")


def name_of(i: int) -> bytes:
    """A read name (16 bytes)."""
    return b"read:%011d" % i


def pos_of(i: int) -> int:
    """The value stored for read i (a genomic position)."""
    return (i * 2654435761) % (1 << 40)


def region_size(n: int) -> int:
    """A segment with room for the Dict at its peak: a rebuild holds the old
    and the new entry area (8-byte head, 16-byte key, 8-byte int: 32 bytes
    an entry, plus a sixteenth of slack) and the old and new index (at most
    4 slots of 4 bytes per key).  The file is sparse: only pages written
    take disk space."""
    area = n * 32 * 17 // 16
    index = 4 * 4 * max(16, n)
    size = 2 * area + 2 * index + (32 << 20)
    return (size + (1 << 21) - 1) & ~((1 << 21) - 1)


# ---------------------------------------------------------------- building


def build_vaspace(root: str, n: int) -> tuple[float, int]:
    """In a child process: create VAS + segment (file under root), fill the
    Dict, exit.  Returns (seconds, segment size)."""
    size = region_size(n)
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def work() -> None:
        os.environ["VASPACE_ROOT"] = root
        import vaspace

        t = time.perf_counter()
        vid = vaspace.vas_create("samtools", 0o600)
        sid = vaspace.vas_seg_create("samtools-index", SEG_START, SEG_START + size, 0o600)
        vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
        vaspace.vas_attach(0, vid, os.O_RDWR)
        vaspace.vas_switch(vid)
        heap = Heap.format(vaspace.Segment.find("samtools-index").view())
        d = Dict(heap, root="index")
        setitem = heap._c.dict_set  # the same C call Dict.__setitem__ makes
        addr = d.address
        for i in range(n):
            setitem(addr, name_of(i), pos_of(i))
        heap.close()
        vaspace.vas_switch(0)
        vaspace.vas_detach(0, vid)
        q.put(time.perf_counter() - t)

    p = ctx.Process(target=work)
    p.start()
    secs = q.get()
    p.join()
    if p.exitcode:
        raise RuntimeError("building the vaspace index failed")
    return secs, size


def build_others(d: str, n: int) -> dict[str, float]:
    secs = {}
    t = time.perf_counter()
    data = {name_of(i): pos_of(i) for i in range(n)}
    with open(os.path.join(d, "index.pickle"), "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    secs["pickle"] = time.perf_counter() - t
    del data

    t = time.perf_counter()
    con = sqlite3.connect(os.path.join(d, "index.sqlite"))
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE idx (name BLOB PRIMARY KEY, pos INTEGER) WITHOUT ROWID")
    con.executemany("INSERT INTO idx VALUES (?, ?)", ((name_of(i), pos_of(i)) for i in range(n)))
    con.commit()
    con.close()
    secs["sqlite3"] = time.perf_counter() - t

    import lmdb

    t = time.perf_counter()
    env = lmdb.open(os.path.join(d, "index.lmdb"), map_size=max(1 << 26, n * 200),
                    subdir=True, sync=False, writemap=True)
    with env.begin(write=True) as txn:
        txn.cursor().putmulti((name_of(i), struct.pack("<q", pos_of(i))) for i in range(n))
    env.sync(True)
    env.close()
    secs["lmdb"] = time.perf_counter() - t
    return secs


# ---------------------------------------------------------------- first answer

CHILD = r"""
import os, sys, time
t_start = time.perf_counter()
store, path, key, extra = sys.argv[1], sys.argv[2], sys.argv[3].encode(), sys.argv[4]
sys.path.insert(0, extra)
if store == "vaspace Dict":
    import vaspace
    from vaspace.heap import Dict, Heap
    os.environ["VASPACE_ROOT"] = path
    t0 = time.perf_counter()
    # enter the VAS the builder left behind, then one lookup
    vid = vaspace.vas_find("samtools")
    vaspace.vas_attach(0, vid, os.O_RDWR)  # RDWR: the heap's lock lives in the region
    vaspace.vas_switch(vid)
    heap = Heap.open(vaspace.Segment.find("samtools-index").view())
    ans = Dict.open(heap, "index")[key]
elif store == "pickle":
    import pickle
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        d = pickle.load(f)
    ans = d[key]
elif store == "sqlite3":
    import sqlite3
    t0 = time.perf_counter()
    con = sqlite3.connect(path)
    ans = con.execute("SELECT pos FROM idx WHERE name = ?", (key,)).fetchone()[0]
elif store == "lmdb":
    import lmdb, struct
    t0 = time.perf_counter()
    env = lmdb.open(path, readonly=True, lock=False, subdir=True)
    with env.begin() as txn:
        ans = struct.unpack("<q", txn.get(key))[0]
t1 = time.perf_counter()
print(ans, t1 - t0, t1 - t_start)
"""

def evict(paths: list[str]) -> None:
    """Drop the files' clean pages from the page cache (no root needed)."""
    for top in paths:
        files = [top] if os.path.isfile(top) else [
            os.path.join(dp, f) for dp, _, fs in os.walk(top) for f in fs
            if not os.path.islink(os.path.join(dp, f))]
        for f in files:
            with contextlib.suppress(OSError):
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.fsync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


def first_answer(store: str, path: str, key: bytes, want: int, cold: bool,
                 files: list[str]) -> tuple[float, float]:
    if cold:
        evict(files)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, store, path, key.decode(), SRC],
                         capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{store} reader failed: {out.stderr}")
    ans, inproc, _ = out.stdout.split()
    if int(ans) != want:
        raise RuntimeError(f"{store} answered {ans}, expected {want}")
    return float(inproc), wall


def fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:,.2f} ({min(xs) * 1000:,.2f}..{max(xs) * 1000:,.2f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="index entries")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", default=None, help="directory on disk for the stores "
                    "(default: a temporary directory under /var/tmp)")
    ap.add_argument("--no-cold", dest="cold", action="store_false",
                    help="skip the evicted-page-cache runs")
    ap.add_argument("--out", help="write the markdown report here (default: stdout)")
    ap.add_argument("--plot", help="write a PNG plot here")
    ap.add_argument("--json", help="also dump raw timings as JSON here")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    args = ap.parse_args(argv)
    if args.smoke:
        args.n, args.runs = 5000, 1
    work = tempfile.mkdtemp(prefix="samtools-bench-", dir=args.dir or "/var/tmp")
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: str) -> int:
    root = os.path.join(work, "vaspace-root")
    n = args.n
    print(f"building {n:,} entries in {work}", file=sys.stderr)
    build = {}
    build["vaspace Dict"], seg_size = build_vaspace(root, n)
    build.update(build_others(work, n))
    for k, v in build.items():
        print(f"  built {k}: {v:.2f} s", file=sys.stderr)
    paths = {"vaspace Dict": root, "pickle": os.path.join(work, "index.pickle"),
             "sqlite3": os.path.join(work, "index.sqlite"),
             "lmdb": os.path.join(work, "index.lmdb")}
    sizes = {}
    for s, p in paths.items():
        if os.path.isfile(p):
            sizes[s] = os.path.getsize(p)
        else:
            sizes[s] = sum(os.lstat(os.path.join(dp, f)).st_blocks * 512
                           for dp, _, fs in os.walk(p) for f in fs)
    i = (n * 7) // 11
    key, want = name_of(i), pos_of(i)
    modes = ["warm"] + (["cold"] if args.cold else [])
    res: dict[str, dict[str, dict[str, list[float]]]] = {}
    for mode in modes:
        res[mode] = {}
        for s in STORES:
            inproc, wall = [], []
            for _ in range(args.runs):
                a, b = first_answer(s, paths[s], key, want, mode == "cold", [paths[s]])
                inproc.append(a)
                wall.append(b)
            res[mode][s] = {"inproc": inproc, "wall": wall}
            print(f"  {mode} {s}: {statistics.median(inproc) * 1000:.2f} ms in-process, "
                  f"{statistics.median(wall) * 1000:.2f} ms wall", file=sys.stderr)
    info = machine()
    out = ["## SAMTools benchmark: time to first answer from a persistent index", ""]
    out.append(f"- Machine: {info['cpu']}, {info['cores']} cores, kernel {info['kernel']}, "
               f"virtualization: {info['virtualization']}, Python {info['python']}")
    out.append(f"- Index: {n:,} entries (16-byte read name -> int position); stores on disk "
               f"in {work} (filesystem of --dir); vaspace segment of {seg_size / 2**20:,.0f} MiB "
               "(sparse file)")
    out.append("- Build time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in build.items()))
    out.append("- On-disk size (MiB): " + ", ".join(f"{k} {v / 2**20:,.1f}"
                                                    for k, v in sizes.items()))
    out.append(f"- Median of {args.runs} runs (min..max), milliseconds. 'in-process' = from "
               "opening the store to the answer in a fresh process (imports done); 'wall' = "
               "whole child process incl. interpreter start-up.")
    out.append("- cold = files evicted from the page cache with posix_fadvise(DONTNEED) before "
               "each run")
    out += ["", "| cache | store | in-process ms | wall ms | in-process: pickle / store |",
            "|---|---|---|---|---|"]
    for mode in modes:
        pk = statistics.median(res[mode]["pickle"]["inproc"])
        for s in STORES:
            r = res[mode][s]
            ratio = pk / statistics.median(r["inproc"])
            out.append(f"| {mode} | {s} | {fmt(r['inproc'])} | {fmt(r['wall'])} | "
                       f"{ratio:,.1f}x |")
    out += ["", f"Target: first answer from the vaspace segment >= {TARGET:.0f}x sooner than "
            "after pickle.load (in-process time):"]
    for mode in modes:
        ratio = (statistics.median(res[mode]["pickle"]["inproc"])
                 / statistics.median(res[mode]["vaspace Dict"]["inproc"]))
        wall_ratio = (statistics.median(res[mode]["pickle"]["wall"])
                      / statistics.median(res[mode]["vaspace Dict"]["wall"]))
        verdict = "met" if ratio >= TARGET else "MISSED"
        out.append(f"- {mode} cache: {ratio:,.1f}x: **{verdict}** (whole-process wall ratio "
                   f"{wall_ratio:,.1f}x)")
    text = "\n".join(out) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": n, "build": build, "sizes": sizes, "results": res}, f, indent=1)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        width = 0.8 / len(modes)
        for j, mode in enumerate(modes):
            ys = [statistics.median(res[mode][s]["inproc"]) * 1000 for s in STORES]
            ax.bar([x + j * width for x in range(len(STORES))], ys, width, label=f"{mode} cache")
        ax.set_xticks([x + width * (len(modes) - 1) / 2 for x in range(len(STORES))])
        ax.set_xticklabels(STORES)
        ax.set_yscale("log")
        top = max(statistics.median(res[m][s]["inproc"]) * 1000 for m in modes for s in STORES)
        ax.set_ylim(top=top * 30)  # headroom for the legend
        ax.set_ylabel("time to first answer, ms (log)")
        ax.set_title(f"SAMTools-style index, {n:,} entries")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
