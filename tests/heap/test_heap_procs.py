"""Cross-process tests with real processes: concurrent use, SIGKILL of a
writer mid-update, and persistence of a disk-backed heap across processes."""

from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
from heaputil import map_region, soak

from vaspace.heap import Dict, Heap, HeapRecoveredWarning

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(os.path.dirname(HERE)), "src")


def make_value(key_no: int, counter: int) -> bytes:
    """A self-checking value: the (key, counter) pair repeated n times."""
    return struct.pack("<qq", key_no, counter) * (counter % 23 + 1)


def parse_value(key_no: int, v: bytes) -> int:
    """Return the counter of a value, asserting it is not torn."""
    assert isinstance(v, bytes) and len(v) % 16 == 0 and v, v[:32]
    k, c = struct.unpack_from("<qq", v)
    assert k == key_no
    assert v == make_value(k, c), "torn value"
    return c


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _child(fn) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn()
            code = 0
        except BaseException:  # report, then exit without running pytest's atexit
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def run_concurrent(heap: Heap, writers: int, readers: int, seconds: float) -> None:
    d = Dict(heap, root="shared")
    for w in range(writers):
        d[w] = make_value(w, 0)
    # a second Dict that one writer keeps growing and clearing: readers race
    # with table swaps to smaller tables and with freed, reused entries
    churn = Dict(heap)
    stop_at = time.monotonic() + seconds

    def churner() -> None:
        rnd = random.Random(99)
        while time.monotonic() < stop_at:
            for _ in range(rnd.randrange(1, 300)):
                k = rnd.randrange(1000)
                churn[k] = make_value(k, rnd.randrange(1, 10**6))
            if rnd.random() < 0.3:
                churn.clear()
            else:
                for _ in range(50):
                    churn.pop(rnd.randrange(1000), None)

    def writer(w: int) -> None:
        rnd = random.Random(w)
        c = 0
        while time.monotonic() < stop_at:
            c += 1
            d[w] = make_value(w, c)
            # churn: private keys come and go, forcing resizes and frees
            k = f"tmp-{w}-{rnd.randrange(200)}"
            if rnd.random() < 0.5:
                d[k] = "x" * rnd.randrange(100)
            else:
                d.pop(k, None)
        d[f"final-{w}"] = c

    def reader(r: int) -> None:
        last = [0] * writers
        n = 0
        # At least one pass, however late this child got the CPU (under load
        # it may start after stop_at).
        while n == 0 or time.monotonic() < stop_at:
            for w in range(writers):
                c = parse_value(w, d[w])
                assert c >= last[w], "counter went backwards"
                last[w] = c
            for _ in range(20):
                k = random.randrange(1000)
                v = churn.get(k)
                if v is not None:
                    parse_value(k, v)
            n += 1
            if n % 50 == 0:  # snapshots must be consistent too
                for k, v in churn.items():
                    parse_value(k, v)
                for k, v in d.items():
                    if isinstance(k, int):
                        parse_value(k, v)

    pids = [_child(churner)]
    pids += [_child(lambda w=w: writer(w)) for w in range(writers)]
    pids += [_child(lambda r=r: reader(r)) for r in range(readers)]
    codes = [_wait(p) for p in pids]
    assert codes == [0] * len(pids)
    for w in range(writers):
        assert parse_value(w, d[w]) == d[f"final-{w}"]
    assert d.check() == len(d)
    churn.check()
    heap.check()


def test_concurrent_dict(heap):
    run_concurrent(heap, writers=3, readers=3, seconds=2.0)


@soak
def test_concurrent_dict_soak(heap):
    run_concurrent(heap, writers=4, readers=4, seconds=60.0)


def _killed_writer(heap: Heap, d: Dict, seed: int) -> None:
    rnd = random.Random(seed)
    c = 0
    while True:
        c += 1
        r = rnd.random()
        key = rnd.randrange(64)
        if r < 0.6:
            d[key] = make_value(key, c)
        elif r < 0.85:
            d.pop(key, None)
        elif r < 0.9:
            d.clear()
        else:
            a = heap.alloc(rnd.randrange(1, 4000), 1 << rnd.randrange(4, 10))
            heap.free(heap.realloc(a, rnd.randrange(1, 8000)))


def kill_rounds(heap: Heap, rounds: int) -> int:
    """Kill a busy writer at random moments; after each kill the heap must be
    consistent and usable.  Returns the number of recoveries reported."""
    d = Dict(heap, root="victim")
    recovered = 0
    rnd = random.Random(1234)
    for i in range(rounds):
        pid = _child(lambda i=i: _killed_writer(heap, d, i))
        time.sleep(rnd.uniform(0.005, 0.03))
        os.kill(pid, signal.SIGKILL)
        assert _wait(pid) == -signal.SIGKILL
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # a read first: it must not hang even if the seq was left odd
            for k, v in d.items():
                parse_value(k, v)
            for k in range(64):
                v = d.get(k)
                if v is not None:
                    parse_value(k, v)
            heap.check()  # takes the lock: recovers if the writer died in it
            d.check()
            d[999] = make_value(999, i)  # still writable
            a = heap.alloc(100)
            heap.free(a)
        got = [w for w in caught if issubclass(w.category, HeapRecoveredWarning)]
        recovered += len(got)
    assert heap.stats().recoveries == recovered
    return recovered


def test_sigkill_writer(heap):
    rounds = 40
    recovered = kill_rounds(heap, rounds)
    # The writer spends most of its time inside the lock; across 40 random
    # kills, some must have hit it (probability of none is negligible).
    assert recovered >= 1, "no kill landed inside the lock; recovery path untested"


@soak
def test_sigkill_writer_soak(heap):
    assert kill_rounds(heap, 1000) >= 10


def _stop_pipe():
    """A pipe whose read end children poll: (read fd, write fd, stopped()),
    stopped() true once the parent has closed its write end (EOF)."""
    stop_r, stop_w = os.pipe()
    os.set_blocking(stop_r, False)

    def stopped() -> bool:
        try:
            return os.read(stop_r, 1) == b""
        except BlockingIOError:
            return False

    return stop_r, stop_w, stopped


def _kill_at_once(spawn, rounds: int, seed: int) -> None:
    """rounds times: start the victims spawn() returns (pids), let them run
    10 to 40 ms, SIGKILL them all at the same moment; each must die of it."""
    rnd = random.Random(seed)
    for i in range(rounds):
        victims = spawn(i)
        time.sleep(rnd.uniform(0.01, 0.04))
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        assert [_wait(p) for p in victims] == [-signal.SIGKILL] * len(victims)


def _check_values(d: Dict) -> None:
    for k, v in d.items():
        if isinstance(k, int):
            parse_value(k, v)


def _all_clean_after_the_kills(heap: Heap, region, root: str, stop: tuple[int, int],
                               others: list[int], check_values) -> None:
    """Stop the surviving children (close the pipe's write end): they must
    exit cleanly, and they, this process and a new opener find check() and
    Dict.check() clean and every value whole (check_values(dict))."""
    stop_r, stop_w = stop
    os.close(stop_w)
    assert [_wait(p) for p in others] == [0, 0]
    os.close(stop_r)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HeapRecoveredWarning)
        d = Dict.open(heap, root)
        assert d["survivor-done"] > 0
        heap.check()
        assert d.check() == len(d)
        check_values(d)

    def new_opener() -> None:
        h = Heap.open(region.buf)
        h.check()
        dd = Dict.open(h, root)
        assert dd.check() == len(dd) and dd["survivor-done"] > 0
        check_values(dd)
        h.close()

    assert _wait(_child(new_opener)) == 0


def _survivor_and_reader(heap: Heap, d: Dict, stop_w: int, stopped, keys: list, make,
                         read_keys: list, parse, read_all=None) -> list[int]:
    """Start two children that run until stopped(): a writer storing
    make(key, counter) under keys in turn (then "survivor-done"), and a
    reader that parses every value of read_keys it finds (parse asserts it is
    whole), and calls read_all() each pass.  Their pids."""

    def survivor() -> None:
        os.close(stop_w)
        c = 0
        while not stopped():
            c += 1
            k = keys[c % len(keys)]
            d[k] = make(k, c)
        heap.check()
        d["survivor-done"] = c

    def reader() -> None:
        os.close(stop_w)
        n = 0
        while n == 0 or not stopped():
            for k in read_keys:
                v = d.get(k)
                if v is not None:
                    parse(k, v)  # never a half-written value
            if read_all:
                read_all()
            n += 1

    return [_child(survivor), _child(reader)]


def test_sigkill_two_writers_at_once(heap, region):
    """Two writers contending for the heap lock are SIGKILLed at the same
    moment (one may hold the lock, the other wait or spin for it), while a
    third writer process and a reader process keep going.  The survivors
    must see only whole values, and every process, including a new opener,
    a consistent heap."""
    d = Dict(heap, root="victims")
    stop_r, stop_w, stopped = _stop_pipe()
    others = _survivor_and_reader(heap, d, stop_w, stopped, list(range(100, 108)), make_value,
                                  list(range(64)) + list(range(100, 108)), parse_value)
    _kill_at_once(lambda i: [_child(lambda s=s: _killed_writer(heap, d, s))
                             for s in (2 * i, 2 * i + 1)], 20, 77)
    _all_clean_after_the_kills(heap, region, "victims", (stop_r, stop_w), others, _check_values)


def test_recovery_warning_and_counter(heap):
    """A child that spends nearly all its time inside the lock (large values)
    is killed until one kill lands inside it; the next operation must warn,
    count the recovery and leave the Dict usable."""
    d = Dict(heap)
    for attempt in range(200):
        pid = _child(lambda: [d.__setitem__(b"k", b"v" * 50000) for _ in iter(int, 1)])
        time.sleep(0.01 + attempt * 0.0005)
        os.kill(pid, signal.SIGKILL)
        _wait(pid)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            d[b"k"] = b"after"
        if any(issubclass(w.category, HeapRecoveredWarning) for w in caught):
            msg = str(caught[0].message)
            assert "rolled back" in msg
            assert heap.stats().recoveries >= 1
            assert d[b"k"] == b"after"
            heap.check()
            return
    pytest.fail("never caught a writer inside the lock in 200 attempts")


CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = [{here!r}, {src!r}]
    from heaputil import map_region, soak
    from vaspace.heap import Heap, Dict, Array
    r = map_region({path!r}, {size}, addr={addr}, create=False)
    h = Heap.open(r.buf)
    d = Dict.open(h, "persist")
    step = {step}
    if step == 1:
        assert len(d) == 1001, len(d)
        assert all(d[i] == f"value-{{i}}" for i in range(1000))
        assert d["nested"] == b"\\x00bytes"
        import numpy as np
        a = Array.open(h, "arr")
        assert a.numpy().tolist() == list(range(50)), a.numpy()
        for i in range(0, 1000, 2):
            del d[i]
        d["step1"] = 1
    else:
        assert len(d) == 502 and d["step1"] == 1 and 1 in d and 0 not in d
        print("OK", h.stats().allocations)
    h.check()
    h.close()
    r.close()
""")


def test_persistence_across_processes(tmp_path):
    """A heap on a disk-backed file, written by one process, read and changed
    by a fresh interpreter (not a fork), then checked by a third."""
    import numpy as np

    from vaspace.heap import Array

    path = str(tmp_path / "persist.heap")
    size = 2 << 20
    r = map_region(path, size)
    addr = r.addr
    h = Heap.format(r.buf)
    d = Dict(h, root="persist")
    for i in range(1000):
        d[i] = f"value-{i}"
    d["nested"] = b"\x00bytes"
    a = Array(h, np.int16, root="arr")
    a.extend(range(50))
    h.close()
    r.close()
    for step in (1, 2):
        code = CHILD.format(here=HERE, src=SRC, path=path, size=size, addr=addr, step=step)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OK")
    # and this process can map it again
    r = map_region(path, size, addr=addr, create=False)
    h = Heap.open(r.buf)
    assert Dict.open(h, "persist")[1] == "value-1"
    h.close()
    r.close()


def test_threads_share_a_dict(heap):
    """Threads of one process: the GIL is released only while waiting for the
    heap lock, so writers in other processes and threads interleave safely."""
    import threading

    d = Dict(heap)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(1500):
                d[t * 10_000 + i] = make_value(t, i)
                if i % 3 == 0:
                    d.pop(t * 10_000 + i // 2, None)
                v = d.get(t * 10_000 + i)
                if v is not None:
                    parse_value(t, v)
        except BaseException as e:  # surfaced below
            errors.append(e)

    # a writer process at the same time makes the lock contended
    pid = _child(lambda: [d.__setitem__(f"p{i % 100}", i) for i in range(5000)])
    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert _wait(pid) == 0
    assert not errors, errors
    assert d.check() == len(d)
    heap.check()


def lane_value(key_no: int, counter: int) -> bytes:
    """A self-checking value short enough for an update lane: 16..128 bytes."""
    return struct.pack("<qq", key_no, counter) * (counter % 8 + 1)


def parse_lane_value(key_no: int, v: bytes) -> int:
    """Return the counter of a lane value, asserting it is not torn."""
    assert isinstance(v, bytes) and len(v) % 16 == 0 and v, v[:32]
    k, c = struct.unpack_from("<qq", v)
    assert k == key_no and v == lane_value(k, c), "torn value"
    return c


def _lane_writer(d: Dict, seed: int, keys: int) -> None:
    """Overwrites of present keys with values that fit their room: lane SETs."""
    rnd = random.Random(seed)
    c = 0
    while True:
        c += 1
        key = rnd.randrange(keys)
        d[key] = lane_value(key, c)


def _structure_writer(heap: Heap, d: Dict, seed: int, keys: int) -> None:
    """Inserts, deletes and allocations beside the lane writers (heap mutex);
    one key of the lane range is popped and stored again (a structural
    change to a key the lane writers overwrite)."""
    rnd = random.Random(seed)
    c = 0
    while True:
        c += 1
        k = 1000 + rnd.randrange(200)
        if rnd.random() < 0.5:
            d[k] = lane_value(k, c) * 2
        else:
            d.pop(k, None)
        lk = rnd.randrange(keys)
        d.pop(lk, None)
        d[lk] = lane_value(lk, 7)  # 128 bytes: room for every later lane value
        heap.free(heap.alloc(rnd.randrange(1, 4000)))


def _check_lane_dict(d: Dict, keys: int) -> None:
    for k, v in d.items():
        if isinstance(k, int) and k < keys:
            parse_lane_value(k, v)


def test_sigkill_lane_writers_and_a_structure_writer_at_once(heap, region):
    """Two writers in update lanes (in-place overwrites) and one structural
    writer (heap mutex) are SIGKILLed at the same moment, many times, while a
    surviving lane writer and a reader process keep going.  The reader only
    ever sees whole values; afterwards the survivors and a new opener find
    check() and Dict.check() clean."""
    keys = 48
    d = Dict(heap, root="lanes")
    for k in range(keys):
        d[k] = lane_value(k, 7)
    stop_r, stop_w, stopped = _stop_pipe()
    others = _survivor_and_reader(heap, d, stop_w, stopped, list(range(keys)), lane_value,
                                  list(range(keys)), parse_lane_value,
                                  lambda: _check_lane_dict(d, keys))

    def spawn(i: int) -> list[int]:
        lanes = [_child(lambda s=s: _lane_writer(d, s, keys)) for s in (3 * i, 3 * i + 1)]
        return [*lanes, _child(lambda s=3 * i + 2: _structure_writer(heap, d, s, keys))]

    _kill_at_once(spawn, 25, 15)
    _all_clean_after_the_kills(heap, region, "lanes", (stop_r, stop_w), others,
                               lambda dd: _check_lane_dict(dd, keys))


def test_lane_writers_race_readers_without_torn_values(heap):
    """Two processes overwrite the same few keys in place (update lanes: the
    lengths change with every write) as fast as they can, while this process
    reads them: every value read is whole.  A reader that skipped the lane's
    seq (a mutant) reads torn values here."""
    keys = 4
    d = Dict(heap, root="race")
    for k in range(keys):
        d[k] = lane_value(k, 7)
    writers = [_child(lambda s=s: _lane_writer(d, s, keys)) for s in (1, 2)]
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            for k in range(keys):
                seen.add(parse_lane_value(k, d[k]))
            for k, v in d.items():
                parse_lane_value(k, v)
        assert len(seen) > 100  # the writers did run during the reads
    finally:
        for pid in writers:
            os.kill(pid, signal.SIGKILL)
            _wait(pid)
    d.check()
