"""Click parameter types for modes, sizes, addresses and process ids.

A bad value is a usage error (exit 2) that quotes the value and shows an
example of a good one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

import vaspace

from .output import parse_addr, parse_size

PID_MAX_DEFAULT = 1 << 22  # the kernel's ceiling for pid_max on 64-bit


class _Parsed(click.ParamType):
    def parse(self, text: str) -> int:
        raise NotImplementedError

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        try:
            return self.parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class ModeType(_Parsed):
    """Permission bits in octal, as chmod takes them: ``600``, ``0640``, ``0o644``."""

    name = "mode"

    def parse(self, text: str) -> int:
        digits = text[2:] if text.lower().startswith("0o") else text
        try:
            mode = int(digits, 8)
        except ValueError:
            raise ValueError(f"{text!r} is not an octal mode (example: 0640)") from None
        if not 0 <= mode <= 0o777:
            raise ValueError(f"{text!r} is not a mode: only the bits 0777 exist")
        return mode


class SizeType(_Parsed):
    """A size in bytes: ``4096``, ``0x1000``, ``64M``, ``1G`` (binary units)."""

    name = "size"

    def parse(self, text: str) -> int:
        return parse_size(text)


def _hex_reading(text: str) -> str | None:
    """``0x<text>`` when ``text`` has no base prefix and, read as hex, lies in the window.

    Addresses are written in hex everywhere (maps, ``ls``, the RFC), so a
    bare ``400000000000`` is far more likely a hex address missing its
    ``0x`` than the decimal number Python would read.
    """
    if text[:2].lower() in ("0x", "0o", "0b"):
        return None
    try:
        value = int(text, 16)
    except ValueError:
        return None
    lo, hi = vaspace.window()
    return f"0x{text}" if lo <= value <= hi else None


class AddrType(_Parsed):
    """An address in any form ``int(x, 0)`` reads: ``0x4000_0000_0000``, ``0o...``,
    ``0b...`` or decimal.

    A bare number that lands outside the window, but inside it when read as
    hex, is refused with the hint instead of being taken as decimal.
    """

    name = "addr"

    def parse(self, text: str) -> int:
        hint = _hex_reading(text.strip())
        try:
            value = parse_addr(text)
        except ValueError as exc:
            if hint is None:
                raise
            raise ValueError(f"{text!r} is not an address; did you mean {hint}?") from exc
        lo, hi = vaspace.window()
        if hint is not None and not lo <= value <= hi:
            raise ValueError(f"{text!r} read as decimal is {value:#x}, outside the window "
                             f"[{lo:#x}, {hi:#x}); did you mean {hint}?")
        return value


def pid_max() -> int:
    """The kernel's pid_max: every pid is below it."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return PID_MAX_DEFAULT


class PidType(_Parsed):
    """A process id: a decimal number from 1 to below the kernel's pid_max."""

    name = "pid"

    def parse(self, text: str) -> int:
        digits = text.strip()
        if not (digits.isascii() and digits.isdigit()):
            raise ValueError(f"{text!r} is not a process id (a positive whole number, "
                             "such as 1234)")
        pid = int(digits)
        limit = pid_max()
        if not 0 < pid < limit:
            raise ValueError(f"{text!r} is not a process id: pids run from 1 to "
                             f"{limit - 1} here (pid_max)")
        return pid


MODE = ModeType()
SIZE = SizeType()
ADDR = AddrType()
PID = PidType()
