"""A process is recognised by (pid, start time): the start time must be the real one."""

from __future__ import annotations

import os

from vaspace.registry import records


def _uptime_ticks() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) * os.sysconf("SC_CLK_TCK")


def test_start_time_is_in_ticks_since_boot_and_tells_processes_apart() -> None:
    """Field 22 of /proc/<pid>/stat: after boot (init's is small), before now, and
    a process started later never has an earlier start time."""
    mine = records.start_time(os.getpid())
    init = records.start_time(1)
    assert mine is not None and init is not None
    assert 0 <= init <= mine <= _uptime_ticks() + 1
    assert mine > 0  # this process started after boot, not with it
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        child = records.start_time(pid)  # a zombie until reaped: its stat is still there
    finally:
        os.waitpid(pid, 0)
    assert child is not None and child >= mine
    assert records.start_time(pid) is None  # reaped: gone


def _python_parse(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return int(data[data.rindex(b")") + 2 :].split()[19])


def test_start_time_counts_fields_after_the_last_parenthesis() -> None:
    """A command name with spaces and ')' (any user can choose one) does not shift
    the field: the C parse agrees with a plain Python parse of the same line."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with open("/proc/self/comm", "w") as f:
                f.write(") 1 2 ) 3 (x")
            os.write(ready_w, b"x")
            os.read(done_r, 1)  # stay alive until the parent has looked
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        with open(f"/proc/{pid}/stat", "rb") as f:
            assert b") 1 2 ) 3 (x)" in f.read()  # the name really holds them
        assert records.start_time(pid) == _python_parse(pid)
    finally:
        os.write(done_w, b"x")
        os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)


def test_start_time_of_no_process_is_none() -> None:
    """Pids that cannot name a process (0, negative, past the kernel's limit) are not an error."""
    for pid in (0, -1, 2**31, 2**40):
        assert records.start_time(pid) is None
    assert records.start_time(os.getpid()) == _python_parse(os.getpid())
