#!/usr/bin/env python3
"""Fault injection: random workers against one registry, SIGKILLed at random points.

Each round forks ``--procs`` workers that create, attach, switch into, write,
detach and delete VASes and segments at random, plus one *churner* that does
nothing but create and delete in a tight loop (so kills land inside registry
updates).  The parent SIGKILLs workers at random moments (and replaces
them), then kills whatever is left and checks the registry:

* every name link resolves to a whole object (``vas_find``/``vas_name``/
  ``vas_getattr`` agree; a segment's data file has its region's size), and
  the id lists show only whole objects;
* no attachment is held by a dead process: ``vas_holders`` is empty, the
  registry lock is free, and a fresh process attaches every VAS read-write
  (an exclusive flock, so any leaked lock would show as EBUSY);
* every committed write is intact: a worker reports ``(sid, page, crc32)``
  over a pipe only after the page is written and read back, and the checker
  verifies each report, through the data file and through a fresh process's
  mapping;
* every object a worker reported as created still exists unless someone
  reported the intent to delete it.

Workers report over pipes with single small ``os.write`` calls (atomic below
PIPE_BUF), so a kill never leaves half a report.  Allowed failures are the
RFC's errno for a lost race (EBUSY, EEXIST, EINVAL, ESRCH, EFAULT); anything
else is counted as an *unexpected error*, which is a finding.

Usage::

    python scripts/soak.py --rounds 50 --procs 4
    python scripts/soak.py --soak 5          # run for five minutes
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import random
import select
import signal
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path

if __name__ == "__main__":  # run from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import vaspace  # noqa: E402
from vaspace.registry import objects, seg, vas  # noqa: E402
from vaspace.registry import root as rootmod  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
SEG_PAGES = 16
SEG_SIZE = SEG_PAGES * PAGE
N_SLOTS = 32  # segments live at window start + slot * 1 MiB, so some overlap in a VAS
SLOT_STRIDE = 1 << 20
# errno a worker may get when it loses a race or picks a bad combination.
EXPECTED_ERRNO = {errno.EBUSY, errno.EEXIST, errno.EINVAL, errno.ESRCH, errno.EFAULT}


@dataclasses.dataclass
class Stats:
    """What the harness did and found, summed over rounds."""

    rounds: int = 0
    procs_started: int = 0
    kills: int = 0
    ops: int = 0
    writes: int = 0
    pages_verified: int = 0
    objects_checked: int = 0
    orphans_reaped: int = 0
    id_reuse_deletes: int = 0
    unexpected: list[str] = dataclasses.field(default_factory=list)
    inconsistencies: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        d = dataclasses.asdict(self)
        d["unexpected"] = len(self.unexpected)
        d["inconsistencies"] = len(self.inconsistencies)
        d["first_problems"] = (self.inconsistencies + self.unexpected)[:10]
        return d


# ---------------------------------------------------------------- workers


class Reporter:
    """Writes one-line reports to the parent; each line is one atomic write."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __call__(self, *fields: object) -> None:
        os.write(self.fd, (" ".join(str(f) for f in fields) + "\n").encode())


def _pick(rng: random.Random, ids: list[int]) -> int | None:
    return rng.choice(ids) if ids else None


def _write_page(rng: random.Random, wdir: str, sid: int, report: Reporter) -> None:
    """Write one unused page of segment ``sid`` (we are switched into a VAS holding it).

    A harness-private flock per segment keeps two writers (through two VASes
    that share the segment) off the same page; a killed writer drops it.
    Pages are written once: a page that is not all zero was written, maybe
    partly by a writer that died, and is skipped.  Pattern bytes are never
    zero, so a partial write is never mistaken for a free page.
    """
    segment = vaspace.Segment(sid)
    lock = os.open(f"{wdir}/w.{sid}", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        view = segment.view()
        if view.readonly:
            return
        pages = segment.size // PAGE
        for page in rng.sample(range(pages), pages):
            off = page * PAGE
            if any(view[off:off + PAGE]):
                continue
            data = bytes(b | 1 for b in rng.randbytes(PAGE))
            view[off:off + PAGE] = data
            crc = zlib.crc32(view[off:off + PAGE])
            if crc != zlib.crc32(data):
                report("X", f"read-back mismatch sid {sid} page {page}")
            report("W", sid, segment.name, page, crc)
            return
    finally:
        os.close(lock)


def _op(rng: random.Random, tag: str, counter: list[int], wdir: str, report: Reporter) -> None:
    """One random operation; lost races raise OSError with an expected errno."""
    counter[0] += 1
    uniq = f"{tag}-{counter[0]}"
    lo, _ = vaspace.window()
    r = rng.random()
    if r < 0.12:
        name = f"v-{uniq}"
        vid = vaspace.vas_create(name, 0o600)
        report("CV", vid, name)
    elif r < 0.27:
        name = f"s-{uniq}"
        start = lo + rng.randrange(N_SLOTS) * SLOT_STRIDE
        sid = vaspace.vas_seg_create(name, start, start + SEG_SIZE, 0o600)
        report("CS", sid, name)
        vid = _pick(rng, vaspace.vas_ids())
        if vid is not None:
            vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    elif r < 0.40:
        vid, sid = _pick(rng, vaspace.vas_ids()), _pick(rng, vaspace.seg_ids())
        if vid is not None and sid is not None:
            vaspace.vas_seg_attach(vid, sid, rng.choice([os.O_RDWR, os.O_RDONLY]))
    elif r < 0.80:
        vid = _pick(rng, vaspace.vas_ids())
        if vid is None:
            return
        access = os.O_RDWR if rng.random() < 0.7 else os.O_RDONLY
        vaspace.vas_attach(0, vid, access)
        try:
            vaspace.vas_switch(vid)
            try:
                links = vaspace.vas_segments(vid)
                for link in rng.sample(links, min(2, len(links))):
                    if access == os.O_RDWR and link.type == os.O_RDWR:
                        _write_page(rng, wdir, link.sid, report)
                    else:
                        sum(vaspace.Segment(link.sid).view()[::PAGE])
            finally:
                vaspace.vas_switch(0)
        finally:
            vaspace.vas_detach(0, vid)
    elif r < 0.86:
        vid = _pick(rng, vaspace.vas_ids())
        if vid is not None:
            links = vaspace.vas_segments(vid)
            if links:
                vaspace.vas_seg_detach(vid, rng.choice(links).sid)
    elif r < 0.93:
        sid = _pick(rng, vaspace.seg_ids())
        if sid is not None:
            report("DS", sid, vaspace.seg_name(sid))
            vaspace.vas_seg_delete(sid)
    else:
        vid = _pick(rng, vaspace.vas_ids())
        if vid is not None:
            report("DV", vid, vaspace.vas_name(vid))
            vaspace.vas_delete(vid)


def _worker(seed: int, tag: str, wdir: str, wfd: int, churn: bool) -> None:
    """Run random operations until killed."""
    rng = random.Random(seed)
    report = Reporter(wfd)
    counter = [0]
    while True:
        try:
            if churn:
                _churn_once(tag, counter, report)
            else:
                _op(rng, tag, counter, wdir, report)
            report("O")
        except OSError as exc:
            if exc.errno not in EXPECTED_ERRNO:
                report("X", f"{type(exc).__name__}({exc.errno}, {str(exc)!r}) at {_where(exc)}")
        except Exception as exc:  # noqa: BLE001 - every other failure is a finding
            report("X", f"{type(exc).__name__}: {str(exc)!r} at {_where(exc)}")


def _where(exc: BaseException) -> str:
    """The innermost vaspace frames of an exception, for the report."""
    frames = [f"{Path(f.filename).name}:{f.lineno}" for f in traceback.extract_tb(exc.__traceback__)
              if "vaspace" in f.filename]
    return "<" + " ".join(frames[-4:]) + ">"


def _churn_once(tag: str, counter: list[int], report: Reporter) -> None:
    """Create and delete objects back to back: kills land inside registry updates."""
    counter[0] += 1
    lo, _ = vaspace.window()
    start = lo + (N_SLOTS + counter[0] % 8) * SLOT_STRIDE
    vname, sname = f"cv-{tag}-{counter[0]}", f"cs-{tag}-{counter[0]}"
    vid = vaspace.vas_create(vname, 0o600)
    report("CV", vid, vname)
    sid = vaspace.vas_seg_create(sname, start, start + PAGE, 0o600)
    report("CS", sid, sname)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    vaspace.vas_seg_detach(vid, sid)
    report("DS", sid, sname)
    vaspace.vas_seg_delete(sid)
    report("DV", vid, vname)
    vaspace.vas_delete(vid)


def _spawn(seed: int, tag: str, wdir: str, churn: bool) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _worker(seed, tag, wdir, w, churn)
        finally:
            os._exit(0)
    os.close(w)
    os.set_blocking(r, False)
    return pid, r


# ---------------------------------------------------------------- the checker


@dataclasses.dataclass
class Ledger:
    """What workers reported, across rounds."""

    created: dict[tuple[str, int], str] = dataclasses.field(default_factory=dict)
    doomed: set[tuple[str, int, str]] = dataclasses.field(default_factory=set)
    pages: dict[tuple[int, str, int], int] = dataclasses.field(default_factory=dict)

    def take(self, line: str, stats: Stats) -> None:
        kind, *rest = line.split(" ", 1)
        args = rest[0].split() if rest else []
        if kind == "O":
            stats.ops += 1
        elif kind in ("CV", "CS"):
            self.created[("vas" if kind == "CV" else "seg", int(args[0]))] = args[1]
        elif kind in ("DV", "DS"):
            self.doomed.add(("vas" if kind == "DV" else "seg", int(args[0]), args[1]))
        elif kind == "W":
            stats.writes += 1
            self.pages[(int(args[0]), args[1], int(args[2]))] = int(args[3])
        elif kind == "X":
            stats.unexpected.append(rest[0] if rest else line)


def _drain(fd: int, buf: dict[int, bytes], ledger: Ledger, stats: Stats) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            return
        data = buf.get(fd, b"") + chunk
        *lines, buf[fd] = data.split(b"\n")
        for line in lines:
            ledger.take(line.decode(), stats)


def _name_of(kind: objects.Kind, oid: int) -> str | None:
    """The name of a live object, or None (through one pinned reference)."""
    try:
        with objects.pin(kind, oid) as ref:
            return ref.name
    except OSError:
        return None


def check_registry(ledger: Ledger, stats: Stats) -> list[str]:
    """Check the registry while no worker is alive; return the problems found."""
    bad: list[str] = []
    root = Path(vaspace.registry_root())
    kinds = (("vas", vas.VAS, vaspace.vas_ids(), vaspace.vas_find, vaspace.vas_name),
             ("seg", seg.SEG, vaspace.seg_ids(), vaspace.vas_seg_find, vaspace.seg_name))
    for label, kind, ids, find, name_fn in kinds:
        # Every name link must lead to a whole object.
        for enc in os.listdir(root / "names" / label):
            target = os.readlink(root / "names" / label / enc)
            if not target.isdigit() or _name_of(kind, int(target)) is None:
                bad.append(f"{label} name link {enc!r} -> {target!r} leads to no object")
        for oid in ids:
            stats.objects_checked += 1
            try:
                name = name_fn(oid)
                if find(name) != oid:
                    bad.append(f"{label} {oid} {name!r}: find gives another id")
                attr = (vaspace.vas_getattr if label == "vas" else vaspace.vas_seg_getattr)(oid)
                if attr.mode != 0o600:
                    bad.append(f"{label} {oid}: mode {attr.mode:o}")
                if label == "seg":
                    lo, hi = vaspace.seg_region(oid)
                    st = os.lstat(root / 'seg' / str(oid) / 'data')
                    if st.st_size != hi - lo:
                        bad.append(f"seg {oid}: data is {st.st_size} bytes, region {hi - lo}")
                else:
                    if vaspace.vas_holders(oid):
                        bad.append(f"vas {oid}: held by {vaspace.vas_holders(oid)} after all died")
                    for link in vaspace.vas_segments(oid):
                        if _name_of(seg.SEG, link.sid) is None:
                            bad.append(f"vas {oid}: links deleted segment {link.sid}")
            except OSError as exc:
                bad.append(f"{label} {oid}: listed but not whole: {exc}")
    # Objects reported as created exist, unless someone meant to delete them.
    doomed_ids = {(label, oid) for label, oid, _ in ledger.doomed}
    for (label, oid), name in list(ledger.created.items()):
        kind = vas.VAS if label == "vas" else seg.SEG
        if _name_of(kind, oid) == name:
            continue
        del ledger.created[(label, oid)]  # report each loss once
        if (label, oid, name) in ledger.doomed:
            continue
        if (label, oid) in doomed_ids:
            # Someone deleted *by id* an object that had this id before; the
            # id was reused in between (ids are reused, as with the RFC's
            # idr), so the delete hit this one.  Not a registry fault.
            stats.id_reuse_deletes += 1
            continue
        bad.append(f"{label} {oid} {name!r} was created, never deleted, and is gone")
    # Committed pages are intact in the backing files.
    for (sid, name, page), crc in list(ledger.pages.items()):
        if _name_of(seg.SEG, sid) != name:
            if ("seg", sid, name) not in ledger.doomed:
                bad.append(f"seg {sid} {name!r} holding committed data vanished")
            del ledger.pages[(sid, name, page)]  # deleted as intended: nothing left to check
            continue
        with open(root / 'seg' / str(sid) / 'data', "rb") as f:
            f.seek(page * PAGE)
            if zlib.crc32(f.read(PAGE)) != crc:
                bad.append(f"seg {sid} {name!r} page {page}: committed data changed")
        stats.pages_verified += 1
    # No lock leaked: the registry lock is free.
    fd = os.open(root / "lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        bad.append("the registry lock is held after every worker died")
    finally:
        os.close(fd)
    bad += _fresh_process_check(ledger)
    return bad


def _fresh_process_check(ledger: Ledger) -> list[str]:
    """A new process attaches every VAS read-write and reads every committed page."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        problems = []
        try:
            for vid in vaspace.vas_ids():
                try:
                    vaspace.vas_attach(0, vid, os.O_RDWR)
                except OSError as exc:
                    problems.append(f"fresh process cannot attach vas {vid} rw: {exc}")
                    continue
                vaspace.vas_switch(vid)
                for link in vaspace.vas_segments(vid):
                    name = vaspace.seg_name(link.sid)
                    # Released at the block's end: a live view pins the segment.
                    with vaspace.Segment(link.sid).view() as view:
                        for (sid, sname, page), crc in ledger.pages.items():
                            if sid == link.sid and sname == name:
                                if zlib.crc32(view[page * PAGE:(page + 1) * PAGE]) != crc:
                                    problems.append(f"seg {sid} page {page}: mapped data "
                                                    "differs")
                vaspace.vas_switch(0)
                vaspace.vas_detach(0, vid)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            problems.append(f"fresh process failed: {type(exc).__name__}: {exc}")
        os.write(w, json.dumps(problems).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return [f"fresh process died of signal {os.WTERMSIG(status)}"]
    return json.loads(data) if data else ["fresh process reported nothing"]


# ---------------------------------------------------------------- rounds


def run_round(rng: random.Random, rnd: int, procs: int, duration: float, wdir: str,
              ledger: Ledger, stats: Stats) -> None:
    """One round: workers plus a churner, random kills and respawns, then a check."""
    live: dict[int, int] = {}
    bufs: dict[int, bytes] = {}
    fds: list[int] = []
    serial = [0]

    def spawn(churn: bool) -> None:
        serial[0] += 1
        pid, fd = _spawn(rng.getrandbits(64), f"{rnd}.{serial[0]}", wdir, churn)
        live[pid] = fd
        fds.append(fd)
        stats.procs_started += 1

    for i in range(procs):
        spawn(churn=i == 0)
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        ready, _, _ = select.select(list(live.values()), [], [], rng.uniform(0.005, 0.06))
        for fd in ready:
            _drain(fd, bufs, ledger, stats)
        pid = rng.choice(list(live))
        os.kill(pid, signal.SIGKILL)
        stats.kills += 1
        os.waitpid(pid, 0)
        _drain(live.pop(pid), bufs, ledger, stats)
        spawn(churn=rng.random() < 0.3)
    for pid in live:
        os.kill(pid, signal.SIGKILL)
        stats.kills += 1
    for pid, fd in live.items():
        os.waitpid(pid, 0)
        _drain(fd, bufs, ledger, stats)
    for fd in fds:
        os.close(fd)
    problems = check_registry(ledger, stats)
    stats.inconsistencies += [f"round {rnd}: {p}" for p in problems]
    _prune(rng, ledger)
    # Creates and deletes cut short leave invisible directories; sweep them.
    stats.orphans_reaped += len(objects.reap_orphans(vas.VAS, 0))
    stats.orphans_reaped += len(objects.reap_orphans(seg.SEG, 0))
    stats.rounds += 1


MAX_VAS, MAX_SEG = 16, 24


def _prune(rng: random.Random, ledger: Ledger) -> None:
    """Delete objects beyond a cap, so that rounds stay cheap however long the run."""
    vids = vaspace.vas_ids()
    for vid in rng.sample(vids, max(0, len(vids) - MAX_VAS)):
        ledger.doomed.add(("vas", vid, vaspace.vas_name(vid)))
        vaspace.vas_delete(vid)
    sids = vaspace.seg_ids()
    if len(sids) > MAX_SEG:
        for vid in vaspace.vas_ids():
            for link in vaspace.vas_segments(vid):
                vaspace.vas_seg_detach(vid, link.sid)
        for sid in rng.sample(sids, len(sids) - MAX_SEG):
            ledger.doomed.add(("seg", sid, vaspace.seg_name(sid)))
            vaspace.vas_seg_delete(sid)


def run(rounds: int, procs: int, seconds: float | None = None, duration: float = 0.25,
        seed: int | None = None, root: str | None = None, progress: bool = False) -> Stats:
    """Run the harness against a fresh registry; return its statistics.

    ``seconds`` (if given) runs rounds until that much time has passed, up to
    ``rounds``.  The registry lives in a fresh directory under /dev/shm unless
    ``root`` is given, and ``VASPACE_ROOT`` is set to it for the run.
    """
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    stats = Stats()
    t0 = time.monotonic()
    ledger = Ledger()
    # wdir: the workers' scratch files (per-segment write locks), not registry objects.
    with tempfile.TemporaryDirectory(prefix="vaspace-soak-work-", dir="/dev/shm") as wdir, \
            rootmod.temporary("vaspace-soak-", root):
        try:
            for rnd in range(rounds):
                if seconds is not None and time.monotonic() - t0 > seconds:
                    break
                run_round(rng, rnd, procs, duration, wdir, ledger, stats)
                if progress and rnd % 50 == 49:
                    print(f"round {rnd + 1}: kills {stats.kills}, writes {stats.writes}, "
                          f"inconsistencies {len(stats.inconsistencies)}, "
                          f"unexpected {len(stats.unexpected)}, "
                          f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        finally:
            stats.seconds = round(time.monotonic() - t0, 1)
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=50, help="rounds to run (default 50)")
    p.add_argument("--procs", type=int, default=4, help="workers per round (default 4)")
    p.add_argument("--duration", type=float, default=0.25, help="seconds per round")
    p.add_argument("--soak", type=float, metavar="MINUTES",
                   help="run for this many minutes (rounds then only caps the run)")
    p.add_argument("--seed", type=int, help="random seed (printed, for replay)")
    args = p.parse_args(argv)
    seed = random.randrange(2**32) if args.seed is None else args.seed
    rounds, seconds = args.rounds, None
    if args.soak is not None:
        seconds = args.soak * 60
        rounds = max(rounds, 10**9) if args.rounds == 50 else rounds
    stats = run(rounds, args.procs, seconds, args.duration, seed, progress=True)
    out = stats.summary()
    out.update(seed=seed, procs=args.procs, machine=f"{os.uname().sysname} "
               f"{os.uname().release} {os.uname().machine}, {os.cpu_count()} cpus")
    print(json.dumps(out, indent=2))
    with contextlib.suppress(Exception):
        for line in (stats.inconsistencies + stats.unexpected)[:50]:
            print(line, file=sys.stderr)
    return 1 if stats.inconsistencies or stats.unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
