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
