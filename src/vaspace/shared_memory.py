"""A drop-in for ``multiprocessing.shared_memory``, at one address in every process.

``SharedMemory``, ``ShareableList`` and ``SharedMemoryManager`` behave as the
standard library's (3.13 API: ``track=``), with the same names, the same
exceptions and the same private hooks (``_USE_POSIX``, ``_SHM_NAME_PREFIX``,
``_make_filename``, ``_name``, ``_flags``).  The differences:

- Each block is a vaspace segment named ``"shm:" + _name`` in the registry
  (``vaspace ls`` shows it with its owner and mode; the registry checks
  permissions), placed first-fit in ``vaspace.window.shm_range()``.  Its
  buffer sits at the same address in every process (``.address``), so
  pointers stored in it are valid everywhere: ``.heap()`` puts a
  ``vaspace.heap.Heap`` on it.
- It is ordinary shared memory, outside VAS switching: visible in every VAS
  and in the original address space; a VAS never maps anything in its range.
- Attaching never registers anything with a resource tracker, so a process
  that attaches and exits never destroys the block (cpython gh-82300).  Only
  ``unlink()`` does, or, with ``track=True``, the creating process's exit
  without ``unlink()`` (see ``vaspace.shm.tracking``).
- ``.size`` is rounded up to whole pages (as the standard library reports
  it on macOS), the same in the creator and in attachers.
- ``close()`` and ``unlink()`` refuse with BufferError, changing nothing,
  while views of the buffer are alive.

See docs/shared_memory.md.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import _core, api
from .args import exact_int
from .registry import fs, objects
from .registry import root as rootmod
from .registry import seg as segreg
from .registry.kind import SEG
from .shm import mappings, placement, tracking
from .shm.forksafe import fork_safe_lock
from .window import shm_range

if TYPE_CHECKING:
    from .heap import Heap

__all__ = ["ShareableList", "SharedMemory", "SharedMemoryManager"]

_USE_POSIX = True
_O_CREX = os.O_CREAT | os.O_EXCL
# FreeBSD limits names to 14 characters; the standard library keeps to that.
_SHM_SAFE_NAME_LENGTH = 14
_SHM_NAME_PREFIX = "/psm_"
# A block's segment in the registry is named REGISTRY_PREFIX + its _name.
REGISTRY_PREFIX = "shm:"


def _make_filename() -> str:
    """A random name for a new block (``_SHM_NAME_PREFIX`` + hex)."""
    nbytes = (_SHM_SAFE_NAME_LENGTH - len(_SHM_NAME_PREFIX)) // 2
    assert nbytes >= 2, "_SHM_NAME_PREFIX too long"
    return _SHM_NAME_PREFIX + secrets.token_hex(nbytes)


def _regname(name: object) -> str:
    """The registry name of the block called ``name`` (its ``_name``)."""
    if not isinstance(name, str):
        raise TypeError(f"shared memory name must be str, not {type(name).__name__}")
    if "\0" in name:
        raise ValueError("embedded null character in shared memory name")
    regname = REGISTRY_PREFIX + name
    # At most 4 bytes a character: short names need no encoding to be within 255 bytes.
    if len(regname) > 255 // 4 and len(regname.encode("utf-8", "surrogatepass")) > 255:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), name)
    return regname


def _oserror(err: int, name: str) -> OSError:
    """The standard library's form: ``OSError(errno, strerror, name)`` (subclass by errno)."""
    return OSError(err, os.strerror(err), name)


def _pin(name: str) -> objects.Ref:
    """The block's segment, pinned (one registry look-up); FileNotFoundError if none."""
    try:
        return objects.find(SEG, _regname(name))
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise _oserror(errno.ENOENT, name) from None
        raise


# What opening a block yields: (sid, data file descriptor read-write, start, end).
_Opened = tuple[int, int, int, int]


def _create(name: str, size: int, mode: int, track: bool, shm: tuple[int, int]) -> _Opened:
    """Create the segment for a new block; FileExistsError if the name is taken.

    The creator maps the data file it has just made (a duplicate of its
    descriptor, taken before publication), so it neither looks the segment
    up again nor reads back the region it chose.  With ``track`` its
    creator record is written before publication too.
    """
    # By value: placement does arithmetic on it.  A bool is a size here, as
    # in the standard library (True is 1 byte).
    given, size = size, exact_int(int(size) if isinstance(size, bool) else size)
    if size is None:
        raise TypeError(f"'size' must be an integer, not {type(given).__name__}")
    regname = _regname(name)
    size = placement.page_round(size)
    lo, hi = shm
    root = rootmod.ensure()  # creating a block is a creating call: it may make the registry
    tracking.reap(REGISTRY_PREFIX)
    kept: list[int] = []

    def keep(fd: int) -> None:
        kept.append(os.dup(fd))

    def before_publish(dfd: int, sid: int) -> None:
        placement.remember(root, sid, dfd, start, start + size)  # the next create need not read it
        if track:
            tracking.record_creator(dfd)

    try:
        with rootmod.locked():  # placement and publication, atomic among creators
            taken = placement.registry_taken(lo, hi) + mappings.taken()
            start = placement.first_fit(size, taken, lo, hi)
            try:
                sid = segreg.create(regname, start, start + size, mode, keep, before_publish)
            except FileExistsError:
                raise _oserror(errno.EEXIST, name) from None
    except BaseException:
        for fd in kept:
            os.close(fd)
        raise
    if track:
        tracking.track(root, regname, sid)
    return sid, kept[0], start, start + size


def _attach(name: str, shm: tuple[int, int]) -> _Opened:
    """Open an existing block's data file read-write, checked to lie in ``shm`` (shm_range())."""
    with _pin(name) as ref:
        try:
            fd, start, end = segreg.open_mapping(ref, os.O_RDWR)
        except PermissionError:
            raise _oserror(errno.EACCES, name) from None
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # deleted meanwhile
                raise _oserror(errno.ENOENT, name) from None
            raise
        sid = ref.id
    lo, hi = shm
    if not lo <= start < end <= hi:
        os.close(fd)
        raise OSError(errno.EFAULT, f"{os.strerror(errno.EFAULT)}: segment {REGISTRY_PREFIX}"
                      f"{name!r} [{start:#x}, {end:#x}) is not in the shared-memory range "
                      f"[{lo:#x}, {hi:#x}); it is not a vaspace.shared_memory block")
    return sid, fd, start, end


class SharedMemory:
    """A shared memory block at one fixed address in every process.

    ``SharedMemory(name=None, create=False, size=0, *, track=True, mode=0o600)``
    creates a block (``create=True``: ``FileExistsError`` if ``name`` is taken,
    a random name if ``name`` is None) or attaches to one by name
    (``FileNotFoundError`` if there is none).  ``mode`` is the block's
    permission bits, checked by the registry (a vaspace extra).
    """

    # Defaults, so that close() and unlink() work on a half-made object.
    _name: str | None = None
    _fd = -1
    _mapping: mappings.Mapping | None = None
    _fm: _core.FixedMap | None = None
    _buf: memoryview | None = None
    _size = 0
    _flags = os.O_RDWR
    _mode = 0o600
    _prepend_leading_slash = True

    def __init__(self, name: str | None = None, create: bool = False, size: int = 0, *,
                 track: bool = True, mode: int | None = None) -> None:
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create:
            self._flags = _O_CREX | os.O_RDWR
            if size == 0:
                raise ValueError("'size' must be a positive number different from zero")
        if name is None and not self._flags & os.O_EXCL:
            raise ValueError("'name' can only be None if create=True")
        if mode is None:
            mode = self._mode
        given, mode = mode, exact_int(mode)
        if mode is None:
            raise TypeError(f"mode must be int, not {type(given).__name__}")
        self._track = track
        if name is None:
            while True:
                try:
                    self._open(_make_filename(), size, mode)
                except FileExistsError:
                    continue
                break
        else:
            self._open("/" + name if self._prepend_leading_slash else name, size, mode)

    def _open(self, name: str, size: int, mode: int) -> None:
        created = False
        shm = shm_range()  # read once per open (it parses VASPACE_WINDOW)
        if self._flags & os.O_CREAT and self._flags & os.O_EXCL:
            opened, created = _create(name, size, mode, self._track, shm), True
        elif self._flags & os.O_CREAT:  # attach or create
            try:
                opened = _attach(name, shm)
            except FileNotFoundError:
                if size <= 0:
                    raise ValueError("cannot create an empty shared memory block") from None
                try:
                    opened, created = _create(name, size, mode, self._track, shm), True
                except FileExistsError:  # another process won the race: attach
                    opened = _attach(name, shm)
        else:
            opened = _attach(name, shm)
        sid, self._fd, start, end = opened
        self._name = name
        try:
            self._mapping, self._fm = mappings.acquire(self._fd, name, start, end - start, shm)
        except BaseException:
            self.close()
            if created:
                with contextlib.suppress(OSError):
                    api.vas_seg_delete(sid)
                tracking.untrack(_regname(name), sid)
            raise
        self._size = end - start
        self._buf = memoryview(self._fm)

    def __del__(self) -> None:
        # Views outliving the object keep its mapping (BufferError): memory stays valid.
        # (No contextlib here: at interpreter exit, modules may already be torn down.)
        try:
            self.close()
        except (OSError, BufferError):
            pass

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.name, False, self.size))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.name!r}, size={self.size})"

    @property
    def buf(self) -> memoryview | None:
        """A memoryview of the block's bytes (None once closed)."""
        return self._buf

    @property
    def name(self) -> str | None:
        """The name that identifies the block (without the leading '/')."""
        reported = self._name
        if reported is not None and self._prepend_leading_slash and reported.startswith("/"):
            reported = reported[1:]
        return reported

    @property
    def size(self) -> int:
        """Size in bytes: whole pages."""
        return self._size

    @property
    def address(self) -> int:
        """The address of ``buf[0]``: the same in every process that attaches the block."""
        if self._mapping is None:
            raise ValueError(f"shared memory {self.name!r} is closed")
        return self._mapping.start

    def _refuse_if_exported(self, what: str) -> None:
        """BufferError, changing nothing, if views of the buffer are alive.

        ``buf.release()`` refuses while buffers taken from ``buf`` live
        (memoryviews, numpy arrays, a heap); slices of ``buf`` keep its
        export on this object's exporter alive after ``buf`` is released.
        """
        if self._fm is None or self._buf is None:
            return
        try:
            self._buf.release()
        except BufferError:
            busy = True
        else:
            busy = self._fm.exports > 0
            self._buf = memoryview(self._fm)
        if busy:
            raise BufferError(
                f"shared memory {self.name!r}: views of its buffer are alive (memoryviews, "
                f"slices, numpy arrays or a heap made from .buf); {what} refused: "
                "release them first (del them, mv.release(), heap.close())")

    def close(self) -> None:
        """Unmap the block from this object; the block itself stays (see ``unlink``).

        BufferError, changing nothing, while views of ``buf`` are alive.
        """
        self._refuse_if_exported("close()")
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mapping is not None and self._fm is not None:
            try:
                mappings.release(self._mapping, self._fm)
            except BufferError:  # a view appeared meanwhile (another thread)
                self._buf = memoryview(self._fm)
                raise
            self._mapping = self._fm = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def unlink(self) -> None:
        """Destroy the block: its name goes now, its memory when the last process unmaps it.

        FileNotFoundError if it is already gone; PermissionError if the
        registry refuses (not the owner); BufferError, changing nothing,
        while views of this object's ``buf`` are alive.
        """
        if not self._name:
            return
        self._refuse_if_exported("unlink()")
        regname = _regname(self._name)
        try:
            with _pin(self._name) as ref:  # one look-up, for the delete too
                sid = ref.id
                segreg.delete_pinned(ref)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # deleted meanwhile
                raise _oserror(errno.ENOENT, self._name) from None
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise _oserror(exc.errno, self._name) from None
            raise
        tracking.untrack(regname, sid)

    def heap(self) -> Heap:
        """A ``vaspace.heap.Heap`` on the block: formatted on first use, opened after.

        "First use" means the block still starts with zero bytes (a fresh
        block); anything else must be a heap (ValueError otherwise).  The
        heap holds an export of ``buf`` until ``Heap.close()``.
        """
        from .heap import Heap

        if self._buf is None:
            raise ValueError(f"shared memory {self.name!r} is closed")
        buf = self._buf
        with _heap_lock, _flocked(self._fd, f"shared memory {self.name!r}"):
            if bytes(buf[:8]) == bytes(8):
                return Heap.format(buf)
            return Heap.open(buf)


_heap_lock = fork_safe_lock(globals(), "_heap_lock")

# How long heap() waits for another process's first heap() (format) to end.
HEAP_LOCK_TIMEOUT = 10.0


@contextlib.contextmanager
def _flocked(fd: int, what: str) -> Iterator[None]:
    """An exclusive flock on ``fd``, waited for at most HEAP_LOCK_TIMEOUT seconds.

    Anyone who can open the data file can flock it, so the wait is bounded:
    TimeoutError rather than a hang.
    """
    if not fs.flock_within(fd, HEAP_LOCK_TIMEOUT):
        raise TimeoutError(f"{what}: its data file has been locked by another "
                           f"process for {HEAP_LOCK_TIMEOUT:g} s")
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _stdlib_classes() -> tuple[type, type]:
    """``ShareableList`` and ``SharedMemoryManager``, re-bound to this module."""
    import multiprocessing.managers as mgrs
    import multiprocessing.shared_memory as std

    from .shm.stdlib import rebind

    here = globals()
    ns_list = dict(vars(std), SharedMemory=SharedMemory)
    shareable = rebind(std.ShareableList, ns_list, __name__)
    ns_list["ShareableList"] = shareable

    ns_mgr = dict(vars(mgrs))
    # Looked up at call time, when this module is complete.
    ns_mgr["shared_memory"] = sys.modules[__name__]
    tracker = rebind(mgrs._SharedMemoryTracker, ns_mgr, __name__)
    ns_mgr["_SharedMemoryTracker"] = tracker
    server = rebind(mgrs.SharedMemoryServer, ns_mgr, __name__)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        # No resource tracker to start: vaspace blocks need none.
        mgrs.BaseManager.__init__(self, *args, **kwargs)

    __init__.__qualname__ = "SharedMemoryManager.__init__"
    manager = rebind(mgrs.SharedMemoryManager, ns_mgr, __name__, _Server=server,
                     __init__=__init__)
    here["_SharedMemoryTracker"] = tracker
    here["SharedMemoryServer"] = server
    return shareable, manager


ShareableList, SharedMemoryManager = _stdlib_classes()
ShareableList.__doc__ = (
    "The standard library's ShareableList over vaspace SharedMemory blocks.\n\n"
    + (ShareableList.__doc__ or ""))
