"""``take_lock`` when the OS and the RFC's check disagree (issue 17, Deliver 3).

The RFC's check reads only the lock file's mode bits; the kernel also reads
its POSIX ACL.  An ACL entry for one user (written here as the raw
``system.posix_acl_access`` xattr, tmpfs keeps it) makes the two disagree
both ways, for a real unprivileged process:

* the bits allow the user but the ACL refuses them: the OS's refusal is the
  error (EACCES, "the OS refuses to open"), not a crash;
* the ACL allows the user but the bits refuse them: the RFC's check still
  refuses (EACCES), and the opened lock is closed, not kept as an attach.
"""

from __future__ import annotations

import errno

import vaspace as v
from vaspace_testing import NOBODY, attach_outcome, in_child, set_acl


def test_bits_allow_but_the_acl_refuses_is_the_os_refusal(registry: str) -> None:
    vid = v.vas_create("open", 0o666)
    set_acl(f"{registry}/vas/{vid}/lock", nobody=0, other=6)
    assert v.vas_getattr(vid).mode == 0o666  # the RFC's check lets NOBODY in
    err, text = in_child(attach_outcome, vid, uid=NOBODY).get()
    assert err == errno.EACCES and "the OS refuses to open" in text, text
    assert in_child(v.proc_vas, 0, uid=NOBODY).get() == []


def test_acl_allows_but_the_bits_refuse_is_the_rfc_refusal(registry: str) -> None:
    vid = v.vas_create("closed", 0o600)
    set_acl(f"{registry}/vas/{vid}/lock", nobody=6, other=0)
    assert v.vas_getattr(vid).mode & 0o006 == 0  # others (NOBODY) may not, by the bits

    def attach_then_holdings() -> tuple[tuple[int, str], list]:
        return attach_outcome(vid), v.proc_vas(0)

    (err, text), held = in_child(attach_then_holdings, uid=NOBODY).get()
    assert err == errno.EACCES and "permission" in text and "'closed'" in text, text
    assert held == []
