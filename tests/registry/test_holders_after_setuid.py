"""A process that attached as root and then became another user still holds the VAS."""

from __future__ import annotations

import os

import vaspace
from vaspace_testing import NOBODY, in_child, require_root


def test_a_holder_that_dropped_root_is_still_listed(registry: str) -> None:
    require_root()
    vid = vaspace.vas_create("v", 0o644)

    def attach_then_drop() -> list[tuple[int, int]]:
        vaspace.vas_attach(0, vid, os.O_RDONLY)  # the record is made (and owned) by root
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        return [(h.pid, h.type) for h in vaspace.vas_holders(vid)]

    pid_holders = in_child(attach_then_drop).get()
    assert len(pid_holders) == 1 and pid_holders[0][1] == os.O_RDONLY
    assert vaspace.vas_holders(vid) == []  # the child is gone, and so is its record
