"""Registry hygiene (issue 11 §4): read-only calls create nothing; reaping; ``fsck``."""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import vaspace
from vaspace.cli import cli
from vaspace.registry import fsck, objects, records
from vaspace.registry import root as rootmod
from vaspace_testing import SEG_BASE, in_child

PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def missing_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "typo"
    monkeypatch.setenv("VASPACE_ROOT", str(root))
    rootmod.forget()
    yield root
    rootmod.forget()


READ_ONLY = {
    "vas_find": lambda: vaspace.vas_find("x"),
    "vas_seg_find": lambda: vaspace.vas_seg_find("x"),
    "vas_ids": vaspace.vas_ids,
    "seg_ids": vaspace.seg_ids,
    "vas_getattr": lambda: vaspace.vas_getattr(1),
    "seg_region": lambda: vaspace.seg_region(1),
    "registry_root": vaspace.registry_root,
    "proc_vas": lambda: vaspace.proc_vas(1),
    "vas_attach": lambda: vaspace.vas_attach(0, 1, os.O_RDONLY),
}


@pytest.mark.parametrize("call", sorted(READ_ONLY))
def test_read_only_calls_never_create_a_registry(missing_root: Path, call: str) -> None:
    with pytest.raises(OSError) as e:
        READ_ONLY[call]()
    assert e.value.errno == errno.ENOENT
    assert e.value.filename == str(missing_root) and str(missing_root) in str(e.value)
    assert not missing_root.exists()


@pytest.mark.parametrize("args", [["ls"], ["ls", "--json"], ["ps"], ["seg", "ls"]])
def test_read_only_commands_never_create_a_registry(missing_root: Path, args: list[str]) -> None:
    res = CliRunner().invoke(cli, ["--root", str(missing_root), *args], prog_name="vaspace")
    assert res.exit_code == 1
    assert str(missing_root) in res.stderr
    assert not missing_root.exists()


def test_an_existing_plain_directory_is_not_filled(tmp_path: Path, monkeypatch) -> None:
    """``--root /tmp`` used to fill /tmp with vas/, seg/, names/ ...: a listing must not."""
    monkeypatch.setenv("VASPACE_ROOT", str(tmp_path))
    rootmod.forget()
    with pytest.raises(OSError) as e:
        vaspace.vas_ids()
    assert e.value.errno == errno.ENOENT
    assert os.listdir(tmp_path) == []
    rootmod.forget()


def test_the_first_create_makes_the_registry(missing_root: Path) -> None:
    vid = vaspace.vas_create("first", 0o600)
    assert missing_root.is_dir() and vaspace.vas_ids() == [vid]
    assert vaspace.registry_root() == str(missing_root)


def _attach_and_hang(vid: int, ready_w: int) -> None:
    vaspace.vas_attach(0, vid, os.O_RDWR)
    os.write(ready_w, b"1")
    time.sleep(60)


def test_slot_file_of_a_killed_process_is_reaped_automatically(registry: str) -> None:
    """``procs/<pid>-<start>.threads`` used to stay forever after a kill -9."""
    vid = vaspace.vas_create("held", 0o600)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _attach_and_hang(vid, w)
        finally:
            os._exit(0)
    os.read(r, 1)
    slots = Path(registry) / "procs" / f"{pid}-{records.start_time(pid)}.threads"
    assert slots.exists()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert fsck.check() == [fsck.Problem("stale-slots", f"procs/{slots.name}",
                                         "thread slots of a process that is gone")]

    def fresh_process_creates() -> bool:
        objects._reaped.clear()  # as in a process that has not created anything yet
        vaspace.vas_create("next", 0o600)
        return slots.exists()

    assert in_child(fresh_process_creates).get() is False
    assert fsck.check() == []


def _make_mess(root: Path) -> dict[str, str]:
    """One of each problem fsck knows."""
    half = root / "vas" / "50"
    half.mkdir()
    (half / "name").write_text("half")
    os.utime(half, (1, 1))
    os.symlink("9999", root / "names" / "vas" / "dangling")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    started = records.start_time(pid) or 1
    os.waitpid(pid, 0)
    (root / "pending" / f"{pid}-{started}").mkdir()
    (root / "procs" / f"{pid}-{started}.threads").write_bytes(b"")
    sid = vaspace.vas_seg_create("junk", SEG_BASE, SEG_BASE + PAGE, 0o600)
    (root / "seg" / str(sid) / "region").write_text("junk")
    return {"orphan": "vas/50", "dangling-name": "names/vas/dangling",
            "stale-pending": f"pending/{pid}-{started}",
            "stale-slots": f"procs/{pid}-{started}.threads", "damaged": f"seg/{sid}"}


def test_fsck_lists_and_repairs(registry: str) -> None:
    root = Path(registry)
    mess = _make_mess(root)
    found = {p.kind: p for p in fsck.check()}
    assert {k: p.path for k, p in found.items()} == mess
    assert not any(p.repaired for p in found.values())
    repaired = {p.kind: p.repaired for p in fsck.check(repair=True)}
    assert repaired == {"orphan": True, "dangling-name": True, "stale-pending": True,
                        "stale-slots": True, "damaged": False}
    assert [p.kind for p in fsck.check()] == ["damaged"]
    assert not (root / "vas" / "50").exists()


def test_fsck_command(registry: str) -> None:
    _make_mess(Path(registry))
    res = CliRunner().invoke(cli, ["fsck", "--json"], prog_name="vaspace")
    assert res.exit_code == 1
    assert {p["kind"] for p in json.loads(res.stdout)} == {
        "orphan", "dangling-name", "stale-pending", "stale-slots", "damaged"}
    res = CliRunner().invoke(cli, ["fsck", "--repair"], prog_name="vaspace")
    assert res.exit_code == 1 and "damaged" in res.stdout  # the damaged segment stays
    vaspace.vas_seg_delete(vaspace.vas_seg_find("junk"))
    res = CliRunner().invoke(cli, ["fsck"], prog_name="vaspace")
    assert res.exit_code == 0 and "clean" in res.stdout
