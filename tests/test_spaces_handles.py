"""VAS and Segment handles compare by kind and id; their defaults give working objects."""

from __future__ import annotations

import errno
import gc
import os

import pytest

import vaspace as v
from vaspace_testing import SEG_BASE, MiB, peek

PAGE = os.sysconf("SC_PAGE_SIZE")


def test_handles_are_equal_only_for_the_same_kind_and_id(registry: str) -> None:
    a, b = v.VAS.create("a"), v.VAS.create("b")
    s = v.Segment.create("s", SEG_BASE, size=MiB)
    assert a == v.VAS(a.id) and hash(a) == hash(v.VAS(a.id))
    assert a != b and b != a
    assert a.id == s.id  # the first of each kind: same number, different objects
    assert a != s and s != a
    assert len({a, b, s, v.VAS(a.id), v.Segment(s.id)}) == 3


def test_mmap_picks_a_free_range_by_default(registry: str) -> None:
    vas = v.VAS.create("m")
    addr = vas.mmap(PAGE)
    assert addr > 0 and addr % PAGE == 0
    assert vas.mmap(PAGE) not in (0, addr)


def test_view_of_private_memory_needs_the_vas_active_and_its_start(registry: str) -> None:
    vas = v.VAS.create("p")
    addr = vas.mmap(2 * PAGE)
    vas.attach()
    with pytest.raises(OSError) as e:
        vas.view(addr)  # attached, but this thread is not inside it
    assert e.value.errno == errno.EFAULT and "active" in str(e.value)
    with vas.active():
        with vas.view(addr) as mv:
            assert len(mv) == 2 * PAGE and not mv.readonly
            mv[:3] = b"abc"
            assert peek(addr) == ord("a")
        for wrong in (addr + PAGE, addr - PAGE, 0):
            with pytest.raises(OSError) as e:
                vas.view(wrong)
            assert e.value.errno == errno.EFAULT and "no private range" in str(e.value)
    vas.detach()


def test_a_segment_not_visible_here_says_where_the_thread_is(registry: str) -> None:
    seg = v.Segment.create("s", SEG_BASE, size=MiB)
    with pytest.raises(OSError) as e:
        seg.view()
    assert e.value.errno == errno.EFAULT and "original address space" in str(e.value)
    other = v.VAS.create("without-s").attach()
    with other.active(), pytest.raises(OSError) as e:
        seg.view()
    assert e.value.errno == errno.EFAULT and f"VAS id {other.id}" in str(e.value)
    other.detach()


def test_segment_mode_is_masked_like_a_vas_mode(registry: str) -> None:
    assert v.Segment.create("s", SEG_BASE, size=MiB, mode=0o777).attr.mode == 0o666


def test_release_views_collects_arrays_that_only_a_cycle_keeps(registry: str) -> None:
    seg = v.Segment.create("s", SEG_BASE, size=MiB)
    vas = v.VAS.create("c")
    vas.attach_segment(seg, os.O_RDWR)
    vas.attach()
    gc.disable()  # only release_views may collect the cycle
    try:
        with vas.active():
            cycle: list[object] = [seg.array("u1")]
            cycle.append(cycle)
            cycle[0][0] = 7
            del cycle
            seg.release_views()  # the array is garbage, but alive until collected
        # The switch back out worked: nothing pins the segment any more.
        assert v.active_vas() == 0
    finally:
        gc.enable()
    vas.detach()
