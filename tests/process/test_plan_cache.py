"""The cached move plans: used when they are valid, dropped when they are not.

A switch the slow path planned is cached in C, so the next switch between
the same two VASes is one C call (``switch_fast`` returns nonzero).  The
slow path holds the fast path off while it runs and must let it back in
afterwards; and a plan names mappings and parking slots, so an attach or a
detach, which changes them, must drop every cached plan.
"""

from __future__ import annotations

import errno
import os

import vaspace as v
from vaspace import _core
from vaspace.process import state as statemod
from vaspace_testing import SEG_BASE, in_child, thread_inside
from vaspace_testing import peek as peek_at
from vaspace_testing import vas_with_byte as world


def peek() -> int:
    return peek_at(SEG_BASE)


def test_warm_switch_takes_the_fast_path(registry: str) -> None:
    a, b = world("a", 0xA), world("b", 0xB)
    v.vas_switch(a)
    v.vas_switch(b)  # planned by the slow path, and cached both ways
    assert _core.plan_get(b, a) is not None and _core.plan_get(a, b) is not None
    # The slow path let the fast path back in: these are single C calls.
    assert _core.switch_fast(a) == 1 and v.active_vas() == a and peek() == 0xA
    assert _core.switch_fast(b) == 1 and v.active_vas() == b and peek() == 0xB
    assert _core.switch_fast(0) == 1 and v.active_vas() == 0
    assert _core.switch_fast(a) == 2  # entered from the original AS
    v.vas_switch(0)


def test_a_slow_switch_keeps_the_other_plans(registry: str) -> None:
    """A switch changes no mapping's identity: planning a new pair drops no cached plan."""
    a, b, c = world("a", 0xA), world("b", 0xB), world("c", 0xC)
    v.vas_switch(a)
    v.vas_switch(b)
    v.vas_switch(c)  # a new pair (b, c): the slow path
    assert _core.plan_get(a, b) is not None and _core.plan_get(b, c) is not None
    v.vas_switch(a)
    assert _core.switch_fast(b) == 1 and peek() == 0xB  # still one C call
    v.vas_switch(0)


def test_attach_and_detach_drop_cached_plans(registry: str) -> None:
    a, b = world("a", 0xA), world("b", 0xB)
    v.vas_switch(a)
    v.vas_switch(b)
    v.vas_switch(a)
    assert _core.plan_get(a, b) is not None
    v.vas_detach(0, b)
    assert _core.plan_get(a, b) is None and _core.plan_get(b, a) is None
    v.vas_attach(0, b, os.O_RDWR)  # a fresh mapping in a fresh parking slot
    v.vas_switch(b)
    assert peek() == 0xB
    v.vas_switch(a)
    assert peek() == 0xA
    c = world("c", 0xC)  # an attach drops them too
    assert _core.plan_get(a, b) is None
    v.vas_switch(c)
    assert peek() == 0xC
    v.vas_switch(0)


def test_fast_path_stands_aside_while_state_changes(registry: str) -> None:
    """While a slow path holds the state (even nested), no cached plan runs."""
    a, b = world("a", 0xA), world("b", 0xB)
    v.vas_switch(a)
    v.vas_switch(b)
    v.vas_switch(a)
    st = statemod.state()
    with st.changing(attachments=False):
        with st.changing(attachments=False):  # nested, as attach inside a switch's sync
            assert _core.switch_fast(b) == 0
        assert _core.switch_fast(b) == 0  # the outer one still holds it
        assert v.active_vas() == a and peek() == 0xA
    assert _core.switch_fast(b) == 1 and peek() == 0xB
    v.vas_switch(0)


def _switch_while_another_thread_is_inside(a: int, b: int) -> dict:
    v.vas_attach(0, a, os.O_RDWR)  # a forked child starts with no attachments
    v.vas_attach(0, b, os.O_RDWR)
    v.vas_switch(a)
    v.vas_switch(0)  # the plans 0 <-> a are cached now
    assert _core.plan_get(0, a) is not None
    seen: dict = {}

    def look() -> None:
        seen["other_view"] = peek()

    with thread_inside(b, before_leaving=look):  # b maps the same range with another segment
        try:
            v.vas_switch(a)  # the cached plan would move a's mapping over b's
            seen["switched"] = True
        except OSError as exc:
            seen["errno"] = exc.errno
        seen["active"] = v.active_vas()
    return seen


def test_cached_plan_not_run_while_another_thread_is_inside(registry: str) -> None:
    """A cached plan assumes the window holds only this thread's VAS."""
    a, b = world("a", 0xA), world("b", 0xB)
    v.vas_detach(0, a)
    v.vas_detach(0, b)
    out = in_child(_switch_while_another_thread_is_inside, a, b).get()
    assert out == {"errno": errno.EFAULT, "active": 0, "other_view": 0xB}


