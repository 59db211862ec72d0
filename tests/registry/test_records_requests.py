"""Lazy-attach requests (records.request): a target that is gone, and a
directory planted in the target's place, again after root removed it."""

from __future__ import annotations

import errno
import os

import pytest

from vaspace.registry import fs, records
from vaspace.registry import root as rootmod
from vaspace_testing import NOBODY, in_child, require_root


def _gone_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_a_request_to_a_process_that_is_gone_is_esrch_and_leaves_nothing(registry: str) -> None:
    """The caller checked the pid a moment ago (kill 0); the process may exit
    before the request is written: ProcessLookupError (the API's ESRCH), and
    no request directory for it."""
    pid = _gone_pid()
    with pytest.raises(ProcessLookupError):
        records.request(pid, 1, os.O_RDONLY)
    assert os.listdir(f"{registry}/pending") == []


def _plant_dir(path: str) -> None:
    os.mkdir(path, 0o755)


def test_root_beats_a_planter_who_plants_again(registry: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user's directory sits where root's request for a process must
    go (its requests would skip the check that the requester may signal the
    process).  Root removes it; the planter plants it again before root's
    mkdir; root removes that one too and makes the real directory."""
    require_root()
    pid = os.getpid()
    name = records._pending_name(pid, records.my_start_time())
    path = f"{rootmod.root_str()}/pending/{name}"
    in_child(_plant_dir, path, uid=NOBODY).get()
    real = fs.remove_dir
    replants = []

    def remove_then_replant(entry: str, parent_fd: int, *args, **kwargs):  # type: ignore[no-untyped-def]
        done = real(entry, parent_fd, *args, **kwargs)
        if not replants:
            replants.append(entry)
            in_child(_plant_dir, path, uid=NOBODY).get()
        return done

    monkeypatch.setattr(fs, "remove_dir", remove_then_replant)
    records.request(pid, 7, os.O_RDWR)
    assert replants == [name]
    st = os.lstat(path)
    assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o700
    assert records.take_requests(pid) == [(7, os.O_RDWR)]


def test_an_attachment_record_goes_to_the_root_the_caller_holds(registry: str) -> None:
    """attach passes the root it pinned the VAS in; without one, the current root."""
    with rootmod.temporary(prefix="vaspace-other-") as other:
        assert rootmod.root_str() == other
        records.add(5, os.getpid(), os.O_RDWR, root=registry)
        records.add(6, os.getpid(), os.O_RDONLY)
        assert os.listdir(f"{other}/procs") == [f"6.{os.getpid()}"]
        assert records.holders(6)[0].pid == os.getpid()
    assert f"5.{os.getpid()}" in os.listdir(f"{registry}/procs")
    assert [(h.pid, h.type) for h in records.holders(5)] == [(os.getpid(), os.O_RDWR)]
    records.remove(5, os.getpid())


def test_root_gives_up_on_a_planter_who_always_wins(registry: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A planter who re-plants in every gap gets EAGAIN after a few rounds: the
    request is not written anywhere else (no descriptor: nothing relative to
    the working directory either)."""
    require_root()
    pid = os.getpid()
    path = f"{rootmod.root_str()}/pending/{records._pending_name(pid, records.my_start_time())}"
    in_child(_plant_dir, path, uid=NOBODY).get()
    real = fs.remove_dir

    def remove_then_replant(entry: str, parent_fd: int, *args, **kwargs):  # type: ignore[no-untyped-def]
        done = real(entry, parent_fd, *args, **kwargs)
        in_child(_plant_dir, path, uid=NOBODY).get()
        return done

    monkeypatch.setattr(fs, "remove_dir", remove_then_replant)
    monkeypatch.chdir(os.path.dirname(registry))
    with pytest.raises(OSError) as e:
        records.request(pid, 7, os.O_RDWR)
    assert e.value.errno == errno.EAGAIN and "request directory" in e.value.strerror
    assert os.lstat(path).st_uid == NOBODY and "7" not in os.listdir(".")


def test_a_live_process_keeps_its_requests_through_a_reap(registry: str) -> None:
    pid = os.getpid()
    records.request(pid, 7, os.O_RDONLY)
    dead = _gone_pid()
    os.mkdir(f"{registry}/pending/{records._pending_name(dead, 12345)}")
    assert records.reap_pending() == [records._pending_name(dead, 12345)]
    assert records.take_requests(pid) == [(7, os.O_RDONLY)]
