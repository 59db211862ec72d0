"""Bad input (issue 6, part 3): every public call against junk arguments.

For each call, hypothesis draws arguments from arbitrary ints (huge,
negative, just out of range), unaligned and overflowing addresses, huge and
negative sizes, wrong types, odd names (NUL, "/", "..", unicode, lone
surrogates, 255/256 bytes) and ids of live, deleted and never-made objects.
The property: the call either succeeds (and is undone) or raises the
documented ``OSError`` (with one of the RFC errno for that call),
``TypeError`` or ``ValueError``; it never hangs (an alarm fires after 5 s),
and a failing call leaves the registry tree byte-for-byte as it was.

The C core is fuzzed separately in a child process, where a segfault shows
up as a signal instead of killing pytest.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relutil import PAGE, SEG_BASE, run_child, snapshot

import vaspace
from vaspace import _core
from vaspace_testing import needs_root

WIN_LO, WIN_HI = 0x4000_0000_0000, 0x5000_0000_0000

# VASPACE_SOAK=1 turns the short default run into a long fuzz run.
EXAMPLES = int(os.environ.get("VASPACE_FUZZ_EXAMPLES", 1000 if os.environ.get("VASPACE_SOAK") == "1"
                              else 40))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 40,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# ------------------------------------------------ strategies

WRONG_TYPES = st.sampled_from([None, 1.5, float("nan"), "1", b"1", [1], (1,), {}, True, False,
                               object(), 1j])
ODD_INTS = st.sampled_from([0, -1, -2**31, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64,
                            -2**64, 10**100])
INTS = st.one_of(st.integers(), ODD_INTS)
ODD_NAMES = st.sampled_from([
    "", "\0", "a\0b", "/", "..", ".", "../x", "/etc/passwd", "a/../../b", "%2e%2e", "#", "%23",
    "\ud800", "a\udfffb", "\U0001f600" * 63, "é" * 127, "é" * 128, "a" * 255, "a" * 256,
    "a" * 10_000, " ", "\n", "-rf", "names", "lock",
])
NAMES = st.one_of(ODD_NAMES, st.text(max_size=40),
                  st.text(st.characters(exclude_categories=()), max_size=20),
                  st.binary(max_size=10), INTS, WRONG_TYPES)
ADDRS = st.one_of(
    st.integers(WIN_LO - 4 * PAGE, WIN_HI + 4 * PAGE),
    st.integers(WIN_LO, WIN_HI).map(lambda a: a - a % PAGE),
    INTS, WRONG_TYPES,
)
SIZES = st.one_of(st.integers(-2**70, 2**70), st.sampled_from([0, -PAGE, PAGE, 2**64 - PAGE,
                                                               WIN_HI - WIN_LO]), WRONG_TYPES)
MODES = st.one_of(st.integers(-2**40, 2**40), st.sampled_from([0o600, 0o7777, -1]), WRONG_TYPES)
TYPES = st.one_of(st.sampled_from([os.O_RDONLY, os.O_WRONLY, os.O_RDWR, 3, -1, os.O_CREAT,
                                   os.O_RDWR | os.O_CREAT]), INTS, WRONG_TYPES)


class Ctx:
    """Objects a test draws ids from: live ones, deleted ones, and a dead pid."""

    def __init__(self) -> None:
        self.vid = vaspace.vas_create("live-vas", 0o600)
        self.sid = vaspace.vas_seg_create("live-seg", SEG_BASE, SEG_BASE + PAGE, 0o600)
        self.vid2 = vaspace.vas_create("live-vas-2", 0o600)
        vaspace.vas_seg_attach(self.vid2, self.sid, os.O_RDWR)
        gone_v = vaspace.vas_create("gone-vas", 0o600)
        gone_s = vaspace.vas_seg_create("gone-seg", SEG_BASE, SEG_BASE + PAGE, 0o600)
        vaspace.vas_delete(gone_v)
        vaspace.vas_seg_delete(gone_s)
        self.gone_vid, self.gone_sid = gone_v, gone_s
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        self.dead_pid = pid


def ids(kind: str) -> st.SearchStrategy:
    """Ids: live, deleted, absent, out of range, wrong type."""
    return st.one_of(st.sampled_from([kind, f"gone_{kind}", "other"]), INTS, WRONG_TYPES)


def resolve(ctx: Ctx, value: Any) -> Any:
    """Turn the symbolic ids drawn by ``ids`` into real ones."""
    if isinstance(value, str) and value in ("vid", "sid", "gone_vid", "gone_sid"):
        return getattr(ctx, value)
    if value == "other" and isinstance(value, str):
        return ctx.vid2
    if isinstance(value, str) and value == "dead_pid":
        return ctx.dead_pid
    return value


PIDS = st.one_of(st.sampled_from([0, "self", "dead_pid", -1, 2**31, 2**31 - 1, 2**64]),
                 WRONG_TYPES)

ATTRS = st.one_of(
    st.builds(vaspace.Attr, MODES, INTS, INTS),
    st.builds(vaspace.Attr, st.just(0o600), st.just(os.geteuid()), st.just(os.getegid())),
    WRONG_TYPES, st.tuples(st.integers(), st.integers(), st.integers()),
)

# ------------------------------------------------ the calls and their documented errno

E = errno
CALLS: dict[str, tuple[Callable[..., Any], tuple[st.SearchStrategy, ...], set[int]]] = {
    "vas_create": (vaspace.vas_create, (NAMES, MODES), {E.EINVAL, E.EEXIST}),
    "vas_delete": (vaspace.vas_delete, (ids("vid"),), {E.EINVAL, E.EBUSY, E.EACCES, E.EPERM}),
    "vas_find": (vaspace.vas_find, (NAMES,), {E.EINVAL, E.ESRCH}),
    "vas_getattr": (vaspace.vas_getattr, (ids("vid"),), {E.EINVAL}),
    "vas_setattr": (vaspace.vas_setattr, (ids("vid"), ATTRS), {E.EINVAL, E.EACCES, E.EPERM}),
    "vas_attach": (vaspace.vas_attach, (PIDS, ids("vid"), TYPES),
                   {E.EINVAL, E.ESRCH, E.EPERM, E.EACCES, E.EBUSY, E.EFAULT}),
    "vas_detach": (vaspace.vas_detach, (PIDS, ids("vid")), {E.EINVAL, E.ESRCH, E.EPERM, E.EBUSY}),
    "vas_switch": (vaspace.vas_switch, (ids("vid"),), {E.EINVAL, E.EFAULT}),
    "vas_seg_create": (vaspace.vas_seg_create, (NAMES, ADDRS, ADDRS, MODES),
                       {E.EINVAL, E.EEXIST, E.EFAULT}),
    "segment_create_sz": (vaspace.segment_create_sz, (NAMES, ADDRS, SIZES, MODES),
                          {E.EINVAL, E.EEXIST, E.EFAULT}),
    "vas_seg_delete": (vaspace.vas_seg_delete, (ids("sid"),),
                       {E.EINVAL, E.EBUSY, E.EACCES, E.EPERM}),
    "vas_seg_find": (vaspace.vas_seg_find, (NAMES,), {E.EINVAL, E.ESRCH}),
    "vas_seg_attach": (vaspace.vas_seg_attach, (ids("vid"), ids("sid"), TYPES),
                       {E.EINVAL, E.EACCES, E.EBUSY, E.EFAULT}),
    "vas_seg_detach": (vaspace.vas_seg_detach, (ids("vid"), ids("sid")),
                       {E.EINVAL, E.EBUSY, E.EACCES}),
    "vas_seg_getattr": (vaspace.vas_seg_getattr, (ids("sid"),), {E.EINVAL}),
    "vas_seg_setattr": (vaspace.vas_seg_setattr, (ids("sid"), ATTRS),
                        {E.EINVAL, E.EACCES, E.EPERM}),
    "proc_vas": (vaspace.proc_vas, (PIDS,), {E.EINVAL, E.ESRCH}),
    "proc_maps": (vaspace.proc_maps, (PIDS, ids("vid")), {E.EINVAL, E.ESRCH}),
    "vas_name": (vaspace.vas_name, (ids("vid"),), {E.EINVAL}),
    "seg_name": (vaspace.seg_name, (ids("sid"),), {E.EINVAL}),
    "vas_segments": (vaspace.vas_segments, (ids("vid"),), {E.EINVAL}),
    "seg_region": (vaspace.seg_region, (ids("sid"),), {E.EINVAL}),
    "vas_holders": (vaspace.vas_holders, (ids("vid"),), {E.EINVAL}),
    "VAS": (vaspace.VAS, (ids("vid"),), {E.EINVAL}),
    "Segment": (vaspace.Segment, (ids("sid"),), {E.EINVAL}),
    "VAS.find": (vaspace.VAS.find, (NAMES,), {E.EINVAL, E.ESRCH}),
    "Segment.create": (lambda n, a, s, m: vaspace.Segment.create(n, a, size=s, mode=m),
                       (NAMES, ADDRS, SIZES, MODES), {E.EINVAL, E.EEXIST, E.EFAULT}),
}


class Hang(Exception):
    pass


@contextmanager
def alarm(seconds: int) -> Iterator[None]:
    """Turn a hang into an exception (a call must never block)."""

    def fire(signum: int, frame: Any) -> None:
        raise Hang(f"call still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _undo(ctx: Ctx) -> None:
    """Undo what a call that succeeded did, so the next example starts the same."""
    vaspace.vas_switch(0)
    for pv in vaspace.proc_vas(0):
        vaspace.vas_detach(0, pv.vid)
    keep_v, keep_s = {ctx.vid, ctx.vid2}, {ctx.sid}
    for vid in vaspace.vas_ids():
        if vid not in keep_v:
            vaspace.vas_delete(vid)
    if ctx.vid in vaspace.vas_ids():
        for link in vaspace.vas_segments(ctx.vid):
            vaspace.vas_seg_detach(ctx.vid, link.sid)
    for sid in vaspace.seg_ids():
        if sid not in keep_s:
            for vid in vaspace.vas_ids():
                if sid in {link.sid for link in vaspace.vas_segments(vid)}:
                    vaspace.vas_seg_detach(vid, sid)
            vaspace.vas_seg_delete(sid)
    # A call that succeeded may have deleted a live object: make it again.
    if vaspace.vas_ids() != sorted(keep_v):
        for vid in vaspace.vas_ids():
            vaspace.vas_delete(vid)
        ctx.vid = vaspace.vas_create("live-vas", 0o600)
        ctx.vid2 = vaspace.vas_create("live-vas-2", 0o600)
    if vaspace.seg_ids() != [ctx.sid]:
        for vid in vaspace.vas_ids():
            for link in vaspace.vas_segments(vid):
                vaspace.vas_seg_detach(vid, link.sid)
        for sid in vaspace.seg_ids():
            vaspace.vas_seg_delete(sid)
        ctx.sid = vaspace.vas_seg_create("live-seg", SEG_BASE, SEG_BASE + PAGE, 0o600)
    for kind, oid in (("vas", ctx.vid), ("vas", ctx.vid2), ("seg", ctx.sid)):
        getter = vaspace.vas_getattr if kind == "vas" else vaspace.vas_seg_getattr
        setter = vaspace.vas_setattr if kind == "vas" else vaspace.vas_seg_setattr
        if getter(oid) != vaspace.Attr(0o600, os.geteuid(), os.getegid()):
            setter(oid, vaspace.Attr(0o600, os.geteuid(), os.getegid()))
    if not vaspace.vas_segments(ctx.vid2):
        vaspace.vas_seg_attach(ctx.vid2, ctx.sid, os.O_RDWR)


def _stable(tree: dict[str, tuple]) -> dict[str, tuple]:
    # Attachment records and lazy-attach requests belong to processes, not objects.
    return {k: v for k, v in tree.items() if not k.startswith(("procs", "pending"))}


@pytest.fixture
def ctx(registry: str) -> Ctx:
    return Ctx()


@needs_root  # objects of any mode: only root can read and delete them all
@pytest.mark.parametrize("call", sorted(CALLS))
def test_bad_input_gets_a_documented_error(registry: str, ctx: Ctx, call: str) -> None:
    fn, strategies, allowed = CALLS[call]

    @SETTINGS
    @given(st.tuples(*strategies))
    def prop(args: tuple) -> None:
        args = tuple(os.getpid() if a == "self" and isinstance(a, str) else resolve(ctx, a)
                     for a in args)
        before = _stable(snapshot(registry))
        try:
            with alarm(5):
                fn(*args)
        except OSError as exc:
            assert exc.errno in allowed, (call, args, exc)
            assert _stable(snapshot(registry)) == before, (call, args, exc)
        except (TypeError, ValueError) as exc:
            assert _stable(snapshot(registry)) == before, (call, args, exc)
        finally:
            _undo(ctx)

    prop()


# ------------------------------------------------ the C core, in a child


def _fuzz_core(seed: int, rounds: int) -> int:
    """Call every _core function with junk; return how many calls were made.

    Addresses stay inside the window, where nothing but vaspace maps, so a
    call that succeeds cannot pull the interpreter's own memory away.
    """
    import random

    rng = random.Random(seed)
    junk = [None, 1.5, "x", b"x", [], (), {}, True, -1, 0, 2**31, 2**63, 2**64, -2**63, 10**30]

    def addr() -> Any:
        return rng.choice([rng.randrange(WIN_LO, WIN_HI), rng.randrange(WIN_LO, WIN_HI, PAGE),
                           WIN_LO, WIN_HI - PAGE, rng.choice(junk)])

    def length() -> Any:
        return rng.choice([PAGE, rng.randrange(1, 1 << 30), 0, -1, 2**64 - 1, rng.choice(junk)])

    def moves() -> Any:
        return rng.choice([
            [(addr(), addr(), length()) for _ in range(rng.randrange(4))],
            [rng.choice(junk)], rng.choice(junk), [(1, 2)], [(1, 2, 3, 4)], "abc", [[1, 2, 3]],
        ])

    def vid() -> Any:
        return rng.choice([rng.randrange(-5, 10), rng.choice(junk)])

    calls = [
        lambda: _core.reserve(addr(), length()),
        lambda: _core.unmap(addr(), length()),
        lambda: _core.plug(addr(), length()),
        lambda: _core.map_shared(rng.choice([-1, 0, 999, rng.choice(junk)]), addr(), length(),
                                 rng.choice([0, 1, 3, 4, 7, -1, rng.choice(junk)])),
        lambda: _core.move(addr(), addr(), length()),
        lambda: _core.run_plan(moves(), vid()),
        lambda: _core.plan_put(vid(), vid(), moves()),
        lambda: _core.switch_fast(vid()),
        lambda: _core.set_active(vid()),
        lambda: _core.forget_tid(rng.choice([0, -1, os.getpid(), rng.choice(junk)])),
        lambda: _core.busy(rng.choice([1, -1, 0, 2**62, rng.choice(junk)])),
        _core.active, _core.threads_in_vas, _core.thread_vids, _core.plan_clear,
    ]
    n = 0
    for _ in range(rounds):
        try:
            rng.choice(calls)()
        except (OSError, TypeError, ValueError, OverflowError, SystemError):
            pass
        n += 1
    _core.reset_after_fork()
    return n


def test_core_survives_junk_in_a_child() -> None:
    """No junk argument makes the C core crash (segfault) or hang."""
    for seed in range(4):
        out = run_child(_fuzz_core, seed, 3000, timeout=60)
        assert out.signal is None and not out.hung, (seed, out)
        assert out.get() == 3000


def test_public_switch_survives_junk_in_a_child(registry: str) -> None:
    """vas_switch goes straight into C: junk ids from a thread inside a VAS, in a child."""
    vid = vaspace.vas_create("in", 0o600)
    sid = vaspace.vas_seg_create("s", SEG_BASE, SEG_BASE + PAGE, 0o600)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)

    def junk_switches() -> list[str]:
        vaspace.vas_attach(0, vid, os.O_RDWR)
        vaspace.vas_switch(vid)
        seen = set()
        for arg in [None, 1.5, "1", -1, 0.0, 2**31, 2**63, 2**64, -2**63, True, [vid], vid + 1]:
            try:
                vaspace.vas_switch(arg)
            except OSError as exc:
                seen.add(f"{exc.errno}")
            except (TypeError, ValueError) as exc:
                seen.add(type(exc).__name__)
            assert vaspace.active_vas() in (0, vid)
            vaspace.vas_switch(vid)
        vaspace.vas_switch(0)
        return sorted(seen)

    out = run_child(junk_switches, timeout=30)
    assert out.signal is None and not out.hung
    assert out.get() == [str(errno.EINVAL)]


def test_handles_of_deleted_objects_refuse_cleanly(registry: str) -> None:
    """A handle outlives its object: every use then fails with EINVAL, nothing crashes."""
    seg = vaspace.Segment.create("h-seg", SEG_BASE, size=PAGE)
    vas = vaspace.VAS.create("h-vas")
    vas.attach_segment(seg)
    vas.delete()
    seg.delete()
    before = snapshot(registry)
    uses = [
        lambda: vas.attr, lambda: vas.segments(), lambda: vas.attach(), lambda: vas.detach(),
        lambda: vas.holders(), lambda: vas.attach_segment(seg), lambda: vas.delete(),
        lambda: seg.attr, lambda: seg.delete(), lambda: vas.detach_segment(seg),
        lambda: setattr(seg, "attr", vaspace.Attr(0o600, 0, 0)),
    ]
    for use in uses:
        with pytest.raises(OSError) as e:
            use()
        assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        seg.view()  # not visible anywhere: EFAULT, never a segfault
    assert e.value.errno == errno.EFAULT
    with pytest.raises(OSError):
        with vas.active():
            pass
    assert snapshot(registry) == before


VALID_NAMES = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), min_size=1,
            max_size=80),
    st.sampled_from(["..", ".", "/", "%2F", "%", "#", "#" + "0" * 64, "a" * 255, "é" * 127,
                     "A", "a", ".a", "%2Ea"]),
).filter(lambda n: len(n.encode()) <= 255)


@SETTINGS
@given(st.lists(VALID_NAMES, min_size=2, max_size=4))
def test_valid_names_round_trip_and_never_collide(registry: str, names: list[str]) -> None:
    """Every valid name finds its own object; distinct names never share one (encoding, hashing)."""
    made: dict[str, int] = {}
    try:
        for name in names:
            try:
                made[name] = vaspace.vas_create(name, 0o600)
            except OSError as exc:
                assert exc.errno == errno.EEXIST and name in made, (name, exc)
        for name, vid in made.items():
            assert vaspace.vas_find(name) == vid and vaspace.vas_name(vid) == name
        assert len(set(made.values())) == len(made)
        assert sorted(vaspace.vas_ids()) == sorted(made.values())
    finally:
        for vid in made.values():
            vaspace.vas_delete(vid)
