"""Checking the registry, and repairing what is provably safe to repair (``vaspace fsck``).

What is found:

- ``orphan``: an object directory that is not live (no index leading back
  to it) and older than ``objects.ORPHAN_AGE``: a create or delete cut short,
  or a directory left because a writer planted a non-empty directory in it;
- ``dangling-name``: a name link whose object does not lead back to it;
- ``damaged``: a live object whose files are not what vaspace writes (junk
  ``region``, a FIFO as ``name``, a data file of the wrong size);
- ``stale-pending``: a lazy-attach request directory of a dead process;
- ``stale-slots``: a ``procs/<pid>-<start>.threads`` file of a dead process.

Repair removes orphans, stale request directories and slot files, and
dangling name links that this user may remove, with the same safe
primitives as every other delete (fs.py).  Damaged objects are reported,
never touched: they belong to their owners.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import NamedTuple

from . import memfile, objects, records
from . import root as rootmod
from .kind import SEG, VAS, Kind


class Problem(NamedTuple):
    """One finding: what kind, where (relative to the root), why, and whether it was repaired."""

    kind: str
    path: str
    detail: str
    repaired: bool = False


def _damage(kind: Kind, oid: int) -> str | None:
    """Why a live object is damaged, or None."""
    try:
        with objects.pin(kind, oid) as ref:
            if ref.enc.startswith("#") and ref.read("name") != ref.name:
                # Only a name stored by hash has a name file (objects.create).
                return "its name file does not match the name index"
            ref.attr()
            if kind is SEG:
                from .seg import open_mapping

                fd, _, _ = open_mapping(ref, os.O_RDONLY)
                os.close(fd)
            for rng in memfile.ranges(ref):  # a VAS's private memory files (issue 16)
                os.close(memfile.open_range(ref, rng, os.O_RDONLY))
    except PermissionError:
        return None  # the mode keeps us out: not a fault of the registry
    except OSError as exc:
        return None if exc.errno == errno.EINVAL else (exc.strerror or str(exc))  # gone meanwhile
    return None


def _dangling(kind: Kind, root: str) -> list[str]:
    base = f"{root}/names/{kind.dirname}"
    out = []
    for enc in os.listdir(base):
        try:
            target = os.readlink(f"{base}/{enc}")
        except OSError:
            out.append(enc)  # not a link: planted
            continue
        if not (rootmod.is_id(target) and objects.is_live(kind, int(target), root)):
            out.append(enc)
        elif os.readlink(f"{root}/{kind.dirname}/{target}/index") != enc:
            out.append(enc)
    return out


def check(repair: bool = False) -> list[Problem]:
    """Find (and with ``repair``, fix what is safe to fix) the registry's problems."""
    root = str(rootmod.existing())
    found: list[Problem] = []
    for kind in (VAS, SEG):
        orphans = objects.orphans(kind)
        gone = set(objects.reap_orphans(kind)) if repair else set()
        found += [Problem("orphan", f"{kind.dirname}/{oid}", "not a live object (half made, "
                          "or left by a delete)", oid in gone) for oid in orphans]
        for enc in _dangling(kind, root):
            fixed = False
            if repair:
                with contextlib.suppress(OSError):
                    os.unlink(f"{root}/names/{kind.dirname}/{enc}")
                    fixed = True
            found.append(Problem("dangling-name", f"names/{kind.dirname}/{enc}",
                                 "leads to no live object", fixed))
        for oid in objects.all_ids(kind):
            why = _damage(kind, oid)
            if why is not None:
                found.append(Problem("damaged", f"{kind.dirname}/{oid}", why))
    stale = records.stale_pending()
    reaped = set(records.reap_pending(limit=None)) if repair else set()
    found += [Problem("stale-pending", f"pending/{e}", "requests for a process that is gone",
                      e in reaped) for e in stale]
    slots = records.stale_slot_files()
    removed = set(records.reap_slot_files()) if repair else set()
    found += [Problem("stale-slots", f"procs/{e}", "thread slots of a process that is gone",
                      e in removed) for e in slots]
    return found


__all__ = ["Problem", "check"]
