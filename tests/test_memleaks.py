"""Leak tests: call every C entry point many times; memory and fds must stay flat."""

from __future__ import annotations

import gc
import os

import psutil
import pytest

import vaspace as v
from vaspace import _core
from vaspace_testing import SEG_BASE, MiB

LOOPS = 3000
PAGE = os.sysconf("SC_PAGE_SIZE")
SCRATCH = 0x3000_0000_0000  # below the window and parking range: free


def _usage() -> tuple[int, int]:
    gc.collect()
    p = psutil.Process()
    return p.memory_info().rss, p.num_fds()


def _flat(fn, loops: int = LOOPS) -> None:  # type: ignore[no-untyped-def]
    for _ in range(200):  # warm caches, free lists, lazy imports
        fn()
    rss0, fds0 = _usage()
    for _ in range(loops):
        fn()
    rss1, fds1 = _usage()
    assert fds1 == fds0, f"fds grew {fds0} -> {fds1}"
    assert rss1 - rss0 < 2 * MiB, f"rss grew by {(rss1 - rss0) // 1024} KiB"


def _bad(fn, *args):  # type: ignore[no-untyped-def]
    def call() -> None:
        try:
            fn(*args)
        except (OSError, TypeError, ValueError, OverflowError):
            pass
    return call


@pytest.fixture
def scratch() -> None:
    _core.reserve(SCRATCH, 64 * PAGE)
    yield
    _core.unmap(SCRATCH, 64 * PAGE)


def test_reserve_unmap_plug_move(scratch: None) -> None:
    def cycle() -> None:
        _core.plug(SCRATCH, PAGE)
        _core.move(SCRATCH, SCRATCH + 8 * PAGE, PAGE)
        _core.move(SCRATCH + 8 * PAGE, SCRATCH, PAGE)
    _flat(cycle)
    _flat(_bad(_core.reserve, SCRATCH, PAGE))  # EEXIST path
    _flat(_bad(_core.move, SCRATCH + 1, SCRATCH, PAGE))  # EINVAL path
    _flat(_bad(_core.unmap, "x", 1))
    _flat(_bad(_core.plug, -1, PAGE))


def test_map_shared(scratch: None, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "f"
    path.write_bytes(b"\0" * PAGE)
    fd = os.open(path, os.O_RDWR)
    try:
        _flat(lambda: _core.map_shared(fd, SCRATCH, PAGE, _core.PROT_READ))
        _flat(_bad(_core.map_shared, -1, SCRATCH, PAGE, _core.PROT_READ))
        _flat(_bad(_core.map_shared, fd, SCRATCH, PAGE, 0x40))
    finally:
        os.close(fd)
        _core.plug(SCRATCH, PAGE)


def test_plans_and_thread_state(scratch: None) -> None:
    moves = [(SCRATCH, SCRATCH + 8 * PAGE, PAGE), (SCRATCH + 8 * PAGE, SCRATCH, PAGE)]

    def plans() -> None:
        _core.plan_put(101, 102, moves)
        _core.plan_put(102, 101, moves)
        assert len(_core.plan_get(101, 102)) == 2 and _core.plan_get(7, 8) is None
        _core.plan_clear()
    _flat(plans)
    _flat(lambda: (_core.run_plan(moves, 0), _core.active(), _core.thread_vids(),
                   _core.threads_in_vas(), _core.switch_fast(0)))
    _flat(_bad(_core.run_plan, [(1, 2)], 0))
    _flat(_bad(_core.run_plan, [(SCRATCH + 1, SCRATCH, PAGE)], 0))
    _flat(_bad(_core.plan_put, 1, 2, [("a", 2, 3)]))
    _flat(_bad(_core.switch_fast, "x"))
    _flat(lambda: _core.vas_switch(0))
    for junk in ("x", None, -1, 2**80, True, 3.5):
        _flat(_bad(_core.vas_switch, junk), loops=500)
    _flat(_bad(_core.set_slow_path, 1))
    _flat(_bad(_core.set_active, None))
    _flat(lambda: (_core.busy(1), _core.busy(-1), _core.forget_tid(0), _core.slots_size()))
    _flat(_bad(_core.plan_get, "a", 1))
    _flat(_bad(_core.publish_threads, -1))


def test_publish_threads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    fd = os.open(tmp_path / "slots", os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, _core.slots_size())
        _flat(lambda: _core.publish_threads(fd), loops=300)
    finally:
        os.close(fd)


def test_api_cycle(registry: str) -> None:
    """The whole attach/switch/detach cycle, and create/delete, through the API."""
    a = v.vas_create("a", 0o600)
    b = v.vas_create("b", 0o600)
    for vid in (a, b):
        sid = v.vas_seg_create(f"s{vid}", SEG_BASE, SEG_BASE + MiB, 0o600)
        v.vas_seg_attach(vid, sid, os.O_RDWR)

    def cycle() -> None:
        v.vas_attach(0, a, os.O_RDWR)
        v.vas_attach(0, b, os.O_RDWR)
        for _ in range(5):
            v.vas_switch(a)
            v.vas_switch(b)
        v.vas_switch(0)
        v.vas_detach(0, a)
        v.vas_detach(0, b)
        v.vas_delete(v.vas_create("tmp", 0o600))
    _flat(cycle, loops=300)
