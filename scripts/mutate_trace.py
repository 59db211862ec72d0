"""pytest plugin for scripts/mutate.py: which tests run which lines of one file.

Loaded with ``-p mutate_trace`` (scripts/ on PYTHONPATH) and two variables:
``MUTATE_TRACE_FILE``, the source file to watch, and ``MUTATE_TRACE_OUT``,
where to write ``{test id: [line, ...]}`` as JSON at the end of the session.

mutate.py runs a mutant first against only the tests that execute its lines
(a mutant nothing executes cannot change any test's outcome... in this
process), so that a killed mutant costs a few tests instead of the whole set.
Lines run only in a forked child are not seen here: a mutant that survives
its selected tests is therefore run against the whole set before it is
called a survivor, and the selection only ever saves time.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from types import FrameType
from typing import Any

import pytest

_TARGET = os.path.realpath(os.environ.get("MUTATE_TRACE_FILE", ""))
_lines: dict[str, set[int]] = {}
_current: set[int] | None = None


def _local(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "line" and _current is not None:
        _current.add(frame.f_lineno)
    return _local


_is_target: dict[str, bool] = {}


def _global(frame: FrameType, event: str, arg: Any) -> Any:
    name = frame.f_code.co_filename
    hit = _is_target.get(name)
    if hit is None:
        hit = _is_target[name] = os.path.realpath(name) == _TARGET
    if hit:
        if _current is not None:
            _current.add(frame.f_lineno)  # a def or class line runs on call, too
        return _local
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    global _current
    _current = _lines.setdefault(item.nodeid, set())
    sys.settrace(_global)
    threading.settrace(_global)
    try:
        yield
    finally:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]
        _current = None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    out = os.environ.get("MUTATE_TRACE_OUT")
    if out:
        with open(out, "w") as f:
            json.dump({k: sorted(v) for k, v in _lines.items()}, f)
