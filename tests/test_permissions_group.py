"""The group bits: a caller in an object's group, who does not own it.

The RFC's ``__check_permission`` uses the owner bits for the owner, the
group bits for a member of the object's group, and the other bits for
everyone else.  The objects here belong to root with group ``GROUP``; the
callers are uid 65534, either with ``GROUP`` as their primary gid or as a
supplementary group, or in neither.  The modes are chosen so that the group
and other bits disagree, so a check that used the wrong set of bits gives
the wrong answer in one direction or the other.
"""

from __future__ import annotations

import errno
import os

import pytest

import vaspace as v
from vaspace import perms
from vaspace_testing import NOBODY, SEG_BASE, MiB, errno_of, in_child, require_root

GROUP = 4242  # no user of the test machine has it

CALLERS = {
    "primary": {"uid": NOBODY, "gid": GROUP},
    "supplementary": {"uid": NOBODY, "groups": [GROUP]},
}
OUTSIDER = {"uid": NOBODY}

# mode -> (group member may read, may write); the other bits say the opposite.
MODES = {"rw-group": 0o660, "ro-group": 0o642, "none-group": 0o606}


@pytest.fixture
def objs(registry: str) -> dict[str, int]:
    """For each mode, a root-owned VAS and segment in group GROUP."""
    require_root()  # giving objects to GROUP is a chown
    out = {}
    for i, (name, mode) in enumerate(MODES.items()):
        vid = v.vas_create(f"vas-{name}", mode)
        start = SEG_BASE + i * MiB
        sid = v.vas_seg_create(f"seg-{name}", start, start + MiB, mode)
        v.vas_setattr(vid, v.Attr(mode, 0, GROUP))
        v.vas_seg_setattr(sid, v.Attr(mode, 0, GROUP))
        out[f"vas-{name}"], out[f"seg-{name}"] = vid, sid
    return out


def _attach_probe(objs: dict[str, int]) -> dict[str, int]:
    """Attach each VAS read-only and writable, and each segment to a VAS of one's own."""
    out = {}
    mine = v.vas_create(f"mine-{os.getgid()}-{len(os.getgroups())}", 0o600)
    for name in MODES:
        for access, tag in ((os.O_RDONLY, "ro"), (os.O_RDWR, "rw")):
            code = errno_of(v.vas_attach, 0, objs[f"vas-{name}"], access)
            if code == 0:
                v.vas_detach(0, objs[f"vas-{name}"])
            out[f"vas-{name}-{tag}"] = code
            code = errno_of(v.vas_seg_attach, mine, objs[f"seg-{name}"], access)
            if code == 0:
                v.vas_seg_detach(mine, objs[f"seg-{name}"])
            out[f"seg-{name}-{tag}"] = code
    v.vas_delete(mine)
    return out


def _expected(read: dict[str, bool], write: dict[str, bool]) -> dict[str, int]:
    out = {}
    for name in MODES:
        for tag, ok in (("ro", read[name]), ("rw", read[name] and write[name])):
            out[f"vas-{name}-{tag}"] = out[f"seg-{name}-{tag}"] = 0 if ok else errno.EACCES
    return out


@pytest.mark.parametrize("how", list(CALLERS))
def test_group_member_gets_group_bits(objs: dict[str, int], how: str) -> None:
    got = in_child(_attach_probe, objs, **CALLERS[how]).get()
    assert got == _expected(read={"rw-group": True, "ro-group": True, "none-group": False},
                            write={"rw-group": True, "ro-group": False, "none-group": False})


def test_outsider_gets_other_bits(objs: dict[str, int]) -> None:
    got = in_child(_attach_probe, objs, **OUTSIDER).get()
    assert got == _expected(read={"rw-group": False, "ro-group": False, "none-group": True},
                            write={"rw-group": False, "ro-group": True, "none-group": True})


def _setattr_probe(objs: dict[str, int]) -> dict[str, int]:
    # The check (write permission: EACCES) comes first; with it passed, a
    # chmod by a non-owner is the OS's refusal (EPERM).
    return {name: errno_of(v.vas_setattr, objs[f"vas-{name}"], v.Attr(0o666, 0, GROUP))
            for name in MODES}


@pytest.mark.parametrize("how", list(CALLERS))
def test_group_member_setattr_checked_against_group_bits(objs: dict[str, int],
                                                        how: str) -> None:
    got = in_child(_setattr_probe, objs, **CALLERS[how]).get()
    assert got == {"rw-group": errno.EPERM, "ro-group": errno.EACCES,
                   "none-group": errno.EACCES}
    assert v.vas_getattr(objs["vas-rw-group"]).mode == MODES["rw-group"]  # unchanged


def _allowed_table() -> dict[tuple[int, int], bool]:
    return {(mode, may): perms.allowed(0, GROUP, mode, may)
            for mode in MODES.values() for may in (perms.MAY_READ, perms.MAY_WRITE)}


@pytest.mark.parametrize("how", list(CALLERS))
def test_allowed_uses_group_bits_for_members(registry: str, how: str) -> None:
    """The check itself, as the group member's process computes it."""
    got = in_child(_allowed_table, **CALLERS[how]).get()
    r, w = perms.MAY_READ, perms.MAY_WRITE
    assert got == {(0o660, r): True, (0o660, w): True, (0o642, r): True, (0o642, w): False,
                   (0o606, r): False, (0o606, w): False}
