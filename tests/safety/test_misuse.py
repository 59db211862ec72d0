"""Every public call of the API, ``Segment``, ``VAS`` and views, in every wrong state.

Each state is built in its own child; there every public call runs with the
state's objects and with junk in each argument.  The rule: no call kills
the child, and every refusal is one of the documented exception types with a
message.  Calls may succeed (and change the state); the walk goes on.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import pytest
from viewutil import PAGE, safely, world

import vaspace as v
from vaspace import _core, api
from vaspace_testing import SEG_BASE

ALLOWED = (OSError, TypeError, ValueError, BufferError, OverflowError)
JUNK: list[Any] = [None, "x", b"x", -1, 0, 2**64, 1.5, True, [], SEG_BASE + 1]


def _try(what: str, fn: Callable[..., Any], *args: Any) -> str:
    """Call; return '' on success or the exception's type; fail on a bad refusal."""
    try:
        fn(*args)
    except ALLOWED as exc:
        assert str(exc).strip(), f"{what}{args!r}: {type(exc).__name__} without a message"
        return type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - reported with the call that raised it
        raise AssertionError(f"{what}{args!r} raised {type(exc).__name__}: {exc}") from exc
    return ""


def _api_calls() -> list[tuple[str, Callable[..., Any], int]]:
    out = []
    for name in sorted(api.__all__):
        fn = getattr(api, name)
        try:
            arity = len(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            arity = 1  # vas_switch is C: one positional argument
        out.append((name, fn, arity))
    return out


def _junk_walk() -> int:
    """Each API function with junk in each argument position (others valid-ish)."""
    n = 0
    for name, fn, arity in _api_calls():
        for pos in range(arity):
            for junk in JUNK:
                args = [1] * arity
                args[pos] = junk
                _try(name, fn, *args)
                n += 1
    return n


def _handle_walk(vas: v.VAS, seg: v.Segment) -> list[str]:
    """Every Segment and VAS method with the state's objects."""
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("seg.view", seg.view), ("seg.array", seg.array),
        ("seg.array(bad dtype)", lambda: seg.array("not-a-dtype")),
        ("seg.array(too big)", lambda: seg.array("u1", (seg.size + 1,))),
        ("seg.release_views", seg.release_views), ("seg.attr", lambda: seg.attr),
        ("seg.attr=junk", lambda: setattr(seg, "attr", 5)),
        ("vas.release_views", vas.release_views), ("vas.segments", vas.segments),
        ("vas.seg_links", vas.seg_links), ("vas.holders", vas.holders),
        ("vas.attach(junk)", lambda: vas.attach(99)), ("vas.attach", vas.attach),
        ("vas.attach_segment", lambda: vas.attach_segment(seg)),
        ("vas.attach_segment(junk)", lambda: vas.attach_segment(-5)),
        ("vas.active", lambda: vas.active().__enter__()),
        ("switch 0", lambda: v.vas_switch(0)),
        ("seg.view write", lambda: seg.view().__setitem__(0, 1)),
        ("vas.detach_segment", lambda: vas.detach_segment(seg)),
        ("vas.detach", vas.detach), ("vas.detach again", vas.detach),
        ("seg.delete", seg.delete), ("vas.delete", vas.delete),
        ("Segment(junk)", lambda: v.Segment(10**9)), ("VAS.find junk", lambda: v.VAS.find("")),
        ("Segment.create bad", lambda: v.Segment.create("z", SEG_BASE + 1, size=PAGE)),
    ]
    return [f"{what}:{_try(what, fn)}" for what, fn in calls]


def _state(name: str) -> tuple[v.VAS, v.Segment]:
    """Build one wrong state; returns the VAS and segment the walk works on."""
    if name == "fresh":
        return world("a", attach=False)
    vas, seg = world("a")
    if name == "attached":
        return vas, seg
    v.vas_switch(vas.id)
    if name == "inside_with_view":
        _keep.append(seg.view())
        _keep.append(seg.array("u8"))
    elif name == "switched_away":
        v.vas_switch(0)
    elif name == "detached":
        v.vas_switch(0)
        vas.detach()
    elif name == "deleted":
        v.vas_switch(0)
        vas.detach()
        vas.detach_segment(seg)
        vas.delete()
        seg.delete()
    elif name == "another_world":
        b, _ = world("b")
        v.vas_switch(b.id)
        _keep.append(v.Segment.find("b-seg").view())
    elif name == "view_released":
        with seg.view() as mv:
            mv[0] = 1
        _keep.append(mv)
    return vas, seg


_keep: list[Any] = []  # views the state holds for the whole walk

STATES = ["fresh", "attached", "inside_with_view", "switched_away", "detached", "deleted",
          "another_world", "view_released"]


@pytest.mark.parametrize("state", STATES)
def test_every_call_in_every_state(registry: str, state: str) -> None:
    def case() -> list[str]:
        vas, seg = _state(state)
        out = _handle_walk(vas, seg)
        for mv in _keep:  # the views the state holds are still valid, or cleanly dead
            _try("hold[0]", lambda mv=mv: mv[0])
        _try("switch 0", v.vas_switch, 0)
        return out
    results = dict(r.split(":") for r in safely(case))
    for what, exc in EXPECT.get(state, {}).items():
        assert results[what] == exc, (state, what, results[what])


# What some calls must do in some states (the rest: any clean exception).
EXPECT = {
    "fresh": {"seg.view": "OSError", "vas.release_views": "", "vas.detach again": "OSError"},
    "inside_with_view": {"switch 0": "BufferError", "vas.detach": "OSError",
                         "seg.release_views": "BufferError", "seg.delete": "OSError",
                         "seg.view write": ""},
    "switched_away": {"seg.view": "OSError", "switch 0": ""},
    "detached": {"seg.view": "OSError", "vas.detach again": "OSError"},
    "deleted": {"seg.view": "OSError", "vas.attach": "OSError", "seg.delete": "OSError"},
    "another_world": {"seg.view": "OSError", "switch 0": "BufferError"},
    "view_released": {"switch 0": "", "vas.detach": ""},
}


def test_junk_in_every_api_argument(registry: str) -> None:
    def case() -> int:
        world("a")
        return _junk_walk()
    assert safely(case) > len(api.__all__)


def test_view_exporter_misuse(registry: str) -> None:
    """The exporter type itself, used wrongly, raises and never crashes."""
    def case() -> list[str]:
        vas, seg = world("a")
        token = _core.mappings()[0][0]
        out = [_try("WindowView parked", memoryview, _core.WindowView(token))]
        v.vas_switch(vas.id)
        wv = _core.WindowView(token)
        out.append(_try("re-init to junk", wv.__init__, 2**63))
        mv = memoryview(wv)
        out.append(_try("re-init while exported", wv.__init__, token))
        out.append(_try("uninitialised", memoryview, _core.WindowView.__new__(_core.WindowView)))
        out.append(_try("switch with export", v.vas_switch, 0))
        mv.release()
        v.vas_switch(0)
        return out
    assert safely(case) == ["ValueError", "ValueError", "BufferError", "ValueError",
                            "BufferError"]


def test_core_refuses_addresses_outside_its_ranges(registry: str) -> None:
    """Private, but importable: _core must not unmap the interpreter's memory."""
    def case() -> list[str]:
        world("a")  # the window and parking range are reserved
        heap = id(object()) & ~(PAGE - 1)
        code = ctypes_addr()
        out = []
        for addr in (heap, code, 0, PAGE):
            out.append(_try("plug", _core.plug, addr, PAGE))
            out.append(_try("unmap", _core.unmap, addr, PAGE))
            out.append(_try("map_shared", _core.map_shared, 0, addr, PAGE, 1, addr, "x"))
            out.append(_try("reserve", _core.reserve, addr, PAGE))
        out.append(_try("move", _core.move, 12345, True))
        out.append(_try("run_plan", _core.run_plan, [(12345, True, False)], 1))
        return out
    got = safely(case)
    for i in range(0, len(got) - 2, 4):
        addr_results = got[i:i + 4]
        plug, unmap, map_shared, reserve = addr_results
        assert (plug, unmap, map_shared) == ("ValueError",) * 3, (i, addr_results)
        assert reserve in ("FileExistsError", "ValueError"), (i, addr_results)
    assert got[-2:] == ["ValueError", "ValueError"]


def ctypes_addr() -> int:
    """A page of the interpreter's own code."""
    import ctypes

    return ctypes.cast(ctypes.pythonapi.Py_Initialize, ctypes.c_void_p).value & ~(PAGE - 1)


def test_thread_state_misuse(registry: str) -> None:
    """Many threads entering one VAS, each with a view it releases before leaving."""
    import threading

    def case() -> str:
        vas, seg = world("a")
        errors: list[str] = []

        def worker() -> None:
            try:
                with vas.active(), seg.view() as mv:
                    mv[0] = 1
            except ALLOWED as exc:
                errors.append(type(exc).__name__)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        v.vas_switch(0)
        os.sched_yield()
        return ",".join(sorted(set(errors)))
    assert safely(case) == ""  # each view dies before its thread leaves the VAS


def _core_junk_walk(tokens: list[int]) -> int:
    """Every _core function, arities 0..6, junk (and live tokens) in every position."""
    values: list[Any] = [*tokens, [(t, True, False) for t in tokens],
                         None, "x", b"x", 1.5, [], -1, 0, 1, 2**63, 2**64, PAGE, SEG_BASE,
                         id(object()) & ~(PAGE - 1), [(1, True, False)], [(1, 2, 3)]]
    names = sorted(n for n in dir(_core) if not n.startswith("_") and not n.isupper()
                   and n not in ("reset_after_fork", "set_slow_path"))
    n = 0
    for name in names:
        fn = getattr(_core, name)
        for arity in range(7):
            for pos in range(max(arity, 1)):
                for junk in values:
                    args = [SEG_BASE] * arity
                    if arity:
                        args[pos] = junk
                    _try(name, fn, *args)
                    n += 1
    return n


def test_core_junk_never_crashes(registry: str) -> None:
    """With a segment mapped and viewed, junk into every _core function only raises."""
    def case() -> int:
        vas, seg = world("a")
        world("b", start=SEG_BASE + 64 * PAGE)  # attached, parked
        v.vas_switch(vas.id)
        mv = seg.view()
        mv[0] = 1
        n = _core_junk_walk([m[0] for m in _core.mappings()])
        assert mv[0] == 1  # the view survived every call
        return n
    assert safely(case) > 1000


def test_fixed_map_refuses_addresses_outside_the_shm_range(registry: str, tmp_path) -> None:
    """vaspace.shared_memory's exporter maps nowhere but the shared-memory range."""
    from vaspace.window import shm_range

    def case() -> list[str]:
        world("a")  # the window and parking range are reserved
        lo, hi = shm_range()
        out = [_try("set_fixed_range over the window", _core.set_fixed_range, SEG_BASE, PAGE)]
        _core.set_fixed_range(lo, hi - lo)
        fd = os.open(tmp_path / "data", os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(fd, PAGE)
        for addr in (id(object()) & ~(PAGE - 1), ctypes_addr(), 0, PAGE, SEG_BASE, lo - PAGE):
            out.append(_try("FixedMap", _core.FixedMap, fd, addr, PAGE))
        fm = _core.FixedMap(fd, lo, PAGE)
        out.append(_try("FixedMap twice", _core.FixedMap, fd, lo, PAGE))
        fm.close()
        return out
    assert safely(case) == ["ValueError"] * 7 + ["FileExistsError"]
