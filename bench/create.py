"""VAS create against fork (the RFC cover letter's 20 us vs 150 us).

``vas_create`` alone, and a whole usable VAS (create + a 2 MiB segment +
seg_attach + attach), against ``os.fork()`` + ``os._exit(0)`` in the child +
``waitpid``, all from this same Python process.  fork's cost grows with the
parent's memory (page tables to copy), so the report gives this process's
RSS.  Deleting what was created is done between runs and not timed.
"""

from __future__ import annotations

import os
import sys
import time

from . import common
from .common import MiB, Section


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run(smoke: bool = False) -> Section:
    """Measure create and fork; returns the section for the report."""
    runs = 5 if smoke else 7
    n_create = 20 if smoke else 400
    n_full = 10 if smoke else 150
    n_fork = 10 if smoke else 300
    sec = Section("create", "VAS create vs fork")
    with common.temp_registry():
        import vaspace

        w = vaspace.window()[0]
        counter = iter(range(10**9))

        def fork_body(n: int) -> None:
            for _ in range(n):
                pid = os.fork()
                if pid == 0:
                    os._exit(0)
                os.waitpid(pid, 0)

        fork_body(5)  # warm up
        sec.facts["rss_kib"] = _rss_kib()
        sec.add("fork", "os.fork() + os._exit(0) + waitpid", "ns",
                common.per_op_ns(fork_body, n_fork, runs))

        created: list[int] = []

        def create_body(n: int) -> None:
            for _ in range(n):
                created.append(vaspace.vas_create(f"c{next(counter)}", 0o600))

        def cleanup() -> None:
            for vid in created:
                vaspace.vas_delete(vid)
            created.clear()

        vals = []
        for _ in range(runs):
            vals += common.per_op_ns(create_body, n_create, 1)
            cleanup()
        sec.add("vas_create", "vas_create", "ns", vals, baseline="fork")

        full: list[tuple[int, int]] = []

        def full_body(n: int) -> None:
            for _ in range(n):
                i = next(counter)
                vid = vaspace.vas_create(f"f{i}", 0o600)
                sid = vaspace.vas_seg_create(f"f{i}", w, w + 2 * MiB, 0o600)
                vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
                vaspace.vas_attach(0, vid, os.O_RDWR)
                full.append((vid, sid))

        vals = []
        for _ in range(runs):
            vals += common.per_op_ns(full_body, n_full, 1)
            for vid, sid in full:
                vaspace.vas_detach(0, vid)
                vaspace.vas_delete(vid)
                vaspace.vas_seg_delete(sid)
            full.clear()
        sec.add("full", "vas_create + seg_create (2 MiB) + seg_attach + attach", "ns", vals,
                baseline="fork")

        def delete_cost(n: int) -> None:
            create_body(n)
            t0 = time.perf_counter_ns()
            cleanup()
            delete_ns.append((time.perf_counter_ns() - t0) / n)

        delete_ns: list[float] = []
        for _ in range(runs):
            delete_cost(n_create // 4)
        sec.add("vas_delete", "vas_delete (for reference)", "ns", delete_ns, baseline="fork")
    counts = common.strace_marked("from bench.create import _marked; _marked()", 3)
    sec.facts["syscalls"] = (counts if isinstance(counts, str)
                             else {"vas_create": counts[0], "vas_delete": counts[1]})
    return sec


def _marked() -> None:
    """Run under strace: warm creates, then one vas_create and one vas_delete between marks."""
    with common.temp_registry():
        import vaspace

        for i in range(5):
            vaspace.vas_delete(vaspace.vas_create(f"warm{i}", 0o600))
        os.getppid()
        vid = vaspace.vas_create("counted", 0o600)
        os.getppid()
        vaspace.vas_delete(vid)
        os.getppid()


if __name__ == "__main__":
    sys.exit(common.section_main(run, __doc__))
