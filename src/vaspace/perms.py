"""The RFC's permission check, ``__check_permission(uid, gid, mode, type)``.

Root passes; otherwise the owner bits apply if the caller owns the object,
else the group bits if the caller is in its group, else the other bits.
"""

from __future__ import annotations

import errno
import os

from .access import BY_FLAG, MAY_READ, MAY_WRITE, access_type_name, may_text
from .errors import vas_error


def _naming(what: object, filename: str | None) -> tuple[str, str | None]:
    """``what`` is a description, or an object (a registry Ref) with ``.what`` and ``.name``.

    Objects are described only when an error is raised: the check itself
    costs nothing for the message.
    """
    if isinstance(what, str):
        return what, filename
    return what.what, what.name  # type: ignore[attr-defined]


def may_for_type(access: object, what: object, filename: str | None = None) -> int:
    """Turn an access type (O_RDONLY, O_WRONLY, O_RDWR) into MAY_* bits; EINVAL otherwise."""
    if type(access) is not int or access not in BY_FLAG:
        text, filename = _naming(what, filename)
        raise vas_error(errno.EINVAL, f"bad access type {access!r} for {text}", filename)
    return BY_FLAG[access].may


def _in_group(gid: int) -> bool:
    return gid == os.getegid() or gid in os.getgroups()


def allowed(uid: int, gid: int, mode: int, may: int) -> bool:
    """True if the calling process may access an object with these attributes."""
    me = os.geteuid()
    if me == 0:
        return True
    if me == uid:
        bits = mode >> 6
    elif _in_group(gid):
        bits = mode >> 3
    else:
        bits = mode
    return (may & ~bits & (MAY_READ | MAY_WRITE)) == 0


def check(uid: int, gid: int, mode: int, may: int, what: object,
          filename: str | None = None) -> None:
    """Raise EACCES naming ``what`` (a description, or a Ref) unless ``may`` is allowed."""
    if not allowed(uid, gid, mode, may):
        text, filename = _naming(what, filename)
        raise vas_error(errno.EACCES, f"no {may_text(may)} permission on {text}", filename)


__all__ = ["MAY_READ", "MAY_WRITE", "access_type_name", "allowed", "check", "may_for_type"]
