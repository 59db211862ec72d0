"""fsck's findings read as sentences: the reason, not an exception's repr."""

from __future__ import annotations

import os
from pathlib import Path

import vaspace
from vaspace.registry import fsck
from vaspace_testing import SEG_BASE

PAGE = os.sysconf("SC_PAGE_SIZE")


def test_a_damaged_object_is_reported_with_its_reason(registry: str) -> None:
    sid = vaspace.vas_seg_create("junk", SEG_BASE, SEG_BASE + PAGE, 0o600)
    (Path(registry) / "seg" / str(sid) / "region").write_text("junk")
    (found,) = fsck.check()
    assert (found.kind, found.path, found.repaired) == ("damaged", f"seg/{sid}", False)
    assert "region" in found.detail and "damaged" in found.detail
    assert "[Errno" not in found.detail, found.detail
