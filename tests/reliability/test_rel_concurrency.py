"""Concurrency (issue 6, part 2): the sharing rule under contention, threads, name races.

* Readers (several processes, several threads each) and writers attach one
  VAS over and over while an observer process watches.  The rule (one
  writer, or any number of readers) is checked three independent ways: the
  kernel's own lock table (/proc/locks), the registry's records
  (``vas_holders``), and the attachers' own timestamped reports, whose
  [attached, detaching] intervals lie inside the time each held the lock.
* Threads of one process switch between VASes and check what they see.
* Processes race to create and delete the same names: exactly one wins.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import signal
import threading
import time
from pathlib import Path

from relutil import PAGE, SEG_BASE, run_child

import vaspace


def _fork(fn, *args) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Fork a child running ``fn(write_fd, *args)``; return (pid, read end)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            fn(w, *args)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(w, json.dumps(["error", repr(exc)]).encode() + b"\n")
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def _read_all(fd: int) -> list:
    with os.fdopen(fd, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines() if line]


# ------------------------------------------------ the sharing rule


def _attacher(w: int, vid: int, access: int, threads: int, seconds: float, seed: int) -> None:
    """Attach, look inside, detach, in a loop, from ``threads`` threads of this process."""
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    errs: dict[str, int] = {}

    def report(*item: object) -> None:
        with lock:
            os.write(w, json.dumps(list(item)).encode() + b"\n")

    # Attachments belong to the process, not the thread: the process holds
    # the VAS from its first thread's attach to its last thread's detach.
    # Count the threads using it, so the reported interval is the process's.
    users = [0]

    def loop(k: int) -> None:
        rng = random.Random(seed * 100 + k)
        while time.monotonic() < stop:
            try:
                with lock:
                    vaspace.vas_attach(0, vid, access)
                    users[0] += 1
                    if users[0] == 1:
                        os.write(w, json.dumps(["A", os.getpid(), access,
                                                time.monotonic_ns()]).encode() + b"\n")
                try:
                    vaspace.vas_switch(vid)
                    sum(vaspace.Segment(vaspace.vas_segments(vid)[0].sid).view()[::PAGE])
                    vaspace.vas_switch(0)
                    time.sleep(rng.uniform(0, 0.002))
                finally:
                    with lock:
                        users[0] -= 1
                        if users[0] == 0:
                            os.write(w, json.dumps(["D", os.getpid(), access,
                                                    time.monotonic_ns()]).encode() + b"\n")
                            vaspace.vas_detach(0, vid)  # no sibling is inside now
            except OSError as exc:
                # EBUSY: the rule said no.
                if exc.errno != errno.EBUSY:
                    report("error", repr(exc))
                with lock:
                    errs[errno.errorcode[exc.errno]] = errs.get(errno.errorcode[exc.errno], 0) + 1
                if vaspace.active_vas():
                    vaspace.vas_switch(0)

    ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    report("errs", errs)


def _observer(w: int, vid: int, lock_path: str, seconds: float) -> None:
    """Sample /proc/locks and vas_holders; report every sample that breaks the rule."""
    ino = os.stat(lock_path).st_ino
    dev = os.stat(lock_path).st_dev
    key = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    stop = time.monotonic() + seconds
    samples = busy = 0
    while time.monotonic() < stop:
        with open("/proc/locks") as f:
            mine = [line.split() for line in f if f" {key} " in line and "FLOCK" in line]
        kinds = [fields[3] for fields in mine if fields[1] == "FLOCK"]
        if "WRITE" in kinds and len(kinds) > 1:
            os.write(w, json.dumps(["bad", "kernel", kinds]).encode() + b"\n")
        holders = vaspace.vas_holders(vid)
        if any(h.type != os.O_RDONLY for h in holders) and len(holders) > 1:
            os.write(w, json.dumps(["bad", "records", [list(h) for h in holders]]).encode() + b"\n")
        samples += 1
        busy += bool(kinds)
    os.write(w, json.dumps(["samples", samples, busy]).encode() + b"\n")


def test_sharing_rule_holds_at_every_instant(registry: str) -> None:
    vid = vaspace.vas_create("contended", 0o666)
    sid = vaspace.vas_seg_create("c-seg", SEG_BASE, SEG_BASE + PAGE, 0o666)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    seconds = 2.0
    kids = [_fork(_observer, vid, f"{vaspace.registry_root()}/vas/{vid}/lock", seconds + 0.3)]
    for i in range(3):
        kids.append(_fork(_attacher, vid, os.O_RDONLY, 3, seconds, i))
    for i in range(2):
        kids.append(_fork(_attacher, vid, os.O_RDWR, 2, seconds, 10 + i))
    reports = []
    for pid, fd in kids:
        reports.append(_read_all(fd))
        os.waitpid(pid, 0)
    observed, *attachers = reports
    flat = [item for rep in attachers for item in rep]
    assert [x for x in observed + flat if x[0] in ("bad", "error")] == []
    samples = next(x for x in observed if x[0] == "samples")
    assert samples[1] > 50 and samples[2] > 0, samples  # it watched, and saw locks held
    # The reported intervals: a writer never overlaps anyone else.
    intervals = []
    open_at: dict[int, tuple[int, int]] = {}
    for item in sorted((x for x in flat if x[0] in "AD"), key=lambda x: x[3]):
        kind, pid, access, t = item
        if kind == "A":
            open_at[pid] = (access, t)
        elif pid in open_at:
            intervals.append((open_at.pop(pid)[1], t, pid, access))
    writes = [iv for iv in intervals if iv[3] != os.O_RDONLY]
    reads = [iv for iv in intervals if iv[3] == os.O_RDONLY]
    assert writes and reads, "both kinds of attachment must have happened"
    for w0, w1, wpid, _ in writes:
        for o0, o1, opid, _ in intervals:
            if opid != wpid and o0 < w1 and w0 < o1:
                raise AssertionError(f"writer {wpid} [{w0}, {w1}) overlaps {opid} [{o0}, {o1})")
    # Readers did share: some two read intervals of different processes overlap.
    assert any(a[2] != b[2] and a[0] < b[1] and b[0] < a[1] for a in reads for b in reads)
    assert vaspace.vas_holders(vid) == []


# ------------------------------------------------ threads switch


def _threads_switch(vids: dict[int, int], shared_vid: int, seconds: float) -> dict:
    """Threads switch among VASes; each checks its own segment and the shared one."""
    for vid in [*vids, shared_vid]:
        vaspace.vas_attach(0, vid, os.O_RDONLY)
    stop = time.monotonic() + seconds
    lock = threading.Lock()
    stats = {"switches": 0, "efault": 0, "wrong": []}

    def loop(k: int) -> None:
        rng = random.Random(k)
        while time.monotonic() < stop:
            vid = rng.choice([*vids, shared_vid, 0])
            before = vaspace.active_vas()
            try:
                vaspace.vas_switch(vid)
            except OSError as exc:
                assert exc.errno == errno.EFAULT, exc
                assert vaspace.active_vas() == before
                with lock:
                    stats["efault"] += 1
                continue
            assert vaspace.active_vas() == vid
            if vid:
                # Every VAS holds the shared segment (first page reads 0xAA) and,
                # except the shared-only one, its own (first byte = its tag).
                if vaspace.Segment(SHARED_SID[0]).view()[0] != 0xAA:
                    stats["wrong"].append((k, vid, "shared"))
                if vid in vids and vaspace.Segment(vids[vid]).view()[0] != vid % 256:
                    stats["wrong"].append((k, vid, "own"))
            with lock:
                stats["switches"] += 1
        vaspace.vas_switch(0)

    ts = [threading.Thread(target=loop, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return stats


SHARED_SID = [0]


def _fill(sid: int, byte: int) -> None:
    """Write ``byte`` at the start of a segment, through a scratch VAS."""
    vid = vaspace.vas_create(f"fill-{sid}", 0o600)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    vaspace.vas_attach(0, vid, os.O_RDWR)
    with vaspace.VAS(vid).active():
        vaspace.Segment(sid).view()[0] = byte
    vaspace.vas_detach(0, vid)
    vaspace.vas_delete(vid)


def test_threads_switch(registry: str) -> None:
    shared = vaspace.vas_seg_create("shared", SEG_BASE, SEG_BASE + PAGE, 0o600)
    SHARED_SID[0] = shared
    shared_vid = vaspace.vas_create("only-shared", 0o600)
    vaspace.vas_seg_attach(shared_vid, shared, os.O_RDWR)
    vids = {}
    for i in range(4):
        vid = vaspace.vas_create(f"t{i}", 0o600)
        # Two VASes use the same address with different segments: threads in
        # them at once would collide, which the switch must refuse (EFAULT).
        addr = SEG_BASE + (1 + min(i, 2)) * (1 << 20)
        sid = vaspace.vas_seg_create(f"own{i}", addr, addr + PAGE, 0o600)
        vaspace.vas_seg_attach(vid, shared, os.O_RDWR)
        vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
        vids[vid] = sid
    _fill(shared, 0xAA)
    for vid, sid in vids.items():
        _fill(sid, vid % 256)

    out = run_child(_threads_switch, vids, shared_vid, 1.5, timeout=30)
    assert out.signal is None and not out.hung, out
    stats = out.get()
    assert stats["wrong"] == []
    assert stats["switches"] > 100
    assert stats["efault"] > 0  # the colliding VASes were really tried at the same time


# ------------------------------------------------ the same names, many processes


def _racer(w: int, barrier, rounds: int) -> None:  # type: ignore[no-untyped-def]
    wins = []
    for r in range(rounds):
        barrier.wait()
        for kind, create in (("vas", lambda n: vaspace.vas_create(n, 0o600)),
                             ("seg", lambda n: vaspace.vas_seg_create(
                                 n, SEG_BASE, SEG_BASE + PAGE, 0o600))):
            try:
                create(f"race-{r}")
                wins.append(["create", kind, r])
            except OSError as exc:
                assert exc.errno == errno.EEXIST, exc
        barrier.wait()
        for kind, find, delete in (("vas", vaspace.vas_find, vaspace.vas_delete),
                                   ("seg", vaspace.vas_seg_find, vaspace.vas_seg_delete)):
            try:
                delete(find(f"race-{r}"))
                wins.append(["delete", kind, r])
            except OSError as exc:
                assert exc.errno in (errno.ESRCH, errno.EINVAL), exc
    os.write(w, json.dumps(["wins", wins]).encode() + b"\n")


def test_same_names_exactly_one_winner(registry: str) -> None:
    procs, rounds = 4, 25
    barrier = multiprocessing.get_context("fork").Barrier(procs, timeout=20)
    kids = [_fork(_racer, barrier, rounds) for _ in range(procs)]
    wins = []
    for pid, fd in kids:
        rep = _read_all(fd)
        _, status = os.waitpid(pid, 0)
        assert not os.WIFSIGNALED(status)
        assert [x for x in rep if x[0] == "error"] == []
        wins += next(x[1] for x in rep if x[0] == "wins")
    for op in ("create", "delete"):
        for kind in ("vas", "seg"):
            per_round = [sum(1 for w in wins if w == [op, kind, r]) for r in range(rounds)]
            assert per_round == [1] * rounds, (op, kind, per_round)
    assert vaspace.vas_ids() == [] and vaspace.seg_ids() == []
    assert os.listdir(Path(registry) / "names" / "vas") == []


def test_killed_holder_releases_for_waiting_writer(registry: str) -> None:
    """A reader killed mid-attachment frees the VAS for a writer at once."""
    vid = vaspace.vas_create("k", 0o600)

    def hold(w: int) -> None:
        vaspace.vas_attach(0, vid, os.O_RDONLY)
        os.write(w, b'["held"]\n')
        time.sleep(60)

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        hold(w)
        os._exit(0)
    os.close(w)
    assert os.read(r, 100).startswith(b'["held"]')
    assert run_child(lambda: vaspace.vas_attach(0, vid, os.O_RDWR)).error.errno == errno.EBUSY
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(r)
    assert run_child(lambda: vaspace.vas_attach(0, vid, os.O_RDWR)).get() is None
