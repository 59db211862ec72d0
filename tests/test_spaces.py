"""The Pythonic layer: VAS and Segment handles, views and arrays."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import vaspace as v
from vaspace_testing import SEG_BASE, MiB


def test_handles_roundtrip(registry: str) -> None:
    seg = v.Segment.create("table", SEG_BASE, size=MiB)
    db = v.VAS.create("db", mode=0o640)
    assert v.VAS.find("db") == db and v.Segment.find("table") == seg
    assert seg.size == MiB and seg.end == SEG_BASE + MiB
    db.attach_segment(seg, os.O_RDWR)
    assert db.segments() == [(seg, os.O_RDWR)]
    assert [x.name for x in v.VAS.all()] == ["db"] and list(v.Segment.all()) == [seg]
    db.attr = v.Attr(0o600, os.geteuid(), os.getegid())
    assert db.attr.mode == 0o600
    assert "db" in repr(db) and "table" in repr(seg)
    db.detach_segment(seg)
    db.delete()
    seg.delete()
    assert list(v.VAS.all()) == [] and list(v.Segment.all()) == []


def test_create_needs_end_or_size(registry: str) -> None:
    with pytest.raises(TypeError):
        v.Segment.create("x", SEG_BASE)
    with pytest.raises(TypeError):
        v.Segment.create("x", SEG_BASE, SEG_BASE + MiB, size=MiB)


def test_view_and_array(registry: str) -> None:
    seg = v.Segment.create("arr", SEG_BASE, size=MiB)
    db = v.VAS.create("db")
    db.attach_segment(seg)
    db.attach(os.O_RDWR)
    with pytest.raises(OSError) as e:
        seg.view()
    assert e.value.errno == errno.EFAULT and "arr" in str(e.value)
    with db.active():
        a = seg.array(np.float64, (128, 1024))
        a[:] = 1.5
        assert a.ctypes.data == SEG_BASE  # no copy: the array IS the segment
        assert seg.view()[:8].tobytes() == np.float64(1.5).tobytes()
        assert len(seg.view()) == MiB
    with pytest.raises(OSError):
        seg.array("u1")


def test_readonly_view(registry: str) -> None:
    seg = v.Segment.create("ro", SEG_BASE, size=MiB)
    db = v.VAS.create("db")
    db.attach_segment(seg, os.O_RDWR)
    db.attach(os.O_RDONLY)
    with db.active():
        assert seg.view().readonly
        assert not seg.array("u1").flags.writeable


def test_stale_handle_einval(registry: str) -> None:
    db = v.VAS.create("gone")
    db.delete()
    with pytest.raises(OSError) as e:
        db.attr  # noqa: B018
    assert e.value.errno == errno.EINVAL
