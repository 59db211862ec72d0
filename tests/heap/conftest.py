"""Fixtures for the heap tests: regions mapped at fixed addresses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from heaputil import Region, map_region

from vaspace.heap import Heap


@pytest.fixture
def region(tmp_path) -> Iterator[Region]:
    """A 4 MiB file on disk mapped MAP_SHARED at a fixed address."""
    r = map_region(str(tmp_path / "region.heap"), 4 << 20)
    yield r
    r.close()


@pytest.fixture
def heap(region: Region) -> Iterator[Heap]:
    """A freshly formatted heap in ``region``."""
    h = Heap.format(region.buf)
    yield h
    h.close()

