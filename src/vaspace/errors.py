"""The one place that builds vaspace's errors.

Every failure of an RFC-level call is ``OSError(errno, strerror, filename)``:
``errno`` is the one the RFC's system call returns (Python then picks the
matching subclass: ``FileExistsError`` for EEXIST, ``PermissionError`` for
EACCES, ...); ``strerror`` is the system's text followed by what failed,
naming the object, so a user reading a log line knows which VAS or segment
was involved; ``filename`` is the object's name, or the registry path when
the failure is about the registry itself.
"""

from __future__ import annotations

import errno
import os

from .access import access_type_name


def vas_error(err: int, what: str, filename: str | None = None) -> OSError:
    """Return ``OSError(err, "<strerror>: <what>", filename)``."""
    if filename is None:
        return OSError(err, f"{os.strerror(err)}: {what}")
    return OSError(err, f"{os.strerror(err)}: {what}", filename)


def invalid(what: str, filename: str | None = None) -> OSError:
    """EINVAL: a bad argument, or an unknown or deleted id."""
    return vas_error(errno.EINVAL, what, filename)


__all__ = ["access_type_name", "invalid", "vas_error"]
