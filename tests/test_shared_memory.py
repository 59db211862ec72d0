"""vaspace.shared_memory: CPython's own test class against it, plus what the stdlib lacks.

``TestStdlibSharedMemory`` runs the interpreter's ``_TestSharedMemory``
(``test._test_multiprocessing``) with its module global ``shared_memory``
pointed at ``vaspace.shared_memory``.  Its tests also patch
``multiprocessing.shared_memory._make_filename`` by that dotted path and
start ``multiprocessing.managers.SharedMemoryManager``: for the run, both
of those names lead to vaspace's too.  Children are forked (the patches are
inherited; a spawned child would re-import the stdlib's module).

Excluded, because they exercise the stdlib's own resource-tracker process
rather than the module under test:

- ``test_shared_memory_SharedMemoryManager_reuses_resource_tracker``: runs
  the stdlib's ``SharedMemoryManager`` in a fresh interpreter and checks
  that its resource tracker prints nothing; vaspace starts no tracker.
- ``test_shared_memory_cleaned_after_process_termination``: runs the
  stdlib's module in a fresh interpreter, terminates it and expects the
  stdlib tracker's "leaked shared_memory objects" warning on its stderr.
  vaspace's equivalent (a killed creator's block is reaped) is
  ``test_killed_creator_reaped_on_next_create`` below.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import multiprocessing
import multiprocessing.managers
import os
import pickle
import signal
import subprocess
import sys
import time
import unittest
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

import vaspace
from vaspace import shared_memory as vsm
from vaspace.shm import tracking
from vaspace.window import shm_range
from vaspace_testing import NOBODY, OTHER_USER, SEG_BASE, in_child

try:
    from test import _test_multiprocessing as stdtests
except ImportError:  # an interpreter installed without its test package
    stdtests = None

_FORK = multiprocessing.get_context("fork")


@contextlib.contextmanager
def new_block(size: int, **kwargs: Any) -> Iterator[vsm.SharedMemory]:
    """A new block for the test's duration, closed and unlinked after it."""
    sm = vsm.SharedMemory(create=True, size=size, **kwargs)
    try:
        yield sm
    finally:
        sm.close()
        sm.unlink()

# --------------------------------------------------------------- CPython's tests

_EXCLUDED = {
    "test_shared_memory_SharedMemoryManager_reuses_resource_tracker":
        "checks the stdlib's resource-tracker process (vaspace starts none)",
    "test_shared_memory_cleaned_after_process_termination":
        "checks the stdlib resource tracker's leak warning in a fresh interpreter",
}

if stdtests is not None:

    @pytest.mark.usefixtures("registry", "stdlib_pointed_at_vaspace")
    class TestStdlibSharedMemory(stdtests._TestSharedMemory, stdtests.ProcessesMixin,
                                 unittest.TestCase):
        """CPython's _TestSharedMemory, over vaspace.shared_memory, children forked."""

        Process = _FORK.Process

    for _name, _why in _EXCLUDED.items():
        setattr(TestStdlibSharedMemory, _name, unittest.skip(_why)(lambda self: None))
else:

    def test_stdlib_shared_memory_tests() -> None:
        pytest.skip("this interpreter has no 'test' package (test._test_multiprocessing)")


@pytest.fixture
def stdlib_pointed_at_vaspace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the test module's ``shared_memory`` (and the names its tests patch) at vaspace."""
    monkeypatch.setattr(stdtests, "shared_memory", vsm)
    monkeypatch.setattr(multiprocessing, "shared_memory", vsm, raising=False)
    monkeypatch.setitem(sys.modules, "multiprocessing.shared_memory", vsm)
    monkeypatch.setattr(multiprocessing.managers, "SharedMemoryManager", vsm.SharedMemoryManager)


def test_every_stdlib_test_runs_or_is_listed() -> None:
    if stdtests is None:
        pytest.skip("this interpreter has no 'test' package")
    names = {n for n in dir(stdtests._TestSharedMemory) if n.startswith("test")}
    assert set(_EXCLUDED) <= names
    assert len(names - set(_EXCLUDED)) >= 10


# --------------------------------------------------------------- the same address


def _address_and_word(name: str) -> tuple[int, bytes]:
    sm = vsm.SharedMemory(name)
    try:
        out = (sm.address, bytes(sm.buf[:5]))
        sm.buf[5:10] = b"child"
        return out
    finally:
        sm.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_same_address_in_children(registry: str, method: str) -> None:
    with new_block(10_000) as sm:
        sm.buf[:5] = b"hello"
        lo, hi = shm_range()
        assert lo <= sm.address < sm.address + sm.size <= hi
        with multiprocessing.get_context(method).Pool(2) as pool:
            results = pool.map(_address_and_word, [sm.name] * 2)
        assert results == [(sm.address, b"hello")] * 2
        assert bytes(sm.buf[5:10]) == b"child"


def test_inherited_across_fork_at_the_same_address(registry: str) -> None:
    with new_block(4096) as sm:
        sm.buf[:3] = b"abc"

        def child() -> tuple[int, bytes]:
            sm.buf[3:6] = b"def"  # the parent's object, inherited
            return sm.address, bytes(sm.buf[:3])

        assert in_child(child).get() == (sm.address, b"abc")
        assert bytes(sm.buf[:6]) == b"abcdef"


def _follow_pointer(name: str) -> bytes:
    other = vsm.SharedMemory(name)
    try:
        ptr = ctypes.c_uint64.from_buffer(other.buf, 0).value
        return ctypes.string_at(ptr, 8)
    finally:
        other.close()


def test_pointer_stored_inside_is_valid_in_another_process(registry: str) -> None:
    with new_block(4096) as sm:
        # A pointer to the word at offset 64, stored at offset 0.
        ctypes.c_uint64.from_buffer(sm.buf, 0).value = sm.address + 64
        sm.buf[64:72] = b"pointed!"

        with _FORK.Pool(1) as pool:
            assert pool.apply(_follow_pointer, (sm.name,)) == b"pointed!"


def test_visible_in_every_vas_and_vid_0(registry: str) -> None:
    sm = vsm.SharedMemory(create=True, size=4096)
    seg = vaspace.Segment.create("vas-seg", start=SEG_BASE, size=4096)
    vas = vaspace.VAS.create("v")
    try:
        vas.attach_segment(seg)
        vas.attach()
        sm.buf[0] = 1
        with vas.active():
            sm.buf[0] += 1  # still mapped inside the VAS
            seg.view()[0] = 9
        assert sm.buf[0] == 2 and vaspace.active_vas() == 0
    finally:
        vas.detach()
        vas.delete()
        seg.delete()
        sm.close()
        sm.unlink()


def test_forked_child_of_a_vas_user_keeps_its_blocks(registry: str) -> None:
    seg = vaspace.Segment.create("vas-seg", start=SEG_BASE, size=4096)
    vas = vaspace.VAS.create("v")
    vas.attach_segment(seg)
    vas.attach()  # reserves the VAS part of the window, which a forked child releases
    try:
        with new_block(4096) as sm:
            sm.buf[:2] = b"ok"

            def child() -> bytes:
                return bytes(sm.buf[:2])

            res = in_child(child)
            assert res.signal is None and res.get() == b"ok"
    finally:
        vas.detach()
        vas.delete()
        seg.delete()


def test_vas_segment_in_the_shm_range_is_refused_efault(registry: str) -> None:
    lo, _ = shm_range()
    seg = vaspace.Segment.create("intruder", start=lo, size=4096)
    vas = vaspace.VAS.create("v")
    vas.attach_segment(seg)
    with pytest.raises(OSError) as err:
        vas.attach()
    assert err.value.errno == errno.EFAULT and "shared-memory range" in str(err.value)
    # Placement steps around it: a new block never overlaps a registry segment.
    with new_block(4096) as sm:
        assert sm.address >= lo + 4096
        vas.delete()
        seg.delete()


def test_a_vas_segment_is_not_a_block(registry: str) -> None:
    vaspace.Segment.create("shm:/fake", start=SEG_BASE, size=4096)
    with pytest.raises(OSError) as err:
        vsm.SharedMemory("fake")
    assert err.value.errno == errno.EFAULT


def _create_in_child(n: int) -> list[tuple[int, int, str]]:
    made = []
    for _ in range(n):
        sm = vsm.SharedMemory(create=True, size=8192, track=False)
        made.append((sm.address, sm.size, sm.name))
        sm.close()
    return made


def test_concurrent_creators_get_disjoint_ranges(registry: str) -> None:
    with _FORK.Pool(4) as pool:
        made = [b for batch in pool.map(_create_in_child, [15] * 4) for b in batch]
    spans = sorted((a, a + s) for a, s, _ in made)
    assert len(spans) == 60
    assert all(prev[1] <= nxt[0] for prev, nxt in zip(spans, spans[1:], strict=False))
    for _, _, name in made:
        vsm.SharedMemory(name).unlink()


# --------------------------------------------------------------- lifetime


def _attach_and_exit(name: str) -> int:
    sm = vsm.SharedMemory(name)  # track=True, the default: it must not matter
    sm.buf[0] = 7
    sm.close()
    return os.getpid()


def test_gh82300_child_attaches_and_exits_segment_survives(registry: str) -> None:
    with new_block(100) as sm:
        for method in ("fork", "spawn"):
            proc = multiprocessing.get_context(method).Process(target=_attach_and_exit,
                                                               args=(sm.name,))
            proc.start()
            proc.join()
            assert proc.exitcode == 0
            again = vsm.SharedMemory(sm.name)  # still there
            assert again.buf[0] == 7
            again.close()


_CREATOR = """
import sys, time
from vaspace import shared_memory
sm = shared_memory.SharedMemory(create=True, size=100, track={track})
print(sm.name, flush=True)
{ending}
"""


def _run_creator(track: bool, ending: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", _CREATOR.format(track=track, ending=ending)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _exists(name: str) -> bool:
    try:
        vsm.SharedMemory(name).close()
    except FileNotFoundError:
        return False
    return True


def test_creator_exit_destroys_a_tracked_block(registry: str) -> None:
    proc, name = _run_creator(True, "")
    assert proc.wait() == 0
    assert not _exists(name)


def test_creator_exit_keeps_an_untracked_block(registry: str) -> None:
    proc, name = _run_creator(False, "")
    assert proc.wait() == 0
    assert _exists(name)
    vsm.SharedMemory(name).unlink()


def test_creator_exit_deletes_in_the_registry_it_created_in(registry: str, tmp_path) -> None:
    elsewhere = tmp_path / "never-made"
    ending = f"import os; os.environ['VASPACE_ROOT'] = {str(elsewhere)!r}"
    proc, name = _run_creator(True, ending)
    assert proc.wait() == 0
    assert not _exists(name)  # deleted where it was made
    assert not elsewhere.exists()  # and no registry made where VASPACE_ROOT pointed at exit


def test_killed_creator_reaped_on_next_create(registry: str) -> None:
    proc, name = _run_creator(True, "time.sleep(60)")
    try:
        assert _exists(name)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _exists(name)  # nobody noticed yet
    tracking.forget_reap_time()
    other = vsm.SharedMemory(create=True, size=10)
    other.close()
    other.unlink()
    assert not _exists(name)


def test_unlink_then_attach_fails_and_unlink_twice_fails(registry: str) -> None:
    sm = vsm.SharedMemory(create=True, size=10)
    sm.unlink()
    with pytest.raises(FileNotFoundError):
        vsm.SharedMemory(sm.name)
    with pytest.raises(FileNotFoundError):
        sm.unlink()
    sm.buf[0] = 1  # still mapped here until closed
    sm.close()


def test_unlinked_but_open_range_is_not_reused_here(registry: str) -> None:
    first = vsm.SharedMemory(create=True, size=4096)
    first.unlink()
    second = vsm.SharedMemory(create=True, size=4096)
    try:
        assert second.address != first.address
        first.buf[0], second.buf[0] = 1, 2
        assert (first.buf[0], second.buf[0]) == (1, 2)
    finally:
        first.close()
        second.close()
        second.unlink()


# --------------------------------------------------------------- safe edges


def test_close_and_unlink_refuse_with_live_exports(registry: str) -> None:
    import numpy as np

    sm = vsm.SharedMemory(create=True, size=4096)
    for make in (lambda: memoryview(sm.buf), lambda: sm.buf[10:20],
                 lambda: np.frombuffer(sm.buf, dtype=np.uint8), lambda: sm.buf.cast("I")):
        view = make()
        for op in (sm.close, sm.unlink):
            with pytest.raises(BufferError):
                op()
        # Nothing changed: the view, the buffer and the name all still work.
        view[0] = 3
        assert view[0] == 3 and sm.buf is not None and len(sm.buf) == 4096
        assert _exists(sm.name)
        del view
    sm.unlink()
    sm.close()
    assert sm.buf is None


def _maps(addr: int) -> bool:
    with open("/proc/self/maps") as f:
        return any(int(line.split("-")[0], 16) == addr for line in f)


@pytest.mark.parametrize("first", ["creator", "attacher"])
def test_two_handles_in_one_process_share_one_mapping(registry: str, first: str) -> None:
    """Each handle counts its own views; the memory goes with the last handle closed."""
    a = vsm.SharedMemory(create=True, size=4096)
    b = vsm.SharedMemory(a.name)
    assert b.address == a.address
    gone, kept = (a, b) if first == "creator" else (b, a)
    view = kept.buf[:8]
    gone.close()  # its own buffer has no views: allowed, the mapping stays
    assert _maps(kept.address)
    view[:2] = b"ok"
    with pytest.raises(BufferError):
        kept.close()
    view.release()
    addr = kept.address
    kept.close()
    assert not _maps(addr)
    a.unlink()


def test_close_with_a_heap_open_refuses(registry: str) -> None:
    sm = vsm.SharedMemory(create=True, size=1 << 20)
    heap = sm.heap()
    with pytest.raises(BufferError):
        sm.close()
    heap.close()
    sm.close()
    sm.unlink()


def test_use_after_close(registry: str) -> None:
    sm = vsm.SharedMemory(create=True, size=10)
    sm.close()
    sm.close()  # idempotent, as the stdlib's
    assert sm.buf is None
    with pytest.raises(ValueError):
        sm.address  # noqa: B018
    with pytest.raises(ValueError):
        sm.heap()
    sm.unlink()


# --------------------------------------------------------------- names and errors


def test_errors_as_the_stdlib(registry: str) -> None:
    with pytest.raises(FileNotFoundError):
        vsm.SharedMemory("nope")
    with pytest.raises(ValueError):
        vsm.SharedMemory(create=True, size=0)
    with pytest.raises(ValueError):
        vsm.SharedMemory(create=True, size=-1)
    with pytest.raises(ValueError):
        vsm.SharedMemory()
    with pytest.raises(ValueError):
        vsm.SharedMemory("a\0b")
    with pytest.raises(ValueError):
        vsm.SharedMemory("a\0b", create=True, size=10)
    with pytest.raises(TypeError):
        vsm.SharedMemory(create=True, size=1.5)
    lo, hi = shm_range()
    with pytest.raises(OSError) as err:
        vsm.SharedMemory(create=True, size=hi - lo + 4096)
    assert err.value.errno == errno.ENOMEM
    assert vaspace.seg_ids() == []  # nothing left behind by the failures
    sm = vsm.SharedMemory("taken", create=True, size=10)
    try:
        with pytest.raises(FileExistsError) as err:
            vsm.SharedMemory("taken", create=True, size=10)
        assert err.value.filename == "/taken"
    finally:
        sm.close()
        sm.unlink()


def test_names_size_repr_and_pickle(registry: str) -> None:
    with new_block(5000) as sm:
        assert sm._name.startswith(vsm._SHM_NAME_PREFIX) and sm.name == sm._name[1:]
        assert sm.size == 8192 and len(sm.buf) == 8192  # whole pages
        assert repr(sm) == f"SharedMemory({sm.name!r}, size=8192)"
        assert vaspace.vas_seg_find("shm:" + sm._name) > 0
        clone = pickle.loads(pickle.dumps(sm))
        assert (clone.name, clone.address, clone.size) == (sm.name, sm.address, sm.size)
        clone.close()


# --------------------------------------------------------------- permissions


def test_mode_and_owner_are_the_registry_s(registry: str) -> None:
    private = vsm.SharedMemory(create=True, size=10)  # 0o600, like the stdlib
    shared = vsm.SharedMemory(create=True, size=10, mode=0o666)
    try:
        attr = vaspace.vas_seg_getattr(vaspace.vas_seg_find("shm:" + shared._name))
        assert (attr.mode, attr.user) == (0o666, os.geteuid())
        shared.buf[0] = 1

        def as_other(priv: str, pub: str) -> tuple[str, int]:
            try:
                vsm.SharedMemory(priv)
                got = "attached"
            except PermissionError:
                got = "refused"
            sm = vsm.SharedMemory(pub)
            sm.buf[0] += 1
            try:
                sm.unlink()
            except PermissionError:
                got += ", unlink refused"
            sm.close()
            return got, os.geteuid()

        result = in_child(as_other, private.name, shared.name, uid=NOBODY).get()
        assert result == ("refused, unlink refused", NOBODY)
        assert shared.buf[0] == 2 and _exists(shared.name)
    finally:
        for sm in (private, shared):
            sm.close()
            sm.unlink()


def test_other_user_block_is_not_reaped_by_us(registry: str) -> None:
    def make() -> str:
        sm = vsm.SharedMemory(create=True, size=10, mode=0o644)
        name = sm.name
        sm.close()
        # Die without atexit: the creator record says this pid, now gone.
        os.kill(os.getpid(), signal.SIGKILL)
        return name

    res = in_child(make, uid=NOBODY)
    assert res.signal == signal.SIGKILL
    names = [vaspace.seg_name(s) for s in vaspace.seg_ids()]
    assert len(names) == 1

    def reap_as_other() -> list[int]:
        tracking.forget_reap_time()
        return tracking.reap(vsm.REGISTRY_PREFIX)

    assert in_child(reap_as_other, uid=OTHER_USER).get() == []
    assert [vaspace.seg_name(s) for s in vaspace.seg_ids()] == names
    sids = vaspace.seg_ids()
    assert reap_as_other() == sids  # root may delete anyone's
    assert vaspace.seg_ids() == []


# --------------------------------------------------------------- heap, list, manager


def _lookup(args: tuple[str, list[int]]) -> list[bytes]:
    from vaspace.heap import Dict

    name, keys = args
    sm = vsm.SharedMemory(name)
    heap = sm.heap()
    try:
        d = Dict.open(heap, "index")
        return [d[k] for k in keys]
    finally:
        heap.close()
        sm.close()


def test_heap_format_once_then_open_across_processes(registry: str) -> None:
    from vaspace.heap import Dict

    sm = vsm.SharedMemory(create=True, size=4 << 20)
    heap = sm.heap()
    try:
        d = Dict(heap, root="index")
        d.update((i, f"v{i}".encode()) for i in range(1000))
        with _FORK.Pool(2) as pool:
            got = pool.map(_lookup, [(sm.name, [1, 2, 999]), (sm.name, [0])])
        assert got == [[b"v1", b"v2", b"v999"], [b"v0"]]
        again = sm.heap()  # opens, does not reformat
        assert len(Dict.open(again, "index")) == 1000
        again.close()
    finally:
        heap.close()
        sm.close()
        sm.unlink()


def test_heap_refuses_to_format_over_data(registry: str) -> None:
    with new_block(1 << 20) as sm:
        sm.buf[:8] = b"userdata"
        with pytest.raises(ValueError):
            sm.heap()


def test_shareable_list_is_vaspace_backed(registry: str) -> None:
    sl = vsm.ShareableList([1, "two", b"three", 4.0, None])
    try:
        assert isinstance(sl.shm, vsm.SharedMemory)
        same = pickle.loads(pickle.dumps(sl))
        same[0] = 10
        assert sl[0] == 10 and same.shm.address == sl.shm.address
        same.shm.close()
    finally:
        sl.shm.close()
        sl.shm.unlink()


def test_manager_unlinks_its_blocks_on_shutdown(registry: str) -> None:
    with vsm.SharedMemoryManager() as smm:
        sm = smm.SharedMemory(size=100)
        sl = smm.ShareableList(range(5))
        names = (sm.name, sl.shm.name)
        assert isinstance(sm, vsm.SharedMemory) and _exists(names[0]) and _exists(names[1])
        sm.close()
        sl.shm.close()
    deadline = time.monotonic() + 10
    while any(_exists(n) for n in names) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_exists(n) for n in names)


def _first_heap_use(args: tuple[str, int, object]) -> None:
    name, i, barrier = args
    sm = vsm.SharedMemory(name)
    barrier.wait()  # type: ignore[attr-defined]
    heap = sm.heap()
    heap.set_root(f"c{i}", heap.alloc(16))
    heap.close()
    sm.close()


def test_concurrent_first_heap_formats_once(registry: str) -> None:
    with new_block(1 << 20) as sm:
        barrier = _FORK.Barrier(4)
        procs = [_FORK.Process(target=_first_heap_use, args=((sm.name, i, barrier),))
                 for i in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        assert [p.exitcode for p in procs] == [0] * 4
        heap = sm.heap()
        assert sorted(heap.roots()) == ["c0", "c1", "c2", "c3"]  # nobody formatted twice
        heap.close()


def test_heap_waits_bounded_for_a_held_lock(registry: str, monkeypatch) -> None:
    import fcntl

    monkeypatch.setattr(vsm, "HEAP_LOCK_TIMEOUT", 0.2)
    sm = vsm.SharedMemory(create=True, size=1 << 20)
    holder = os.open(f"{vaspace.registry_root()}/seg/{vaspace.vas_seg_find('shm:' + sm._name)}"
                     "/data", os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # what any reader of the file could do
        with pytest.raises(TimeoutError):
            sm.heap()
        fcntl.flock(holder, fcntl.LOCK_UN)
        sm.heap().close()
    finally:
        os.close(holder)
        sm.close()
        sm.unlink()


def test_vaspace_ls_shows_a_block_with_owner_and_mode(registry: str) -> None:
    import json

    from vaspace.cli import cli

    with new_block(10_000, mode=0o640) as sm:
        out = CliRunner().invoke(cli, ["ls", "--json"])
        assert out.exit_code == 0, out.output
        (seg,) = json.loads(out.output)["segments"]
        assert seg["name"] == "shm:" + sm._name
        assert (seg["uid"], seg["mode"]) == (os.geteuid(), "0640")
        assert (seg["start"], seg["size"]) == (sm.address, sm.size)


def test_a_rewritten_region_never_maps_over_memory(registry: str) -> None:
    """A block's owner can rewrite its region file; attaching it must not clobber anything."""
    def make_and_rewrite(target: int) -> str:
        sm = vsm.SharedMemory(create=True, size=4096, mode=0o666, track=False)
        sid = vaspace.vas_seg_find("shm:" + sm._name)
        sm.close()
        fd = os.open(f"{vaspace.registry_root()}/seg/{sid}/region", os.O_WRONLY | os.O_TRUNC)
        os.write(fd, f"{target:x}-{target + 4096:x}\n".encode())
        os.close(fd)
        return sm.name

    with new_block(4096) as mine:
        mine.buf[:4] = b"mine"
        # Aimed at a block this process maps: refused, nothing replaced.
        name = in_child(make_and_rewrite, mine.address, uid=NOBODY).get()
        with pytest.raises(OSError) as err:
            vsm.SharedMemory(name)
        assert err.value.errno == errno.EFAULT and "in use in this process" in str(err.value)
        assert bytes(mine.buf[:4]) == b"mine"
        # Aimed outside the shared-memory range (here: the VAS part of the window).
        name = in_child(make_and_rewrite, SEG_BASE, uid=NOBODY).get()
        with pytest.raises(OSError) as err:
            vsm.SharedMemory(name)
        assert err.value.errno == errno.EFAULT and "not in the shared-memory range" in str(
            err.value)


def test_fork_while_another_thread_holds_the_mapping_table(registry: str) -> None:
    import threading

    from vaspace.shm import mappings

    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with mappings._lock:
            held.set()
            done.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        def child() -> int:
            signal.alarm(10)  # a deadlock ends as SIGALRM, not as a hung test
            with new_block(4096) as sm:
                sm.buf[0] = 1
                return sm.size

        res = in_child(child)
        assert res.signal is None and res.get() == 4096
    finally:
        done.set()
        holder.join()
