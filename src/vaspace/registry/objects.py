"""Generic registry objects: what VASes and segments have in common.

An object of a kind ("VAS" or "segment") is a directory ``<kind dir>/<id>``
plus a name link ``names/<kind dir>/<encoded name> -> <id>``.  Its attributes
(owner, group, mode) are the real metadata of one file inside it, the
*attribute file* (``lock`` for a VAS, ``data`` for a segment), so the kernel
enforces them on whoever opens that file.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import names
from .._ntuples import Attr
from ..errors import invalid, vas_error
from . import root as rootmod

MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class Kind:
    """Describes one kind of registry object."""

    label: str  # "VAS" or "segment", for messages
    dirname: str  # "vas" or "seg"
    attr_file: str  # the file whose metadata holds the attributes

    def obj_dir(self, oid: int) -> Path:
        return rootmod.root_path() / self.dirname / str(oid)

    def name_link(self, enc: str) -> Path:
        return rootmod.root_path() / "names" / self.dirname / enc


def check_id(kind: Kind, oid: object) -> int:
    """An id must be an int in [1, 2**31-1] (bool is refused); EINVAL otherwise."""
    if not isinstance(oid, int) or isinstance(oid, bool):
        raise invalid(f"{kind.label} id must be int, not {type(oid).__name__}")
    if not 0 < oid <= MAX_ID:
        raise invalid(f"{kind.label} id {oid} is out of range")
    return oid


def name_of(kind: Kind, oid: int) -> str | None:
    """The name of a live object, or None if there is no such object.

    An object is live exactly when its name link points back at it, so a
    half-made (or half-deleted) directory is never seen.
    """
    try:
        name = rootmod.read_file(kind.obj_dir(oid) / "name")
        # A creator killed between creating and writing ``name`` leaves it
        # empty; that directory is not an object (and "" would name the
        # index directory itself).
        names.check(name, kind.label)
        target = os.readlink(kind.name_link(names.encode(name.encode())))
    except (OSError, UnicodeError):
        # ENOENT/ENOTDIR: gone or half-made; EINVAL: not a symlink (planted
        # by someone who can write the shared index); ELOOP: a planted link.
        return None
    return name if target == str(oid) else None


def lookup(kind: Kind, oid: object) -> tuple[int, str]:
    """Validate an id and return (id, name); EINVAL if it is unknown or deleted."""
    oid = check_id(kind, oid)
    rootmod.ensure()
    name = name_of(kind, oid)
    if name is None:
        raise invalid(f"no {kind.label} with id {oid}")
    return oid, name


def describe(kind: Kind, oid: int, name: str) -> str:
    """How messages name an object: ``VAS 'db' (vid 3)``."""
    idname = "vid" if kind.dirname == "vas" else "sid"
    return f"{kind.label} {name!r} ({idname} {oid})"


def find(kind: Kind, name: object) -> int:
    """The id of the object called ``name``; ESRCH if there is none."""
    raw = names.check(name, kind.label)
    rootmod.ensure()
    try:
        target = os.readlink(kind.name_link(names.encode(raw)))
    except OSError:  # ENOENT: no such name; EINVAL: a planted file that is not a link
        raise vas_error(errno.ESRCH, f"no {kind.label} named {name!r}") from None
    if not rootmod.is_id(target):
        raise vas_error(errno.ESRCH, f"no {kind.label} named {name!r}")
    oid = int(target)
    if name_of(kind, oid) != name:
        raise vas_error(errno.ESRCH, f"no {kind.label} named {name!r}")
    return oid


def create(kind: Kind, name: object, populate: Callable[[str], None]) -> int:
    """Create an object atomically and return its id.

    ``mkdir <kind>/<id>`` claims the first free id (mkdir is atomic, so two
    creators never share one); ``populate`` fills the directory; creating the
    name link publishes it (``symlink`` fails with EEXIST if the name is
    taken, so exactly one racing creator wins).  Until then the directory is
    not an object: ``name_of`` requires the link, so a crash in between
    leaves only an invisible directory, which ``reap_orphans`` removes.
    """
    raw = names.check(name, kind.label)
    root = str(rootmod.ensure())
    link = f"{root}/names/{kind.dirname}/{names.encode(raw)}"
    oid, path = _claim_id(kind, root)
    try:
        populate(path)
        os.symlink(str(oid), link)
    except FileExistsError:
        rootmod.remove_tree(Path(path))
        raise vas_error(errno.EEXIST, f"a {kind.label} named {name!r} already exists") from None
    except BaseException:
        rootmod.remove_tree(Path(path))
        raise
    return oid


# The next id to try, per kind: avoids listing the directory on every create.
_next_id: dict[str, int] = {}


def _claim_id(kind: Kind, root: str) -> tuple[int, str]:
    base = f"{root}/{kind.dirname}"
    oid = _next_id.get(base) or _scan_next(base)
    collisions = 0
    while True:
        if oid > MAX_ID:
            # Ids above the highest are used up: anyone can mkdir
            # "<kind>/2147483647", so that is no proof the space is full.
            # Take the lowest free id instead.
            oid = _lowest_free(base)
        path = f"{base}/{oid}"
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            collisions += 1
            # Others created many objects since we last looked: look again.
            oid = _scan_next(base) if collisions % 8 == 0 else oid + 1
            continue
        # mkdir's mode is masked by the umask (0o277 would leave us unable to
        # populate our own directory): set it explicitly.
        os.chmod(path, 0o700)
        _next_id[base] = oid + 1
        return oid, path


def _lowest_free(base: str) -> int:
    taken = set(rootmod.numeric_entries(Path(base)))
    oid = next((i for i in range(1, len(taken) + 2) if i not in taken), MAX_ID + 1)
    if oid > MAX_ID:
        raise vas_error(errno.ENOSPC, "no free id")
    return oid


def _scan_next(base: str) -> int:
    ids = rootmod.numeric_entries(Path(base))
    return (ids[-1] if ids else 0) + 1


def reap_orphans(kind: Kind, min_age: float = 60.0) -> list[int]:
    """Remove directories left unpublished by a creator that crashed.

    Only directories older than ``min_age`` seconds are touched, so a create
    in progress is never disturbed.  Returns the ids removed.
    """
    import time

    rootmod.ensure()
    base = rootmod.root_path() / kind.dirname
    gone = []
    for oid in rootmod.numeric_entries(base):
        path = base / str(oid)
        try:
            age = time.time() - os.lstat(path).st_mtime
        except FileNotFoundError:
            continue
        if age >= min_age and name_of(kind, oid) is None:
            rootmod.remove_tree(path)
            gone.append(oid)
    return gone


def unpublish(kind: Kind, oid: int, name: str) -> None:
    """Make an object invisible (remove its name link), then reclaim its files."""
    link = kind.name_link(names.encode(name.encode()))
    try:
        os.unlink(link)
    except FileNotFoundError:
        raise gone(kind, oid) from None
    except PermissionError:
        raise vas_error(
            errno.EPERM,
            f"{describe(kind, oid, name)}: only its owner or root may delete it "
            "(the registry directories are sticky, like /tmp)",
        ) from None
    rootmod.remove_tree(kind.obj_dir(oid))


def gone(kind: Kind, oid: int) -> OSError:
    """EINVAL for an object deleted while a call was using it (its files vanished)."""
    return invalid(f"no {kind.label} with id {oid} (it was deleted)")


def recheck(kind: Kind, oid: int, name: str) -> None:
    """EINVAL unless ``oid`` is still the object called ``name``.

    Calls look an id up, then take locks: in between, the object may have
    been deleted and its id reused, so changes re-check under their locks.
    """
    if name_of(kind, oid) != name:
        raise gone(kind, oid)


def pin_dir(kind: Kind, oid: int) -> int:
    """Open a live object's directory without following links; return its descriptor.

    The object's directory is an entry its owner may rename, so a path
    checked a moment ago may now lead elsewhere (a symlink to another
    user's object directory, swapped in between a liveness check and an
    open).  So the directory itself is opened with O_NOFOLLOW, and checked
    to be the object the name index points at: its ``name``, read through
    the descriptor, must be indexed to ``oid``.  Files opened relative to
    the descriptor are then the object's own.
    """
    try:
        dfd = os.open(kind.obj_dir(oid), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                      | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise gone(kind, oid) from None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise vas_error(errno.EIO, f"{kind.label} id {oid}: its directory is a symlink") from None
    try:
        name = _read_at(dfd, "name")
        names.check(name, kind.label)
        if os.readlink(kind.name_link(names.encode(name.encode()))) != str(oid):
            raise gone(kind, oid)
    except (FileNotFoundError, NotADirectoryError):
        os.close(dfd)
        raise gone(kind, oid) from None
    except BaseException:
        os.close(dfd)
        raise
    return dfd


def open_in(kind: Kind, oid: int, filename: str, flags: int) -> tuple[int, str]:
    """Open ``filename`` in a live object's pinned directory (``pin_dir``), no links followed.

    Returns (fd, text of ``region``): for segments, the region is read
    through the same descriptor, so it belongs to the same object ("" for
    VASes).
    """
    dfd = pin_dir(kind, oid)
    try:
        try:
            region = _read_at(dfd, "region") if kind.attr_file == "data" else ""
            fd = os.open(filename, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except (FileNotFoundError, NotADirectoryError):
            raise gone(kind, oid) from None
        return fd, region
    finally:
        os.close(dfd)


def _read_at(dfd: int, filename: str) -> str:
    fd = os.open(filename, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        return os.read(fd, 4096).decode()
    finally:
        os.close(fd)


def getattr_(kind: Kind, oid: int) -> Attr:
    """Attributes from the attribute file's metadata."""
    try:
        st = os.lstat(kind.obj_dir(oid) / kind.attr_file)
    except (FileNotFoundError, NotADirectoryError):
        raise gone(kind, oid) from None
    return Attr(mode=st.st_mode & 0o666, user=st.st_uid, group=st.st_gid)


def check_attr(attr: object, what: str) -> Attr:
    """Accept an Attr (or any object with int mode/user/group); EINVAL otherwise."""
    try:
        mode, user, group = attr.mode, attr.user, attr.group  # type: ignore[attr-defined]
    except AttributeError:
        raise invalid(f"attributes for {what} must be an Attr, not {type(attr).__name__}") from None
    for field, value in (("mode", mode), ("user", user), ("group", group)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32 - 1:
            raise invalid(f"attribute {field}={value!r} for {what} is not a valid id or mode")
    return Attr(mode=mode & 0o666, user=user, group=group)


def setattr_(kind: Kind, oid: int, attr: Attr, extra: Callable[[Attr], None] | None = None) -> None:
    """Apply attributes to the attribute file (chown first, then chmod).

    The kernel's rules apply: only the owner (or root) may chmod, and only
    root may give a file away; those refusals surface as EPERM.
    """
    path = kind.obj_dir(oid) / kind.attr_file
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_PATH)
    except (FileNotFoundError, NotADirectoryError):
        raise gone(kind, oid) from None
    try:
        cur = os.stat(fd)
        try:
            if (attr.user, attr.group) != (cur.st_uid, cur.st_gid):
                os.chown(f"/proc/self/fd/{fd}", attr.user, attr.group)
            os.chmod(f"/proc/self/fd/{fd}", attr.mode)
        except PermissionError:
            raise vas_error(
                errno.EPERM,
                f"{kind.label} id {oid}: the OS refuses this change of owner, group or mode "
                "(only the owner may chmod, only root may chown)",
            ) from None
    finally:
        os.close(fd)
    if extra is not None:
        extra(attr)


def all_ids(kind: Kind) -> list[int]:
    """Ids of every live object of a kind, sorted."""
    rootmod.ensure()
    ids = rootmod.numeric_entries(rootmod.root_path() / kind.dirname)
    return [oid for oid in ids if name_of(kind, oid) is not None]
