"""``vaspace config``: compiler and linker flags for C programs (like ``numpy-config``).

``cc prog.c $(vaspace config --cflags --libs)`` builds a program against this
installation's C API.  ``--libs`` carries an rpath to the package directory,
so the program runs with no ``LD_LIBRARY_PATH``; the library then finds the
interpreter and the vaspace it belongs to from where it lives.
"""

from __future__ import annotations

from pathlib import Path

import click

PACKAGE = Path(__file__).resolve().parent.parent
LIBRARY = "libvaspace.so"


def include_dir() -> Path:
    """Where <vaspace.h>, <mvas/vas.h>, <mvas/segment.h> and <linux/vas.h> live."""
    return PACKAGE / "include"


def lib_dir() -> Path:
    """Where libvaspace.so and libmvas.so live (the package directory)."""
    return PACKAGE


def pkgconfig_dir() -> Path:
    """Where mvas.pc and vaspace.pc live (for PKG_CONFIG_PATH)."""
    return PACKAGE / "pkgconfig"


def cflags() -> str:
    return f"-I{include_dir()}"


def libs() -> str:
    if not (lib_dir() / LIBRARY).exists():
        raise click.ClickException(
            f"the C API was not built: no {LIBRARY} in {lib_dir()} (the build needs a Python "
            "with a shared libpython; see the warning of `pip install`)")
    return f"-L{lib_dir()} -Wl,-rpath,{lib_dir()} -lvaspace"


@click.command("config")
@click.option("--cflags", "want_cflags", is_flag=True, help="Compiler flags (-I...).")
@click.option("--libs", "want_libs", is_flag=True,
              help="Linker flags (-L, an rpath, -lvaspace).")
@click.option("--pkgconfigdir", "want_pc", is_flag=True,
              help="The directory holding mvas.pc and vaspace.pc.")
def command(want_cflags: bool, want_libs: bool, want_pc: bool) -> None:
    """Print flags for building C programs against vaspace's C API.

    \b
    Example:
      cc prog.c $(vaspace config --cflags --libs) -o prog
      PKG_CONFIG_PATH=$(vaspace config --pkgconfigdir) pkg-config --cflags --libs mvas
    """
    if not (want_cflags or want_libs or want_pc):
        raise click.UsageError("give at least one of --cflags, --libs, --pkgconfigdir")
    parts = []
    if want_cflags:
        parts.append(cflags())
    if want_libs:
        parts.append(libs())
    if want_pc:
        parts.append(str(pkgconfig_dir()))
    click.echo(" ".join(parts))
