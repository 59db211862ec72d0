"""NAME|ID arguments, and the user's words for "there is no such object".

The RFC answers an unknown name with ESRCH, whose system text is "No such
process": right for a syscall, wrong for someone who typed a VAS name.  The
registry's messages may change shape, so the sentence a user reads is made
here, from what the command knows (the kind of object and the text typed),
not by rewording the registry's error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex

import click

import vaspace

from .model import resolve_seg, resolve_vas


class CliError(click.ClickException):
    """A failure the command explains in its own words (exit status 1)."""


class NotFound(CliError):
    """No object (or process) answers to what the user typed."""


def refused(err: int, what: str) -> CliError:
    """``<system reason>: <what>``, the shape of every refusal line (docs/cli.md)."""
    return CliError(f"{os.strerror(err)}: {what}")


def typed_name(text: str) -> str:
    """The name in a NAME argument, without its optional ``name:`` prefix."""
    return text[len("name:"):] if text.startswith("name:") else text


def shell_arg(name: str) -> str:
    """``name`` as a NAME|ID argument the shell passes through unchanged."""
    if name.isdigit() or name.startswith("name:"):
        name = f"name:{name}"
    return shlex.quote(name)


def vas_ref(text: str) -> int:
    """The VAS that ``text`` (NAME or ID) names; ``NotFound`` when no VAS has that name."""
    try:
        return resolve_vas(text)
    except ProcessLookupError:
        raise NotFound(f"no VAS named {typed_name(text)!r}") from None


def seg_ref(text: str) -> int:
    """The segment that ``text`` (NAME or ID) names; ``NotFound`` when there is none."""
    try:
        return resolve_seg(text)
    except ProcessLookupError:
        raise NotFound(f"no segment named {typed_name(text)!r}") from None


def vases_holding(sid: int) -> list[tuple[int, str]]:
    """``(vid, name)`` of every VAS that holds segment ``sid`` now, by id.

    Read only on an error path (a refused delete), so a full scan is fine;
    VASes deleted meanwhile are skipped.
    """
    found = []
    for vid in vaspace.vas_ids():
        with contextlib.suppress(OSError):
            if any(link.sid == sid for link in vaspace.vas_segments(vid)):
                found.append((vid, vaspace.vas_name(vid)))
    return found


def busy_segment(sid: int, name: str) -> CliError | None:
    """The EBUSY line of ``seg rm``, naming the VASes that hold the segment.

    None when no VAS holds it any more (the refusal had another cause, such
    as a registry lock held too long): the caller then reports the original.
    """
    holding = vases_holding(sid)
    if not holding:
        return None
    vases = ", ".join(f"VAS {vname!r} (vid {vid})" for vid, vname in holding)
    hint = f"vaspace seg detach {shell_arg(holding[0][1])} {shell_arg(name)}"
    return refused(errno.EBUSY, f"cannot delete segment {name!r} (sid {sid}): it is in "
                   f"{vases}; detach it first ({hint})")
