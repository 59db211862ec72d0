"""A forked child does not share its parent's published thread slots.

Once a process has attached a VAS it publishes its thread slots in a shared
file (procs/<pid>-<start>.threads) so that others can see which of its
threads are inside which VAS.  That mapping is MADV_DONTFORK: a child starts
with slots of its own, and keeps no writable window onto its parent's.
"""

from __future__ import annotations

import os

import vaspace as v
from vaspace_testing import in_child


def _slot_file_mappings() -> list[str]:
    with open("/proc/self/maps") as f:
        return [line.split()[-1] for line in f if line.rstrip().endswith(".threads")]


def test_a_forked_child_does_not_map_its_parents_slot_file(registry: str) -> None:
    vas = v.VAS.create("a")
    vas.attach()
    try:
        mine = _slot_file_mappings()
        assert len(mine) == 1 and f"/procs/{os.getpid()}-" in mine[0]  # published
        assert in_child(_slot_file_mappings).get() == []
    finally:
        vas.detach()
