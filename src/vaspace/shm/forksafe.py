"""Module-level locks that a forked child gets fresh.

A thread of the parent may hold a lock at the moment another thread forks;
the child would then wait for it forever.  These locks only guard
in-process tables, so the child simply starts with a new, free one.
"""

from __future__ import annotations

import os
import threading
from typing import Any


def fork_safe_lock(namespace: dict[str, Any], name: str) -> threading.Lock:
    """A lock kept as ``namespace[name]``, replaced by a fresh one in every forked child."""
    namespace[name] = threading.Lock()
    os.register_at_fork(after_in_child=lambda: namespace.__setitem__(name, threading.Lock()))
    return namespace[name]
