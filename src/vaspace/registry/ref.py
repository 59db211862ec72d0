"""One pinned reference to a registry object, opened once per call and passed down.

``pin(kind, id)`` opens the object's directory (``O_DIRECTORY|O_NOFOLLOW``)
and checks it against the name index once: the directory's ``index`` link
names the encoded name, and the name link must point back at the id.  Every
later read, stat or open of the object's files goes through that descriptor,
so nothing further down the call looks the object up again by id or by path,
and no rename of the directory can redirect it (STYLE.md §5).
"""

from __future__ import annotations

import errno
import os
import re
import stat

from .. import _core, names, perms
from .._ntuples import Attr, SegLink
from ..access import BY_NAME
from ..errors import invalid, vas_error
from . import fs
from . import root as rootmod
from .kind import MAX_ID, Kind, check_id, describe

_REGION = re.compile(r"([0-9a-f]{1,16})-([0-9a-f]{1,16})\n?")
REVERSE = "vases"  # a segment's reverse index: the VASes that may hold it
_S_IFMT, _S_IFREG = stat.S_IFMT(0o177777), stat.S_IFREG


def parse_region(text: str) -> tuple[int, int] | None:
    """``"start-end"`` in hex (the RFC's sysfs ``region``), or None if it is junk."""
    m = _REGION.fullmatch(text)
    if m is None:
        return None
    lo, hi = int(m[1], 16), int(m[2], 16)
    return (lo, hi) if lo < hi else None


class Ref:
    """A live object, pinned: its kind, id, encoded name and directory descriptor.

    Use as a context manager (or call ``close``).  ``name`` is read on first
    use only, so calls that never print it do not pay for it.
    """

    __slots__ = ("kind", "id", "enc", "dirfd", "root", "_name", "_entries")

    def __init__(self, kind: Kind, oid: int, enc: str, dirfd: int, root: str) -> None:
        self.kind, self.id, self.enc, self.dirfd, self.root = kind, oid, enc, dirfd, root
        self._name: str | None = None
        self._entries: list[str] | None = None

    # ------------------------------------------------------------ lifetime

    def __enter__(self) -> Ref:
        return self

    def __exit__(self, *exc: object) -> None:
        # close(), inline: every call leaves at least one Ref this way.
        if self.dirfd >= 0:
            os.close(self.dirfd)
            self.dirfd = -1

    def close(self) -> None:
        if self.dirfd >= 0:
            os.close(self.dirfd)
            self.dirfd = -1

    # ------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        """The object's name (its ``name`` file, which must encode to its index entry)."""
        if self._name is None:
            # The index link already spells the name (percent-encoded); only
            # names too long for that (stored by hash) need the name file.
            self._name = names.decode(self.enc)
        if self._name is None:
            try:
                text = fs.read_small("name", self.dirfd)
            except FileNotFoundError:
                raise self.gone() from None
            except OSError:
                raise self.damaged("its name file is not a regular text file") from None
            if names.encode(text.encode()) != self.enc:
                raise self.damaged("its name file does not match the name index")
            self._name = text
        return self._name

    @property
    def what(self) -> str:
        """How messages name the object: ``VAS 'db' (vid 3)``."""
        try:
            return describe(self.kind, self.id, self.name)
        except OSError:
            return f"{self.kind.label} id {self.id}"

    def error(self, err: int, text: str) -> OSError:
        """``OSError(err, "<strerror>: <what> <text>", <name>)``."""
        return vas_error(err, f"{self.what} {text}", self._name or str(self.id))

    def gone(self) -> OSError:
        """EINVAL: the object was deleted while the call was using it."""
        return invalid(f"no {self.kind.label} with id {self.id} (it was deleted)",
                       self._name or str(self.id))

    def damaged(self, why: str) -> OSError:
        """EIO: a file of the object is not what vaspace writes."""
        return vas_error(errno.EIO, f"{self.kind.label} id {self.id} is damaged: {why}",
                         self._name or str(self.id))

    def link_path(self) -> str:
        return f"{self.root}/names/{self.kind.dirname}/{self.enc}"

    def recheck(self) -> None:
        """EINVAL unless the pinned directory still is the live object ``id``.

        Calls pin an object, then take locks: in between it may have been
        deleted and its id reused.  So changes re-check under their locks:
        the name link must still point at the id, and the id's directory
        entry must still be the pinned directory.
        """
        kind = self.kind
        try:
            # readlink, lstat of the id's entry, fstat of the pinned descriptor: one C call.
            target, same = _core.same_entry(f"{self.root}/names/{kind.dirname}/{self.enc}",
                                            f"{self.root}/{kind.dirname}/{self.id}", self.dirfd)
        except OSError:
            raise self.gone() from None
        if target != str(self.id) or not same:
            raise self.gone()

    # ------------------------------------------------------------ contents

    def read(self, filename: str) -> str:
        """A small file of the object, as text (EIO if it is not a regular text file)."""
        try:
            return fs.read_small(filename, self.dirfd)
        except (FileNotFoundError, NotADirectoryError):
            raise self.gone() from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EIO):
                raise self.damaged(f"{filename} is not a regular text file") from None
            raise

    def open(self, filename: str, flags: int) -> int:
        """Open a regular file of the object (no link, no FIFO, no blocking); its fd.

        PermissionError passes through: callers turn it into the RFC's EACCES.
        """
        return self.open_stat(filename, flags)[0]

    def open_stat(self, filename: str, flags: int) -> tuple[int, os.stat_result]:
        """``open``, also returning the file's ``fstat``."""
        try:
            return fs.open_file_stat(filename, flags, self.dirfd)
        except OSError as exc:
            raise self._open_error(filename, exc) from None

    def open_owner(self, filename: str, access: int) -> tuple[int, int, int, int]:
        """``open_stat`` for the permission check: (fd, st_mode, st_uid, st_gid).

        The same checks in one ``_core.open_regular`` call (an attach opens
        its VAS's lock this way), without building an ``os.stat_result``.
        """
        try:
            return _core.open_regular(self.dirfd, filename, access)
        except OSError as exc:
            # open_regular's EIO is fs.NotRegular's: the file is not a regular file.
            raise self._open_error(filename, exc, exc.errno == errno.EIO) from None

    def _open_error(self, filename: str, exc: OSError, not_regular: bool = False) -> OSError:
        """What a failed open of one of the object's files means (PermissionError: itself)."""
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            return self.gone()
        if not_regular or isinstance(exc, fs.NotRegular):
            return self.damaged(f"its {filename} is not a regular file")
        if exc.errno == errno.ELOOP:
            return self.damaged(f"its {filename} is a symlink")
        return exc

    def attr(self) -> Attr:
        """Attributes from the attribute file's metadata (``lock`` or ``data``)."""
        st = fs.lstat_at(self.kind.attr_file, self.dirfd)
        if st is None:
            raise self.gone()
        if not stat.S_ISREG(st.st_mode):
            raise self.damaged(f"its {self.kind.attr_file} is not a regular file")
        return Attr(mode=st.st_mode & 0o666, user=st.st_uid, group=st.st_gid)

    def require(self, may: int) -> Attr:
        """The object's attributes, after the RFC's permission check for ``may`` (EACCES)."""
        attr = self.attr()
        perms.check(attr.user, attr.group, attr.mode, may, self)
        return attr

    def entries(self) -> list[str]:
        """The names in the object's directory, read once per reference.

        A ``Ref`` lives for one call, so this is the call's one look at the
        directory (an attach asks for the segment links and the private
        ranges): nothing outlives the call, as issue 11 §3 asks.
        """
        if self._entries is None:
            try:
                self._entries = _core.dir_entries(self.dirfd)
            except FileNotFoundError:  # getdents64 of a removed directory
                raise self.gone() from None
        return self._entries

    def links(self) -> list[SegLink]:
        """A VAS's attached segments ``seg.<sid> -> <type>``, sorted; junk is ignored."""
        out = []
        for entry in self.entries():
            if not entry.startswith("seg."):
                continue
            sid = entry[4:]
            # rootmod.is_id, inline (ASCII digits, no leading zero): a loop over entries.
            if not (sid.isascii() and sid.isdigit()) or (sid[0] == "0" and sid != "0"):
                continue
            try:
                access = BY_NAME[os.readlink(entry, dir_fd=self.dirfd)].flag
            except (OSError, KeyError):
                continue  # planted (not a link, or not a type): not an attachment
            out.append(tuple.__new__(SegLink, (int(sid), access)))  # no Python __new__
        return sorted(out)

    def has_link(self, sid: int) -> bool:
        """True if this VAS holds segment ``sid`` (its ``seg.<sid>`` link names a type)."""
        try:
            return os.readlink(f"seg.{sid}", dir_fd=self.dirfd) in BY_NAME
        except OSError:
            return False

    def region(self) -> tuple[int, int]:
        """A segment's [start, end); EIO if its ``region`` file is junk."""
        text = self.read("region")
        m = _REGION.fullmatch(text)  # parse_region, inline: every attach reads a region
        if m is not None:
            lo, hi = int(m[1], 16), int(m[2], 16)
            if lo < hi:
                return lo, hi
        raise self.damaged(f"unreadable region {text[:40]!r}")

    def reverse(self) -> list[int]:
        """A segment's reverse index: ids of VASes that may hold it (hints, unchecked)."""
        st = os.fstat(self.dirfd)
        sub = fs.open_checked_dir(REVERSE, self.dirfd, st.st_dev, (st.st_uid,))
        if sub is None:
            return []
        try:
            return rootmod.numeric_entries(sub)
        finally:
            os.close(sub)

    # ------------------------------------------------------------ removal

    def unpublish(self) -> list[str]:
        """Make the object invisible (remove its name link), then reclaim its files.

        The files are removed relative to the pinned directory, never by
        path and never by recursing into something a writer could swap
        (``fs.remove_pinned``); what cannot be removed (a non-empty
        directory a writer planted) stays behind, invisible, for ``fsck``.
        Returns the names of the entries removed.
        """
        try:
            if os.readlink(self.link_path()) != str(self.id):
                raise self.gone()
            os.unlink(self.link_path())
        except FileNotFoundError:
            raise self.gone() from None
        except PermissionError:
            raise vas_error(
                errno.EPERM,
                f"{self.what}: only its owner or root may delete it "
                "(the registry directories are sticky, like /tmp)", self._name,
            ) from None
        removed: list[str] = []
        fs.remove_pinned(f"{self.root}/{self.kind.dirname}/{self.id}", None, self.dirfd,
                         self.kind.subdirs, removed)
        return removed


def pin(kind: Kind, oid: object, enc: str | None = None, root: str | None = None) -> Ref:
    """Pin the live object ``oid`` of ``kind``; EINVAL if there is none.

    ``enc``, when given, is the encoded name whose index link the caller
    has just read and found to name ``oid`` (``find``): then only the other
    direction, the directory's ``index``, is left to check.  ``root``, when
    given, is the root another ``Ref`` of the same call was pinned in (an
    attach pins its segments in its VAS's root).
    """
    if oid.__class__ is not int or not 0 < oid <= MAX_ID:  # type: ignore[operator]
        oid = check_id(kind, oid)  # the error (or an int subclass, checked the long way)
    if root is None:
        root = rootmod.existing()
    try:
        dfd, index = _open_live(kind, oid, root, enc)
    except OSError as exc:
        # ENOENT/ENOTDIR: no such directory, or no index (half made or half
        # deleted) or one that does not lead back here (planted, stale);
        # ELOOP: the entry is a symlink, which no object is.
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise invalid(f"no {kind.label} with id {oid}", str(oid)) from None
        raise
    return Ref(kind, oid, index, dfd, root)


def _open_live(kind: Kind, oid: int, root: str, enc: str | None) -> tuple[int, str]:
    """Open the directory of live object ``oid`` (no link followed); (descriptor, index).

    The directory's ``index`` must be ``enc`` when given (the caller read
    the name link), else the name link it names must point back at ``oid``.
    Raises OSError (ENOENT for a failed check) if the object is not live.
    The system calls (open, readlinkat, readlink) are one ``_core.open_live``.
    """
    path = f"{root}/{kind.dirname}/{oid}"
    try:
        dfd, index, target = _core.open_live(
            path, None if enc is not None else f"{root}/names/{kind.dirname}/")
    except OSError as exc:
        if exc.filename == path:
            raise  # the directory itself: ENOENT, ENOTDIR, ELOOP (a link), EACCES...
        # EINVAL included: an index or name entry that is not a link was planted.
        raise FileNotFoundError(errno.ENOENT, "not a live object") from None
    try:
        if ((enc is not None and index != enc) or "/" in index or index in (".", "..")
                or (enc is None and target != str(oid))):
            raise FileNotFoundError(errno.ENOENT, "not a live object")
    except BaseException:
        os.close(dfd)
        raise
    return dfd, index


def live_id(kind: Kind, enc: str, root: str) -> int | None:
    """The id that the name link ``enc`` names, if that object is live; else None.

    ``find``'s work without a ``Ref``: the name link, then the object's
    ``index`` through its directory opened ``O_NOFOLLOW`` (a planted
    symlink is never followed), then the descriptor is closed at once.
    Four system calls; nothing is remembered between calls.
    """
    try:
        target = os.readlink(f"{root}/names/{kind.dirname}/{enc}")
    except OSError:
        return None
    # An id as vaspace writes it: ASCII digits, no leading zero, in range.
    if not (target.isascii() and target.isdigit() and target[0] != "0" and len(target) <= 10):
        return None
    oid = int(target)
    if oid > MAX_ID:
        return None
    try:
        dfd, _ = _open_live(kind, oid, root, enc)
    except OSError:
        return None
    os.close(dfd)
    return oid


def attr_of(kind: Kind, oid: int, root: str) -> Attr | None:
    """The attributes of live object ``oid`` (an int in range); None if anything is off.

    ``Ref.attr`` without a ``Ref``: callers fall back to ``pin`` for the
    exact error.  The object is checked both ways and its attribute file
    ``lstat``-ed through the pinned directory, as ``pin`` + ``attr`` do;
    ``_core.stat_live`` makes those five system calls in one call (from
    Python they cost about 2 µs more: issue 11 §3's ``vas_getattr`` ≤ 5 µs).
    """
    try:
        _, target, mode, uid, gid = _core.stat_live(
            f"{root}/{kind.dirname}/{oid}", f"{root}/names/{kind.dirname}/", kind.attr_file)
    except OSError:
        return None
    # The index was refused in C if it could not be a name link's name.
    if target != str(oid) or mode & _S_IFMT != _S_IFREG:
        return None
    # tuple.__new__ skips the NamedTuple's Python-level __new__: this is
    # vas_getattr's whole answer, and that frame was a tenth of its cost.
    return tuple.__new__(Attr, (mode & 0o666, uid, gid))


def is_live(kind: Kind, oid: int, root: str) -> bool:
    """True if ``oid`` is a live object (the same check as ``pin``, without pinning)."""
    try:
        index = os.readlink(f"{root}/{kind.dirname}/{oid}/index")
        return "/" not in index and os.readlink(f"{root}/names/{kind.dirname}/{index}") == str(oid)
    except OSError:
        return False
