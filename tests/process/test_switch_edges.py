"""vas_switch edges that mutation testing found unasserted (issue 17, Deliver 3).

A bad id is refused by the switch's own check, before any state is
touched; a switch out of an empty VAS takes the general plan (the first-entry
shortcut is only for "no thread inside a VAS, nothing placed"); and a
thread that dies inside a VAS with a view alive says so in a warning that
points at the switch module.  Each runs in a child: fresh process state.
"""

from __future__ import annotations

import errno
import os
import threading
import warnings

import vaspace as v
from vaspace import _core
from vaspace.registry.kind import MAX_ID
from vaspace_testing import SEG_BASE, MiB, in_child, thread_inside, vas_with_byte


def _refusals() -> list[tuple[int, str]]:
    out = []
    for vid in (-1, MAX_ID + 1, 2**40):
        try:
            v.vas_switch(vid)
        except OSError as exc:
            out.append((exc.errno, exc.strerror))
    return out


def test_a_bad_id_is_refused_by_the_switch_itself(registry: str) -> None:
    got = in_child(_refusals).get()
    assert got == [(errno.EINVAL, f"Invalid argument: bad VAS id {vid}")
                   for vid in (-1, MAX_ID + 1, 2**40)]


def _through_an_empty_vas() -> list[int]:
    full = v.vas_create("full", 0o600)
    sid = v.vas_seg_create("full", SEG_BASE, SEG_BASE + MiB, 0o600)
    v.vas_seg_attach(full, sid, os.O_RDWR)
    empty = v.vas_create("empty", 0o600)
    for vid in (full, empty):
        v.vas_attach(0, vid, os.O_RDWR)
    seen = []
    for vid in (full, empty, 0, empty, full, 0):  # empty -> 0 first from full's plan
        v.vas_switch(vid)
        seen.append(v.active_vas())
    return seen


def test_leaving_an_empty_vas_entered_from_another(registry: str) -> None:
    """Inside an empty VAS nothing is placed but a thread is inside one: the
    switch out of it (to 0, then back) is planned in full, not the shortcut."""
    ids = in_child(_through_an_empty_vas).get()
    full, empty = ids[0], ids[1]
    assert ids == [full, empty, 0, empty, full, 0]


def _die_inside_with_a_view() -> tuple[str, str, str]:
    vid = v.vas_create("w", 0o600)
    sid = v.vas_seg_create("w", SEG_BASE, SEG_BASE + MiB, 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    v.vas_attach(0, vid, os.O_RDWR)
    views = []

    def enter_and_keep_a_view() -> None:
        v.vas_switch(vid)
        views.append(v.Segment(sid).view())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = threading.Thread(target=enter_and_keep_a_view)
        t.start()
        t.join()
    (w,) = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    return w.category.__name__, os.path.basename(w.filename), str(w.message)


def test_a_thread_dying_inside_with_a_view_warns_from_the_switch(registry: str) -> None:
    category, filename, message = in_child(_die_inside_with_a_view).get()
    assert (category, filename) == ("RuntimeWarning", "switch.py")
    assert message.startswith("thread exited inside a VAS: ")


def _enter_while_another_thread_is_inside() -> tuple[bool, bool]:
    a = vas_with_byte("a", 0xA)
    b = vas_with_byte("b", 0xB, start=SEG_BASE + 4 * MiB)
    with thread_inside(b):
        v.vas_switch(a)  # a thread is inside a VAS: the general plan, from 0
        cached = _core.plan_get(0, a) is not None and _core.plan_get(a, 0) is not None
        v.vas_switch(0)
        fast = _core.switch_fast(a) == 2  # entered from the original AS in one C call
        v.vas_switch(0)
    return cached, fast


def test_an_entry_from_0_planned_in_full_is_cached(registry: str) -> None:
    """With another thread inside a VAS the first entry takes the general
    plan; a plan from the original AS is still cached both ways."""
    assert in_child(_enter_while_another_thread_is_inside).get() == (True, True)
