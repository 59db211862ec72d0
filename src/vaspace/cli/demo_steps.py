"""The steps behind ``vaspace demo``: the idea of first-class address spaces in seconds.

Three real processes, in a temporary registry that is removed at the end:

1. a *builder* creates a segment and a VAS, switches in, and builds a linked
   list whose ``next`` fields are raw addresses, then exits;
2. a *walker* attaches the VAS read-only and follows those raw pointers: they
   are valid because the segment sits at the same address in every process;
3. a *switcher* makes two VASes whose segments occupy the SAME address with
   different contents, flips between them, and times ``vas_switch`` against
   a process switch (pipe ping-pong) measured in the same run.

Each step runs in a forked child and reports back through a pipe, so the
process calling ``run`` never attaches anything.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import select
import signal
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

WORDS = ("pointers", "stored", "in", "a", "segment", "stay", "valid", "everywhere")
SEG_SIZE = 1 << 20
CHILD_TIMEOUT = 60.0


class Node(ctypes.Structure):
    """A list node at a fixed address; ``next`` is a raw address (0 ends the list)."""

    _fields_ = [("value", ctypes.c_int64), ("next", ctypes.c_uint64),
                ("word", ctypes.c_char * 16)]


# ---------------------------------------------------------------- child processes


def _in_process(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in a forked child and return its result (or raise its error)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            try:
                payload = ("ok", fn(*args))
            except BaseException:  # noqa: BLE001 - reported to the parent
                code = 1
                payload = ("err", traceback.format_exc().strip().splitlines()[-1])
            with os.fdopen(w, "wb") as f:
                f.write(pickle.dumps(payload))
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    deadline = time.monotonic() + CHILD_TIMEOUT
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([r], [], [], max(left, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                raise TimeoutError(f"demo step in pid {pid} took over {CHILD_TIMEOUT:.0f} s")
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise RuntimeError(f"demo step in pid {pid} was killed by "
                           f"{signal.Signals(os.WTERMSIG(status)).name}")
    kind, value = pickle.loads(b"".join(chunks)) if chunks else ("err", "child wrote nothing")
    if kind != "ok":
        raise RuntimeError(f"demo step in pid {pid} failed: {value}")
    return value


def _build(base: int) -> dict[str, Any]:
    """Step 1 (builder): a segment, a VAS, and a linked list of raw pointers in it."""
    import vaspace

    sid = vaspace.segment_create_sz("list", base, SEG_SIZE, 0o644)
    vid = vaspace.vas_create("alpha", 0o644)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    vaspace.vas_attach(0, vid, os.O_RDWR)
    vaspace.vas_switch(vid)
    # Place the nodes out of order, so that only the pointers give the order.
    stride = 256
    order = [(i * 5 + 3) % len(WORDS) for i in range(len(WORDS))]
    addrs = [base + 4096 + stride * slot for slot in order]
    nodes = []
    for i, (addr, word) in enumerate(zip(addrs, WORDS, strict=True)):
        node = Node.from_address(addr)
        node.value = (i + 1) * 111
        node.word = word.encode()
        node.next = addrs[i + 1] if i + 1 < len(addrs) else 0
        nodes.append((addr, node.value, word, node.next))
    ctypes.c_uint64.from_address(base).value = addrs[0]  # the list's head, at the base
    vaspace.vas_switch(0)
    return {"pid": os.getpid(), "vid": vid, "sid": sid, "head_at": base, "nodes": nodes}


def _walk(base: int) -> dict[str, Any]:
    """Step 2 (walker): attach read-only and follow the raw pointers."""
    import vaspace

    vid = vaspace.vas_find("alpha")
    vaspace.vas_attach(0, vid, os.O_RDONLY)
    vaspace.vas_switch(vid)
    seen = []
    addr = ctypes.c_uint64.from_address(base).value
    while addr and len(seen) < 1000:
        node = Node.from_address(addr)
        seen.append((addr, node.value, node.word.decode(), node.next))
        addr = node.next
    maps = [(m.start, m.end, m.access, m.segment) for m in vaspace.proc_maps(0, vid)]
    vaspace.vas_switch(0)
    return {"pid": os.getpid(), "nodes": seen, "maps": maps}


def _time_switches(vids: tuple[int, int], n: int, rounds: int) -> list[float]:
    import vaspace

    a, b = vids
    per = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            vaspace.vas_switch(a)
            vaspace.vas_switch(b)
        per.append((time.perf_counter_ns() - t0) / (2 * n))
    vaspace.vas_switch(0)
    return per


def _pingpong(n: int, rounds: int, cpu: int | None) -> list[float]:
    """One-way process switch: a byte bounced over two pipes, in ns per hop."""
    ab_r, ab_w = os.pipe()
    ba_r, ba_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            for _ in range(n * rounds + 1):
                os.read(ab_r, 1)
                os.write(ba_w, b"x")
        finally:
            os._exit(0)
    old = os.sched_getaffinity(0)
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        os.write(ab_w, b"x")  # warm up: both sides running
        os.read(ba_r, 1)
        per = []
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            for _ in range(n):
                os.write(ab_w, b"x")
                os.read(ba_r, 1)
            per.append((time.perf_counter_ns() - t0) / (2 * n))
    finally:
        os.sched_setaffinity(0, old)
        for fd in (ab_r, ab_w, ba_r, ba_w):
            os.close(fd)
        os.waitpid(pid, 0)
    return per


def _switch(base: int, n: int, rounds: int) -> dict[str, Any]:
    """Step 3 (switcher): two VASes, the same address, different data; then timings."""
    import vaspace

    vids = []
    for name, text in (("red", b"red: hello from VAS red"),
                       ("blue", b"blue: VAS blue holds other bytes")):
        sid = vaspace.segment_create_sz(f"{name}-data", base, SEG_SIZE, 0o600)
        vid = vaspace.vas_create(name, 0o600)
        vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
        vaspace.vas_attach(0, vid, os.O_RDWR)
        vaspace.vas_switch(vid)
        ctypes.memmove(base, text, len(text))
        vids.append(vid)
    vaspace.vas_switch(0)
    seen = []
    for vid in (vids[0], vids[1], vids[0], vids[1]):
        vaspace.vas_switch(vid)
        seen.append((vaspace.vas_name(vid), ctypes.string_at(base).decode()))
    vaspace.vas_switch(0)
    # Two more VASes that share one segment: a switch between them moves nothing.
    shared = vaspace.segment_create_sz("shared", base + 64 * SEG_SIZE, SEG_SIZE, 0o600)
    same = []
    for name in ("left", "right"):
        vid = vaspace.vas_create(name, 0o600)
        vaspace.vas_seg_attach(vid, shared, os.O_RDWR)
        vaspace.vas_attach(0, vid, os.O_RDWR)
        same.append(vid)
    cpus = sorted(os.sched_getaffinity(0))
    return {
        "pid": os.getpid(), "addr": base, "seen": seen,
        "vas_switch_ns": _time_switches((vids[0], vids[1]), n, rounds),
        "vas_switch_nomove_ns": _time_switches((same[0], same[1]), n * 10, rounds),
        "proc_switch_pinned_ns": _pingpong(n, rounds, cpus[0]),
        "proc_switch_unpinned_ns": _pingpong(max(n // 4, 50), rounds, None),
        "cpus": len(cpus),
    }


# ---------------------------------------------------------------- the demo


def machine() -> str:
    """A one-line description of this machine: CPU model, CPU count, kernel."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Linux {os.uname().release}"


def run(say: Callable[[str], None], n: int = 2000, rounds: int = 7) -> dict[str, Any]:
    """Run the three steps, reporting each through ``say``; return the measurements.

    The registry is a fresh directory under /dev/shm, used through
    ``VASPACE_ROOT`` by this process's children only; it is removed at the
    end, on errors too.
    """
    import vaspace
    from vaspace.registry import root as rootmod

    base = vaspace.window()[0]
    with rootmod.temporary("vaspace-demo-") as root:
        say(f"temporary registry {root} (removed at the end)")
        say("")
        say("step 1  a process builds a linked list in a segment")
        built = _in_process(_build, base)
        say(f"  pid {built['pid']} created segment 'list' [{base:#x}, {base + SEG_SIZE:#x}) "
            f"and VAS 'alpha', switched in, and wrote {len(built['nodes'])} nodes;")
        say(f"  each node's next field is a raw address; the head pointer is at {base:#x}")
        say(f"  pid {built['pid']} exited")
        say("")
        say("step 2  another process attaches 'alpha' read-only and follows the pointers")
        walked = _in_process(_walk, base)
        for addr, value, word, nxt in walked["nodes"]:
            say(f"  {addr:#x}: value {value:4d} word {word!r:12} next {nxt:#x}")
        same = [n[:3] for n in walked["nodes"]] == [n[:3] for n in built["nodes"]]
        verdict = "the same list, at the same addresses" if same else "A DIFFERENT LIST"
        for start, end, access, seg in walked["maps"]:
            say(f"  its view of 'alpha': {start:#x}-{end:#x} {access} {seg}")
        say(f"  pid {walked['pid']} walked {len(walked['nodes'])} nodes: {verdict}")
        if not same:
            raise RuntimeError("the walker did not see the builder's list")
        say("")
        say(f"step 3  one process, two VASes, different data at the same address {base:#x}")
        sw = _in_process(_switch, base, n, rounds)
        for name, text in sw["seen"]:
            say(f"  pid {sw['pid']} in VAS {name!r:7} reads {text!r}")
        timings = {key: statistics.median(sw[key]) for key in SWITCH_KEYS}
        _report_switches(say, timings, n, rounds)
        return {"builder": built, "walker": walked, "switcher": sw, **timings,
                "machine": machine()}


SWITCH_KEYS = ("vas_switch_ns", "vas_switch_nomove_ns", "proc_switch_pinned_ns",
               "proc_switch_unpinned_ns")
SYSCALLS_PER_MOVE = 2  # a conflicting segment: 2 mremap (park into a hole, place into its home)


def versus(ns: float, base_ns: float) -> str:
    """How ``ns`` compares with ``base_ns``, in the words the ratio calls for.

    ``"39x faster than"`` or ``"4.4x slower than"``: the word follows the
    measurement, never the expectation.
    """
    ns, base_ns = max(ns, 1e-9), max(base_ns, 1e-9)
    ratio = base_ns / ns if ns <= base_ns else ns / base_ns
    times = f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"
    return f"{times} {'faster' if ns <= base_ns else 'slower'} than"


def _report_switches(say: Callable[[str], None], t: dict[str, float], n: int,
                     rounds: int) -> None:
    """Print the measured switch costs (microseconds, one way) and how they compare."""
    pinned, unpinned = t["proc_switch_pinned_ns"], t["proc_switch_unpinned_ns"]
    nomove, moving = t["vas_switch_nomove_ns"], t["vas_switch_ns"]
    # What the moves add over a switch that moves nothing, shared by its syscalls.
    per_syscall = max(moving - nomove, 0.0) / SYSCALLS_PER_MOVE
    base = "the same-CPU process switch"
    say("")
    say(f"switch cost, one way (median of {rounds} runs of {n}; {machine()}):")
    say(f"  process switch (pipe ping-pong), same CPU    {pinned / 1000:8.3f} us")
    say(f"  process switch (pipe ping-pong), unpinned    {unpinned / 1000:8.3f} us")
    say(f"  vas_switch 'left' <-> 'right' (they share    {nomove / 1000:8.3f} us   "
        f"{versus(nomove, pinned)} {base}")
    say("    their segment: nothing to move)")
    say(f"  vas_switch 'red' <-> 'blue' (different data  {moving / 1000:8.3f} us   "
        f"{versus(moving, pinned)} {base}:")
    say(f"    at one address: {SYSCALLS_PER_MOVE} syscalls (2 mremap), about "
        f"{per_syscall / 1000:.3f} us each here;")
    say("    the page tables move along, so no page is faulted in again)")
