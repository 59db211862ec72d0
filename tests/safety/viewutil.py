"""Helpers for the misuse suite: worlds, and running a case in a child.

Every case runs in a forked child (``in_child``): a case that crashed would
kill only the child, and the parent reports the signal.  The rule is 0 deaths
by signal, and every refusal a Python exception with a clear message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import vaspace as v
from vaspace_testing import SEG_BASE, in_child

PAGE = os.sysconf("SC_PAGE_SIZE")
SIZE = 16 * PAGE


def world(name: str, start: int = SEG_BASE, size: int = SIZE, access: int = os.O_RDWR,
          attach: bool = True) -> tuple[v.VAS, v.Segment]:
    """A VAS holding one new segment; attached to this process unless told not to."""
    seg = v.Segment.create(f"{name}-seg", start, size=size)
    vas = v.VAS.create(name)
    vas.attach_segment(seg, os.O_RDWR)
    if attach:
        vas.attach(access)
    return vas, seg


def safely(case: Callable[..., Any], *args: Any) -> Any:
    """Run ``case`` in a child; fail on any signal; re-raise its assertion errors."""
    out = in_child(case, *args, timeout=60)
    assert out.signal is None, f"{case.__name__} died of signal {out.signal}"
    return out.get()


def refused(exc_type: type[BaseException], fn: Callable[..., Any], *args: Any,
            match: str = "") -> BaseException:
    """Call ``fn``; it must raise ``exc_type`` whose message matches ``match``."""
    try:
        fn(*args)
    except exc_type as exc:
        assert re.search(match, str(exc)), f"{fn!r}: message {str(exc)!r} lacks {match!r}"
        return exc
    raise AssertionError(f"{fn!r}{args!r} did not raise {exc_type.__name__}")
