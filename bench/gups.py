"""GUPS across address spaces (SpaceJMP's first workload).

A table of 8-byte words is split over N VASes whose segments all sit at the
same address, so one numpy view over that address serves every part: the
active VAS decides which part it shows.  Each batch goes to the next part
(round robin, so every batch costs one switch) and XORs random values into
random words of it.  Updates per second against batch size, for:

  * vaspace: one ``vas_switch`` per batch;
  * ideal: one big mapping holding the whole table (no switch at all);
  * MAP: munmap + mmap(MAP_FIXED) of the part's file at the same address per
    batch (SpaceJMP's "MAP" baseline; the touched pages fault again);
  * MP: N worker processes, each owning one part, receive every batch over a
    pipe and acknowledge it (SpaceJMP's "MP" baseline).

The random indices and values are drawn before timing, identically for all
four, so the figures compare the address-space mechanics, not the RNG.  An
update is ``np.bitwise_xor.at`` (correct with repeated indices).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from . import common
from .common import MiB, Remapper, Section


def _batches(rng: np.random.Generator, words: int, batch: int, total: int
             ) -> list[tuple[np.ndarray, np.ndarray]]:
    nb = max(1, total // batch)
    idx = rng.integers(0, words, size=(nb, batch), dtype=np.int64)
    val = rng.integers(0, 2**63, size=(nb, batch), dtype=np.uint64)
    return [(idx[i], val[i]) for i in range(nb)]


def _timed(fn, batches) -> float:
    """Updates per second of one run of ``fn`` over ``batches``."""
    t0 = time.perf_counter()
    fn(batches)
    dt = time.perf_counter() - t0
    return sum(len(i) for i, _ in batches) / dt


class Workers:
    """SpaceJMP's MP baseline: one process per table part, fed over pipes."""

    def __init__(self, fds: list[int], part: int) -> None:
        self.procs = []
        for fd in fds:
            req_r, req_w = os.pipe()
            ack_r, ack_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    os.close(req_w)
                    os.close(ack_r)
                    _worker(fd, part, req_r, ack_w)
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            os.close(req_r)
            os.close(ack_w)
            self.procs.append((pid, req_w, ack_r))

    def send(self, i: int, idx: np.ndarray, val: np.ndarray) -> None:
        _, req_w, ack_r = self.procs[i]
        payload = idx.tobytes() + val.tobytes()
        os.write(req_w, len(idx).to_bytes(8, "little"))
        view = memoryview(payload)
        while view:
            view = view[os.write(req_w, view):]
        os.read(ack_r, 1)

    def close(self) -> None:
        for pid, req_w, ack_r in self.procs:
            os.write(req_w, (0).to_bytes(8, "little"))
            os.close(req_w)
            os.close(ack_r)
            os.waitpid(pid, 0)


def _read_exact(fd: int, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            raise EOFError
        got += k
    return buf


def _worker(fd: int, part: int, req_r: int, ack_w: int) -> None:
    import mmap

    m = mmap.mmap(fd, part)
    table = np.frombuffer(m, dtype=np.uint64)
    # Fault the whole part in first, as the other methods' mappings are.
    common.touch_write(table.view(np.uint8))
    while True:
        n = int.from_bytes(_read_exact(req_r, 8), "little")
        if n == 0:
            return
        data = _read_exact(req_r, 16 * n)
        idx = np.frombuffer(data, dtype=np.int64, count=n)
        val = np.frombuffer(data, dtype=np.uint64, count=n, offset=8 * n)
        np.bitwise_xor.at(table, idx, val)
        os.write(ack_w, b"k")


def run(smoke: bool = False, batch_sizes: list[int] | None = None) -> Section:
    """Measure updates/s per batch size for the four methods (``batch_sizes``
    narrows the sweep, e.g. to the one a target names)."""
    runs = 5 if smoke else 5
    nparts = 2 if smoke else 8
    part = 1 * MiB if smoke else 64 * MiB
    batch_sizes = batch_sizes or ([64, 1024] if smoke else [64, 256, 1024, 4096, 16384])
    total = 4096 if smoke else 1 << 18
    words = part // 8
    sec = Section("gups", f"GUPS over {nparts} VASes of {common.fmt_size(part)} each")
    sec.facts.update(nparts=nparts, part_bytes=part, batch_sizes=batch_sizes,
                     updates_per_run=total)
    rng = np.random.default_rng(42)
    with common.temp_registry() as base:
        import vaspace

        w = vaspace.window()[0]
        vids = []
        for i in range(nparts):
            vid = vaspace.vas_create(f"gups{i}", 0o600)
            sid = vaspace.vas_seg_create(f"gups{i}", w, w + part, 0o600)
            vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
            vaspace.vas_attach(0, vid, os.O_RDWR)
            vids.append(vid)
            vaspace.vas_switch(vid)
            common.touch_write(common.u8_at(w, part))
        vaspace.vas_switch(0)
        # Every part shows up at the same address: one view serves all of them.
        table = common.array_at(w, part, np.uint64)

        # (a) the ideal: one mapping holding the whole table.
        big_fd = common.shm_file(base, "gups-big", nparts * part)
        import mmap

        big_map = mmap.mmap(big_fd, nparts * part)
        big = np.frombuffer(big_map, dtype=np.uint64)
        common.touch_write(big.view(np.uint8))  # no page faults while timing, as for vaspace
        parts = [big[i * words:(i + 1) * words] for i in range(nparts)]

        # (b) MAP: the parts as files, remapped at one address per batch.
        fds = [common.shm_file(base, f"gups-part{i}", part) for i in range(nparts)]
        remap = Remapper([[fd] for fd in fds], part)
        rtable = common.array_at(remap.addrs[0], part, np.uint64)

        # (c) MP: a worker per part, mapping the same files.
        workers = Workers(fds, part)

        xor_at = np.bitwise_xor.at
        sw = vaspace.vas_switch

        def vas_fn(batches) -> None:
            for b, (idx, val) in enumerate(batches):
                sw(vids[b % nparts])
                xor_at(table, idx, val)
            sw(0)

        def ideal_fn(batches) -> None:
            for b, (idx, val) in enumerate(batches):
                xor_at(parts[b % nparts], idx, val)

        def map_fn(batches) -> None:
            for b, (idx, val) in enumerate(batches):
                remap.switch(b % nparts)
                xor_at(rtable, idx, val)

        def mp_fn(batches) -> None:
            for b, (idx, val) in enumerate(batches):
                workers.send(b % nparts, idx, val)

        methods = [("ideal", "one big mapping (ideal)", ideal_fn),
                   ("vas", "vaspace: one vas_switch per batch", vas_fn),
                   ("map", "MAP: unmap + remap per batch", map_fn),
                   ("mp", "MP: worker processes over pipes", mp_fn)]
        try:
            for bs in batch_sizes:
                batches = _batches(rng, words, bs, max(total, bs * nparts))
                for _, _, fn in methods:  # warm up: caches plans, faults tables
                    fn(batches[:nparts])
                vals: dict[str, list[float]] = {k: [] for k, _, _ in methods}
                for _ in range(runs):  # interleaved, so drift hits all alike
                    for key, _, fn in methods:
                        vals[key].append(_timed(fn, batches))
                for key, label, _ in methods:
                    sec.add(f"{key}_b{bs}", f"{label}, batch {bs}", "updates/s", vals[key],
                            baseline=None if key == "ideal" else f"ideal_b{bs}",
                            lower_is_better=False)
            # Diagnostics for the report: what one switch of the cycle costs alone,
            # and how many of the cycle's switches the core's cached plans serve.
            def ring(n: int) -> None:
                for b in range(n):
                    sw(vids[b % nparts])

            ring(2 * nparts)
            sec.add("ring_switch", f"vas_switch alone, cycling through the {nparts} VASes",
                    "ns", common.per_op_ns(ring, 50 * nparts, runs))
            from vaspace import _core

            misses = 0
            for b in range(nparts, 2 * nparts):
                if not _core.switch_fast(vids[b % nparts]):
                    misses += 1
                    sw(vids[b % nparts])
            sw(0)
            sec.facts["slow_path_switches_per_cycle"] = f"{misses} of {nparts}"
        finally:
            workers.close()
            # The numpy views stay referenced by the closures above; they are
            # never used again, so unmapping under them is safe.
            remap.close()
            for fd in [*fds, big_fd]:
                os.close(fd)
    return sec


if __name__ == "__main__":
    sys.exit(common.section_main(run, __doc__))
