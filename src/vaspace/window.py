"""The window: the address range where segments live, and the parking range.

Segments must lie in ``window()``; the default ``[0x4000_0000_0000,
0x5000_0000_0000)`` (64-80 TiB) is clear of the heap, the mmap area, the
stacks, PIE executables (>= about 0x5455_... even with ASLR) and the ASan and
TSan shadow layouts.  ``VASPACE_WINDOW="START-END"`` (hex) moves it.

The top sixteenth of the window is set aside for ``vaspace.shared_memory``
(``shm_range()``): its segments are mapped there directly, outside VAS
switching, so VAS mappings never go there (``vas_range()`` is the rest).

Mappings of attached VASes that are not active wait in the *parking* range,
which by default is the 4 TiB just above the window (``VASPACE_PARK`` moves
it).  Neither range is touched until a process first attaches a VAS.  A
placed mapping's parking slot is left an unmapped hole, so that a switch is
two mremaps per moved segment; ``VASPACE_PARK_PLUGS=1`` plugs those slots
too (docs/switch.md says why the holes are safe, and how they are audited).
"""

from __future__ import annotations

import functools
import os

DEFAULT_WINDOW = (0x4000_0000_0000, 0x5000_0000_0000)
DEFAULT_PARK_SIZE = 0x400_0000_0000  # 4 TiB
PAGE = os.sysconf("SC_PAGE_SIZE")
# Parked slots keep the segment's offset modulo this, so the kernel can move
# whole page-table entries (PMD/PUD) instead of single PTEs.
PARK_ALIGN = 1 << 30


@functools.lru_cache(maxsize=64)  # pure: the same variable's text parses the same
def _parse_range(var: str, text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(part, 16) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"{var}={text!r}: expected START-END in hex") from None
    if lo % PAGE or hi % PAGE or not 0 < lo < hi:
        raise ValueError(f"{var}={text!r}: need page-aligned 0 < START < END")
    if hi > 0x8000_0000_0000:
        raise ValueError(f"{var}={text!r}: END is above the 47-bit user address space")
    return lo, hi


# The bytes mapping behind os.environ (CPython on POSIX), as in registry/root.py:
# a dict lookup, where os.environ.get encodes the key and decodes the value on
# every call.  An attach asks for the window several times.
_ENVIRON = os.environ
_ENV = getattr(os.environ, "_data", None)


def _env(name: str) -> str | None:
    """``os.environ.get(name)``, at the cost of a dict lookup when it can be."""
    if os.environ is _ENVIRON and _ENV is not None:
        raw = _ENV.get(_KEYS[name])
        return None if raw is None else _decoded(raw)
    return os.environ.get(name)  # os.environ was replaced: ask it


_KEYS = {n: os.fsencode(n) for n in ("VASPACE_WINDOW", "VASPACE_PARK", "VASPACE_PARK_PLUGS",
                                      "VASPACE_WHOLE_PUD")}


@functools.lru_cache(maxsize=64)  # pure: the same bytes decode the same
def _decoded(raw: bytes) -> str:
    return os.fsdecode(raw)


_NOT_READ = object()
# The last window's ranges (window, shm_range, vas_range), and the variable's
# value they came from: answered again while it is the very same object.
_memo: tuple[object, tuple[tuple[int, int], ...]] = (_NOT_READ, ())


def ranges() -> tuple[tuple[int, int], ...]:
    """(window, shm_range, vas_range), computed once per value of ``VASPACE_WINDOW``.

    A caller that needs more than one of them asks once (the attach path).
    """
    global _memo
    fast = os.environ is _ENVIRON and _ENV is not None
    raw = _ENV.get(_KEYS["VASPACE_WINDOW"]) if fast else _NOT_READ  # type: ignore[union-attr]
    memo = _memo  # one read of the global: another thread may replace it
    if raw is memo[0] and raw is not _NOT_READ:
        return memo[1]
    text = _env("VASPACE_WINDOW")
    lo, hi = _parse_range("VASPACE_WINDOW", text) if text else DEFAULT_WINDOW
    size = (hi - lo) // SHM_SHARE // PAGE * PAGE
    out = ((lo, hi), (hi - size, hi), (lo, hi - size))
    if fast:
        _memo = (raw, out)
    return out


def window() -> tuple[int, int]:
    """The [start, end) range where segments may live."""
    return ranges()[0]


def park() -> tuple[int, int]:
    """The [start, end) range where inactive mappings are parked."""
    text = _env("VASPACE_PARK")
    if text:
        return _parse_range("VASPACE_PARK", text)
    lo, hi = window()
    return hi, hi + min(DEFAULT_PARK_SIZE, hi - lo)


def park_plugs() -> bool:
    """Whether placed mappings' parking slots are plugged (``VASPACE_PARK_PLUGS=1``)."""
    return _env("VASPACE_PARK_PLUGS") not in (None, "", "0")


def whole_pud() -> bool:
    """Whether a GiB-aligned segment's VMA may reach the next GiB
    (``VASPACE_WHOLE_PUD=0`` turns it off; see ``Space.vma_length``)."""
    return _env("VASPACE_WHOLE_PUD") != "0"


# The share of the window set aside for vaspace.shared_memory (its top part).
SHM_SHARE = 16


def shm_range() -> tuple[int, int]:
    """The [start, end) part of the window where ``vaspace.shared_memory`` places segments.

    It is the window's top sixteenth (1 TiB of the default window).  A VAS
    never maps anything there, so shared memory and VASes cannot collide.
    """
    return ranges()[1]


def vas_range() -> tuple[int, int]:
    """The [start, end) part of the window that VAS mappings use (the window minus shm_range)."""
    return ranges()[2]
