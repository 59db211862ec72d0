"""A ``Ref`` left by ``with``: its directory closed once, whatever descriptor it got.

``Ref.__exit__`` has its own copy of ``close`` (every call leaves a Ref this
way), so it is tested on its own: on descriptor 0, and after an explicit
``close`` inside the block.  Both run in a child, whose descriptor 0 may go.
"""

from __future__ import annotations

import errno
import os

import vaspace as v
from vaspace.registry import ref as refmod
from vaspace.registry.kind import VAS
from vaspace_testing import in_child


def _with_on_fd_zero() -> tuple[int, int]:
    vid = v.vas_create("zero", 0o600)
    os.close(0)
    with refmod.pin(VAS, vid) as ref:
        assert ref.dirfd == 0  # the lowest free descriptor
    try:
        os.fstat(0)
    except OSError as exc:
        return ref.dirfd, exc.errno
    return ref.dirfd, 0


def test_leaving_with_closes_a_directory_on_descriptor_zero(registry: str) -> None:
    assert in_child(_with_on_fd_zero).get() == (-1, errno.EBADF)


def _close_inside_with() -> int:
    with refmod.pin(VAS, v.vas_create("inside", 0o600)) as ref:
        ref.close()
        reused = os.open("/", os.O_RDONLY)  # may take the directory's old number
    os.fstat(reused)  # leaving the block closed nothing more
    return ref.dirfd


def test_leaving_with_after_close_closes_nothing_else(registry: str) -> None:
    assert in_child(_close_inside_with).get() == -1
