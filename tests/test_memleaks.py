"""Leak tests: call every C entry point many times; memory and fds must stay flat."""

from __future__ import annotations

import ast
import contextlib
import ctypes
import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import vaspace as v
from vaspace import _core
from vaspace.window import shm_range
from vaspace_testing import SEG_BASE, MiB, in_child

LOOPS = 3000
PAGE = os.sysconf("SC_PAGE_SIZE")


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
        except (OSError, TypeError, ValueError, OverflowError, BufferError):
            pass
    return call


HOME = 0x3000_0000_0000  # below the window and parking range: free
PARK = 0x3000_4000_0000
SPARE = 0x3000_8000_0000
SPAN = 64 * PAGE


@pytest.fixture
def scratch() -> Iterator[None]:
    """Two private reservations: a "window" (HOME) and a "parking range" (PARK)."""
    _core.reserve(HOME, SPAN)
    _core.reserve(PARK, SPAN)
    yield
    for token, home, *_ in _core.mappings():
        if HOME <= home < HOME + SPAN:
            _core.unmap_mapping(token)
    _core.unmap(HOME, SPAN)
    _core.unmap(PARK, SPAN)


@pytest.fixture
def memfd() -> Iterator[int]:
    fd = os.memfd_create("vaspace-leak")
    os.ftruncate(fd, 4 * PAGE)
    yield fd
    os.close(fd)


@pytest.fixture
def token(scratch: None, memfd: int) -> int:
    """A mapping of one page with home HOME, parked at PARK."""
    return _core.map_shared(memfd, PARK, PAGE, _core.PROT_READ | _core.PROT_WRITE, HOME, "leak")


def test_park_plugs_and_wake(scratch: None) -> None:
    """The parking mode switch and the lazy-attach word (nothing placed here)."""
    _flat(lambda: (_core.park_plugs(True), _core.park_plugs(False), _core.park_plugs()))
    _flat(lambda: (_core.wake_offset(), _core.wake_take()))
    _flat(_bad(_core.park_plugs, 1, 2))


def test_shrink(token: int) -> None:
    """Cutting a VMA back (a no-op at the segment's length) and a bad token;
    the fast path's table of which mappings a VAS uses."""
    _flat(lambda: _core.shrink(token))
    _flat(_bad(_core.shrink, 0))
    _flat(lambda: (_core.vas_members(99, [token, token]), _core.vas_members(99, None)))
    _flat(_bad(_core.vas_members, 99, ["x"]))


def test_dir_entries(tmp_path: Path) -> None:
    """Reading a directory by descriptor: a full one, an empty one, bad descriptors."""
    for i in range(300):  # more than one getdents64 buffer of names
        (tmp_path / f"entry-{i:04d}-{'x' * 40}").touch()
    empty = tmp_path / "empty"
    empty.mkdir()
    fd, efd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY), os.open(empty, os.O_RDONLY)
    ffd = os.open(tmp_path / "entry-0000-" f"{'x' * 40}", os.O_RDONLY)
    try:
        assert sorted(_core.dir_entries(fd)) == sorted(os.listdir(tmp_path))
        # It rewinds, as os.listdir(fd) expects: both read the whole directory again.
        assert sorted(os.listdir(fd)) == sorted(_core.dir_entries(fd))
        assert _core.dir_entries(efd) == []
        _flat(lambda: (_core.dir_entries(fd), _core.dir_entries(efd)))
        _flat(_bad(_core.dir_entries, ffd))  # ENOTDIR
        _flat(_bad(_core.dir_entries, -1))
        _flat(_bad(_core.dir_entries, "x"))
    finally:
        for d in (fd, efd, ffd):
            os.close(d)


def test_start_time() -> None:
    """A live process, a gone one and bad pids: answers, None, errors, all flat."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # reaped: its /proc entry is gone
    assert isinstance(_core.start_time(os.getpid()), int)
    assert _core.start_time(pid) is None
    _flat(lambda: (_core.start_time(os.getpid()), _core.start_time(pid), _core.start_time(0)))
    _flat(_bad(_core.start_time, "x"))
    _flat(_bad(_core.start_time, 2**80))


def test_registry_lookups(tmp_path: Path) -> None:
    """open_live, stat_live and open_segment: answers and every error path stay flat."""
    obj = tmp_path / "7"
    obj.mkdir()
    os.symlink("seven", obj / "index")
    os.symlink("7", tmp_path / "seven")
    (obj / "lock").touch()
    (obj / "region").write_text("0-1000")
    (obj / "data").write_bytes(b"x" * PAGE)
    d, pre = str(obj), f"{tmp_path}/"

    def closed(fds) -> None:  # type: ignore[no-untyped-def]
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    _flat(lambda: closed(_core.open_live(d, pre)[:1]))
    _flat(lambda: _core.stat_live(d, pre, "lock"))
    _flat(lambda: closed(_core.open_segment(d, pre, os.O_RDWR)[0:5:4]))
    _flat(lambda: closed(_core.open_segment(d, None, -1)[0:5:4]))
    _flat(_bad(_core.open_live, str(tmp_path / "8"), pre))  # no directory
    _flat(_bad(_core.stat_live, d, pre, "missing"))  # closes the directory
    _flat(_bad(_core.open_segment, d, f"{tmp_path}/nowhere/", os.O_RDONLY))  # no name link
    _flat(_bad(_core.open_segment, d, pre, os.O_WRONLY))  # refused flags
    _flat(_bad(_core.open_live, 3, pre))
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _flat(lambda: closed(_core.open_regular(dfd, "lock", os.O_RDWR)[:1]))
        _flat(lambda: _core.same_entry(f"{tmp_path}/seven", d, dfd))
        _flat(_bad(_core.open_regular, dfd, "index", os.O_RDONLY))  # a link: ELOOP
        _flat(_bad(_core.open_regular, dfd, "lock", os.O_CREAT))  # refused flags
        _flat(_bad(_core.same_entry, f"{tmp_path}/none", d, dfd))
        _flat(_bad(_core.same_entry, f"{tmp_path}/seven", d, -1))
    finally:
        os.close(dfd)
    os.unlink(obj / "data")
    os.mkfifo(obj / "data")
    _flat(_bad(_core.open_segment, d, pre, os.O_RDONLY))  # EIO: region read, FIFO refused


def test_reserve_unmap_plug(scratch: None) -> None:
    _flat(lambda: (_core.reserve(SPARE, SPAN), _core.unmap(SPARE, SPAN)))
    _flat(lambda: (_core.plug(HOME + 8 * PAGE, PAGE), _core.reserved()))
    _flat(_bad(_core.reserve, HOME, PAGE))  # EEXIST path
    _flat(_bad(_core.reserve, HOME + 1, PAGE))  # unaligned
    _flat(_bad(_core.reserve, 0x7FFF_FFFF_F000, 2 * PAGE))  # past the user address space
    _flat(_bad(_core.unmap, HOME, PAGE))  # not a whole reservation
    _flat(_bad(_core.unmap, "x", 1))
    _flat(_bad(_core.plug, -1, PAGE))
    _flat(_bad(_core.plug, 0x1000, PAGE))  # outside every reservation
    _flat(_bad(_core.plug, HOME + SPAN - PAGE, 2 * PAGE))  # runs off the end


def test_map_shared_and_unmap_mapping(scratch: None, memfd: int) -> None:
    rw = _core.PROT_READ | _core.PROT_WRITE

    def cycle() -> None:
        tok = _core.map_shared(memfd, PARK, PAGE, rw, HOME, "leak")
        _core.move(tok, True)
        assert [m for m in _core.mappings() if m[0] == tok][0][4] is True
        _core.move(tok, False)
        _core.unmap_mapping(tok)
    _flat(cycle)
    _flat(_bad(_core.map_shared, -1, PARK, PAGE, rw, HOME, "x"))  # EBADF after the checks
    _flat(_bad(_core.map_shared, memfd, PARK, PAGE, 0x40, HOME, "x"))
    _flat(_bad(_core.map_shared, memfd, 0x1000, PAGE, rw, HOME, "x"))  # slot outside
    _flat(_bad(_core.map_shared, memfd, PARK, PAGE, rw, 0x1000, "x"))  # home outside
    _flat(_bad(_core.map_shared, memfd, PARK, PAGE, rw, HOME, None))
    _flat(_bad(_core.unmap_mapping, 2**63))
    _flat(_bad(_core.unmap_mapping, "x"))
    _flat(_bad(_core.move, 2**63, True))
    tok = _core.map_shared(memfd, PARK, PAGE, rw, HOME, "leak")
    _flat(_bad(_core.map_shared, memfd, PARK, PAGE, rw, HOME, "x"))  # the slot is taken
    _flat(_bad(_core.move, tok, False))  # parked already
    _flat(_bad(_core.plug, PARK, PAGE))  # a mapping is there
    _flat(_bad(_core.unmap, PARK, SPAN))  # a mapping is in the range
    _core.unmap_mapping(tok)


def test_window_view_exports(token: int) -> None:
    _core.move(token, True)

    def view_cycle() -> None:
        with memoryview(_core.WindowView(token)) as mv:
            mv[0] = 1
    _flat(view_cycle)
    held = memoryview(_core.WindowView(token))
    _flat(_bad(_core.move, token, False))  # BufferError: pinned
    _flat(_bad(_core.unmap_mapping, token))
    assert [m[5] for m in _core.mappings() if m[0] == token] == [1]
    held.release()
    _core.move(token, False)
    _flat(_bad(memoryview, _core.WindowView(token)))  # parked: ValueError
    _flat(_bad(_core.WindowView, 2**63))
    _flat(_bad(_core.WindowView, "x"))
    assert repr(_core.WindowView(token)).endswith(f"'leak' at {HOME:#x} size {PAGE}>")
    _flat(lambda: (repr(_core.WindowView(token)), _core.window_gen()))


def _api() -> Any:
    """The C API struct of vaspace_core_api.h, through ctypes (GIL held: PYFUNCTYPE)."""
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]

    class Api(ctypes.Structure):
        _fields_ = [
            ("version", ctypes.c_int),
            ("window_gen", ctypes.POINTER(ctypes.c_uint64)),
            ("token_at", ctypes.PYFUNCTYPE(ctypes.c_uint64, ctypes.c_size_t)),
            ("export_hold", ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_uint64)),
            ("export_drop", ctypes.PYFUNCTYPE(None, ctypes.c_uint64)),
            ("token_name", ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.c_uint64)),
        ]
    return Api.from_address(get(_core._C_API, b"vaspace._core._C_API"))


def test_c_api(token: int) -> None:
    """The capsule keeps the header's contract; its calls leak nothing either."""
    api = _api()
    assert api.version == 1 and api.token_name(token) == b"leak"
    assert api.token_at(HOME) == 0 and api.export_hold(token) == -1  # parked
    gen = api.window_gen[0]
    _core.move(token, True)
    assert api.window_gen[0] != gen and api.token_at(HOME + PAGE - 1) == token
    assert api.export_hold(token) == 0
    with pytest.raises(BufferError, match="'leak'"):
        _core.move(token, False)
    api.export_drop(token)
    _flat(lambda: (api.export_hold(token), api.export_drop(token), api.token_at(HOME),
                   api.token_name(token), api.token_name(0)))
    _core.move(token, False)


def test_plans_and_thread_state(token: int) -> None:
    place, park = [(token, True, False)], [(token, False, False)]

    def plans() -> None:
        _core.plan_put(101, 102, place)
        _core.plan_put(102, 101, park)
        assert _core.plan_get(101, 102) == [(PARK, HOME, PAGE, False)]
        assert _core.plan_get(7, 8) is None
        _core.plan_clear()
    _flat(plans)
    _flat(lambda: (_core.run_plan(place, 0), _core.run_plan(park, 0), _core.active(),
                   _core.thread_vids(), _core.threads_in_vas(), _core.switch_fast(0)))

    def fast() -> None:  # the cached-plan switch, in and out, with real moves
        assert _core.switch_fast(103) == 2 and _core.switch_fast(0) == 1
    _core.plan_put(0, 103, place)
    _core.plan_put(103, 0, park)
    _flat(fast)
    _core.switch_fast(103)
    held = memoryview(_core.WindowView(token))
    _flat(_bad(_core.switch_fast, 0))  # BufferError: the plan would park a pinned mapping
    held.release()
    _core.switch_fast(0)
    _core.plan_clear()
    _flat(_bad(_core.run_plan, [(1, 2)], 0))
    _flat(_bad(_core.run_plan, park, 0))  # parked already
    _flat(_bad(_core.run_plan, [(token, False, True)], 0))  # keep_hole with no refill
    _flat(_bad(_core.run_plan, [*place, *place], 0))  # the same mapping twice
    _flat(_bad(_core.plan_put, 1, 2, [("a", 2, 3)]))
    _flat(_bad(_core.plan_get, "a", 1))
    _flat(_bad(_core.switch_fast, "x"))
    _flat(lambda: _core.vas_switch(0))
    for junk in ("x", None, -1, 2**80, True, 3.5):
        _flat(_bad(_core.vas_switch, junk), loops=500)
    _flat(_bad(_core.set_slow_path, 1))
    _flat(lambda: _core.set_active(0))
    _flat(_bad(_core.set_active, None))
    _flat(lambda: (_core.busy(1), _core.busy(-1), _core.forget_tid(0), _core.slots_size()))
    _flat(_bad(_core.busy, 5))
    _flat(_bad(_core.forget_tid, "x"))


def test_publish_threads(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "slots", os.O_RDWR | os.O_CREAT)
    short = os.open(tmp_path / "short", os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, _core.slots_size())
        _flat(lambda: _core.publish_threads(fd), loops=300)
        _flat(lambda: _core.publish_threads(fd, 0o644), loops=300)
        _flat(_bad(_core.publish_threads, fd, "x"))
        _flat(_bad(_core.publish_threads, short))  # too short: refused, not a SIGBUS
        _flat(_bad(_core.publish_threads, -1))
    finally:
        os.close(fd)
        os.close(short)


def test_fixed_map(tmp_path: Path) -> None:
    """vaspace.shared_memory's exporter: map, alias, views, refusals, close."""
    lo, hi = shm_range()
    _core.set_fixed_range(lo, hi - lo)
    addr = hi - 4 * PAGE
    fd = os.open(tmp_path / "data", os.O_RDWR | os.O_CREAT, 0o600)
    short = os.open(tmp_path / "short", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 2 * PAGE)

        def cycle() -> None:
            m = _core.FixedMap(fd, addr, 2 * PAGE)
            alias = m.alias()
            with memoryview(alias) as mv:
                mv[0] = 1
                with contextlib.suppress(BufferError):
                    alias.close()  # refused: a view is alive
            m.close()
            alias.close()
            repr(alias)
        _flat(cycle)
        _flat(lambda: _core.set_fixed_range(lo, hi - lo))
        _flat(_bad(_core.set_fixed_range, 0, PAGE))
        _flat(_bad(_core.set_fixed_range, "x", PAGE))
        _flat(_bad(_core.FixedMap, fd, lo - PAGE, PAGE))  # outside the range
        _flat(_bad(_core.FixedMap, short, addr, PAGE))  # shorter than the map
        _flat(_bad(_core.FixedMap, -1, addr, PAGE))
        _flat(_bad(_core.FixedMap, fd, "x", PAGE))
        held = _core.FixedMap(fd, addr, PAGE)
        _flat(_bad(_core.FixedMap, fd, addr, PAGE))  # EEXIST: never over a mapping
        held.close()
        _flat(_bad(held.close))  # closed already
        _flat(_bad(memoryview, held))
        _flat(_bad(held.alias))
    finally:
        os.close(fd)
        os.close(short)


def _reset_loop() -> tuple[int, int]:
    """In a forked child: reset_after_fork many times; report rss and fd growth."""
    for _ in range(200):
        _core.reset_after_fork()
    rss0, fds0 = _usage()
    for _ in range(LOOPS):
        _core.reset_after_fork()
    rss1, fds1 = _usage()
    return rss1 - rss0, fds1 - fds0


def test_reset_after_fork(token: int) -> None:
    """reset_after_fork runs in forked children only (it forgets every mapping)."""
    _core.move(token, True)
    mv = memoryview(_core.WindowView(token))
    mv[0] = 5

    def child() -> tuple[int, int, int]:
        # The fork hook already ran reset_after_fork: the inherited view reads
        # the child's private zero page (a ghost) instead of faulting, and the
        # ghost has a new token, so a heap bound to the old one sees it is stale.
        first = mv[0]
        assert _api().token_at(HOME) not in (0, token)
        return (*_reset_loop(), first)

    out = in_child(child)
    assert out.signal is None, out
    rss, fds, first = out.get()
    assert first == 0 and fds == 0 and rss < 2 * MiB, (rss, fds)
    assert mv[0] == 5  # the parent's view is untouched
    mv.release()
    _core.move(token, False)


def test_every_entry_point_is_covered() -> None:
    """A _core entry point that no test above calls fails this guard."""
    tree = ast.parse(Path(__file__).read_text())
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "_core"}
    public = {n for n in dir(_core) if not n.startswith("__") and not n.isupper()}
    assert public - used == set(), f"_core entry points without a leak test: {public - used}"


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


def test_view_cycle(registry: str) -> None:
    """Views, arrays, refusals and release_views across attach/detach cycles."""
    vas = v.VAS.create("views")
    seg = v.Segment.create("views-seg", SEG_BASE, size=MiB)
    vas.attach_segment(seg)

    def cycle() -> None:
        vas.attach(os.O_RDWR)
        v.vas_switch(vas.id)
        with seg.view() as mv:
            mv[0] = 1
        held = seg.view()
        arr = seg.array("u8")
        with contextlib.suppress(BufferError):  # the refusal path, many times
            v.vas_switch(0)
        del arr
        vas.release_views()
        with pytest.raises(ValueError):
            held[0]  # noqa: B018 - released by release_views
        v.vas_switch(0)
        vas.detach()
    _flat(cycle, loops=300)
