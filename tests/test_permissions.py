"""Permissions as an unprivileged user (uid/gid 65534), the way the OS sees it.

The RFC's check (owner, group, other bits; root passes) runs in the library
and gives EACCES; the OS then enforces the same modes on the backing files.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import vaspace as v
from vaspace_testing import NOBODY, SEG_BASE, MiB, as_nobody


def errno_of(fn, *args) -> int:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno or 0
    return 0


@pytest.fixture
def objs(registry: str) -> dict[str, int]:
    """Root-owned objects with various modes."""
    out = {}
    for name, mode in (("private", 0o600), ("readable", 0o644), ("open", 0o666)):
        vid = v.vas_create(f"vas-{name}", mode)
        sid = v.vas_seg_create(f"seg-{name}", SEG_BASE, SEG_BASE + MiB, mode)
        out[f"vas-{name}"], out[f"seg-{name}"] = vid, sid
    # One VAS with a segment, to show that attaching maps it for nobody too.
    out["vas-full"] = v.vas_create("vas-full", 0o666)
    v.vas_seg_attach(out["vas-full"], out["seg-open"], os.O_RDWR)
    return out


def test_find_and_getattr_need_nothing(objs: dict[str, int]) -> None:
    def probe() -> tuple[int, v.Attr]:
        return v.vas_find("vas-private"), v.vas_getattr(objs["vas-private"])

    vid, attr = as_nobody(probe)
    assert vid == objs["vas-private"] and attr.mode == 0o600 and attr.user == 0


@pytest.mark.parametrize("call", ["vas_delete", "vas_setattr", "vas_seg_delete",
                                  "vas_seg_setattr"])
def test_write_needed_eacces(objs: dict[str, int], call: str) -> None:
    def probe() -> list[int]:
        out = []
        for name in ("private", "readable"):
            kind = "seg" if "seg" in call else "vas"
            oid = objs[f"{kind}-{name}"]
            fn = getattr(v, call)
            args = (oid,) if call.endswith("delete") else (oid, v.Attr(0o666, NOBODY, NOBODY))
            out.append(errno_of(fn, *args))
        return out

    assert as_nobody(probe) == [errno.EACCES, errno.EACCES]
    assert v.vas_getattr(objs["vas-readable"]).mode == 0o644  # unchanged


def test_attach_needs_requested_access(objs: dict[str, int]) -> None:
    def probe() -> dict[str, int]:
        return {
            "private-ro": errno_of(v.vas_attach, 0, objs["vas-private"], os.O_RDONLY),
            "readable-rw": errno_of(v.vas_attach, 0, objs["vas-readable"], os.O_RDWR),
            "readable-wo": errno_of(v.vas_attach, 0, objs["vas-readable"], os.O_WRONLY),
            "readable-ro": errno_of(v.vas_attach, 0, objs["vas-readable"], os.O_RDONLY),
            "open-rw": errno_of(v.vas_attach, 0, objs["vas-open"], os.O_RDWR),
            "full-rw": errno_of(v.vas_attach, 0, objs["vas-full"], os.O_RDWR),
        }

    assert as_nobody(probe) == {"private-ro": errno.EACCES, "readable-rw": errno.EACCES,
                                "readable-wo": errno.EACCES, "readable-ro": 0, "open-rw": 0,
                                "full-rw": 0}


def test_seg_attach_needs_seg_access_and_vas_write(objs: dict[str, int]) -> None:
    def probe() -> dict[str, int]:
        mine = v.vas_create("mine", 0o600)
        return {
            "seg-private-ro": errno_of(v.vas_seg_attach, mine, objs["seg-private"], os.O_RDONLY),
            "seg-readable-rw": errno_of(v.vas_seg_attach, mine, objs["seg-readable"], os.O_RDWR),
            "seg-readable-ro": errno_of(v.vas_seg_attach, mine, objs["seg-readable"], os.O_RDONLY),
            "vas-readable": errno_of(v.vas_seg_attach, objs["vas-readable"],
                                     objs["seg-open"], os.O_RDONLY),
        }

    assert as_nobody(probe) == {"seg-private-ro": errno.EACCES, "seg-readable-rw": errno.EACCES,
                                "seg-readable-ro": 0, "vas-readable": errno.EACCES}


def test_os_refuses_backing_files(objs: dict[str, int], registry: str) -> None:
    root = Path(registry)
    private_data = root / "seg" / str(objs["seg-private"]) / "data"
    private_lock = root / "vas" / str(objs["vas-private"]) / "lock"
    readable_data = root / "seg" / str(objs["seg-readable"]) / "data"

    def probe() -> dict[str, int]:
        def open_errno(path: Path, flags: int) -> int:
            try:
                os.close(os.open(path, flags))
            except OSError as exc:
                return exc.errno or 0
            return 0

        return {
            "private-data-r": open_errno(private_data, os.O_RDONLY),
            "private-lock-r": open_errno(private_lock, os.O_RDONLY),
            "readable-data-w": open_errno(readable_data, os.O_RDWR),
            "readable-data-r": open_errno(readable_data, os.O_RDONLY),
            "unlink-data": errno_of(os.unlink, readable_data),
        }

    res = as_nobody(probe)
    assert res == {"private-data-r": errno.EACCES, "private-lock-r": errno.EACCES,
                   "readable-data-w": errno.EACCES, "readable-data-r": 0,
                   "unlink-data": errno.EACCES}


def test_nobody_owns_what_it_creates(registry: str) -> None:
    def make() -> tuple[v.Attr, v.Attr]:
        vid = v.vas_create("nb", 0o640)
        sid = v.vas_seg_create("nb-seg", SEG_BASE, SEG_BASE + MiB, 0o600)
        v.vas_seg_attach(vid, sid, os.O_RDWR)
        v.vas_attach(0, vid, os.O_RDWR)
        v.vas_switch(vid)
        v.Segment(sid).view()[0] = 1
        v.vas_switch(0)
        return v.vas_getattr(vid), v.vas_seg_getattr(sid)

    vattr, sattr = as_nobody(make)
    assert vattr == v.Attr(0o640, NOBODY, NOBODY) and sattr == v.Attr(0o600, NOBODY, NOBODY)
    # root passes every check
    vid = v.vas_find("nb")
    v.vas_attach(0, vid, os.O_RDWR)
    v.vas_detach(0, vid)


def test_non_owner_with_write_gets_eperm_from_sticky_registry(objs: dict[str, int]) -> None:
    """Documented deviation: like /tmp, only the owner (or root) removes an object."""
    assert as_nobody(errno_of, v.vas_delete, objs["vas-open"]) == errno.EPERM
    assert v.vas_find("vas-open") == objs["vas-open"]


def test_umask_does_not_decide_modes(registry: str) -> None:
    def make() -> tuple[int, int]:
        os.umask(0o077)
        vid = v.vas_create("um", 0o666)
        sid = v.vas_seg_create("um-seg", SEG_BASE, SEG_BASE + MiB, 0o644)
        return vid, sid

    vid, sid = as_nobody(make)
    assert v.vas_getattr(vid).mode == 0o666 and v.vas_seg_getattr(sid).mode == 0o644
    assert as_nobody(v.vas_name, vid, uid=65533) == "um"  # names stay readable to others


@pytest.mark.parametrize("bad", [3, -1, 0o100, True, False, 1.0, "0", None])
def test_access_type_is_one_of_the_three(registry: str, bad: object) -> None:
    """O_RDONLY, O_WRONLY or O_RDWR as a plain int; anything else (a bool too) is EINVAL."""
    vid = v.vas_create("v", 0o600)
    with pytest.raises(OSError) as e:
        v.vas_attach(0, vid, bad)  # type: ignore[arg-type]
    assert e.value.errno == errno.EINVAL and "bad access type" in str(e.value)
    assert v.proc_vas(0) == []
