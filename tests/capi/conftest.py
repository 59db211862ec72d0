"""Build the C API's test programs once per session, with the system compiler.

Every C test needs ``cc`` and the built ``libvaspace.so``; without them the
tests are skipped with the reason.  The programs are the examples in
examples/c/ and the test programs in tests/capi/c/, compiled in parallel
into one temporary directory with the flags ``vaspace config`` prints.
"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import click
import pytest

from vaspace.cli import config

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PROGRAMS = {
    "hello": REPO / "examples/c/hello.c",
    "threads": REPO / "examples/c/threads.c",
    "writer": REPO / "examples/c/writer.c",
    "errno_table": HERE / "c/errno_table.c",
    "fork": HERE / "c/fork.c",
    "hold": HERE / "c/hold.c",
    "clone": HERE / "c/clone.c",
}


class Built:
    """Paths of the compiled programs and of the extension module's directory."""

    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.ext_dir = outdir / "ext"

    def __getitem__(self, name: str) -> str:
        return str(self.outdir / name)


def _commands(outdir: Path) -> list[list[str]]:
    flags = [*config.cflags().split(), *config.libs().split()]
    cmds = [["cc", "-O1", "-Wall", "-Werror", "-pthread", str(src), "-o", str(outdir / name),
             *flags] for name, src in PROGRAMS.items()]
    # libmvas's own link line: -lmvas (a linker script naming libvaspace.so).
    libdir = str(config.lib_dir())
    cmds.append(["cc", "-O1", "-Wall", "-Werror", str(PROGRAMS["hello"]), "-o",
                 str(outdir / "hello_mvas"), *config.cflags().split(), f"-L{libdir}",
                 f"-Wl,-rpath,{libdir}", "-lmvas"])
    # A program that also runs Python itself (through the interpreter the library started).
    pylib = sysconfig.get_config_var("LIBDIR")
    cmds.append(["cc", "-O1", "-Wall", "-Werror", f"-I{sysconfig.get_path('include')}",
                 str(HERE / "c/pythread.c"), "-o", str(outdir / "pythread"), *flags,
                 f"-L{pylib}", f"-Wl,-rpath,{pylib}",
                 f"-lpython{sysconfig.get_config_var('VERSION')}"])
    ext = outdir / "ext" / ("capi_ext" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmds.append(["cc", "-O1", "-Wall", "-Werror", "-shared", "-fPIC", "-pthread",
                 f"-I{sysconfig.get_path('include')}", str(HERE / "c/capi_ext.c"),
                 "-o", str(ext), *flags])
    return cmds


@pytest.fixture(scope="session")
def capi(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Compile everything once; skip when there is no compiler or no C API."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc) on PATH")
    try:
        config.libs()
    except click.ClickException as exc:
        pytest.skip(exc.format_message())
    outdir = tmp_path_factory.mktemp("capi")
    (outdir / "ext").mkdir()
    procs = [(cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)) for cmd in _commands(outdir)]
    for cmd, proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out}"
    return Built(outdir)
