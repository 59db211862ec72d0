"""The mode given at creation: an exact int, masked with 0o666 (the RFC's rules)."""

from __future__ import annotations

import errno
import os

import pytest

import vaspace
from vaspace_testing import SEG_BASE

PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("mode", [True, False, "0o600", 1.5, None, [0o600]])
def test_a_mode_that_is_not_an_int_is_einval_and_creates_nothing(registry: str,
                                                                 mode: object) -> None:
    with pytest.raises(OSError) as e:
        vaspace.vas_create("m", mode)  # type: ignore[arg-type]
    assert e.value.errno == errno.EINVAL
    assert e.value.filename == "m" and "mode" in str(e.value)
    assert os.listdir(f"{registry}/vas") == []
    with pytest.raises(ProcessLookupError):
        vaspace.vas_find("m")


@pytest.mark.parametrize(("given", "kept"), [(0o777, 0o666), (0o7777, 0o666), (0o640, 0o640),
                                             (0o111, 0o000), (0o1600, 0o600)])
def test_the_mode_is_masked_with_0o666(registry: str, given: int, kept: int) -> None:
    vid = vaspace.vas_create("m", given)
    assert vaspace.vas_getattr(vid).mode == kept


@pytest.mark.parametrize("mode", [True, "0o600", 1.5, None])
def test_a_segment_mode_that_is_not_an_int_is_einval(registry: str, mode: object) -> None:
    with pytest.raises(OSError) as e:
        vaspace.vas_seg_create("s", SEG_BASE, SEG_BASE + PAGE, mode)  # type: ignore[arg-type]
    assert e.value.errno == errno.EINVAL
    assert e.value.filename == "s" and "mode" in str(e.value)
    assert os.listdir(f"{registry}/seg") == []
