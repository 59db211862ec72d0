"""A C extension in a running Python process calls the C API: the library uses
that process's interpreter and its vaspace (no second interpreter, one state)."""

from __future__ import annotations

import ctypes
import importlib
import sys
from concurrent.futures import ThreadPoolExecutor

import vaspace
from vaspace_testing import SEG_BASE, in_child


def _threads_at_once(ext, vid: int) -> list[tuple[int, ...]]:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(ext.in_thread, [vid] * 80))


def _use_extension(ext_dir: str) -> dict:
    sys.path.insert(0, ext_dir)
    ext = importlib.import_module("capi_ext")
    vid, active_in_c = ext.enter("from-c")
    seen = {
        "active_in_c": active_in_c == vid,
        # Python sees what C did: the same interpreter, the same vaspace state.
        "python_sees_switch": vaspace.active_vas() == vid,
        "python_finds_vas": vaspace.vas_find("from-c") == vid,
        "python_reads_segment": ctypes.c_int.from_address(SEG_BASE).value == 7,
        # A thread Python never saw: its own active VAS, then back out.
        "thread": ext.in_thread(vid) == (0, vid, 7, 0),
        "main_still_inside": vaspace.active_vas() == vid,
        # Python threads and C threads calling in at once, each C thread new.
        "threads_at_once": _threads_at_once(ext, vid) == [(0, vid, 7, 0)] * 80,
    }
    vaspace.vas_switch(0)
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "libpython" in line}
    seen["one_libpython"] = len(libs) <= 1
    return seen


def test_extension_shares_the_running_interpreter(capi, registry: str) -> None:
    seen = in_child(_use_extension, str(capi.ext_dir)).get()
    assert seen == dict.fromkeys(seen, True) and len(seen) == 8
