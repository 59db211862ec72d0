"""Every error path: its exit status, and exactly one stderr line saying what and why."""

from __future__ import annotations

import os
import sys

import pytest
from cli_helpers import Holder, dead_pid, invoke, run

import vaspace
from vaspace_testing import in_child

BASE = 0x4000_0000_0000
MiB = 1 << 20


@pytest.fixture
def objects(registry: str) -> str:
    """db holds table (rw); idx exists but is in no VAS."""
    vid = vaspace.vas_create("db", 0o600)
    sid = vaspace.segment_create_sz("table", BASE, 64 * MiB, 0o600)
    vaspace.segment_create_sz("idx", BASE + 256 * MiB, 4096, 0o600)
    vaspace.vas_seg_attach(vid, sid, os.O_RDWR)
    return registry


# (arguments, exit status, words the one stderr line must contain)
CASES = [
    (["show", "nosuch"], 1, ["no VAS or segment named 'nosuch'"]),
    (["show", "99"], 1, ["Invalid argument", "no VAS with id 99", "name:99"]),
    (["show", "--seg", "nosuch"], 1, ["no segment named 'nosuch'"]),
    (["create", "db"], 1, ["File exists", "'db'"]),
    (["create", ""], 1, ["Invalid argument", "empty"]),
    (["create", "x", "--mode", "9z"], 2, ["'9z' is not an octal mode", "vaspace create --help"]),
    (["create", "x", "--mode", "1777"], 2, ["only the bits 0777"]),
    (["rm", "nosuch"], 1, ["no VAS named 'nosuch'"]),
    (["rm"], 2, ["Missing argument 'NAME|ID'"]),
    (["seg", "create", "s", "--start", "0x400000000000"], 2, ["exactly one of --size and --end"]),
    (["seg", "create", "s", "--start", "0x400000000000", "--size", "1M", "--end",
      "0x400000200000"], 2, ["exactly one of --size and --end"]),
    (["seg", "create", "s", "--start", "0x1000", "--size", "1M"], 1, ["Bad address", "window"]),
    (["seg", "create", "s", "--start", "0x400000000001", "--size", "1M"], 1,
     ["Invalid argument", "0x400000000001"]),
    (["seg", "create", "s", "--start", "zz", "--size", "1M"], 2, ["'zz' is not an address"]),
    (["seg", "create", "s", "--start", "0x400000000000", "--size", "64Q"], 2,
     ["'64Q' is not a size"]),
    (["seg", "create", "table", "--start", "0x480000000000", "--size", "4K"], 1,
     ["File exists", "'table'"]),
    (["seg", "rm", "table"], 1,
     ["Device or resource busy", "segment 'table'", "in VAS 'db' (vid 1);",
      "(vaspace seg detach db table)"]),
    (["seg", "rm", "nosuch"], 1, ["no segment named 'nosuch'"]),
    (["seg", "attach", "db", "idx"], 2, ["give --ro or --rw"]),
    (["seg", "attach", "db", "idx", "--ro", "--rw"], 2, ["give --ro or --rw, not both"]),
    (["seg", "attach", "db", "idx", "--rw", "--ro"], 2, ["give --ro or --rw, not both"]),
    (["seg", "attach", "db", "nosuch", "--rw"], 1, ["no segment named 'nosuch'"]),
    (["seg", "attach", "nosuch", "idx", "--rw"], 1, ["no VAS named 'nosuch'"]),
    (["seg", "detach", "db", "idx"], 1, ["Invalid argument", "'idx'", "not attached", "'db'"]),
    (["ps", "abc"], 2, ["'abc' is not a process id", "such as 1234", "vaspace ps --help"]),
    (["ps", "0"], 2, ["'0' is not a process id: pids run from 1"]),
    (["ps", "--", "-5"], 2, ["'-5' is not a process id"]),
    (["ps", "99999999999999999999"], 2, ["is not a process id", "(pid_max)"]),
    (["maps", "12x", "db"], 2, ["'12x' is not a process id", "vaspace maps --help"]),
    (["seg", "create", "s", "--start", "400000000000", "--size", "1M"], 2,
     ["'400000000000' read as decimal is 0x5d21dba000", "outside the window",
      "did you mean 0x400000000000?"]),
    (["seg", "create", "s", "--start", "0x400000000000", "--end", "4000_0010_0000"], 2,
     ["did you mean 0x4000_0010_0000?"]),
    (["seg", "create", "s", "--start", "4000abc00000", "--size", "1M"], 2,
     ["'4000abc00000' is not an address; did you mean 0x4000abc00000?"]),
    (["maps", str(os.getpid()), "nosuch"], 1, ["no VAS named 'nosuch'"]),
    (["maps", str(os.getpid()), "db"], 1, ["Invalid argument", "not attached"]),
    (["map", "--out", "picture.txt"], 2, [".svg or .png"]),
    (["map", "--out", "/nonexistent-dir/x.svg"], 1, ["cannot write /nonexistent-dir/x.svg",
                                                     "no such directory /nonexistent-dir"]),
    (["nosuchcommand"], 2, ["No such command 'nosuchcommand'"]),
    (["ls", "--nosuchoption"], 2, ["No such option", "--nosuchoption"]),
]


@pytest.mark.parametrize(("args", "code", "words"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_error_is_one_line(objects: str, args: list[str], code: int, words: list[str]) -> None:
    r = invoke(*args)
    assert r.code == code
    line = r.err_line()
    assert line.startswith("vaspace: error: ")
    for word in words:
        assert word in line
    assert r.stdout == ""


def test_overlapping_segment_is_refused(objects: str) -> None:
    vaspace.segment_create_sz("over", BASE + MiB, MiB, 0o600)
    r = invoke("seg", "attach", "db", "over", "--rw")
    assert r.code == 1
    line = r.err_line()
    assert "Bad address" in line and "overlaps segment 'table'" in line


def test_unknown_pid(objects: str) -> None:
    pid = dead_pid()
    for args in (["ps", str(pid)], ["maps", str(pid), "db"]):
        r = invoke(*args)
        assert r.code == 1
        assert r.err_line() == f"vaspace: error: no process with pid {pid}"


@pytest.mark.parametrize("start", [
    "0x4000_0000_0000", "0X400000000000", str(BASE), f"{BASE:_d}", f"{BASE:#o}", f"{BASE:#b}",
    f"{BASE:#_x}"])
def test_addresses_in_every_int_form(registry: str, start: str) -> None:
    """--start/--end take what int(x, 0) takes; a decimal inside the window is no mistake."""
    end = f"{BASE + 2 * MiB:#o}"
    r = invoke("seg", "create", "s", "--start", start, "--end", end, "--json")
    assert (r.code, r.stderr) == (0, "")
    assert vaspace.seg_region(vaspace.vas_seg_find("s")) == (BASE, BASE + 2 * MiB)


def test_unknown_name_is_not_a_process_error(objects: str) -> None:
    """ESRCH's "No such process" is the RFC's errno, not a sentence for someone who typed a name."""
    for args, line in ((["rm", "name:nosuch"], "no VAS named 'nosuch'"),
                       (["seg", "show", "nosuch"], "no segment named 'nosuch'"),
                       (["seg", "detach", "nosuch", "table"], "no VAS named 'nosuch'")):
        r = invoke(*args)
        assert r.code == 1
        assert r.err_line() == f"vaspace: error: {line}"


def test_busy_segment_names_every_vas_holding_it(objects: str) -> None:
    """A refused ``seg rm`` names each VAS (name and id), and the hint's command works."""
    other = vaspace.vas_create("42", 0o600)
    vaspace.vas_seg_attach(other, vaspace.vas_seg_find("table"), os.O_RDONLY)
    r = invoke("seg", "rm", "table")
    assert r.code == 1
    line = r.err_line()
    assert f"in VAS 'db' (vid {vaspace.vas_find('db')}), VAS '42' (vid {other});" in line
    assert "[" not in line.split("(sid")[1]  # no Python list of ids
    hint = line.rsplit("(", 1)[1].rstrip(")").split()
    assert hint[:3] == ["vaspace", "seg", "detach"]
    for vas in ("db", "name:42"):
        assert invoke(*hint[1:3], vas, hint[4]).code == 0
    assert invoke("seg", "rm", "table").code == 0


def test_ro_and_rw_together_change_nothing(objects: str) -> None:
    r = invoke("seg", "attach", "db", "idx", "--ro", "--rw")
    assert r.code == 2
    assert vaspace.vas_seg_find("idx") not in {s.sid for s in vaspace.vas_segments(
        vaspace.vas_find("db"))}


def test_busy_objects_name_their_holder(objects: str) -> None:
    """A VAS attached by another process cannot be removed or changed; the error says by whom."""
    with Holder("db", "rw") as h:
        for args in (["rm", "db"], ["seg", "attach", "db", "idx", "--ro"],
                     ["seg", "detach", "db", "table"]):
            # the first through a real process, with its real stderr
            r = run(*args) if args[0] == "rm" else invoke(*args)
            assert r.code == 1, args
            line = r.err_line()
            assert "Device or resource busy" in line
            assert f"attached by pid {h.pid} (rw)" in line
            assert r.stdout == ""
    r = invoke("rm", "db")
    assert (r.code, r.stderr) == (0, "")
    assert "deleted VAS 'db'" in r.stdout


def test_registry_that_is_not_a_directory(objects: str, tmp_path) -> None:
    path = tmp_path / "file"
    path.write_text("")
    r = run("--root", str(path), "ls")
    assert r.code == 1
    assert "is not a directory" in r.err_line()


def test_unprivileged_user_may_not_delete_others_objects(objects: str) -> None:
    """As nobody, deleting root's 0600 VAS and segment is refused, in one line each."""
    def as_nobody() -> list[tuple[int, str]]:
        out = []
        for args in (["rm", "db"], ["seg", "rm", "idx"], ["seg", "attach", "db", "idx", "--ro"]):
            r = invoke(*args)
            out.append((r.code, r.err_line()))
        return out

    results = in_child(as_nobody, uid=65534).get()
    assert [code for code, _ in results] == [1, 1, 1]
    for _, line in results:
        assert "Permission denied" in line or "Operation not permitted" in line
    assert vaspace.vas_find("db") and vaspace.vas_seg_find("idx")


def test_missing_matplotlib_is_a_clear_error(objects: str, tmp_path) -> None:
    """Without matplotlib, map --out says what to install; the terminal map still works."""
    def without_matplotlib() -> tuple[int, str, int]:
        sys.modules["matplotlib"] = None  # type: ignore[assignment] - makes the import fail
        r = invoke("map", "--out", str(tmp_path / "x.png"))
        return r.code, r.err_line(), invoke("map").code

    code, line, text_code = in_child(without_matplotlib).get()
    assert code == 1 and "needs matplotlib" in line and "vaspace[plot]" in line
    assert text_code == 0


def test_unprivileged_rm_names_the_vas(objects: str) -> None:
    line = in_child(lambda: invoke("rm", "db").err_line(), uid=65534).get()
    assert "Permission denied" in line and "VAS 'db'" in line


def test_closed_pipe_is_quiet(objects: str) -> None:
    """``vaspace ls | head -1``: the reader leaving is not an error worth a line."""
    import subprocess

    from cli_helpers import cli_env

    p = subprocess.run(f"{sys.executable} -m vaspace.cli ls --json | head -c 1", shell=True,
                       capture_output=True, text=True, env=cli_env(), timeout=60)
    assert p.stdout == "{"
    assert p.stderr == ""
