"""Concurrency (issue 6, part 2): the sharing rule under contention, threads, name races.

* Readers (several processes, several threads each) and writers attach one
  VAS a fixed number of times each while an observer process watches.  The
  rule (one writer, or any number of readers) is checked three independent
  ways: the kernel's own lock table (/proc/locks), the registry's records
  (``vas_holders``), and the attachers' own timestamped reports, whose
  [attached, detaching] intervals lie inside the time each held the lock.
  The work is counted, never timed, so the test cannot depend on scheduling.
* Threads of one process switch between VASes and check what they see.
* Processes race to create and delete the same names: exactly one wins.
"""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing
import os
import random
import select
import signal
import threading
import time
from pathlib import Path

from relutil import PAGE, SEG_BASE, run_child

import vaspace
from vaspace_testing import in_child


def _fork(fn, *args, close: tuple[int, ...] = ()) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Fork a child running ``fn(write_fd, *args)``; return (pid, read end).

    ``close``: fds of the parent's that the child must not keep open.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            for fd in close:
                os.close(fd)
            fn(w, *args)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(w, json.dumps(["error", repr(exc)]).encode() + b"\n")
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def _gather(kids: list[tuple[int, int]], timeout: float) -> list[list]:
    """Every child's report lines, in order; kill them all and fail after ``timeout`` s."""
    bufs = {fd: b"" for _, fd in kids}
    open_fds = set(bufs)
    deadline = time.monotonic() + timeout
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            for pid, _ in kids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        ready, _, _ = select.select(list(open_fds), [], [], max(left, 0))
        if left <= 0 and not ready:
            break
        for fd in ready:
            chunk = os.read(fd, 1 << 16)
            bufs[fd] += chunk
            if not chunk:
                open_fds.discard(fd)
    statuses = [os.waitpid(pid, 0)[1] for pid, _ in kids]
    for _, fd in kids:
        os.close(fd)
    if open_fds:
        raise AssertionError(f"children did not finish within {timeout:g} s and were killed")
    assert not any(os.WIFSIGNALED(st) for st in statuses), statuses
    return [[json.loads(line) for line in bufs[fd].splitlines() if line] for _, fd in kids]


# ------------------------------------------------ the sharing rule


def _line(w: int, *item: object) -> None:
    os.write(w, json.dumps(list(item)).encode() + b"\n")


def _attacher(w: int, vid: int, access: int, threads: int, cycles: int, seed: int,
              barrier=None) -> None:  # type: ignore[no-untyped-def]
    """Attach, look inside, detach: ``cycles`` successful times in each of ``threads`` threads.

    The work is counted, not timed, so every attacher gets its turns however
    the scheduler runs them (EBUSY: back off and retry).  Readers first take
    part in the sharing check (``barrier``): attach, wait while the test
    looks, detach.
    """
    if barrier is not None:
        try:
            vaspace.vas_attach(0, vid, access)
            _line(w, "joined", os.getpid())
        except OSError as exc:
            _line(w, "error", f"the first attach: {exc!r}")
        barrier.wait()  # all readers hold it now: the test checks
        barrier.wait()
        if vid in [p.vid for p in vaspace.proc_vas(0)]:
            vaspace.vas_detach(0, vid)
    lock = threading.Lock()
    errs: dict[str, int] = {}
    failures: list[str] = []

    # Attachments belong to the process, not the thread: the process holds
    # the VAS from its first thread's attach to its last thread's detach.
    # Count the threads using it, so the reported interval is the process's.
    users = [0]

    def cycle(rng: random.Random) -> bool:
        try:
            with lock:
                vaspace.vas_attach(0, vid, access)
                users[0] += 1
                if users[0] == 1:
                    _line(w, "A", os.getpid(), access, time.monotonic_ns())
        except OSError as exc:
            if exc.errno != errno.EBUSY:  # EBUSY: the rule said no
                raise
            with lock:
                errs["EBUSY"] = errs.get("EBUSY", 0) + 1
            return False
        try:
            vaspace.vas_switch(vid)
            sum(vaspace.Segment(vaspace.vas_segments(vid)[0].sid).view()[::PAGE])
            vaspace.vas_switch(0)
            time.sleep(rng.uniform(0, 0.002))
        finally:
            with lock:
                users[0] -= 1
                if users[0] == 0:
                    _line(w, "D", os.getpid(), access, time.monotonic_ns())
                    vaspace.vas_detach(0, vid)  # no sibling is inside now
        return True

    def loop(k: int) -> None:
        rng = random.Random(seed * 100 + k)
        done = 0
        try:
            while done < cycles:
                done += cycle(rng)
                time.sleep(rng.uniform(0, 0.003))  # let the others in
        except BaseException as exc:  # noqa: BLE001 - reported, not lost with the thread
            failures.append(f"thread {k}: {exc!r}")
        with lock:
            errs["cycles"] = errs.get("cycles", 0) + done

    ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for f in failures:
        _line(w, "error", f)
    _line(w, "done", os.getpid(), access, errs)


def _lock_key(lock_path: str) -> str:
    st = os.stat(lock_path)
    return f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"


def _flocks(key: str) -> list[tuple[str, int]]:
    """(kind, pid) of the flocks held on the file with ``key``, from /proc/locks.

    The kernel hands /proc/locks out a page per read(), and every process on
    the machine takes and drops locks in between: when a lock listed before
    the read position goes, or one comes, the next page starts one line late
    or early, and a line is shown twice or not at all.  A process holds at
    most one flock on a VAS's lock file (the kernel refuses a second writer
    even to the same process), so a (kind, pid) seen twice is such a repeat,
    not two holders: each is kept once.
    """
    with open("/proc/locks") as f:
        mine = [line.split() for line in f if f" {key} " in line]
    return sorted({(fields[3], int(fields[4])) for fields in mine if fields[1] == "FLOCK"})


def _settled_flocks(key: str) -> list[tuple[str, int]]:
    """``_flocks`` read until two reads in a row agree (a torn read may also drop a line)."""
    last = _flocks(key)
    for _ in range(100):
        now = _flocks(key)
        if now == last:
            return now
        last = now
    return last


def _kernel_break(key: str) -> list[tuple[str, int]] | None:
    """The flocks on ``key`` if they break the rule (a writer beside anyone), else None."""
    locks = _flocks(key)
    return locks if len(locks) > 1 and any(k == "WRITE" for k, _ in locks) else None


def _records_break(vid: int) -> list[tuple[int, int]] | None:
    """The registry's holders of ``vid`` if they break the rule, else None."""
    holders = sorted((h.pid, h.type) for h in vaspace.vas_holders(vid))
    return holders if len(holders) > 1 and any(t != os.O_RDONLY for _, t in holders) else None


def _confirmed(look):  # type: ignore[no-untyped-def]
    """A break that a second look at once sees again, with the same holders.

    /proc/locks (read a page per pass) and a directory listing are not
    atomic snapshots: while locks and records come and go, one read can show
    a writer that just left beside the one that just came.  Such a torn read
    does not repeat itself; a real break lasts as long as an attachment does
    (the attach and detach calls around it), so it is seen twice.
    """
    first = look()
    return first if first is not None and look() == first else None


def _observer(w: int, vid: int, lock_path: str, stop: int) -> None:
    """Sample /proc/locks and vas_holders until ``stop`` is readable; report rule breaks."""
    key = _lock_key(lock_path)
    samples = 0
    while True:
        bad = _confirmed(lambda: _kernel_break(key))
        if bad is not None:
            _line(w, "bad", "kernel", bad)
        bad = _confirmed(lambda: _records_break(vid))
        if bad is not None:
            _line(w, "bad", "records", bad)
        samples += 1
        if select.select([stop], [], [], 0)[0]:
            break
    _line(w, "samples", samples)


def _try_attach(vid: int, access: int) -> int:
    try:
        vaspace.vas_attach(0, vid, access)
    except OSError as exc:
        return exc.errno or -1
    return 0


def test_sharing_rule_holds_at_every_instant(registry: str) -> None:
    """A safety check: no instant breaks the rule, whatever the scheduling.

    Nothing here depends on timing.  Readers are made to share (they all
    hold the VAS at a barrier while the test looks, and a writer is refused
    then); then readers and writers each do a fixed number of attach cycles,
    so both kinds surely happen, while an observer samples the kernel's lock
    table and the registry's records until all are done.  The attachers'
    [attached, detaching] intervals, stamped inside the time each held the
    lock, must never put a writer beside anyone else.
    """
    vid = vaspace.vas_create("contended", 0o666)
    sid = vaspace.vas_seg_create("c-seg", SEG_BASE, SEG_BASE + PAGE, 0o666)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    lock_path = f"{vaspace.registry_root()}/vas/{vid}/lock"
    readers, writers, cycles = 3, 2, 12
    barrier = multiprocessing.get_context("fork").Barrier(readers + 1, timeout=20)
    stop_r, stop_w = os.pipe()
    kids = [_fork(_observer, vid, lock_path, stop_r, close=(stop_w,))]
    os.close(stop_r)
    for i in range(readers):
        kids.append(_fork(_attacher, vid, os.O_RDONLY, 3, cycles, i, barrier, close=(stop_w,)))
    try:
        barrier.wait()  # every reader holds the VAS now (or reported why not)
        sharing = {"kernel": [k for k, _ in _settled_flocks(_lock_key(lock_path))],
                   "records": sorted(h.type for h in vaspace.vas_holders(vid)),
                   "writer": in_child(_try_attach, vid, os.O_RDWR).get()}
        barrier.wait()
    except threading.BrokenBarrierError:
        sharing = {"broken barrier": True}
    for i in range(writers):
        kids.append(_fork(_attacher, vid, os.O_RDWR, 2, cycles, 10 + i, close=(stop_w,)))
    reports = _gather(kids[1:], timeout=120)
    os.close(stop_w)  # the observer's last sample, then its report
    (observed,) = _gather(kids[:1], timeout=30)

    assert sharing == {"kernel": ["READ"] * readers, "records": [os.O_RDONLY] * readers,
                       "writer": errno.EBUSY}
    flat = [item for rep in reports for item in rep]
    assert [x for x in observed + flat if x[0] in ("bad", "error")] == []
    assert next(x for x in observed if x[0] == "samples")[1] > 0
    # The work was counted: every thread of every attacher did its cycles.
    done = sorted((x[2], x[3]["cycles"]) for x in flat if x[0] == "done")
    assert done == sorted([(os.O_RDONLY, 3 * cycles)] * readers
                          + [(os.O_RDWR, 2 * cycles)] * writers)
    # The reported intervals: a writer never overlaps anyone else.
    intervals = []
    open_at: dict[int, tuple[int, int]] = {}
    for item in sorted((x for x in flat if x[0] in "AD"), key=lambda x: x[3]):
        kind, pid, access, t = item
        if kind == "A":
            open_at[pid] = (access, t)
        elif pid in open_at:
            intervals.append((open_at.pop(pid)[1], t, pid, access))
    assert open_at == {}
    writes = [iv for iv in intervals if iv[3] != os.O_RDONLY]
    for w0, w1, wpid, _ in writes:
        for o0, o1, opid, _ in intervals:
            if opid != wpid and o0 < w1 and w0 < o1:
                raise AssertionError(f"writer {wpid} [{w0}, {w1}) overlaps {opid} [{o0}, {o1})")
    assert vaspace.vas_holders(vid) == []


# ------------------------------------------------ threads switch


def _threads_switch(vids: dict[int, int], shared_vid: int, least: int, most: int) -> dict:
    """Threads switch among VASes; each checks its own segment and the shared one.

    Counted, not timed: each thread makes at least ``least`` switches, and
    goes on (up to ``most``) until some thread has been refused with EFAULT,
    so the colliding VASes were surely tried at the same time.  An assert
    that fails in a thread is collected and re-raised here, in the child's
    main thread, which reports it to the test.
    """
    for vid in [*vids, shared_vid]:
        vaspace.vas_attach(0, vid, os.O_RDONLY)
    lock = threading.Lock()
    stats: dict = {"switches": 0, "efault": 0, "wrong": []}
    failures: list[BaseException] = []

    def loop(k: int) -> None:
        rng = random.Random(k)
        mine = 0
        while mine < most and not (mine >= least and stats["efault"]):
            vid = rng.choice([*vids, shared_vid, 0])
            before = vaspace.active_vas()
            mine += 1
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

    def guarded(k: int) -> None:
        try:
            loop(k)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            failures.append(exc)

    ts = [threading.Thread(target=guarded, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if failures:
        raise AssertionError(f"{len(failures)} thread(s) failed: {failures!r}") from failures[0]
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

    out = run_child(_threads_switch, vids, shared_vid, 200, 50_000, timeout=60)
    assert out.signal is None and not out.hung, out
    stats = out.get()
    assert stats["wrong"] == []
    assert stats["switches"] >= 4 * 200 - stats["efault"]
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
    for rep in _gather(kids, timeout=120):
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
        try:
            os.close(r)
            hold(w)
        finally:
            os._exit(0)
    os.close(w)
    assert select.select([r], [], [], 30)[0], "the holder did not attach within 30 s"
    assert os.read(r, 100).startswith(b'["held"]')
    assert run_child(lambda: vaspace.vas_attach(0, vid, os.O_RDWR)).error.errno == errno.EBUSY
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(r)
    assert run_child(lambda: vaspace.vas_attach(0, vid, os.O_RDWR)).get() is None
