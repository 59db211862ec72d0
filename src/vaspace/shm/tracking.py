"""``track=True``: the creating process's exit destroys the segment.

No resource-tracker process is involved (that is what destroyed segments
under other processes before Python 3.13, gh-82300): attaching never
registers anything, so only the creator's exit can destroy a segment.

- A normal exit: an ``atexit`` hook in the creator deletes the segments it
  created with ``track=True`` and did not unlink.  Forked children inherit
  the hook but not the duty (the hook compares pids).
- SIGKILL or a crash: the creator writes ``shm-creator`` (``"<pid>
  <start time>"``) into the segment's registry directory, which only it can
  write.  The next create in any process of that user (at most once a
  second per process) deletes shared-memory segments whose creator is gone.
  Others' segments are left alone: the registry's sticky directories let
  only their owner (or root) delete them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import time

from .. import api
from ..registry import fs, objects, records
from ..registry import root as rootmod
from ..registry.kind import SEG
from .forksafe import fork_safe_lock

CREATOR_FILE = "shm-creator"
REAP_INTERVAL = 1.0

_lock = fork_safe_lock(globals(), "_lock")
# (registry root, registry name, sid) -> creating pid
_mine: dict[tuple[str, str, int], int] = {}
_last_reap = 0.0


def record_creator(dfd: int) -> None:
    """Write this process as the creator into a new segment's directory (``dfd``).

    Called before the segment is published (``seg.create``'s
    ``before_publish``), so no published block lacks its record.
    """
    with contextlib.suppress(OSError):
        fs.write_new(CREATOR_FILE, f"{os.getpid()} {records.my_start_time()}\n", 0o644, dfd)


def track(root: str, regname: str, sid: int) -> None:
    """Remember that this process created segment ``sid`` with track=True (for ``_at_exit``)."""
    with _lock:
        _mine[(root, regname, sid)] = os.getpid()


def untrack(regname: str, sid: int) -> None:
    """Forget segment ``sid`` (it was unlinked, or its creation failed)."""
    if _mine:
        with _lock:
            _mine.pop((rootmod.root_str(), regname, sid), None)


def _delete_if_named(sid: int, regname: str) -> None:
    with contextlib.suppress(OSError):
        if api.seg_name(sid) == regname:
            api.vas_seg_delete(sid)


@atexit.register
def _at_exit() -> None:
    me = os.getpid()
    with _lock:
        mine = [key for key, pid in _mine.items() if pid == me]
        _mine.clear()
    saved = os.environ.get("VASPACE_ROOT")
    try:
        for root, regname, sid in mine:
            if not os.path.isdir(root):  # that registry is gone (never re-create it)
                continue
            # Each block in the registry it was created in (VASPACE_ROOT may have moved).
            os.environ["VASPACE_ROOT"] = root
            _delete_if_named(sid, regname)
    finally:
        if saved is None:
            os.environ.pop("VASPACE_ROOT", None)
        else:
            os.environ["VASPACE_ROOT"] = saved


def creator_alive(sid: int) -> bool | None:
    """Whether the segment's recorded creator still runs (None: no record)."""
    try:
        with objects.pin(SEG, sid) as ref:
            text = ref.read(CREATOR_FILE)
        pid, started = (int(x) for x in text.split())
    except (OSError, ValueError):
        return None
    return records.start_time(pid) == started


def reap(prefix: str) -> list[int]:
    """Delete shared-memory segments (names starting with ``prefix``) whose creator died.

    Throttled to once per ``REAP_INTERVAL`` per process; returns the sids deleted.
    """
    global _last_reap
    now = time.monotonic()
    if now - _last_reap < REAP_INTERVAL:
        return []
    _last_reap = now
    gone = []
    for sid in api.seg_ids():
        with contextlib.suppress(OSError):
            name = api.seg_name(sid)
            if name.startswith(prefix) and creator_alive(sid) is False:
                api.vas_seg_delete(sid)
                gone.append(sid)
    return gone


def forget_reap_time() -> None:
    """Let the next ``reap`` run now (tests, and after the registry changes)."""
    global _last_reap
    _last_reap = 0.0
