"""C and Python processes share one registry and one sharing rule."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from capi_helpers import bare_env, run

import vaspace

READER = Path(__file__).resolve().parents[2] / "examples" / "c" / "reader.py"


def _hold(capi, registry: str, name: str, mode: str) -> subprocess.Popen:
    """A C process holding VAS ``name`` attached (``ro`` or ``rw``) until its stdin closes."""
    proc = subprocess.Popen([capi["hold"], name, mode], env=bare_env(registry), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "attached"
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


def test_c_writer_excludes_python(capi, registry: str) -> None:
    vid = vaspace.vas_create("shared", 0o600)
    holder = _hold(capi, registry, "shared", "rw")
    try:
        with pytest.raises(OSError) as exc:
            vaspace.vas_attach(0, vid, os.O_RDONLY)
        assert exc.value.errno == errno.EBUSY
        assert f"pid {holder.pid} (rw)" in str(exc.value)
    finally:
        _release(holder)
    vaspace.vas_attach(0, vid, os.O_RDONLY)  # the writer is gone
    vaspace.vas_detach(0, vid)


def test_python_reader_admits_c_readers_only(capi, registry: str) -> None:
    vid = vaspace.vas_create("shared", 0o644)
    vaspace.vas_attach(0, vid, os.O_RDONLY)
    try:
        r = subprocess.run([capi["hold"], "shared", "rw"], env=bare_env(registry),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert r.stdout.strip() == f"error {errno.EBUSY}"
        _release(_hold(capi, registry, "shared", "ro"))
    finally:
        vaspace.vas_detach(0, vid)


def test_c_writer_python_reader(capi, registry: str) -> None:
    """examples/c: writer.c fills the VAS, reader.py (another process) reads it and cleans up."""
    assert run(capi["writer"], "written in C", registry=registry).startswith("writer: wrote 12")
    r = subprocess.run([sys.executable, str(READER)], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "VASPACE_ROOT": registry})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "reader: written in C\n"
    assert vaspace.vas_ids() == [] and vaspace.seg_ids() == []
