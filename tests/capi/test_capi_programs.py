"""C programs against the C API: the errno table, threads, fork and exec, env -i.

Each program runs in its own process with a bare environment (no venv, no
PYTHONPATH) and the test's registry; the library must find the interpreter
and the vaspace it was built with on its own.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import pytest
from capi_helpers import bare_env, checks, run

import vaspace

E = errno
# The RFC's errno for each case of tests/capi/c/errno_table.c (0: success).
ERRNO_TABLE = {
    "create_null": E.EINVAL, "create_empty": E.EINVAL, "create_not_utf8": E.EINVAL,
    "create": 0, "create_again": E.EEXIST, "find": 0, "find_missing": E.ESRCH,
    "find_null": E.EINVAL, "delete_zero": E.EINVAL, "delete_unknown": E.EINVAL,
    "getattr_null": E.EINVAL, "getattr_unknown": E.EINVAL, "getattr": 0, "setattr": 0,
    "setattr_null": E.EINVAL,
    "seg_create_unaligned": E.EINVAL, "seg_create_empty": E.EINVAL,
    "seg_create_outside_window": E.EFAULT, "seg_create_sz_zero": E.EINVAL,
    "seg_create_null": E.EINVAL, "seg_create": 0, "seg_create_again": E.EEXIST,
    "seg_find": 0, "seg_find_missing": E.ESRCH, "seg_getattr_null": E.EINVAL,
    "seg_getattr": 0, "seg_setattr": 0, "seg_attach_bad_type": E.EINVAL,
    "seg_attach_unknown": E.EINVAL, "seg_attach": 0, "seg_attach_twice": 0,
    "seg_attach_overlap": E.EFAULT, "seg_detach_not_attached": E.EINVAL,
    "seg_delete_attached": E.EBUSY,
    "attach_bad_type": E.EINVAL, "attach_bad_pid": E.EINVAL, "attach_dead_pid": E.ESRCH,
    "detach_not_attached": E.EINVAL, "switch_not_attached": E.EINVAL,
    "switch_negative": E.EINVAL, "attach_s_irwxu": 0, "seg_attach_vas_attached": E.EBUSY,
    "delete_attached": E.EBUSY, "switch": 0, "detach_inside": E.EBUSY, "switch_back": 0,
    "detach": 0, "switch_conflict_other_thread": E.EFAULT, "switch_after_other_left": 0,
    "vas_fork": E.ENOSYS, "vas_exec": E.ENOSYS,
    "nobody_delete": E.EACCES, "nobody_attach_rw": E.EACCES, "nobody_seg_delete": E.EACCES,
    "nobody_setattr": E.EACCES, "nobody_attach_pid1": E.EPERM,
}


def _name(code: int) -> str:
    return E.errorcode.get(code, str(code)) if code else "0"


@pytest.mark.skipif(os.geteuid() != 0, reason="the table's last cases drop to uid 65534")
def test_errno_table_from_c(capi, registry: str) -> None:
    out = run(capi["errno_table"], registry=registry)
    got = {parts[0]: int(parts[1]) for parts in (line.split() for line in out.splitlines())
           if len(parts) == 2}
    assert {k: _name(v) for k, v in got.items()} == {k: _name(v) for k, v in ERRNO_TABLE.items()}
    # Read-only from S_IRWXU, the mode masked, the message naming the object,
    # SIGINT left to the host, the thread that failed with EFAULT kept where it was.
    assert checks(out) == dict.fromkeys(
        ["sigint_default", "message_names_object", "getattr_mode_masked", "seg_getattr_mode",
         "active", "reads_segment", "stays_after_conflict"], "1")


def test_hello_under_env_i(capi, registry: str) -> None:
    """`env -i PATH=/usr/bin:/bin ./hello`: no venv, no PYTHONPATH; it cleans up after itself."""
    r = subprocess.run(["/usr/bin/env", "-i", "PATH=/usr/bin:/bin", f"VASPACE_ROOT={registry}",
                        capi["hello"]], env={}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith("hello from a VAS") and "active_vas() = 1" in lines[0]
    assert "active_vas() = 0" in lines[1]
    assert vaspace.vas_ids() == [] and vaspace.seg_ids() == []


def test_lmvas_links_the_same_library(capi, registry: str) -> None:
    """A libmvas Makefile's -lmvas works, and the process loads libvaspace.so only."""
    out = run(capi["hello_mvas"], registry=registry)
    assert "hello from a VAS" in out
    ldd = subprocess.run(["ldd", capi["hello_mvas"]], capture_output=True, text=True).stdout
    if ldd:
        assert "libvaspace.so" in ldd and "libmvas" not in ldd


def test_vaspace_window_applies_from_c(capi, registry: str) -> None:
    """VASPACE_WINDOW moves the window for C programs too: hello's segment falls outside."""
    env = {**bare_env(registry), "VASPACE_WINDOW": "500000000000-600000000000"}
    r = subprocess.run([capi["hello"]], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == f"hello: segment_create_sz: {os.strerror(E.EFAULT)}"


def test_a_python_thread_gets_the_gil_between_c_calls(capi, registry: str, tmp_path) -> None:
    """While one C thread calls in, it keeps the GIL between calls (docs/capi.md); a
    Python thread started meanwhile must still run, though the calls run no bytecode."""
    flag = tmp_path / "flag"
    out = run(capi["pythread"], str(flag), registry=registry, timeout=60)
    assert checks(out) == {"python_thread_runs_between_calls": "1"}, out
    assert flag.exists()


def test_one_vas_per_thread(capi, registry: str) -> None:
    out = run(capi["threads"], registry=registry)
    assert [line.rsplit(", ", 1)[1] for line in out.splitlines()[:4]] == ["ok"] * 4
    assert out.splitlines()[4] == "main thread: active_vas() = 0"
    assert vaspace.vas_ids() == []


def test_fork_and_exec_start_clean(capi, registry: str) -> None:
    assert checks(run(capi["fork"], registry=registry)) == dict.fromkeys(
        ["fork_child_starts_clean", "exec_child_starts_clean", "parent_unchanged", "clean_up"],
        "1")


def test_vaspace_config_compiles_a_program(capi, registry: str, tmp_path) -> None:
    """The documented line, through a shell: cc prog.c $(vaspace config --cflags --libs)."""
    cli = shutil.which("vaspace", path=os.path.dirname(sys.executable)) or shutil.which("vaspace")
    if cli is None:
        pytest.skip("the vaspace command is not installed beside this Python nor on PATH")
    src = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "c", "hello.c")
    exe = tmp_path / "hello"
    subprocess.run(["sh", "-c", 'cc "$1" $("$2" config --cflags --libs) -o "$3"', "sh",
                    src, cli, str(exe)], check=True, timeout=120)
    assert "hello from a VAS" in run(str(exe), registry=registry)


def test_pkgconfig_files_point_into_the_package() -> None:
    """PKG_CONFIG_PATH=$(vaspace config --pkgconfigdir): mvas.pc and vaspace.pc resolve here."""
    from vaspace.cli import config

    if shutil.which("pkg-config") is None:
        pytest.skip("no pkg-config on PATH")
    env = {**os.environ, "PKG_CONFIG_PATH": str(config.pkgconfig_dir())}
    for name in ("mvas", "vaspace"):
        out = subprocess.run(["pkg-config", "--cflags", "--libs", name], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        inc, libdir = config.include_dir(), config.lib_dir()
        assert [os.path.realpath(f[2:]) for f in out if f.startswith("-I")] == [str(inc)]
        assert any(f.startswith("-Wl,-rpath,") and os.path.realpath(f.split(",", 2)[2])
                   == str(libdir) for f in out)
        assert "-lvaspace" in out


CLONE_TABLE = {
    "seg_attach": 0, "mmap_anywhere": 0, "mmap_overlap": E.EFAULT, "mmap_unaligned": E.EINVAL,
    "mmap_bad_vid": E.EINVAL, "attach": 0, "switch": 0, "switch_back": 0,
    "seg_clone_busy": E.EBUSY, "mmap_attached": E.EBUSY, "detach": 0, "seg_clone": 0,
    "seg_clone_again": E.EEXIST, "seg_clone_null": E.EINVAL, "clone": 0,
    "clone_unknown": E.EINVAL, "attach_clone": 0, "switch_clone": 0, "switch_back_clone": 0,
    "detach_clone": 0, "attach_orig": 0, "switch_orig": 0, "switch_back_orig": 0,
    "detach_orig": 0, "munmap": 0, "munmap_again": E.EINVAL,
}


def test_clones_and_private_memory_from_c(capi, registry: str) -> None:
    """Issue 16's calls in <vaspace.h>: the RFC's errno, clones that copy private
    memory and share segments, and an original the clone's writes do not reach."""
    out = run(capi["clone"], registry=registry)
    got = {parts[0]: int(parts[1]) for parts in (line.split() for line in out.splitlines())
           if len(parts) == 2}
    assert {k: _name(v) for k, v in got.items()} == {k: _name(v) for k, v in CLONE_TABLE.items()}
    assert checks(out) == dict.fromkeys(
        ["clone_mode", "private_copied", "segment_shared", "original_untouched"], "1")
