"""Generic registry objects: what VASes and segments have in common.

An object of a kind ("VAS" or "segment") is a directory ``<kind dir>/<id>``
plus a name link ``names/<kind dir>/<encoded name> -> <id>``; the directory's
``index`` link names the encoded name, so each side leads to the other.  Its
attributes (owner, group, mode) are the real metadata of one file inside it,
the *attribute file* (``lock`` for a VAS, ``data`` for a segment), so the
kernel enforces them on whoever opens that file.  Calls work on a pinned
``Ref`` (ref.py).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable

from .. import names
from .._ntuples import Attr
from ..args import exact_int
from ..errors import invalid, vas_error
from . import fs, records
from . import root as rootmod
from .kind import MAX_ID, SEG, VAS, Kind, check_id, describe
from .ref import Ref, attr_of, is_live, live_id, pin

__all__ = ["MAX_ID", "SEG", "VAS", "Kind", "Ref", "all_ids", "check_attr", "check_id", "create",
           "describe", "find", "find_id", "getattr_", "orphans", "pin", "reap_orphans", "setattr_"]


def find(kind: Kind, name: object) -> Ref:
    """Pin the object called ``name``; ESRCH if there is none."""
    enc = names.checked_encoding(name, kind.label)
    root = rootmod.existing()
    try:
        target = os.readlink(f"{root}/names/{kind.dirname}/{enc}")
        if not rootmod.is_id(target):
            raise FileNotFoundError
        # The index entry may be planted (names/ is writable by everyone):
        # the object's own directory must name it back.
        return pin(kind, int(target), enc)
    except OSError:  # ENOENT: no such name; EINVAL: a planted file that is not a link
        raise vas_error(errno.ESRCH, f"no {kind.label} named {name!r}", str(name)) from None


def find_id(kind: Kind, name: object) -> int:
    """The id of the object called ``name`` (``find`` without keeping a ``Ref``); ESRCH.

    The hot path of ``vas_find``: the same checks as ``find``, with no
    object built; any failure goes through ``find`` for its exact error.
    """
    oid = live_id(kind, names.checked_encoding(name, kind.label), rootmod.existing())
    if oid is not None:
        return oid
    with find(kind, name) as ref:
        return ref.id


def getattr_(kind: Kind, oid: object) -> Attr:
    """The attributes of object ``oid`` (``pin`` + ``Ref.attr`` without a ``Ref``); EINVAL."""
    if type(oid) is int and 0 < oid <= MAX_ID:  # exact ints only: no subclass's __format__
        attr = attr_of(kind, oid, rootmod.existing())
        if attr is not None:
            return attr
    with pin(kind, oid) as ref:
        return ref.attr()


def create(kind: Kind, name: object, dir_mode: int,
           populate: Callable[[int, int], None]) -> int:
    """Create an object atomically and return its id.

    ``mkdir <kind>/<id>`` claims the first free id (mkdir is atomic, so two
    creators never share one); ``populate`` fills the directory through its
    descriptor (``name`` is written only for a name too long to be spelt
    by the ``index`` link: see ``_populate``); the directory gets
    ``dir_mode`` (whatever the umask); the ``index`` link, then the name
    link publish it
    (``symlink`` fails with EEXIST if the name is taken, so exactly one
    racing creator wins).  Until then the directory is not an object, and a
    crash in between leaves only an invisible directory, which
    ``reap_orphans`` removes.
    """
    raw = names.check(name, kind.label)
    enc = names.encode(raw)
    root = rootmod.ensure()
    base = f"{root}/{kind.dirname}"  # trusted: the root and its subdirectories were checked
    oid, dfd = _claim_id(kind, base)
    try:
        _populate(dfd, oid, name, enc, populate)  # type: ignore[arg-type]
        os.symlink(enc, "index", dir_fd=dfd)
        # Only now may others write here (a VAS's writers): nothing of ours
        # can be pre-empted by an entry they plant.
        os.fchmod(dfd, dir_mode)
        os.symlink(str(oid), f"{root}/names/{kind.dirname}/{enc}")
    except BaseException as exc:
        with fs.pinned_dir(base) as parent:
            fs.remove_pinned(str(oid), parent, dfd, kind.subdirs)
        if isinstance(exc, FileExistsError):
            raise vas_error(errno.EEXIST, f"a {kind.label} named {name!r} already exists",
                            str(name)) from None
        raise
    finally:
        os.close(dfd)
    _reap_once(kind, root)
    return oid


def _populate(dfd: int, oid: int, name: str, enc: str,
              populate: Callable[[int, int], None]) -> None:
    """Fill the fresh directory: the ``name`` file if the name needs one, then ``populate``.

    The ``index`` link spells the name (percent-encoded, ``names.decode``),
    so a ``name`` file is written only for a name stored by hash: one file
    (four system calls) less per create, the one Ref.name would never read.

    The directory was made with mode 0o700, which a strict umask (say
    0o277) may have cut down so that we cannot write into it: then it gets
    0o700 explicitly and the fill starts again.  Checking first would cost
    every create a system call; this costs one only under such a umask.
    Nobody else can use the directory meanwhile (no group or other bits,
    in a sticky parent).
    """
    try:
        _fill(dfd, oid, name, enc, populate)
    except PermissionError:
        if os.fstat(dfd).st_mode & 0o700 == 0o700:
            raise  # not the umask's doing (a clone's source, say): the caller's error
        os.fchmod(dfd, 0o700)
        fs.clear_dir(dfd)
        _fill(dfd, oid, name, enc, populate)


def _fill(dfd: int, oid: int, name: str, enc: str, populate: Callable[[int, int], None]) -> None:
    if enc.startswith("#"):  # stored by hash (names.encode): the index cannot spell it
        fs.write_new("name", name, 0o644, dfd)
    populate(dfd, oid)


# The next id to try, per kind directory: avoids listing it on every create.
_next_id: dict[str, int] = {}


def _claim_id(kind: Kind, base: str) -> tuple[int, int]:
    """mkdir the first free id under ``base`` (mode 0700); return (id, pinned descriptor)."""
    oid = _next_id.get(base) or _scan_next(base)
    collisions = 0
    while True:
        if oid > MAX_ID:
            # Ids above the highest are used up: anyone can mkdir
            # "<kind>/2147483647", so that is no proof the space is full.
            # Take the lowest free id instead.
            oid = _lowest_free(kind, base)
        path = f"{base}/{oid}"
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            collisions += 1
            # Others created many objects since we last looked: look again.
            oid = _scan_next(base) if collisions % 8 == 0 else oid + 1
            continue
        _next_id[base] = oid + 1
        try:
            return oid, fs.open_dir(path)
        except PermissionError:
            # mkdir's mode is masked by the umask (0o377 leaves us unable to
            # open our own directory): set it explicitly, only then (see
            # _populate).  Nobody else can replace our fresh entry meanwhile
            # (the parent is sticky).
            os.chmod(path, 0o700)
            return oid, fs.open_dir(path)


def _lowest_free(kind: Kind, base: str) -> int:
    taken = set(rootmod.numeric_entries(base))
    oid = next((i for i in range(1, len(taken) + 2) if i not in taken), MAX_ID + 1)
    if oid > MAX_ID:
        raise vas_error(errno.ENOSPC, f"no free {kind.label} id")
    return oid


def _scan_next(base: str) -> int:
    ids = rootmod.numeric_entries(base)
    return (ids[-1] if ids else 0) + 1


# ---------------------------------------------------------------- orphans

ORPHAN_AGE = 60.0  # seconds: a create in progress is never younger than this when reaped
REAP_BATCH = 64  # at most this many entries are examined by one automatic reap


def orphans(kind: Kind, min_age: float = ORPHAN_AGE, limit: int | None = None) -> list[int]:
    """Ids of directories that are provably half-made (or half-deleted) objects.

    Such a directory is a real directory (not a link), not live (no index
    leading back to it) and unchanged for ``min_age`` seconds, so no create
    in progress is among them.
    """
    root = str(rootmod.existing())
    out = []
    with fs.pinned_dir(f"{root}/{kind.dirname}") as parent:
        ids = rootmod.numeric_entries(parent)
        now = time.time()
        for oid in ids if limit is None else ids[:limit]:
            st = fs.lstat_at(str(oid), parent)
            if (st is not None and stat.S_ISDIR(st.st_mode) and now - st.st_mtime >= min_age
                    and not is_live(kind, oid, root)):
                out.append(oid)
    return out


def reap_orphans(kind: Kind, min_age: float = ORPHAN_AGE, limit: int | None = None) -> list[int]:
    """Remove half-made objects (``orphans``) this process may remove; the ids removed.

    Removal is ``fs.remove_dir``: relative to the kind directory's
    descriptor, never through a link, never recursing into what a writer
    could swap.  A planted symlink is not a directory and is left alone.
    """
    root = str(rootmod.existing())
    gone = []
    with fs.pinned_dir(f"{root}/{kind.dirname}") as parent:
        for oid in orphans(kind, min_age, limit):
            if not is_live(kind, oid, root) and fs.remove_dir(str(oid), parent, kind.subdirs):
                gone.append(oid)
    return gone


_reaped: set[tuple[str, str]] = set()


def _reap_once(kind: Kind, root: str) -> None:
    """The automatic reap: once per process and root, after its first create, bounded."""
    key = (root, kind.dirname)
    if key in _reaped:
        return
    _reaped.add(key)
    try:
        reap_orphans(kind, limit=REAP_BATCH)
        if kind is VAS:  # process records: once per process is enough
            records.reap_pending(REAP_BATCH)
            records.reap_slot_files(REAP_BATCH)
    except OSError:
        pass  # housekeeping never fails a create


# ---------------------------------------------------------------- attributes


def check_attr(attr: object, what: str) -> Attr:
    """Accept an Attr (or any object with int mode/user/group); EINVAL otherwise."""
    try:
        mode, user, group = attr.mode, attr.user, attr.group  # type: ignore[attr-defined]
    except AttributeError:
        raise invalid(f"attributes for {what} must be an Attr, not {type(attr).__name__}") from None
    values = []
    for field, raw in (("mode", mode), ("user", user), ("group", group)):
        value = exact_int(raw)  # by value: a subclass could lie in `&` or its comparisons
        if value is None or not 0 <= value < 2**32 - 1:
            raise invalid(f"attribute {field}={raw!r} for {what} is not a valid id or mode")
        values.append(value)
    mode, user, group = values
    return Attr(mode=mode & 0o666, user=user, group=group)


def setattr_(ref: Ref, attr: Attr, filename: str | None = None) -> None:
    """Apply attributes to the attribute file, or ``filename`` (chown first, then chmod).

    The kernel's rules apply: only the owner (or root) may chmod, and only
    root may give a file away; those refusals surface as EPERM.  The file
    is reached through the pinned directory and changed through an
    ``O_PATH`` descriptor, so no link is followed.
    """
    filename = filename or ref.kind.attr_file
    try:
        fd = os.open(filename, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=ref.dirfd)
    except (FileNotFoundError, NotADirectoryError):
        raise ref.gone() from None
    try:
        cur = os.fstat(fd)
        if not stat.S_ISREG(cur.st_mode):
            raise ref.damaged(f"its {filename} is not a regular file")
        try:
            if (attr.user, attr.group) != (cur.st_uid, cur.st_gid):
                os.chown(f"/proc/self/fd/{fd}", attr.user, attr.group)
            os.chmod(f"/proc/self/fd/{fd}", attr.mode)
        except PermissionError:
            raise ref.error(errno.EPERM, "cannot take this owner, group or mode: only the "
                            "owner may chmod, only root may chown") from None
    finally:
        os.close(fd)


def all_ids(kind: Kind) -> list[int]:
    """Ids of every live object of a kind, sorted."""
    root = str(rootmod.existing())
    with fs.pinned_dir(f"{root}/{kind.dirname}") as parent:
        ids = rootmod.numeric_entries(parent)
    return [oid for oid in ids if is_live(kind, oid, root)]
