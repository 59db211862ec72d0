"""Contracts: every public name, its type, and the errno of its failures (psutil's habit)."""

from __future__ import annotations

import errno
import inspect
import os

import pytest

import vaspace as v
from vaspace_testing import SEG_BASE, MiB

RFC_CALLS = ["vas_create", "vas_delete", "vas_find", "vas_attach", "vas_detach", "vas_switch",
             "active_vas", "vas_getattr", "vas_setattr", "vas_seg_create", "vas_seg_delete",
             "vas_seg_find", "vas_seg_attach", "vas_seg_detach", "vas_seg_getattr",
             "vas_seg_setattr"]
ALIASES = {"segment_create": "vas_seg_create", "segment_delete": "vas_seg_delete",
           "segment_find": "vas_seg_find", "segment_attach": "vas_seg_attach",
           "segment_detach": "vas_seg_detach", "segment_getattr": "vas_seg_getattr",
           "segment_setattr": "vas_seg_setattr"}


def test_all_names_exported() -> None:
    for name in [*RFC_CALLS, *ALIASES, "segment_create_sz", "window", "proc_vas", "proc_maps",
                 "VAS", "Segment", "Attr", "ProcVas", "ProcMap"]:
        assert name in v.__all__, name
        assert hasattr(v, name), name
    for name in v.__all__:
        assert hasattr(v, name), name


def test_aliases_are_the_same_calls() -> None:
    for alias, target in ALIASES.items():
        assert getattr(v, alias) is getattr(v, target)


def test_rfc_argument_order() -> None:
    expect = {
        "vas_create": ["name", "mode"], "vas_delete": ["vid"], "vas_find": ["name"],
        "vas_attach": ["pid", "vid", "type"], "vas_detach": ["pid", "vid"],
        "vas_switch": ["vid"], "active_vas": [], "vas_getattr": ["vid"],
        "vas_setattr": ["vid", "attr"], "vas_seg_create": ["name", "start", "end", "mode"],
        "vas_seg_delete": ["sid"], "vas_seg_find": ["name"],
        "vas_seg_attach": ["vid", "sid", "type"], "vas_seg_detach": ["vid", "sid"],
        "vas_seg_getattr": ["sid"], "vas_seg_setattr": ["sid", "attr"],
        "segment_create_sz": ["name", "start", "size", "mode"],
    }
    for name, params in expect.items():
        assert list(inspect.signature(getattr(v, name)).parameters) == params, name


def test_public_functions_documented_and_typed() -> None:
    for name in v.__all__:
        obj = getattr(v, name)
        if callable(obj):
            assert obj.__doc__, name


def test_return_types(registry: str) -> None:
    vid = v.vas_create("c", 0o600)
    sid = v.vas_seg_create("c", SEG_BASE, SEG_BASE + MiB, 0o600)
    assert type(vid) is int and type(sid) is int
    assert type(v.vas_find("c")) is int and type(v.vas_seg_find("c")) is int
    assert isinstance(v.vas_getattr(vid), v.Attr)
    assert all(type(x) is int for x in v.vas_seg_getattr(sid))
    assert v.vas_seg_attach(vid, sid, os.O_RDWR) is None
    assert v.vas_attach(0, vid, os.O_RDWR) is None
    assert v.vas_switch(vid) is None and type(v.active_vas()) is int
    assert v.vas_switch(0) is None
    (pv,) = v.proc_vas(0)
    assert isinstance(pv, v.ProcVas) and isinstance(pv.threads, tuple)
    assert all(isinstance(m, v.ProcMap) for m in v.proc_maps(0, vid))
    w = v.window()
    assert isinstance(w, tuple) and len(w) == 2 and all(type(x) is int for x in w)


ERRNO_TABLE = [
    # (call, args, errno)
    ("vas_create", ("", 0o600), errno.EINVAL),
    ("vas_find", ("missing",), errno.ESRCH),
    ("vas_delete", (0,), errno.EINVAL),
    ("vas_getattr", (-5,), errno.EINVAL),
    ("vas_setattr", (424242, v.Attr(0o600, 0, 0)), errno.EINVAL),
    ("vas_attach", (0, 424242, os.O_RDWR), errno.EINVAL),
    ("vas_detach", (0, 424242), errno.EINVAL),
    ("vas_switch", (424242,), errno.EINVAL),
    ("vas_seg_create", ("s", SEG_BASE, SEG_BASE + 1, 0o600), errno.EINVAL),
    ("vas_seg_create", ("s", 0x1000, 0x2000, 0o600), errno.EFAULT),
    ("vas_seg_delete", (424242,), errno.EINVAL),
    ("vas_seg_find", ("missing",), errno.ESRCH),
    ("vas_seg_attach", (424242, 1, os.O_RDWR), errno.EINVAL),
    ("vas_seg_detach", (424242, 1), errno.EINVAL),
    ("vas_seg_getattr", (0,), errno.EINVAL),
    ("vas_seg_setattr", (0, v.Attr(0o600, 0, 0)), errno.EINVAL),
    ("proc_vas", (-1,), errno.EINVAL),
    ("proc_maps", (0, 424242), errno.EINVAL),
]


@pytest.mark.parametrize("call,args,code", ERRNO_TABLE, ids=[f"{c}-{e}" for c, _, e in
                                                              ERRNO_TABLE])
def test_errno_table(registry: str, call: str, args: tuple, code: int) -> None:
    with pytest.raises(OSError) as e:
        getattr(v, call)(*args)
    assert type(e.value) is type(OSError(code, "x"))  # the matching OSError subclass
    assert e.value.errno == code
    assert e.value.strerror and os.strerror(code) in str(e.value)


# Calls on registry objects: their errors name the object in ``filename`` too.
NAMED_FAILURES = [
    ("vas_find", ("missing",), "missing"),
    ("vas_getattr", (424242,), "424242"),
    ("vas_delete", (0,), "0"),
    ("vas_create", ("", 0o600), ""),
    ("vas_seg_find", ("nope",), "nope"),
    ("vas_seg_getattr", (424242,), "424242"),
    ("vas_name", (7,), "7"),
]


@pytest.mark.parametrize("call,args,filename", NAMED_FAILURES,
                         ids=[c for c, _, _ in NAMED_FAILURES])
def test_errors_carry_the_object_as_filename(registry: str, call: str, args: tuple,
                                             filename: str) -> None:
    """One shape everywhere: ``OSError(errno, strerror, filename)``."""
    with pytest.raises(OSError) as e:
        getattr(v, call)(*args)
    assert e.value.filename == filename
    assert e.value.strerror.startswith(os.strerror(e.value.errno) + ": ")


def test_busy_errors_name_the_object(registry: str) -> None:
    vid = v.vas_create("db", 0o600)
    sid = v.vas_seg_create("table", 0x4000_0000_0000, 0x4000_0000_1000, 0o600)
    v.vas_seg_attach(vid, sid, os.O_RDWR)
    with pytest.raises(OSError) as e:
        v.vas_seg_delete(sid)
    assert e.value.errno == errno.EBUSY and e.value.filename == "table"
    assert "VAS 'db' (vid 1)" in e.value.strerror
