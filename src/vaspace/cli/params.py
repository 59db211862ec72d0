"""Click parameter types for modes, sizes and addresses.

A bad value is a usage error (exit 2) that quotes the value and shows an
example of a good one.
"""

from __future__ import annotations

from typing import Any

import click

from .output import parse_addr, parse_size


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


class AddrType(_Parsed):
    """An address, in hex (``0x4000_0000_0000``) or decimal."""

    name = "addr"

    def parse(self, text: str) -> int:
        return parse_addr(text)


MODE = ModeType()
SIZE = SizeType()
ADDR = AddrType()
