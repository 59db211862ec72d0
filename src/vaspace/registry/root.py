"""The registry root: where it is, its layout, and its safety checks.

Layout (all under ``$VASPACE_ROOT``, default ``/dev/shm/vaspace``)::

    vas/<vid>/index         symlink -> "<encoded name>": the way back to the
                            name index, so liveness is two readlinks; it
                            spells the name (names.decode)
    vas/<vid>/name          the VAS's name, only when it is stored by hash
                            (an encoding too long for a file name)
    vas/<vid>/lock          owner, group and mode ARE the VAS's attributes;
                            attachments hold flock()s on it (the sharing rule)
    vas/<vid>/seg.<sid>     symlink -> "ro" | "wo" | "rw": an attached segment
    procs/<vid>.<pid>       symlink -> "<starttime>:<type>": a process attachment
    seg/<sid>/index, name   as for a VAS
    seg/<sid>/vases/<vid>   symlink -> "<type>": the reverse index, a hint
                            that VAS <vid> may hold the segment (sticky,
                            world-writable; checked against vas/<vid>/seg.<sid>)
    seg/<sid>/region        "start-end" in hex, as the RFC's sysfs ``region``
    seg/<sid>/data          the backing file, end - start bytes (sparse until
                            touched); owner, group and mode ARE the segment's
    names/vas/<encoded>     symlink -> "<vid>": the VAS name index
    names/seg/<encoded>     symlink -> "<sid>": the segment name index
    pending/<pid>-<start>/<vid>  symlink -> "<type>": a lazy attach request
    lock                    flock()ed around changes that span objects

Every step that makes an object visible is one atomic ``mkdir`` or
``symlink``, so a crash leaves either no object or a whole one.  An object
exists exactly when its name link points at its directory and the
directory's ``index`` points back at the name link.

Only calls that create an object create the registry (``ensure``); every
other call uses ``existing``, which fails with ENOENT naming the root.

The root and its subdirectories are sticky and world-writable, like /tmp.  A
root that is not owned by root or by the caller is refused: its owner could
otherwise delete or replace other users' objects.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .. import _core
from ..errors import vas_error
from . import fs

DEFAULT_ROOT = "/dev/shm/vaspace"
SUBDIRS = ("vas", "seg", "names", "names/vas", "names/seg", "procs", "pending")
DIR_MODE = 0o1777
_checked: dict[str, tuple[int, int]] = {}
_lock_checked: set[str] = set()
# The bytes mapping behind os.environ (CPython on POSIX): reading it costs a
# dict lookup, where ``os.environ.get`` encodes the key and decodes the value
# on every call.  ``os.environ[...] = ...`` (and monkeypatch.setenv) update it.
_ENVIRON = os.environ
_ENV = getattr(os.environ, "_data", None)
_ENV_KEY = os.fsencode("VASPACE_ROOT")
_NOT_READ = object()
# root_str's last answer, and the environment value it was decoded from.
_decoded: tuple[object, str] = (_NOT_READ, DEFAULT_ROOT)
# The last root ``existing`` checked, and the value it came from: it answers
# from this while ``$VASPACE_ROOT`` is the very same object (values are
# immutable and this holds a reference, so identity means the same text).
_last: tuple[object, str | None] = (_NOT_READ, None)


def root_path() -> Path:
    """The registry root: ``$VASPACE_ROOT`` or /dev/shm/vaspace."""
    return Path(root_str())


def _raw_root() -> object:
    """``$VASPACE_ROOT`` as os.environ stores it (bytes), or None; one dict lookup."""
    if os.environ is _ENVIRON and _ENV is not None:
        return _ENV.get(_ENV_KEY)
    return os.environ.get("VASPACE_ROOT")  # os.environ was replaced: ask it


def root_str() -> str:
    """``root_path()`` as a string: what the hot paths build file names from."""
    global _decoded
    raw = _raw_root()
    last = _decoded  # one read of the global: another thread may replace it meanwhile
    if raw is not last[0]:  # decode once per value the variable takes
        last = _decoded = (raw, os.fsdecode(raw) if raw else DEFAULT_ROOT)  # type: ignore[arg-type]
    return last[1]


def _mkdir_shared(path: Path) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    # chmod after mkdir: the umask must not decide who may use the registry.
    os.chmod(path, DIR_MODE)


def _check_dir(path: str | Path, owner: int, me: int) -> os.stat_result:
    """Refuse a registry directory that is not one, or that someone untrusted controls."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise vas_error(errno.ENOTDIR, f"registry path {path} is not a directory", str(path))
    if st.st_uid not in (0, owner, me):
        raise vas_error(
            errno.EACCES,
            f"registry path {path} is owned by uid {st.st_uid}, not by root or you; "
            "refusing it (set VASPACE_ROOT to a directory you trust)", str(path),
        )
    if st.st_uid != me and st.st_mode & 0o1002 == 0o0002:
        raise vas_error(errno.EACCES, f"registry path {path} is world-writable but not sticky",
                        str(path))
    return st


def existing() -> str:
    """The registry root, which must exist: ENOENT naming it otherwise.

    Read-only calls use this, so a typo in ``--root`` or ``VASPACE_ROOT``
    never creates a directory, and ``--root /tmp`` leaves /tmp as it is (a
    directory without the registry's layout is not a registry).  The layout
    is checked once per process, as in ``ensure``.
    """
    global _last
    # _raw_root, inlined: this runs on every call of every read-only API function.
    raw = (_ENV.get(_ENV_KEY) if os.environ is _ENVIRON and _ENV is not None
           else _raw_root())
    last = _last  # one read of the global, as in root_str
    if raw is last[0] and last[1] is not None:  # the hot path: no syscall, no decoding
        return last[1]
    key = root_str()
    if key in _checked:
        _last = (raw, key)
        return key
    me = os.geteuid()
    try:
        st = _check_dir(key, me, me)
        for sub in SUBDIRS:
            _check_dir(f"{key}/{sub}", st.st_uid, me)
    except FileNotFoundError:  # ENOTDIR (a file in the way) passes through, naming the path
        raise vas_error(errno.ENOENT, f"no vaspace registry at {key} (the first call that "
                        "creates a VAS or a segment makes it)", key) from None
    _checked[key] = (st.st_dev, st.st_ino)
    _last = (raw, key)
    return key


def ensure() -> str:
    """Create the layout on first use, check it once per process, return the root."""
    key = root_str()
    if key in _checked:
        return key
    root = Path(key)
    root.parent.mkdir(parents=True, exist_ok=True)
    _mkdir_shared(root)
    me = os.geteuid()
    owner = _check_dir(root, me, me).st_uid
    for sub in SUBDIRS:
        _mkdir_shared(root / sub)
        _check_dir(root / sub, owner, me)
    with fs.pinned_dir(str(root)) as rfd, contextlib.suppress(FileExistsError):
        fs.write_new("lock", "", 0o644, rfd)
    st = os.lstat(root)
    _checked[key] = (st.st_dev, st.st_ino)
    return key


@contextlib.contextmanager
def temporary(prefix: str = "vaspace-", root: str | None = None) -> Iterator[str]:
    """Point ``VASPACE_ROOT`` at a fresh, created registry for a while, then remove it.

    The registry is ``<fresh dir under /dev/shm>/root`` unless ``root`` is
    given; the variable is restored and the fresh directory removed on exit,
    on errors too.  Children forked meanwhile inherit the setting.  The
    layout is made up front, so that read-only calls (which never create a
    registry) work in it from the start, whichever process comes first.
    """
    base = tempfile.mkdtemp(prefix=prefix, dir="/dev/shm")
    saved = os.environ.get("VASPACE_ROOT")
    path = root or os.path.join(base, "root")
    os.environ["VASPACE_ROOT"] = path
    forget()
    try:
        ensure()
        yield path
    finally:
        if saved is None:
            os.environ.pop("VASPACE_ROOT", None)
        else:
            os.environ["VASPACE_ROOT"] = saved
        forget()
        remove_tree(Path(base))


def forget() -> None:
    """Forget which roots were checked (after VASPACE_ROOT changes in tests)."""
    global _last
    _checked.clear()
    _lock_checked.clear()
    _last = (_NOT_READ, None)


# How long a change waits for the registry lock before giving up with EBUSY.
# Real holders keep it for microseconds; only a stuck or hostile holder (any
# user can open and flock the lock file) keeps it for seconds.
LOCK_TIMEOUT = 10.0


@contextlib.contextmanager
def locked() -> Iterator[str]:
    """Hold the registry-wide lock around a change that spans objects.

    Used for segment attach/detach and deletes, whose checks ("is this
    segment attached anywhere?") read several objects.  Creating objects needs
    no lock: it is atomic by itself.  Waiting is bounded (``LOCK_TIMEOUT``,
    then EBUSY), so a process that holds the lock forever cannot hang
    everyone else's calls.
    """
    root = existing()
    try:
        fd = fs.open_file(f"{root}/lock", os.O_RDONLY)
    except OSError as exc:
        raise vas_error(exc.errno or errno.EIO, f"cannot open the registry lock {root}/lock",
                        str(root)) from None
    try:
        if root not in _lock_checked:
            if os.fstat(fd).st_uid not in (0, os.lstat(root).st_uid):
                # Planted by another user before the registry's creator made it.
                raise vas_error(errno.EACCES, f"the registry lock {root}/lock belongs to "
                                "another user", str(root))
            _lock_checked.add(root)  # the sticky root keeps it ours from now on
        if not fs.flock_within(fd, LOCK_TIMEOUT):
            raise vas_error(errno.EBUSY, f"the registry lock {root}/lock has been "
                            f"held by another process for {LOCK_TIMEOUT:g} s", str(root))
        yield root
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Remove a whole tree that the caller owns (a temporary registry), never following links.

    ``shutil.rmtree`` walks by directory descriptor on Linux
    (``rmtree.avoids_symlink_attacks``); objects inside a live registry are
    removed with ``fs.remove_pinned`` instead, which does not recurse.
    """
    shutil.rmtree(path, ignore_errors=True)


def is_id(text: str) -> bool:
    """True if ``text`` is an id written the way vaspace writes one: ASCII digits, no padding.

    Anyone can create entries in the shared directories; ``"²".isdigit()``
    is true but ``int("²")`` fails, and ``"07"`` would alias id 7.
    """
    return text.isascii() and text.isdigit() and str(int(text)) == text


def numeric_entries(path: str | Path | int) -> list[int]:
    """The id-named entries of a directory (a path or a descriptor), sorted."""
    try:
        # A descriptor is read as is (3 system calls; os.listdir(fd) makes 8).
        names = _core.dir_entries(path) if isinstance(path, int) else os.listdir(path)
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if is_id(n))
