"""vas_switch: visibility, faults, warm switches, sharing and threads."""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import threading

import pytest

import vaspace as v
from vaspace_testing import SEG_BASE, MiB, in_child, maps_line, thread_inside


def world(name: str, start: int, size: int, mode: int = 0o600,
          access: int = os.O_RDWR) -> tuple[int, int]:
    vid = v.vas_create(name, mode)
    sid = v.vas_seg_create(f"{name}-seg", start, start + size, mode)
    v.vas_seg_attach(vid, sid, access)
    return vid, sid


def peek(addr: int) -> int:
    return ctypes.c_ubyte.from_address(addr).value


def poke(addr: int, value: int) -> None:
    ctypes.c_ubyte.from_address(addr).value = value


def test_visibility_and_active(registry: str) -> None:
    vid, sid = world("a", SEG_BASE, MiB)
    v.vas_attach(0, vid, os.O_RDWR)
    assert v.active_vas() == 0
    v.vas_switch(vid)
    assert v.active_vas() == vid
    poke(SEG_BASE + 100, 7)
    assert peek(SEG_BASE + 100) == 7
    v.vas_switch(vid)  # no-op
    v.vas_switch(0)
    assert v.active_vas() == 0


@pytest.mark.parametrize("bad", [-1, 777, "1", None, 2**70])
def test_switch_to_unattached_einval(registry: str, bad: object) -> None:
    with pytest.raises(OSError) as e:
        v.vas_switch(bad)  # type: ignore[arg-type]
    assert e.value.errno == errno.EINVAL
    assert v.active_vas() == 0


def test_original_as_faults(registry: str) -> None:
    vid, _ = world("a", SEG_BASE, MiB)

    def touch_outside() -> None:
        v.vas_attach(0, vid, os.O_RDWR)
        v.vas_switch(vid)
        v.vas_switch(0)
        peek(SEG_BASE)

    assert in_child(touch_outside).signal == signal.SIGSEGV


def test_vas_without_segment_faults(registry: str) -> None:
    a, _ = world("a", SEG_BASE, MiB)
    b, _ = world("b", SEG_BASE + 64 * MiB, MiB)

    def touch_other() -> None:
        v.vas_attach(0, a, os.O_RDWR)
        v.vas_attach(0, b, os.O_RDWR)
        v.vas_switch(b)
        peek(SEG_BASE)  # a's segment: not in b

    assert in_child(touch_other).signal == signal.SIGSEGV


def test_readonly_attach_write_faults(registry: str) -> None:
    vid, sid = world("a", SEG_BASE, MiB)

    def write_ro() -> None:
        v.vas_attach(0, vid, os.O_RDONLY)
        v.vas_switch(vid)
        assert peek(SEG_BASE) == 0  # reading works
        poke(SEG_BASE, 1)

    assert in_child(write_ro).signal == signal.SIGSEGV


def test_readonly_segment_link_write_faults(registry: str) -> None:
    vid, sid = world("a", SEG_BASE, MiB, access=os.O_RDONLY)

    def write_ro() -> None:
        v.vas_attach(0, vid, os.O_RDWR)
        v.vas_switch(vid)
        assert v.Segment(sid).view().readonly
        poke(SEG_BASE, 1)

    assert in_child(write_ro).signal == signal.SIGSEGV


def test_same_addresses_different_data(registry: str) -> None:
    a, sa = world("a", SEG_BASE, MiB)
    b, sb = world("b", SEG_BASE, MiB)
    v.vas_attach(0, a, os.O_RDWR)
    v.vas_attach(0, b, os.O_RDWR)
    with v.VAS(a).active():
        poke(SEG_BASE, 0xAA)
    with v.VAS(b).active():
        assert peek(SEG_BASE) == 0
        poke(SEG_BASE, 0xBB)
    for _ in range(50):
        v.vas_switch(a)
        assert peek(SEG_BASE) == 0xAA
        v.vas_switch(b)
        assert peek(SEG_BASE) == 0xBB
    v.vas_switch(0)


def test_active_context_manager_restores_on_exception(registry: str) -> None:
    a, _ = world("a", SEG_BASE, MiB)
    vas = v.VAS(a).attach(os.O_RDWR)
    with pytest.raises(RuntimeError), vas.active():
        assert v.active_vas() == a
        raise RuntimeError("boom")
    assert v.active_vas() == 0


def test_warm_switch_no_refault(registry: str) -> None:
    """64 MiB populated; 100 round trips; re-touch: at most 1% minor faults."""
    size = 64 * MiB
    a, sa = world("a", SEG_BASE, size)
    b, sb = world("b", SEG_BASE, size)
    v.vas_attach(0, a, os.O_RDWR)
    v.vas_attach(0, b, os.O_RDWR)
    page = os.sysconf("SC_PAGE_SIZE")
    v.vas_switch(a)
    arr = v.Segment(sa).array("u1")
    arr[::page] = 1  # populate every page
    del arr
    for _ in range(100):
        v.vas_switch(b)
        v.vas_switch(a)
    arr = v.Segment(sa).array("u1")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arr[::page] += 1  # re-touch every page (read and write)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert int(arr[::page].min()) == 2
    del arr
    v.vas_switch(0)
    assert faults <= (size // page) // 100, faults


def test_shared_segment_does_not_move(registry: str) -> None:
    a = v.vas_create("a", 0o600)
    b = v.vas_create("b", 0o600)
    shared = v.vas_seg_create("shared", SEG_BASE, SEG_BASE + MiB, 0o600)
    own_a = v.vas_seg_create("own-a", SEG_BASE + 8 * MiB, SEG_BASE + 9 * MiB, 0o600)
    for vid in (a, b):
        v.vas_seg_attach(vid, shared, os.O_RDWR)
    v.vas_seg_attach(a, own_a, os.O_RDWR)
    v.vas_attach(0, a, os.O_RDWR)
    v.vas_attach(0, b, os.O_RDWR)
    v.vas_switch(a)
    poke(SEG_BASE, 5)
    line_a = maps_line(SEG_BASE)
    v.vas_switch(b)
    assert peek(SEG_BASE) == 5
    # The same VMA (same inode, same range) is there in b ...
    assert maps_line(SEG_BASE) == line_a
    # ... because the switch's plan moves only own-a (to its parking slot).
    from vaspace import _core

    plan = _core.plan_get(a, b)
    assert [(src, size) for src, _, size, _ in plan] == [(SEG_BASE + 8 * MiB, MiB)]
    # own-a is gone from view in b.
    assert "---p" in maps_line(SEG_BASE + 8 * MiB)
    v.vas_switch(0)


def test_threads_have_their_own_active_vas(registry: str) -> None:
    a, _ = world("a", SEG_BASE, MiB)
    b, _ = world("b", SEG_BASE + 64 * MiB, MiB)
    v.vas_attach(0, a, os.O_RDWR)
    v.vas_attach(0, b, os.O_RDWR)
    v.vas_switch(a)
    seen: dict[str, object] = {}
    ready = threading.Event()
    done = threading.Event()

    def worker() -> None:
        seen["start"] = v.active_vas()
        v.vas_switch(b)  # disjoint addresses: both views coexist in the window
        poke(SEG_BASE + 64 * MiB, 9)
        seen["in"] = v.active_vas()
        ready.set()
        done.wait(10)
        v.vas_switch(0)

    t = threading.Thread(target=worker)
    t.start()
    ready.wait(10)
    assert seen == {"start": 0, "in": b}
    assert v.active_vas() == a
    poke(SEG_BASE, 1)  # our segment is still there
    threads = {p.vid: p.threads for p in v.proc_vas(0)}
    assert threads[a] == (threading.get_native_id(),) and threads[b] == (t.native_id,)
    done.set()
    t.join()
    v.vas_switch(0)


def test_window_collision_names_the_mapping(registry: str) -> None:
    def attach_into_taken_window() -> str:
        import mmap

        taken = mmap.mmap(-1, 1 << 20)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(taken))
        os.environ["VASPACE_WINDOW"] = f"{addr - (addr % (1 << 30)):x}-{addr + (1 << 30):x}"
        vid = v.vas_create("w", 0o600)
        try:
            v.vas_attach(0, vid, os.O_RDWR)
        except OSError as exc:
            return f"{exc.errno} {exc}"
        return "attached"

    out = in_child(attach_into_taken_window).get()
    assert out.startswith(f"{errno.EFAULT} ") and "collides with mapping" in out


def test_thread_conflict_efault_and_stays(registry: str) -> None:
    a, _ = world("a", SEG_BASE, MiB)
    b, _ = world("b", SEG_BASE, MiB)  # same addresses, different mapping
    v.vas_attach(0, a, os.O_RDWR)
    v.vas_attach(0, b, os.O_RDWR)
    v.vas_switch(a)
    poke(SEG_BASE, 3)
    out: dict[str, object] = {}

    def worker() -> None:
        try:
            v.vas_switch(b)
        except OSError as exc:
            out["errno"] = exc.errno
        out["active"] = v.active_vas()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert out == {"errno": errno.EFAULT, "active": 0}
    assert peek(SEG_BASE) == 3  # and the first thread's view is intact
    v.vas_switch(0)
    t = threading.Thread(target=worker)
    out.clear()
    t.start()
    t.join()
    assert out == {"active": b}  # it can retry once the range is free


def test_dead_thread_inside_vas_is_pruned(registry: str) -> None:
    a, _ = world("a", SEG_BASE, MiB)
    b, _ = world("b", SEG_BASE, MiB)
    v.vas_attach(0, a, os.O_RDWR)
    v.vas_attach(0, b, os.O_RDWR)
    t = threading.Thread(target=v.vas_switch, args=(a,))
    t.start()
    t.join()  # died inside a
    v.vas_switch(b)  # a's mapping is parked, not in the way
    assert v.active_vas() == b
    v.vas_switch(0)
    v.vas_detach(0, a)


def test_two_processes_share_pointer_structure(registry: str) -> None:
    """A linked list built with ctypes in one process, walked in another."""
    vid, sid = world("list", SEG_BASE, MiB, mode=0o644)

    class Node(ctypes.Structure):
        pass

    Node._fields_ = [("value", ctypes.c_int64), ("next", ctypes.POINTER(Node))]

    def build() -> int:
        v.vas_attach(0, vid, os.O_RDWR)
        v.vas_switch(vid)
        size = ctypes.sizeof(Node)
        prev = None
        for i in range(10):
            node = Node.from_address(SEG_BASE + 4096 + i * size)
            node.value = i * i
            node.next = ctypes.pointer(prev) if prev is not None else ctypes.POINTER(Node)()
            prev = node
        head = ctypes.c_uint64.from_address(SEG_BASE)
        head.value = ctypes.addressof(prev)
        return head.value

    head = in_child(build).get()  # the writer exits; the data survives

    def walk() -> list[int]:
        v.vas_attach(0, vid, os.O_RDONLY)
        v.vas_switch(vid)
        assert ctypes.c_uint64.from_address(SEG_BASE).value == head
        node = Node.from_address(head)
        values = [node.value]
        while node.next:
            node = node.next.contents
            values.append(node.value)
        return values

    assert in_child(walk).get() == [i * i for i in reversed(range(10))]


def test_failed_move_is_rolled_back(registry: str) -> None:
    """A move that fails mid-plan undoes the moves done: the thread stays in A, intact.

    The failure is real: B's parked mapping is unmapped behind vaspace's back
    (in a child), so mremap of it fails with EFAULT after A was parked.
    """
    from vaspace.process import state as statemod

    a, _ = world("a", SEG_BASE, MiB)
    b, _ = world("b", SEG_BASE, MiB)

    def child() -> tuple[int, int, int]:
        for vid in (a, b):
            v.vas_attach(0, vid, os.O_RDWR)
        v.vas_switch(a)
        poke(SEG_BASE, 1)
        v.vas_switch(b)
        v.vas_switch(a)  # both plans cached: the next switch is the C fast path
        m = statemod.state().attachments[b].maps[0]
        libc = ctypes.CDLL(None, use_errno=True)
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        assert libc.munmap(m.park, m.size) == 0
        try:
            v.vas_switch(b)
        except OSError as exc:
            return exc.errno or 0, v.active_vas(), peek(SEG_BASE)
        return 0, v.active_vas(), peek(SEG_BASE)

    out = in_child(child)
    assert out.signal is None
    assert out.get() == (errno.EFAULT, a, 1)


def test_core_table_matches_the_kernel(registry: str) -> None:
    """After fast and slow switches among worlds, _core's placed flags are true.

    A placed mapping shows its segment file at its home in /proc/self/maps; a
    parked one shows it at its parking slot.  The heap and the views trust
    this table, so it must never drift from the kernel's view.
    """
    worlds = [world(n, SEG_BASE, MiB)[0] for n in "abc"]
    shared = v.vas_seg_create("shared", SEG_BASE + 4 * MiB, SEG_BASE + 5 * MiB, 0o600)
    for vid in worlds[:2]:
        v.vas_seg_attach(vid, shared, os.O_RDWR)
    for vid in worlds:
        v.vas_attach(0, vid, os.O_RDWR)
    from vaspace import _core

    for target in [*worlds, 0, *worlds[::-1], worlds[0], 0, worlds[2], worlds[1]]:
        v.vas_switch(target)
        for _, home, park, _, placed, _, name in _core.mappings():
            file = f"/seg/{v.vas_seg_find(name)}/data"
            at_home, at_park = maps_line(home), maps_line(park)
            here, there = (at_home, at_park) if placed else (at_park, at_home)
            assert here.rstrip().endswith(file), (target, name, placed, here)
            assert not there.rstrip().endswith(file), (target, name, placed, there)
            if placed:  # the slot is a hole (docs/switch.md); a plug in plugged mode
                assert at_park == "" if not _core.park_plugs() else "---p" in at_park, at_park
    v.vas_switch(0)


def test_threads_in_their_own_vases_take_the_fast_path(registry: str) -> None:
    """Four threads, each alternating between its own two VASes (one segment
    each, at the thread's own address): after one warm-up round trip, every
    switch is the cached C plan, and every thread always reads its own
    world.  A fifth thread entering a VAS that shares a mapping with one of
    them sends that thread's switches away from it to the slow path, and the
    shared mapping stays placed for the thread still using it."""
    from vaspace.process import switch as switchmod

    pairs = []
    for t in range(4):
        at = SEG_BASE + t * 4 * MiB
        pairs.append([world(f"t{t}{side}", at, MiB)[0] for side in "ab"])
        for k, vid in enumerate(pairs[-1]):
            v.vas_attach(0, vid, os.O_RDWR)
            v.vas_switch(vid)
            poke(at, 10 * t + k + 1)
            v.vas_switch(0)
    slow: list[int] = []
    real_slow = switchmod._switch_slow
    errors: list[str] = []
    start = threading.Barrier(4)

    def work(t: int) -> None:
        try:
            a, b = pairs[t]
            at = SEG_BASE + t * 4 * MiB
            for vid in (a, b, a):  # the slow path caches both plans
                v.vas_switch(vid)
            start.wait()
            for i in range(300):
                k = (i + 1) % 2
                v.vas_switch(pairs[t][k])
                if peek(at) != 10 * t + k + 1:
                    errors.append(f"thread {t} in world {k} read {peek(at)}")
            v.vas_switch(0)
        except BaseException as exc:  # noqa: BLE001 - reported to the test's thread
            errors.append(repr(exc))

    switchmod._switch_slow = lambda vid: (slow.append(vid), real_slow(vid))[1]
    try:
        ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        switchmod._switch_slow = real_slow
    assert not errors, errors[:5]
    # Warm-up (3 each) and leaving (vid 0 from a VAS whose plan to 0 was
    # never cached: 1 each); none of the 1200 timed switches.
    assert len(slow) <= 4 * 4, len(slow)

    # Sharing: a thread inside t0's world a keeps its mapping placed, so
    # t0's switches away from a go to the slow path and do not park it.
    a0, b0 = pairs[0]
    with thread_inside(a0, timeout=30):
        v.vas_switch(a0)
        slow.clear()
        switchmod._switch_slow = lambda vid: (slow.append(vid), real_slow(vid))[1]
        try:
            with pytest.raises(OSError) as exc:  # b0 collides with a0, in use by the sitter
                v.vas_switch(b0)
        finally:
            switchmod._switch_slow = real_slow
        assert exc.value.errno == errno.EFAULT and slow == [b0]
        v.vas_switch(0)
        assert peek(SEG_BASE) == 1  # the sitter's world is still placed and intact
