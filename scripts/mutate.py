#!/usr/bin/env python3
"""Mutation testing: does the suite notice when the policy code is wrong?

For each policy module this applies one small change (a *mutant*) at a time,
runs the tests that cover the module with ``-x`` and a timeout, and restores
the file.  A mutant the tests fail on is *killed*; one they pass with
*survived* (a gap in the tests, or a change that means nothing: an
*equivalent* mutant); one that makes them run past the timeout *timed out*
(counted as caught: a hang is a failure too).

The Python mutants are made from the AST, so they are always valid code:

* a comparison flipped (``==``/``!=``, ``<``/``>=``, ``<=``/``>``, ``in``/``not in``,
  ``is``/``is not``);
* ``and``/``or`` swapped, a ``not`` dropped, an ``if``/``while`` condition negated;
* an int constant moved by one (``n`` -> ``n + 1`` and ``n - 1``);
* a ``raise`` removed (replaced by ``pass``);
* ``True``/``False`` swapped.

Docstrings, annotations, f-strings and lines marked ``# pragma: no mutate``
are left alone.  The C extensions get a short list of hand-made mutants
(``--c``), each applied with ``sed``, rebuilt, and run against the heap and
switch tests; the extension is rebuilt from the restored source at the end.

The tree is restored even if the run is interrupted: the original of the
file being mutated is kept in ``.mutate-backup/`` until it is back, and a
later run restores whatever a killed run left there before doing anything.

Usage::

    python scripts/mutate.py perms names            # some modules
    python scripts/mutate.py --all                  # every policy module
    python scripts/mutate.py --c                    # the C mutants
    python scripts/mutate.py perms --list           # show the mutants, run nothing
    python scripts/mutate.py --all --json out.json  # and keep the results
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "vaspace"
BACKUP = REPO / ".mutate-backup"
LOCK = REPO / ".mutate.lock"  # one run at a time: a second would restore the first's mutant

# Every module of the registry package, so that a module added there is
# mutated too; each can also be named alone ("registry.ref").
_REGISTRY_FILES = sorted(f"registry/{p.name}" for p in (PKG / "registry").glob("*.py")
                         if p.name != "__init__.py")
_REGISTRY_TESTS = ["registry", "test_api_objects.py", "test_names.py", "test_permissions.py",
                   "process/test_attach.py", "process/test_attach_edges.py",
                   "reliability/test_rel_regressions.py",
                   "reliability/test_rel_security.py", "reliability/test_rel_badinput.py"]

# The policy modules and the tests that cover each (paths relative to tests/).
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "perms": (["perms.py"], ["test_permissions.py", "test_permissions_group.py"]),
    "names": (["names.py"], ["test_names.py", "test_api_objects.py",
                             "reliability/test_rel_badinput.py"]),
    "registry": (_REGISTRY_FILES, _REGISTRY_TESTS),
    "process.attach": (["process/attach.py"],
                       ["process", "test_permissions.py", "test_permissions_group.py",
                        "reliability/test_rel_concurrency.py",
                        "reliability/test_rel_security.py"]),
    "process.switch": (["process/switch.py"],
                       ["process", "reliability/test_rel_concurrency.py"]),
    "process.state": (["process/state.py"],
                      ["process", "reliability/test_rel_concurrency.py"]),
    "spaces": (["spaces.py"], ["test_spaces.py", "test_spaces_handles.py", "test_spaces_mapped.py",
                                 "test_api_objects.py"]),
}
MODULES.update({f"registry.{Path(f).stem}": ([f], _REGISTRY_TESTS) for f in _REGISTRY_FILES})

# Mutants that change nothing a caller can observe, each with the argument
# why; they are reported as "equivalent", not run, and left out of the score.
# Keyed by file, the mutated line's text and the mutation (not the line
# number), so that edits elsewhere in the file do not lose them; an entry
# whose line changed simply stops matching and the mutant is run again.
_FAST_GETATTR = ("registry/objects.py",
                 "if type(oid) is int and 0 < oid <= MAX_ID:  # exact ints only: no subclass's "
                 "__format__")
EQUIVALENT: dict[tuple[str, str, str], str] = {
    **{(*_FAST_GETATTR, what): "getattr_'s fast path only skips building a Ref: whichever "
       "branch the check sends an id to, pin() re-checks it and gives the same attributes "
       "or the same EINVAL"
       for what in ("negate condition", "0 -> -1", "0 -> 1", "Lt -> GtE", "LtE -> Gt")},
    # _claim_id's hints: where to start looking and when to list the directory
    # again.  Whatever they say, mkdir decides, and the loop ends at a free id
    # (ids are not promised to be consecutive).
    **{("registry/objects.py", line, what):
       "a hint of _claim_id (where to try next, when to list again): mkdir decides, and "
       "the loop still ends at a free id"
       for line, whats in (
           ("collisions = 0", ("0 -> -1", "0 -> 1")),
           ("collisions += 1", ("1 -> 0", "1 -> 2")),
           ("oid = _scan_next(base) if collisions % 8 == 0 else oid + 1",
            ("Eq -> NotEq", "8 -> 7", "8 -> 9", "0 -> -1", "0 -> 1", "1 -> 0", "1 -> 2")),
           ("_next_id[base] = oid + 1", ("1 -> 0", "1 -> 2")))
       for what in whats},
    # _lowest_free: n taken entries, one of them the planted top id, leave one
    # of 1..n free (pigeonhole), so the range's end and the fallback past it
    # never matter.
    **{("registry/objects.py", line, what):
       "_lowest_free: of n taken ids one is the top, so one of 1..n is free: the range's "
       "end and the ENOSPC fallback past it are never reached"
       for line, whats in (
           ("oid = next((i for i in range(1, len(taken) + 2) if i not in taken), MAX_ID + 1)",
            ("2 -> 1", "2 -> 3")),
           # the fallback past the range: "1 -> 0"/"1 -> 2" of its second constant 1
           ("oid = next((i for i in range(1, len(taken) + 2) if i not in taken), MAX_ID + 1)",
            ("1 -> 0#2", "1 -> 2#2")),
           ("raise vas_error(errno.ENOSPC, f\"no free {kind.label} id\")", ("remove raise",)))
       for what in whats},
    **{("registry/objects.py",
        "REAP_BATCH = 64  # at most this many entries are examined by one automatic reap",
        what): "how many entries one automatic reap examines is a cost bound, not a result: "
       "orphans past it are left for the next process's reap or fsck, as they are now"
       for what in ("64 -> 63", "64 -> 65")},
    ("registry/ref.py", "_S_IFMT, _S_IFREG = stat.S_IFMT(0o177777), stat.S_IFREG",
     "65535 -> 65534"): "stat.S_IFMT keeps only the type bits (0o170000): the low bit of "
        "its argument is dropped either way",
    ("registry/vas.py", "perms.check(uid, gid, mode & 0o666, may, ref)", "438 -> 439"):
        "others' x bit: perms.allowed compares only the r and w bits (MAY_READ | MAY_WRITE)",
    **{("registry/seg.py",
        "lo, hi = (int(m[1], 16), int(m[2], 16)) if m is not None else (0, 0)", what):
       "(0, 0) only stands for an unparsable region and must fail lo < hi, which (1, 0) and "
       "(0, -1) fail too: the region still goes the pin way for its exact error"
       for what in ("0 -> 1#1", "0 -> -1#2")},
    ("process/switch.py",
     'warnings.warn(f"thread exited inside a VAS: {exc}", RuntimeWarning, stacklevel=1)',
     "1 -> 0"): "warnings.warn takes stacklevel 0 as 1: the same frame (switch.py's __del__) "
        "is named either way (1 -> 2 names none, and is killed)",
    **{("process/switch.py", line, what):
       "a dead write: m.placed is read only inside st.changing(), whose entry first sets "
       "every mapping's flag from C (refresh_placed), which moved them"
       for line, what in (("m.placed = True", "True -> False"),
                          ("m.placed = False", "False -> True"))},
    ("registry/ref.py",
     "if oid.__class__ is not int or not 0 < oid <= MAX_ID:  # type: ignore[operator]",
     "0 -> 1"): "only sends id 1 the long way: check_id returns an in-range int unchanged",
    ("registry/ref.py", "if not (target.isascii() and target.isdigit() and target[0] != \"0\" and "
     "len(target) <= 10):", "10 -> 11"): "an id of 11 digits is above MAX_ID (2**31 - 1, "
        "10 digits), which the next check refuses",
    **{("process/attach.py", "prot, -1))", what):
       "the descriptor of an existing (sid, prot) mapping: get_or_map reads fd only to map "
       "a new one, and this branch runs only when mappings holds that key"
       for what in ("1 -> 0", "1 -> 2")},
    ("registry/seg.py", "if sid.__class__ is int and 0 < sid <= MAX_ID:  # type: ignore[operator]",
     "0 -> -1"): "only lets sid 0 into the one-call path, where no seg/0 directory exists: "
        "open_segment fails and pin gives the same EINVAL",
    ("registry/vas.py", "return 0o1755 | (mode & 0o022)", "18 -> 19"):
        "0o023 adds only others' x bit, which 0o1755 sets anyway",
    ("spaces.py", "def create(cls, name: str, mode: int = 0o600) -> VAS:", "384 -> 385"):
        "vas_create masks the mode with 0o666, so a default of 0o601 makes the same 0o600 VAS",
    ("spaces.py", "if m.sid < 0 and m.start == addr:", "0 -> 1"):
        "no mapping has sid 0 (segment ids start at 1, private ranges are negative)",
    ("spaces.py", "if m.sid < 0 and m.start == addr:", "0 -> -1"):
        "a private range's key is -((vid << 40) | page), at most -2**40: never -1",
    ("registry/seg.py", "assert start is not None and end is not None", "and -> or"):
        "an assert for the type checker: the loop above it has refused any None",
    ("spaces.py", "mode: int = 0o600) -> Segment:", "384 -> 385"):
        "a segment's mode is masked with 0o666 too, so a default of 0o601 makes the same "
        "0o600 segment",
    ("registry/objects.py", "return Attr(mode=mode & 0o666, user=user, group=group)",
     "438 -> 439"): "an x bit for others on the attribute file (lock or data): attributes "
        "are read masked with 0o666, and no file of the registry is ever executed",
    ("registry/objects.py", "for oid in ids if limit is None else ids[:limit]:", "Is -> IsNot"):
        "the same cost bound as REAP_BATCH: with it ignored a reap looks at every entry, "
        "and finds the same orphans among them",
    ("registry/records.py", "return _mine[0]", "0 -> -1"):
        "_mine holds one value once filled: [0] and [-1] are the same element",
    **{("registry/seg.py",
        'fd = os.open("data", os.O_CREAT | os.O_EXCL | os.O_RDWR | fs.FILE_FLAGS, 0o600,',
        what): "the data file's first mode is set again by fchmod(fd, mode & 0o666) before "
       "the segment is published, and until then its directory is the creator's alone "
       "(0o700)" for what in ("384 -> 383", "384 -> 385")},
    ("registry/seg.py", "os.fchmod(fd, mode & 0o666)", "438 -> 439"):
        "an x bit for others on the data file: attributes are read masked with 0o666, and "
        "mapping it never needs x",
    **{("registry/memfile.py", "return -((vid << 40) | (start >> 12))", what):
       "the key only has to be negative and one per (VAS, page-aligned start): a start "
       "below 2**47 shifted right by 11 or 12 fits under bit 36, so vid << 39, 40 or 41 "
       "never overlaps it (>> 13 would, and is killed)" for what in
       ("40 -> 39", "40 -> 41", "12 -> 11")},
    ("registry/records.py", 'DETACH = -1  # a request\'s "type" that asks for a detach',
     "1 -> 2"): "an in-process sentinel: on disk a detach request is the word 'detach', and "
        "-2 is no access type either",
    ("registry/memfile.py", 'prot = mmap.PROT_READ | (mmap.PROT_WRITE if m[3] == "rw" else 0)',
     "0 -> 1"): "PROT_READ is 1: PROT_READ | 1 is PROT_READ",
    **{("registry/memfile.py",
        "fd = os.open(rng.file, os.O_CREAT | os.O_EXCL | os.O_RDWR | fs.FILE_FLAGS, 0o600,",
        what): "0o601 only adds others' x bit until finish_file's fchmod sets the VAS's "
       "mode; mapping never needs x (0o577 would let others write it meanwhile: not listed)"
       for what in ("384 -> 385",)},
    ("registry/memfile.py", "os.fchmod(fd, mode & 0o666)", "438 -> 439"):
        "an x bit for others on a private memory file: mapping it never needs x",
    ("registry/private.py", "assert addr is not None and length is not None",
     "and -> or"): "an assert for the type checker: the loop above it has refused any None",
    ("registry/private.py",
     "if length <= 0 or length % winmod.PAGE or addr < 0 or addr % winmod.PAGE:", "0 -> 1#1"):
        "length 1 (now refused as <= 1) is refused anyway as not page aligned",
    ("registry/private.py",
     "if length <= 0 or length % winmod.PAGE or addr < 0 or addr % winmod.PAGE:", "0 -> -1#2"):
        "addr -1 (now let through) is refused anyway as not page aligned",
    ("registry/objects.py", "os.chmod(path, 0o700)", "448 -> 449"):
        "0o701 only lets others traverse the half-made directory until create() sets its "
        "final mode, and every final mode (0o755 for a segment, 0o1755 | w bits for a VAS) "
        "lets them anyway; listing and writing stay the owner's",
    ("registry/vas.py", "return create_object(VAS, name, dir_mode(mode & 0o666), populate)",
     "438 -> 439"): "dir_mode keeps only the w bits (0o022) of the mode it is given",
    ("registry/vas.py", 'fs.write_new("lock", "", mode & 0o666, dfd)', "438 -> 439"):
        "an x bit for others on the lock file: attributes are read masked with 0o666 and "
        "the lock file is only ever opened for reading or writing",
    **{("registry/objects.py", "os.mkdir(path, 0o700)", what):
       "the mode given to mkdir is set again by the chmod(path, 0o700) right after it "
       "(mkdir's is masked by the umask)" for what in ("448 -> 447", "448 -> 449")},
    # filecopy's chunk sizes: each loop runs until its range is copied, so any
    # positive size per call copies the same bytes (0 is killed: nothing moves).
    **{("registry/filecopy.py", line, what):
       "only how much one call moves: the loop goes on to the end of the range whatever "
       "positive size each call has"
       for line, whats in (
           ("CHUNK = 1 << 30  # at most this much per copy_file_range call",
            ("1 -> 2", "30 -> 29", "30 -> 31")),
           ("data = os.pread(src, min(hi - off, 1 << 20), off)",
            ("1 -> 2", "20 -> 19", "20 -> 21")))
       for what in whats},
    ("registry/records.py", "for _ in range(3):", "3 -> 4"):
        "one more round for root against a planter who re-plants in every gap: such a "
        "planter gets EAGAIN after 3 rounds or 4 (one re-plant is beaten either way; "
        "3 -> 2 is killed by test_root_beats_a_planter_who_plants_again)",
    **{("registry/records.py", "os.mkdir(name, 0o700, dir_fd=base)", what):
       "the request directory's mode is set again by fchmod(fd, 0o700) before the "
       "directory is returned (and mkdir's is masked by the umask), as for objects' mkdir"
       for what in ("448 -> 447", "448 -> 449")},
    **{("registry/root.py", line, "IsNot -> Is"):
       "_ENV is os.environ's own bytes mapping: with the check inverted every lookup goes "
       "through os.environ.get, which reads the same mapping (only slower)"
       for line in ("if os.environ is _ENVIRON and _ENV is not None:",
                    "raw = (_ENV.get(_ENV_KEY) if os.environ is _ENVIRON and _ENV is not None")},
    **{("registry/root.py", "if raw is not last[0]:  # decode once per value the variable "
        "takes", what): "last[1] is the text decoded from last[0]: compared with it, raw "
       "misses the cache (and is decoded again, to the same root) or is that very str, "
       "whose decoding is itself; [-1] is [1] of the pair" for what in ("0 -> -1", "0 -> 1")},
    **{("registry/root.py", "os.mkdir(path, 0o700)", what):
       "the mode given to mkdir is set again by the chmod(path, DIR_MODE) right after it, "
       "before any check or use (mkdir's is masked by the umask)"
       for what in ("448 -> 447", "448 -> 449")},
    **{("registry/root.py", "if raw is last[0] and last[1] is not None:  # the hot path: no "
        "syscall, no decoding", what):
       "each only makes the kept answer miss more: raw tested against last[1] (the decoded "
       "root; [-1] is [1] of the pair), last[1] tested for None (never, after the first "
       "answer), last[0] tested for None (only when the variable is unset); a miss goes on "
       "to the check below, which returns the same root"
       for what in ("0 -> -1", "0 -> 1", "IsNot -> Is", "1 -> 0")},
    ("registry/records.py", "os.fchown(fd, owner, -1)", "1 -> 0"):
        "the request directory is 0o700 (fchmod just above): its group grants nothing, "
        "whichever group it is",
    ("registry/records.py", "for entry in entries if limit is None else entries[:limit]:",
     "Is -> IsNot"): "the cost bound of an automatic reap (as in objects): with it ignored "
        "every entry is looked at, and the same stale ones are found among them",
    **{("registry/records.py", "def reap_pending(limit: int | None = 64) -> list[str]:", what):
       "how many entries one automatic reap examines is a cost bound, as REAP_BATCH: the "
       "rest are left for the next reap or fsck" for what in ("64 -> 63", "64 -> 65")},
    ("registry/kind.py", "@dataclass(frozen=True)", "True -> False"):
        "frozen only forbids assigning to the two module constants VAS and SEG, which no "
        "code does; nothing hashes a Kind (frozen=False would make it unhashable)",
}



def equivalent_keys(rel: str, muts: list[Mutant], k: int) -> list[tuple[str, str, str]]:
    """The EQUIVALENT keys that may name ``muts[k]``: (file, line text, what), and the
    same with ``what#n`` for the n-th mutant of that kind on the line (when a line has
    two, e.g. two constants 1 moved to 0)."""
    m = muts[k]
    nth = 1 + sum(1 for o in muts[:k] if (o.line, o.what) == (m.line, m.what))
    return [(rel, m.source, m.what), (rel, m.source, f"{m.what}#{nth}")]


def equivalent_reason(rel: str, muts: list[Mutant], k: int) -> str | None:
    """Why ``muts[k]`` (of file ``rel``) is equivalent, or None if it is not listed."""
    return next((EQUIVALENT[key] for key in equivalent_keys(rel, muts, k)
                 if key in EQUIVALENT), None)


HEAP_TESTS = ["heap"]
SWITCH_TESTS = ["process/test_switch.py", "process/test_thread_overlap.py",
                "process/test_prune.py", "process/test_fork_locks.py",
                "process/test_plan_cache.py", "process/test_fork_slots.py"]

# Hand-made C mutants: (file under src/vaspace, sed expression, tests, what it breaks).
C_MUTANTS: list[tuple[str, str, list[str], str]] = [
    ("core/switch.c", r"s/if (others \&\& parks_shared(p))/if (0)/", SWITCH_TESTS,
     "the fast path ignores other threads inside VASes"),
    ("core/moves.c", r"s/return m->place ? park_plugs : !m->keep_hole;/"
     r"return m->place ? park_plugs : 0;/",
     SWITCH_TESTS, "a parked mapping's hole is never plugged"),
    ("core/switch.c", r"s/return PyLong_FromLong(from == 0 ? 2 : 1);/return PyLong_FromLong(1);/",
     SWITCH_TESTS, "a fast entry from the original AS is not reported (no thread guard)"),
    ("core/moves.c", r"s/for (Py_ssize_t j = i - 1; j >= 0; j--)/"
     r"for (Py_ssize_t j = i - 1; j > 0; j--)/",
     SWITCH_TESTS, "a failed plan is not fully undone"),
    ("core/threads.c", r"s/madvise(p, SHARED_BYTES, MADV_DONTFORK)/"
     r"madvise(p, SHARED_BYTES, MADV_NORMAL)/",
     SWITCH_TESTS,
     "the published thread slots are shared with a forked child"),
    ("heap/core/dict.c", r"s/    W(t, w, nw);/    *w = nw;/", HEAP_TESTS,
     "a Dict's index slot is stored without its undo record (a rollback keeps it)"),
    ("heap/core/undo.c", r"s/\*(u64 \*)(r->base + off) = h->log\[i\].old;/(void)0;/", HEAP_TESTS,
     "rollback restores nothing"),
    ("heap/core/undo.c", r"s/(s \& 1) ? s + 1 : s + 2/(s \& 1) ? s + 1 : s/", HEAP_TESTS,
     "recovery does not bump an even seq"),
    ("heap/core/core.h", r"s/return a >= lo \&\& a <= hi \&\& n <= hi - a;/"
     r"return a >= lo \&\& n <= hi - a;/",
     HEAP_TESTS, "in_arena accepts an address past the arena"),
    ("heap/core/alloc.c", r"s/    if (!(nsf \& INUSE)) {/    if (0) {/", HEAP_TESTS,
     "free never merges with the next free block"),
    ("heap/core/lane.c", r"s/    __atomic_store_n(\&l->log_count, n + 1, __ATOMIC_RELEASE);/"
     r"    (void)0;/", HEAP_TESTS,
     "a lane writer's undo record is never counted (a dead lane holder is not rolled back)"),
    ("heap/_heapcore.c", r"s/if (!seq_retry(seq, s) \&\& !lanes_moved(self, lanes, ls))/"
     r"if (!seq_retry(seq, s))/", HEAP_TESTS,
     "a lock-free reader ignores the update lanes' seqs (torn values)"),
]


# C mutants that change nothing a caller can observe (by their description),
# each with the argument why; reported as "equivalent", not built or run.
C_EQUIVALENT: dict[str, str] = {
    "recovery does not bump an even seq":
        "an even seq at recovery means the writer died before its first store or after "
        "its commit: every reader that sampled it read what it would read now (the "
        "argument in full beside the code, heap/core/undo.c; issue 17, seeded bug #7)",
}


# ------------------------------------------------------------------ mutants


@dataclass
class Mutant:
    """One change: bytes [start, end) of ``path`` become ``text``."""

    path: str  # relative to the repo
    line: int
    start: int
    end: int
    text: str
    what: str
    outcome: str = ""
    seconds: float = 0.0
    source: str = ""  # the mutated line, stripped (what EQUIVALENT is keyed by)
    last_line: int = 0

    def key(self) -> str:
        """Names the mutant across runs of the same source (for --resume)."""
        return f"{self.path}:{self.line}:{self.start}:{self.what}:{self.text}"

    def describe(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


_FLIP = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt,
         ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.In: ast.NotIn, ast.NotIn: ast.In,
         ast.Is: ast.IsNot, ast.IsNot: ast.Is}


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes never mutated: docstrings and annotations, with all they contain."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                roots.append(body[0])
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            roots.append(node.returns)
        if isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(n) for root in roots for n in ast.walk(root)}


class _Finder(ast.NodeVisitor):
    """Collect (node, replacement source, description) for every mutable spot."""

    def __init__(self, src: bytes) -> None:
        self.src = src
        self.found: list[tuple[ast.AST, str, str]] = []
        self.in_fstring = 0

    def text(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.src.decode(), node) or ast.unparse(node)

    def add(self, node: ast.AST, new: str, what: str) -> None:
        if not self.in_fstring:
            self.found.append((node, new, what))

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        self.in_fstring += 1
        self.generic_visit(node)
        self.in_fstring -= 1

    def visit_Compare(self, node: ast.Compare) -> None:
        for i, op in enumerate(node.ops):
            flipped = _FLIP.get(type(op))
            if flipped is None:
                continue
            new = copy.deepcopy(node)
            new.ops[i] = flipped()
            self.add(node, f"({ast.unparse(new)})",
                     f"{type(op).__name__} -> {flipped.__name__}")
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        new = ast.BoolOp(op=other, values=node.values)
        self.add(node, f"({ast.unparse(new)})",
                 f"{type(node.op).__name__.lower()} -> {type(other).__name__.lower()}")
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if isinstance(node.op, ast.Not):
            self.add(node, f"({self.text(node.operand)})", "drop not")
        self.generic_visit(node)

    def _negate(self, test: ast.expr) -> None:
        # A comparison or a "not" is already mutated more precisely above.
        if not isinstance(test, ast.Compare | ast.UnaryOp):
            self.add(test, f"(not ({self.text(test)}))", "negate condition")

    def visit_If(self, node: ast.If) -> None:
        self._negate(node.test)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self._negate(node.test)
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._negate(node.test)
        self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        self.add(node, "pass", "remove raise")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if node.value is True or node.value is False:
            self.add(node, str(not node.value), f"{node.value} -> {not node.value}")
        elif type(node.value) is int:
            for d in (1, -1):
                self.add(node, f"({node.value + d})", f"{node.value} -> {node.value + d}")


def _rel(path: Path) -> str:
    """A path as reports show it: relative to the repo when inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _offsets(src: bytes) -> list[int]:
    """Byte offset of the start of each line (1-based line numbers: index line - 1)."""
    out, pos = [], 0
    for line in src.splitlines(keepends=True):
        out.append(pos)
        pos += len(line)
    out.append(pos)
    return out


def mutants_of(path: Path) -> list[Mutant]:
    """Every mutant of one source file, in file order."""
    src = path.read_bytes()
    tree = ast.parse(src)
    skip = _skipped_nodes(tree)
    lines = src.splitlines()
    starts = _offsets(src)
    finder = _Finder(src)
    finder.visit(tree)
    out = []
    for node, new, what in finder.found:
        if id(node) in skip:
            continue
        lo, hi = node.lineno, node.end_lineno or node.lineno
        if b"pragma: no mutate" in lines[lo - 1]:
            continue
        # ast offsets are in UTF-8 bytes, so the file is edited as bytes.
        start = starts[lo - 1] + node.col_offset
        end = starts[hi - 1] + (node.end_col_offset or 0)
        out.append(Mutant(_rel(path), lo, start, end, new, what,
                          source=lines[lo - 1].decode().strip(), last_line=hi))
    out.sort(key=lambda m: (m.start, m.what))
    return out


def apply(m: Mutant, original: bytes) -> bytes:
    return original[:m.start] + m.text.encode() + original[m.end:]


# ------------------------------------------------------------------ the tree is always restored


def restore_leftovers() -> list[str]:
    """Put back any file a killed run left mutated; return what was restored."""
    manifest = BACKUP / "manifest.json"
    if not manifest.exists():
        return []
    done = []
    for rel, info in json.loads(manifest.read_text()).items():
        target = REPO / rel  # an absolute rel stays as it is
        shutil.copyfile(BACKUP / info["copy"], target)
        os.utime(target, ns=(info["mtime_ns"], info["mtime_ns"]))
        done.append(rel)
    shutil.rmtree(BACKUP)
    return done


@contextlib.contextmanager
def mutable(path: Path) -> Iterator[bytes]:
    """Back up ``path`` (on disk, so a later run can restore it) and restore it on exit."""
    original = path.read_bytes()
    mtime_ns = path.stat().st_mtime_ns
    BACKUP.mkdir(exist_ok=True)
    copy_name = _rel(path).replace("/", "__")
    (BACKUP / copy_name).write_bytes(original)
    (BACKUP / "manifest.json").write_text(json.dumps(
        {_rel(path): {"copy": copy_name, "mtime_ns": mtime_ns}}))
    try:
        yield original
    finally:
        path.write_bytes(original)
        # The original's own mtime: its cached bytecode is valid again.
        os.utime(path, ns=(mtime_ns, mtime_ns))
        shutil.rmtree(BACKUP, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# ------------------------------------------------------------------ running the tests


def run_tests(tests: list[str], timeout: float, nodeids: list[str] | None = None,
              extra: list[str] | None = None, env: dict[str, str] | None = None,
              ) -> tuple[str, float]:
    """Run pytest on ``tests`` (or only on ``nodeids``): "passed", "failed", "error"
    (pytest itself failed: exit code 2 or more) or "timeout", and the seconds it took."""
    targets = nodeids if nodeids is not None else [str(REPO / "tests" / t) for t in tests]
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-m", "not soak", *(extra or []), *targets]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, **(env or {})})
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_session(proc)
        return "timeout", time.monotonic() - t0
    except BaseException:
        _kill_session(proc)
        raise
    _kill_session(proc)  # a test may have left a child behind
    outcome = {0: "passed", 1: "failed"}.get(code, "error" if nodeids is not None else "failed")
    return outcome, time.monotonic() - t0


def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL pytest and every process of its session, strays that outlived it included.

    Killing the process group is not enough: a child a test forks while the
    group is being killed can escape it, and would then hang on forever.
    """
    sid = proc.pid  # start_new_session: pytest leads its own session
    for _ in range(10):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.getsid(int(entry)) == sid and not _zombie(entry):
                    os.kill(int(entry), signal.SIGKILL)
                    found = True
        with contextlib.suppress(ChildProcessError):
            proc.wait()
        if not found:
            return
        time.sleep(0.05)


def _zombie(pid: str) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # dead, awaiting its reaper


def baseline(tests: list[str], limit: float) -> float:
    """The unmutated tests must pass; return how long they took."""
    outcome, secs = run_tests(tests, limit)
    if outcome != "passed":
        raise SystemExit(f"mutate: the tests fail without any mutant ({outcome}): {tests}")
    return secs


def coverage_map(tests: list[str], path: Path, limit: float) -> dict[int, list[str]]:
    """line -> the ids of the tests that run it in pytest's own process (unmutated).

    Run once per file with scripts/mutate_trace.py; an empty map (the run
    failed) only means every mutant gets the whole set.
    """
    out = BACKUP.parent / ".mutate-trace.json"
    env = {"MUTATE_TRACE_FILE": str(path), "MUTATE_TRACE_OUT": str(out),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "scripts"),
                                                       os.environ.get("PYTHONPATH")]))}
    outcome, _ = run_tests(tests, limit, extra=["-p", "mutate_trace"], env=env)
    if outcome != "passed" or not out.exists():
        return {}
    by_line: dict[int, list[str]] = {}
    for nodeid, lines in json.loads(out.read_text()).items():
        for n in lines:
            by_line.setdefault(n, []).append(nodeid)
    out.unlink()
    return by_line


def run_mutant(m: Mutant, tests: list[str], by_line: dict[int, list[str]],
               timeout: float) -> tuple[str, float]:
    """The tests that run the mutant's lines first; the whole set if they all pass."""
    selected = sorted({t for n in range(m.line, max(m.line, m.last_line) + 1)
                       for t in by_line.get(n, [])})
    spent = 0.0
    if selected:
        outcome, spent = run_tests(tests, timeout, nodeids=selected)
        if outcome in ("failed", "timeout"):
            return outcome, spent
    outcome, secs = run_tests(tests, timeout)
    return outcome, spent + secs


def run_module(name: str, factor: float, floor: float, only: int | None,
               echo: bool, done: dict[str, str] | None = None,
               save: Callable[[list[Mutant]], None] | None = None) -> list[Mutant]:
    """Every mutant of the module's files; ``done`` holds outcomes kept from an earlier run."""
    files, tests = MODULES[name]
    t0 = baseline(tests, 600)
    timeout = max(floor, factor * t0)
    if echo:
        print(f"== {name}: baseline {t0:.1f} s, timeout {timeout:.0f} s", flush=True)
    results: list[Mutant] = []
    for rel in files:
        path = PKG / rel
        muts = mutants_of(path)[:only] if only else mutants_of(path)
        by_line = coverage_map(tests, path, max(600, 4 * t0))
        for k, m in enumerate(muts):
            why = equivalent_reason(rel, muts, k)
            kept = (done or {}).get(m.key())
            if why is not None or kept is not None:
                m.outcome = "equivalent" if why is not None else kept
                results.append(m)
                if echo:
                    print(f"  {m.outcome:9} {m.describe()}: {why or 'kept'}", flush=True)
                continue
            with mutable(path) as original:
                path.write_bytes(apply(m, original))
                # A distinct mtime per mutant, so no stale bytecode is ever used.
                stamp = path.stat().st_mtime_ns // 10**9 * 10**9 + (k + 1) * 10**9 * 7
                os.utime(path, ns=(stamp, stamp))
                outcome, m.seconds = run_mutant(m, tests, by_line, timeout)
            m.outcome = {"failed": "killed", "passed": "survived"}.get(outcome, outcome)
            results.append(m)
            if save is not None:
                save(results)
            if echo:
                print(f"  {m.outcome:9} {m.describe()}", flush=True)
    return results


def build() -> bool:
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--force"],
                          cwd=REPO, capture_output=True)
    return proc.returncode == 0


def run_c(factor: float, floor: float, echo: bool) -> list[Mutant]:
    results = []
    baselines: dict[tuple[str, ...], float] = {}
    try:
        for rel, expr, tests, what in C_MUTANTS:
            path = PKG / rel
            key = tuple(tests)
            if key not in baselines:  # the extensions are built from clean sources here
                baselines[key] = baseline(tests, 600)
            m = Mutant(_rel(path), 0, 0, 0, expr, what)
            if what in C_EQUIVALENT:
                m.outcome = "equivalent"
                results.append(m)
                if echo:
                    print(f"  {m.outcome:11} {m.describe()}: {C_EQUIVALENT[what]}", flush=True)
                continue
            built = False
            with mutable(path) as original:
                subprocess.run(["sed", "-i", "-e", expr, str(path)], check=True)
                changed = path.read_bytes()
                if changed == original:
                    m.outcome = "not applied"
                elif not (built := build()):
                    m.outcome = "not built"
                else:
                    m.line = next(i for i, (a, b) in enumerate(
                        zip(original.splitlines(), changed.splitlines(), strict=False), 1)
                        if a != b)
                    outcome, m.seconds = run_tests(tests, max(floor, factor * baselines[key]))
                    m.outcome = {"failed": "killed", "passed": "survived"}.get(outcome, outcome)
            if built and not build():  # back to the restored source before the next one
                raise SystemExit("mutate: rebuilding the restored extensions failed")
            results.append(m)
            if echo:
                print(f"  {m.outcome:11} {m.describe()}", flush=True)
    finally:
        if not build():  # from the restored sources, whatever happened
            print("mutate: rebuilding the restored extensions FAILED", file=sys.stderr)
    return results


# ------------------------------------------------------------------ report


@dataclass
class Score:
    killed: int = 0
    survived: int = 0
    timeout: int = 0
    equivalent: int = 0
    other: int = 0
    survivors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.killed + self.survived + self.timeout

    @property
    def percent(self) -> float:
        return 100.0 * (self.killed + self.timeout) / self.total if self.total else 100.0


def score(results: list[Mutant]) -> Score:
    s = Score()
    for m in results:
        if m.outcome == "killed":
            s.killed += 1
        elif m.outcome == "survived":
            s.survived += 1
            s.survivors.append(m.describe())
        elif m.outcome == "timeout":
            s.timeout += 1
        elif m.outcome == "equivalent":
            s.equivalent += 1
        else:
            s.other += 1
    return s


def report(by_module: dict[str, list[Mutant]]) -> str:
    lines = [f"{'module':16} {'killed':>6} {'survived':>8} {'timeout':>7} {'equiv':>5} "
             f"{'score':>6}"]
    overall = Score()
    for name, results in by_module.items():
        s = score(results)
        lines.append(f"{name:16} {s.killed:6} {s.survived:8} {s.timeout:7} {s.equivalent:5} "
                     f"{s.percent:5.1f}%")
        overall.killed += s.killed
        overall.equivalent += s.equivalent
        overall.survived += s.survived
        overall.timeout += s.timeout
        overall.survivors += s.survivors
    lines.append(f"{'overall':16} {overall.killed:6} {overall.survived:8} {overall.timeout:7} "
                 f"{overall.equivalent:5} {overall.percent:5.1f}%")
    if overall.survivors:
        lines.append("survivors:")
        lines += [f"  {s}" for s in overall.survivors]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", choices=[[], *MODULES], metavar="MODULE",
                    help=f"policy modules to mutate: {', '.join(MODULES)}")
    ap.add_argument("--all", action="store_true", help="every policy module")
    ap.add_argument("--c", action="store_true", help="the hand-made C mutants")
    ap.add_argument("--list", action="store_true", help="list the mutants; run nothing")
    ap.add_argument("--first", type=int, help="only the first N mutants of each file")
    ap.add_argument("--timeout-factor", type=float, default=4.0,
                    help="a mutant's timeout, as a multiple of the baseline run (default 4)")
    ap.add_argument("--min-timeout", type=float, default=30.0, help="seconds (default 30)")
    ap.add_argument("--json", type=Path,
                    help="write every mutant's outcome here (after each mutant)")
    ap.add_argument("--resume", type=Path,
                    help="keep the outcomes this --json file of an earlier run has for "
                         "the same source; run only the rest")
    args = ap.parse_args(argv)
    modules = list(MODULES) if args.all else args.modules
    if not modules and not args.c:
        ap.error("name a module, or --all, or --c")

    if args.list:
        for name in modules:
            for rel in MODULES[name][0]:
                for m in mutants_of(PKG / rel):
                    print(f"{m.describe()}  =>  {m.text}")
        for rel, expr, _, what in C_MUTANTS if args.c else []:
            print(f"src/vaspace/{rel}: {what}  =>  sed -e '{expr}'")
        return 0

    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit("mutate: another run is going on in this tree") from None
    for rel in restore_leftovers():
        print(f"mutate: restored {rel}, left mutated by an interrupted run", file=sys.stderr)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    by_module: dict[str, list[Mutant]] = {}
    done: dict[str, str] = {}
    if args.resume is not None and args.resume.exists():
        done = {Mutant(**d).key(): d["outcome"]
                for ms in json.loads(args.resume.read_text()).values() for d in ms
                if d["outcome"] in ("killed", "timeout")}  # survivors: run again

    def save(results: list[Mutant] | None = None, name: str = "") -> None:
        if name:
            by_module[name] = results or []
        if args.json:
            args.json.write_text(json.dumps(
                {k: [asdict(m) for m in v] for k, v in by_module.items()}, indent=1))

    try:
        for name in modules:
            by_module[name] = run_module(
                name, args.timeout_factor, args.min_timeout, args.first, echo=True, done=done,
                save=lambda rs, name=name: save(rs, name))
        if args.c:
            by_module["C (sed)"] = run_c(args.timeout_factor, args.min_timeout, echo=True)
    except KeyboardInterrupt:
        print("mutate: interrupted; the tree is restored", file=sys.stderr)
    print(report(by_module))
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
