"""Behaviour of the core that the benchmarks found, pinned down as tests.

GUPS cycles through N VASes, one switch per batch.  After one warm-up cycle
every switch of the cycle should be served by a cached move plan
(``_core.switch_fast``: one C call, no Python logic, no registry access).
The benchmarks found that this held only for a ping-pong between two VASes:
every slow-path switch cleared *all* cached plans, and the cache was
direct-mapped with no collision handling (1->2 and 5->6 shared a slot).  Now
a switch keeps the cache (only attach and detach clear it) and the cache
probes linearly, so cycles of 3 and 8 VASes stay on the fast path.
"""

from __future__ import annotations

import os

import vaspace
from vaspace import _core

MiB = 1 << 20


def _ring(n: int) -> list[int]:
    w = vaspace.window()[0]
    vids = []
    for i in range(n):
        vid = vaspace.vas_create(f"ring{i}", 0o600)
        sid = vaspace.vas_seg_create(f"ring{i}", w, w + 2 * MiB, 0o600)
        vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
        vaspace.vas_attach(0, vid, os.O_RDWR)
        vids.append(vid)
    return vids


def _fast_path_misses(vids: list[int]) -> list[tuple[int, int]]:
    for b in range(2 * len(vids)):  # warm up: every transition planned once
        vaspace.vas_switch(vids[b % len(vids)])
    misses = []
    for b in range(len(vids), 3 * len(vids)):
        here, there = vids[(b - 1) % len(vids)], vids[b % len(vids)]
        if not _core.switch_fast(there):
            misses.append((here, there))
            vaspace.vas_switch(there)  # the slow path, to stay in step
        assert vaspace.active_vas() == there
    vaspace.vas_switch(0)
    return misses


def test_ping_pong_between_2_vases_stays_on_the_fast_path(registry):
    assert _fast_path_misses(_ring(2)) == []


def test_round_robin_over_3_vases_stays_on_the_fast_path(registry):
    assert _fast_path_misses(_ring(3)) == []


def test_round_robin_over_8_vases_stays_on_the_fast_path(registry):
    assert _fast_path_misses(_ring(8)) == []
