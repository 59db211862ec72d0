"""Switching the calling thread between VASes by moving mappings.

A switch from view A to view B parks (mremaps away) the mappings A needs
and B does not, and places (mremaps in) those B needs; mappings both share
stay put.  mremap carries the page tables along, so nothing is re-faulted.

The window shows the union of what the process's threads' active VASes
need.  A mapping another thread still uses is never parked, and a switch
that needs an address range that another thread's VAS occupies with a
different mapping fails with EFAULT; the thread stays where it was.

The slow path below computes a move plan, and caches in C the plan between
the two VASes alone (and its reverse), so the next switch between the same
two VASes is one C call with no Python logic.  C knows which mappings each
VAS uses (``_core.vas_members``), so the cached plan runs even while other
threads are inside VASes, as long as it parks none of their mappings.
Moving a segment costs two mremaps and nothing else (docs/switch.md).
"""

from __future__ import annotations

import errno
import threading
import warnings

from .. import _core
from ..args import exact_int
from ..errors import invalid, vas_error
from ..registry import objects
from ..registry import vas as vasreg
from . import attach
from .space import Mapping
from .state import State, state


def finish(vid: object, done: int) -> None:
    """After the C fast path: run the slow path if it declined (0); guard
    a thread that entered a VAS from the original AS (2, or any slow entry).

    ``_core.vas_switch`` calls this; ``vid`` may be anything the caller passed.
    """
    if not done:
        given, vid = vid, exact_int(vid)
        if vid is None:
            raise invalid(f"bad VAS id {given!r}")
        _switch_slow(vid)
    if vid:
        _guard_thread()


# The switch itself is ``_core.vas_switch`` (api.vas_switch); this is its slow path.
_core.set_slow_path(finish)


class _ThreadGuard:
    """Lives in a thread-local slot; when the thread ends, leaves its VAS.

    CPython destroys a thread's locals in that thread as it exits, before
    ``join()`` returns, so the thread's mappings are parked (and its slot in
    C freed) exactly when it goes away.
    """

    def __del__(self) -> None:
        try:
            if _core.active():
                _switch_slow(0)
        except BufferError as exc:
            # Views the thread made outlive it: its VAS's mappings stay placed
            # (pinned) until they are released; say so, as nobody can catch it.
            warnings.warn(f"thread exited inside a VAS: {exc}", RuntimeWarning, stacklevel=1)
        except Exception:  # noqa: BLE001 - a dying thread cannot report; the prune catches it
            pass


_local = threading.local()


def _guard_thread() -> None:
    if getattr(_local, "guard", None) is None:
        _local.guard = _ThreadGuard()


def _switch_slow(vid: int) -> None:
    if isinstance(vid, bool) or not 0 <= vid <= objects.MAX_ID:
        raise invalid(f"bad VAS id {vid!r}")
    attach.sync()
    st = state()
    with st.changing(attachments=False):  # prunes threads that died inside a VAS
        cur = _core.active()
        if vid == cur:
            return
        if vid and vid not in st.attachments:
            objects.check_id(vasreg.VAS, vid)
            raise invalid(f"VAS id {vid} is not attached to this process")
        threads = _core.thread_vids()
        placed = st.placed()
        if not threads and not placed:
            # No thread is inside a VAS and nothing is placed (a thread's first
            # entry, the first answer of a fresh process): the general plan
            # below reduces to placing the target's mappings; the same moves
            # and the same cached plans, with far less Python run for the
            # first time (issue 11 §3).
            target = st.attachments[vid].maps  # vid != 0: cur is 0 (no thread inside)
            tokens = [m.token for m in _ordered(target)]
            moves = [(t, True, False) for t in tokens]
            _core.run_plan(moves, vid)
            for m in target:
                m.placed = True
            # _cache(0, vid, set(), set(target))'s two plans, built here: the
            # way in places each mapping, the way back parks each one and
            # plugs its home (nothing refills it in the original AS).
            _core.plan_put(0, vid, moves)
            _core.plan_put(vid, 0, [(t, False, False) for t in tokens])
            return
        me = threading.get_native_id()
        others = {tid: v for tid, v in threads if tid != me}
        target = set(st.attachments[vid].maps) if vid else set()
        kept = set().union(*(st.attachments[v].maps for v in others.values()
                             if v in st.attachments))
        to_park = placed - target - kept
        to_place = target - placed
        _check_conflicts(st, to_place, placed - to_park, others)
        if to_park:
            st.space.audit_parking()
        _core.run_plan(_plan(to_park, to_place), vid)
        for m in to_park:
            m.placed = False
        for m in to_place:
            m.placed = True
        cur_att = st.attachments.get(cur)  # None if _core.set_active was misused
        if not cur or (cur_att and placed == set(cur_att.maps) | kept):
            # The window held exactly the union of the threads' VASes: the
            # plan between the two VASes alone is right whenever C finds that
            # it parks nothing another thread uses (and places over nothing).
            here = set(cur_att.maps) if cur_att else set()
            _cache(cur, vid, here - target, target - here)


def _ordered(maps: set[Mapping]) -> list[Mapping]:
    return sorted(maps, key=lambda m: m.start)


def _check_conflicts(st: State, to_place: set[Mapping], staying: set[Mapping],
                     others: dict[int, int]) -> None:
    for m in to_place:
        for s in staying:
            if m.overlaps(s):
                users = [tid for tid, v in others.items()
                         if v in st.attachments and s in st.attachments[v].maps]
                raise vas_error(
                    errno.EFAULT,
                    f"segment {m.name!r} at [{m.start:#x}, {m.end:#x}) collides with segment "
                    f"{s.name!r} in use by thread(s) {users or '?'} of this process",
                )


def _plan(to_park: set[Mapping], to_place: set[Mapping]) -> list[tuple[int, bool, bool]]:
    """Moves for a switch, as (token, place, keep_hole): park first (freeing
    the ranges), then place.

    Each move is one mremap.  A parked mapping goes into its parking slot,
    which is a hole while it is placed; a placed mapping leaves its slot a
    hole (``_core`` plugs it only in plugged mode).  A parked mapping's home
    is left unplugged when a placed mapping of the same range refills it in
    the same plan (the common case of VASes whose segments share
    addresses), so a conflicting segment costs exactly two mremaps; a home
    nothing refills (a switch to vid 0) is plugged, as the window must be.
    """
    refilled = {(m.start, m.end) for m in to_place}
    moves = [(m.token, False, (m.start, m.end) in refilled) for m in _ordered(to_park)]
    moves += [(m.token, True, False) for m in _ordered(to_place)]
    return moves


def _cache(cur: int, vid: int, to_park: set[Mapping], to_place: set[Mapping]) -> None:
    _core.plan_put(cur, vid, _plan(to_park, to_place))
    _core.plan_put(vid, cur, _plan(to_place, to_park))


def active() -> int:
    """The calling thread's active VAS id (0: the original AS)."""
    return _core.active()
