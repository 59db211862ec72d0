"""Where the CLI writes, and how it formats numbers.

Data goes to stdout and diagnostics to stderr, so ``vaspace ls --json | jq``
never sees a warning.  The rich consoles have markup and highlighting off:
object names are user data and must print verbatim (a VAS called ``[red]``
is not a style).  They are built per call, not at import, so that they
follow ``sys.stdout`` when a test runner swaps it.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import sys
from typing import Any

import click
from rich.console import Console

_UNITS = "KMGTP"


def out() -> Console:
    """The console for data (stdout).  Not a terminal: wide, so tables do not wrap."""
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
    return Console(file=sys.stdout, markup=False, highlight=False, emoji=False, width=width)


def err() -> Console:
    """The console for diagnostics (stderr)."""
    return Console(file=sys.stderr, markup=False, highlight=False, emoji=False)


def emit_json(data: Any) -> None:
    """Print one JSON document on stdout (the ``--json`` branch of every listing)."""
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def human_size(n: int) -> str:
    """Bytes in binary units, as short as is exact to 3 digits: 4K, 64M, 1.5G, 100B."""
    if n < 1024:
        return f"{n}B"
    value = float(n)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            text = f"{value:.1f}" if value < 10 and value != int(value) else f"{value:.0f}"
            return f"{text}{unit}"
    raise AssertionError("unreachable")


_SIZE_RE = re.compile(r"^\s*(0x[0-9a-f_]+|[0-9][0-9_]*(?:\.[0-9]+)?)\s*([kmgtp]?)(?:i?b)?\s*$",
                      re.IGNORECASE)


def parse_size(text: str) -> int:
    """``64M``, ``1G``, ``1.5GiB``, ``4096``, ``0x1000`` -> bytes (binary units).

    ValueError names the text when it is not a size.
    """
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size (examples: 4096, 0x1000, 64M, 1G)")
    num, unit = m.groups()
    scale = 1024 ** (_UNITS.lower().index(unit.lower()) + 1) if unit else 1
    if num.lower().startswith("0x"):
        value = int(num, 16) * scale
    elif "." in num:
        value = round(float(num.replace("_", "")) * scale)
    else:
        value = int(num.replace("_", "")) * scale
    return value


def parse_addr(text: str) -> int:
    """An address as ``int(x, 0)`` reads it: ``0x``, ``0o``, ``0b`` or decimal, underscores
    allowed.  ValueError otherwise."""
    try:
        value = int(text.strip(), 0)
    except ValueError:
        raise ValueError(f"{text!r} is not an address (example: 0x4000_0000_0000)") from None
    if value < 0:
        raise ValueError(f"{text!r} is not an address: negative")
    return value


def user_name(uid: int) -> str:
    """The login name of ``uid``, or the number when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    """The group name of ``gid``, or the number when it has none."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def mode_text(mode: int) -> str:
    """Permission bits as ``0600``, the way chmod takes them."""
    return f"{mode:04o}"


def perm_string(mode: int) -> str:
    """Permission bits as ``rw-r-----`` (ls -l)."""
    bits = "rwxrwxrwx"
    return "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate(bits))
