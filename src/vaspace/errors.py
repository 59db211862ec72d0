"""The one place that builds vaspace's errors.

Every failure of an RFC-level call is an ``OSError`` whose ``errno`` is the
one the RFC's system call returns; Python then picks the matching subclass
(``FileExistsError`` for EEXIST, ``PermissionError`` for EACCES, ...).  The
message says what failed and names the object, so that a user reading a log
line knows which VAS or segment was involved.
"""

from __future__ import annotations

import errno
import os


def vas_error(err: int, what: str) -> OSError:
    """Return ``OSError(err, "<strerror>: <what>")``."""
    return OSError(err, f"{os.strerror(err)}: {what}")


def invalid(what: str) -> OSError:
    """EINVAL: a bad argument, or an unknown or deleted id."""
    return vas_error(errno.EINVAL, what)


def access_type_name(access: int) -> str:
    """The RFC's short name of an access type: ``ro``, ``wo`` or ``rw``."""
    return {os.O_RDONLY: "ro", os.O_WRONLY: "wo", os.O_RDWR: "rw"}.get(access, "?")
