"""The RFC's permission check, ``__check_permission(uid, gid, mode, type)``.

Root passes; otherwise the owner bits apply if the caller owns the object,
else the group bits if the caller is in its group, else the other bits.
"""

from __future__ import annotations

import errno
import os

from .errors import access_type_name, vas_error

MAY_READ = 4
MAY_WRITE = 2

_MAY = {os.O_RDONLY: MAY_READ, os.O_WRONLY: MAY_WRITE, os.O_RDWR: MAY_READ | MAY_WRITE}


def may_for_type(access: object, what: str) -> int:
    """Turn an access type (O_RDONLY, O_WRONLY, O_RDWR) into MAY_* bits; EINVAL otherwise."""
    if type(access) is not int or access not in _MAY:
        raise vas_error(errno.EINVAL, f"bad access type {access!r} for {what}")
    return _MAY[access]


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


def check(uid: int, gid: int, mode: int, may: int, what: str) -> None:
    """Raise EACCES naming ``what`` unless access ``may`` is allowed."""
    if not allowed(uid, gid, mode, may):
        want = {MAY_READ: "read", MAY_WRITE: "write"}.get(may, "read and write")
        raise vas_error(errno.EACCES, f"no {want} permission on {what}")


__all__ = ["MAY_READ", "MAY_WRITE", "access_type_name", "allowed", "check", "may_for_type"]
