"""File operations in directories that other users can write (STYLE.md §5).

The registry's shared directories are sticky and world-writable, and an
object's own directory may be writable by whoever may write the object.  So
every entry below them may be hostile: a symlink, a FIFO, a device, a
directory swapped in with ``renameat2(RENAME_EXCHANGE)``.  The rules here:

- never follow a link: every open is ``O_NOFOLLOW``, directories are opened
  ``O_DIRECTORY|O_NOFOLLOW`` and everything below them is reached relative
  to that descriptor;
- never block on an unexpected file type: files are opened ``O_NONBLOCK``
  (a FIFO or a file under a lease then cannot stop us) and refused unless
  ``fstat`` says they are regular;
- never delete by path: entries are unlinked relative to a pinned, checked
  directory descriptor, and removing a directory never recurses into
  anything its owner or a writer could swap.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK stays set on the descriptors we return: it changes nothing for a
# regular file (reads, flock, mmap), and clearing it would cost a syscall.
FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_SMALL = 4096
_S_IFMT, _S_IFREG = stat.S_IFMT(0o177777), stat.S_IFREG


class NotRegular(OSError):
    """A registry entry that should be a regular file is something else (EIO)."""

    def __init__(self, name: str) -> None:
        super().__init__(errno.EIO, f"{os.strerror(errno.EIO)}: {name} is not a regular file",
                         name)


def open_dir(path: str, dir_fd: int | None = None) -> int:
    """Open a directory without following a link (ELOOP/ENOTDIR if it is not one)."""
    return os.open(path, DIR_FLAGS, dir_fd=dir_fd)


def open_file(name: str, flags: int, dir_fd: int | None = None) -> int:
    """Open a regular file relative to ``dir_fd``: no link, no FIFO, no device, no block.

    Raises ``NotRegular`` (EIO) for anything but a regular file, and what
    ``open`` raises otherwise (ENOENT, EACCES, ELOOP for a symlink).
    """
    return open_file_stat(name, flags, dir_fd)[0]


def open_file_stat(name: str, flags: int,
                   dir_fd: int | None = None) -> tuple[int, os.stat_result]:
    """``open_file``, also returning the ``fstat`` it checked (callers need not fstat again)."""
    fd = os.open(name, flags | FILE_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if st.st_mode & _S_IFMT != _S_IFREG:
            raise NotRegular(name)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_small(name: str, dir_fd: int | None = None) -> str:
    """The text of a small regular file (at most 4 KiB read); EIO if it is not text."""
    # open_file_stat's checks, inline: every attach reads a region this way.
    fd = os.open(name, os.O_RDONLY | FILE_FLAGS, dir_fd=dir_fd)
    try:
        if os.fstat(fd).st_mode & _S_IFMT != _S_IFREG:
            raise NotRegular(name)
        data = os.read(fd, MAX_SMALL)
    finally:
        os.close(fd)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise OSError(errno.EIO, f"{os.strerror(errno.EIO)}: {name} is not UTF-8 text",
                      name) from None


def write_new(name: str, text: str, mode: int, dir_fd: int) -> None:
    """Create ``name`` exclusively (never through a link) in ``dir_fd`` and write ``text``."""
    fd = os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | FILE_FLAGS, mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)  # the umask must not decide the registry's modes
        if text:
            os.write(fd, text.encode())
    finally:
        os.close(fd)


def lstat_at(name: str, dir_fd: int | None) -> os.stat_result | None:
    """``lstat`` relative to ``dir_fd``; None if the entry does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def open_checked_dir(name: str, parent_fd: int, dev: int,
                     owners: tuple[int, ...] | None = None) -> int | None:
    """Open the directory ``name`` under ``parent_fd`` if it is safe to work inside.

    It must be a real directory (not a link) on the same filesystem
    (``dev``), owned by one of ``owners`` (any owner if None), and the
    directory opened must be the one that was checked (``samestat`` of the
    ``lstat`` before and the ``fstat`` after), so a swap in between is caught.
    Returns None otherwise.
    """
    before = lstat_at(name, parent_fd)
    if before is None or not stat.S_ISDIR(before.st_mode) or before.st_dev != dev:
        return None
    if owners is not None and before.st_uid not in owners:
        return None
    try:
        fd = open_dir(name, parent_fd)
    except OSError:
        return None
    if not os.path.samestat(before, os.fstat(fd)):
        os.close(fd)
        return None
    return fd


def clear_dir(dfd: int, subdirs: tuple[str, ...] = (), removed: list[str] | None = None) -> bool:
    """Unlink every entry of the pinned directory ``dfd``; True if it is now empty.

    The names of the entries removed are appended to ``removed``, if given.

    Entries are unlinked by name relative to ``dfd``, so a link is removed,
    never followed.  Directories are not recursed into, except the known
    ``subdirs`` (one level, checked by ``open_checked_dir`` to be real
    directories on the same filesystem owned by the same user as ``dfd``);
    anything else planted as a directory is removed only if it is empty.
    Entries we may not remove (another user's, in a sticky directory) are
    left, and make the result False.
    """
    st: os.stat_result | None = None
    empty = True
    for entry in os.listdir(dfd):
        if entry in subdirs:
            # A known subdirectory is mostly empty (a segment's reverse
            # index): rmdir removes only an empty directory and never
            # follows a link, so try it first; one call instead of fifteen.
            try:
                os.rmdir(entry, dir_fd=dfd)
                continue
            except FileNotFoundError:
                continue
            except OSError:
                pass  # not empty, not a directory, or not ours: the careful way below
        try:
            os.unlink(entry, dir_fd=dfd)
            if removed is not None:
                removed.append(entry)
            continue
        except FileNotFoundError:
            continue
        except IsADirectoryError:
            pass
        except PermissionError:
            empty = False
            continue
        if entry in subdirs:
            st = st or os.fstat(dfd)
            sub = open_checked_dir(entry, dfd, st.st_dev, (st.st_uid,))
            if sub is not None:
                try:
                    clear_dir(sub)
                finally:
                    os.close(sub)
        try:
            os.rmdir(entry, dir_fd=dfd)
        except FileNotFoundError:
            pass
        except OSError:  # not empty, or not ours: planted, and left where it is
            empty = False
    return empty


def remove_pinned(name: str, parent_fd: int | None, dfd: int, subdirs: tuple[str, ...] = (),
                  removed: list[str] | None = None) -> bool:
    """Empty the pinned directory ``dfd`` and remove its entry ``name`` in ``parent_fd``.

    ``parent_fd`` None means ``name`` is a path whose parent is trusted
    (a registry kind directory, checked once per process).

    The entry is removed only while it still is the pinned directory, and
    ``rmdir`` removes only an empty directory, so a swap can at worst leave
    something behind, never remove something else.  True if it is gone.
    """
    if not clear_dir(dfd, subdirs, removed):
        return False
    now = lstat_at(name, parent_fd)
    if now is None or not os.path.samestat(now, os.fstat(dfd)):
        return now is None
    try:
        os.rmdir(name, dir_fd=parent_fd)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def remove_dir(name: str, parent_fd: int, subdirs: tuple[str, ...] = (),
               owners: tuple[int, ...] | None = None) -> bool:
    """Remove the directory ``name`` under ``parent_fd`` safely (see ``remove_pinned``).

    Anything that is not a real directory on the parent's filesystem (owned
    by one of ``owners``, if given) is left alone: False.
    """
    dfd = open_checked_dir(name, parent_fd, os.fstat(parent_fd).st_dev, owners)
    if dfd is None:
        return False
    try:
        return remove_pinned(name, parent_fd, dfd, subdirs)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def pinned_dir(path: str):  # type: ignore[no-untyped-def]
    """``with pinned_dir(path) as fd``: a directory descriptor, closed on exit."""
    fd = open_dir(path)
    try:
        yield fd
    finally:
        os.close(fd)


def flock_within(fd: int, timeout: float) -> bool:
    """Take an exclusive flock on ``fd``, waiting at most ``timeout`` seconds.

    Anyone who can open a shared file can flock it, so no wait may be
    unbounded.  Returns False when the time ran out (the caller says which
    lock and raises); polls with a backoff from 0.5 ms to 20 ms.
    """
    deadline = time.monotonic() + timeout
    pause = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
