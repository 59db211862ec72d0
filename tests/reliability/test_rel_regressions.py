"""Regression tests for the bugs the reliability work found (one test per bug).

Races are made deterministic with a hook: the id lookup a call starts with is
wrapped so that, right after it, another process deletes (and maybe
recreates) the object, exactly the interleaving the fault-injection soak hit.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from relutil import PAGE, SEG_BASE, run_child

import vaspace
from vaspace import _core
from vaspace.registry import objects
from vaspace.registry import ref as refmod
from vaspace_testing import needs_root

# ------------------------------------------------ half-made objects, planted files


def test_half_made_object_with_empty_name_is_invisible(registry: str) -> None:
    """A creator killed between creating ``name`` and writing it left an empty file.

    ``vas_ids()`` used to crash with a raw EINVAL from readlink("names/vas/").
    """
    vid = vaspace.vas_create("whole", 0o600)
    root = Path(vaspace.registry_root())
    for kind in ("vas", "seg"):
        half = root / kind / "777"
        half.mkdir()
        (half / "name").write_text("")
    assert vaspace.vas_ids() == [vid]
    assert vaspace.seg_ids() == []
    with pytest.raises(OSError) as e:
        vaspace.vas_getattr(777)
    assert e.value.errno == errno.EINVAL


def test_planted_non_link_in_name_index_is_not_a_name(registry: str) -> None:
    """Anyone may write the (sticky) name index; a plain file there is not an object."""
    root = Path(vaspace.registry_root())
    (root / "names" / "vas" / "junk").write_text("x")
    os.symlink("not-a-number", root / "names" / "vas" / "junk2")
    for name in ("junk", "junk2"):
        with pytest.raises(OSError) as e:
            vaspace.vas_find(name)
        assert e.value.errno == errno.ESRCH
    assert vaspace.vas_ids() == []


# ------------------------------------------------ calls racing a delete


def _delete_after_lookup(monkeypatch: pytest.MonkeyPatch, kind, kind_delete,
                         recreate: str | None = None) -> None:
    """Make the next lookup of an object of ``kind`` be followed by another process's delete.

    The hook is ``ref._open_live``, the liveness check that every lookup
    passes (``pin``, and ``vas_find``'s fast path that builds no ``Ref``):
    the delete lands right after the object was found live.  ``getattr``'s
    fast path is one C call (``_core.stat_live``) with nothing in between to
    hook: there the delete lands just before it, so the fast path fails and
    the call goes the ``pin`` way, which must still say EINVAL.
    """
    real = refmod._open_live
    real_stat = _core.stat_live
    fired = []

    def delete(oid: int) -> None:
        fired.append(oid)

        def other() -> None:
            kind_delete(oid)
            if recreate is not None:
                objects._next_id.clear()  # rescan: the freed id is reused
                assert vaspace.vas_create(recreate, 0o600) == oid

        run_child(other).get()

    def hooked(k, oid, *args):
        out = real(k, oid, *args)
        if k is kind and not fired:
            delete(oid)
        return out

    def hooked_stat(path, *args):
        parent, _, oid = path.rpartition("/")
        if parent.endswith(f"/{kind.dirname}") and not fired:
            delete(int(oid))
        return real_stat(path, *args)

    monkeypatch.setattr(refmod, "_open_live", hooked)
    monkeypatch.setattr(_core, "stat_live", hooked_stat)


def _seg(name: str = "s") -> int:
    return vaspace.vas_seg_create(name, SEG_BASE, SEG_BASE + PAGE, 0o600)


VAS_CALLS = {
    "vas_getattr": lambda vid, sid: vaspace.vas_getattr(vid),
    "vas_setattr": lambda vid, sid: vaspace.vas_setattr(vid, vaspace.Attr(0o644, 0, 0)),
    "vas_delete": lambda vid, sid: vaspace.vas_delete(vid),
    "vas_attach": lambda vid, sid: vaspace.vas_attach(0, vid, os.O_RDWR),
    "vas_seg_attach": lambda vid, sid: vaspace.vas_seg_attach(vid, sid, os.O_RDWR),
    "vas_segments": lambda vid, sid: vaspace.vas_segments(vid),
}


@pytest.mark.parametrize("call", sorted(VAS_CALLS))
def test_vas_deleted_under_a_call_gives_einval(registry: str, monkeypatch, call: str) -> None:
    """Used to leak FileNotFoundError (ENOENT) from the VAS's vanished files."""
    vid, sid = vaspace.vas_create("v", 0o600), _seg()
    _delete_after_lookup(monkeypatch, objects.VAS, vaspace.vas_delete)
    try:
        VAS_CALLS[call](vid, sid)
    except OSError as exc:
        assert exc.errno == errno.EINVAL, exc
        assert type(exc) is OSError
    else:
        assert call == "vas_segments"  # a listing of a deleted VAS may be empty
    assert vaspace.vas_ids() == []


SEG_CALLS = {
    "vas_seg_getattr": lambda vid, sid: vaspace.vas_seg_getattr(sid),
    "vas_seg_setattr": lambda vid, sid: vaspace.vas_seg_setattr(sid, vaspace.Attr(0o644, 0, 0)),
    "vas_seg_delete": lambda vid, sid: vaspace.vas_seg_delete(sid),
    "seg_region": lambda vid, sid: vaspace.seg_region(sid),
    "vas_seg_attach": lambda vid, sid: vaspace.vas_seg_attach(vid, sid, os.O_RDWR),
}


@pytest.mark.parametrize("call", sorted(SEG_CALLS))
def test_segment_deleted_under_a_call_gives_einval(registry: str, monkeypatch, call) -> None:
    """Used to leak FileNotFoundError from ``region``/``data`` (soak: api.py vas_seg_attach)."""
    vid, sid = vaspace.vas_create("v", 0o600), _seg()
    _delete_after_lookup(monkeypatch, objects.SEG, vaspace.vas_seg_delete)
    with pytest.raises(OSError) as e:
        SEG_CALLS[call](vid, sid)
    assert e.value.errno == errno.EINVAL and type(e.value) is OSError
    assert vaspace.seg_ids() == [] and vaspace.vas_segments(vid) == []


def test_delete_does_not_hit_an_object_that_reused_the_id(registry: str, monkeypatch) -> None:
    """vas_delete(vid) looked up "a", then "a" was deleted and "b" got the same id.

    It used to unlink the name "a" (ENOENT) or, with equal names, delete the
    newcomer; now it re-checks under the lock and reports EINVAL.
    """
    vid = vaspace.vas_create("a", 0o600)
    _delete_after_lookup(monkeypatch, objects.VAS, vaspace.vas_delete, recreate="b")
    with pytest.raises(OSError) as e:
        vaspace.vas_delete(vid)
    assert e.value.errno == errno.EINVAL
    assert vaspace.vas_find("b") == vid and vaspace.vas_name(vid) == "b"
    vaspace.vas_getattr(vid)


# ------------------------------------------------ a registry lock held forever


@needs_root  # its child becomes nobody by hand
def test_registry_lock_held_forever_gives_ebusy_not_a_hang(registry: str, monkeypatch) -> None:
    """Any user can open and flock the registry lock; others used to block forever.

    (Issue 6: no call may hang.)  Now a change gives up with EBUSY after
    ``LOCK_TIMEOUT`` and changes nothing.
    """
    import fcntl
    import time

    from relutil import NOBODY

    from vaspace.registry import root as rootmod

    vid = vaspace.vas_create("v", 0o666)
    sid = _seg()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # an unprivileged user grabs the lock and keeps it
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        fd = os.open(Path(registry) / "lock", os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(w, b"1")
        time.sleep(60)
        os._exit(0)
    os.close(w)
    os.read(r, 1)
    os.close(r)
    monkeypatch.setattr(rootmod, "LOCK_TIMEOUT", 0.3)
    try:
        for call in (lambda: vaspace.vas_delete(vid), lambda: vaspace.vas_seg_delete(sid),
                     lambda: vaspace.vas_seg_attach(vid, sid, os.O_RDWR)):
            out = run_child(call, timeout=10)
            assert not out.hung
            assert isinstance(out.error, OSError) and out.error.errno == errno.EBUSY
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    assert vaspace.vas_segments(vid) == [vaspace.SegLink(sid, os.O_RDWR)]


# ------------------------------------------------ entries anyone can plant


@pytest.mark.parametrize("entry", ["\u00b2", "padded", "\u0661"])  # superscript 2, Arabic 1
def test_planted_non_ascii_digit_entries_are_ignored(registry: str, entry: str) -> None:
    """``"²".isdigit()`` is true but ``int("²")`` fails: one mkdir broke every listing.

    The shared directories are writable by everyone, so an entry like that
    made ``vas_ids()``, ``seg_ids()``, creates and ``vas_holders()`` raise
    ValueError for all users; "07" listed id 7 twice.
    """
    from relutil import NOBODY, as_user

    vid = vaspace.vas_create("v", 0o600)
    sid = _seg()
    if entry == "padded":
        entry = f"0{vid}"  # would alias the live id
    os.symlink("rw", Path(registry) / f"vas/{vid}/seg.{entry}")

    def plant() -> None:
        root = Path(registry)
        for sub in ("vas", "seg"):
            (root / sub / entry).mkdir()
            (root / sub / entry / "name").write_text(vaspace.vas_name(vid))
        os.symlink(f"{entry}:rw", root / f"procs/{vid}.{entry}")
        os.symlink(entry, root / "names/vas/planted")

    as_user(NOBODY, plant)
    assert vaspace.vas_ids() == [vid] and vaspace.seg_ids() == [sid]
    assert vaspace.vas_holders(vid) == [] and vaspace.vas_segments(vid) == []
    with pytest.raises(OSError) as e:
        vaspace.vas_find("planted")
    assert e.value.errno == errno.ESRCH
    assert vaspace.vas_create("w", 0o600) > 0 and vaspace.vas_seg_create(
        "t", SEG_BASE, SEG_BASE + PAGE, 0o600) > 0


def test_a_planted_top_id_does_not_exhaust_ids(registry: str) -> None:
    """``mkdir vas/2147483647`` by anyone used to make every later create fail (ENOSPC)."""
    from relutil import NOBODY, as_user

    from vaspace.registry import objects as objmod

    as_user(NOBODY, os.mkdir, Path(registry) / "vas" / str(objmod.MAX_ID))
    as_user(NOBODY, os.mkdir, Path(registry) / "seg" / str(objmod.MAX_ID))
    objmod._next_id.clear()
    vid = vaspace.vas_create("after", 0o600)
    sid = _seg("after")
    assert 0 < vid < objmod.MAX_ID and 0 < sid < objmod.MAX_ID
    assert vaspace.vas_find("after") == vid and vaspace.vas_seg_find("after") == sid


def test_delete_without_any_permission_names_the_vas(registry: str) -> None:
    """quiesced() let the raw PermissionError of opening the lock file escape.

    The errno was right by luck (EACCES) but the message named a file path;
    and a VAS attached by someone must still give EBUSY first, as in the RFC.
    """
    from relutil import NOBODY, as_user

    vid = vaspace.vas_create("db", 0o600)

    def delete() -> tuple[type, int, str]:
        try:
            vaspace.vas_delete(vid)
        except OSError as exc:
            return type(exc), exc.errno, str(exc)
        raise AssertionError("deleted")

    kind, err, text = as_user(NOBODY, delete)
    assert (kind, err) == (PermissionError, errno.EACCES)
    assert "VAS 'db'" in text and "/lock" not in text
    vaspace.vas_attach(0, vid, os.O_RDONLY)
    assert as_user(NOBODY, delete)[1] == errno.EBUSY
