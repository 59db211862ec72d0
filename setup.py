"""Build the C extension modules.

setuptools reads the project metadata from pyproject.toml; this file only lists
the extensions, because they need per-module sources and flags.  Setting
``VASPACE_EXT=name[,name]`` builds only the named ones (a development aid so
that work on one module does not need the others to compile).
"""

import os

from setuptools import Extension, setup

CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"]

EXTENSIONS = {
    "_core": Extension(
        "vaspace._core",
        sources=["src/vaspace/_core.c"],
        extra_compile_args=CFLAGS,
        libraries=["pthread"],
    ),
    "_heapcore": Extension(
        "vaspace.heap._heapcore",
        sources=["src/vaspace/heap/_heapcore.c"],
        extra_compile_args=CFLAGS,
        libraries=["pthread"],
    ),
}

wanted = os.environ.get("VASPACE_EXT")
names = [n.strip() for n in wanted.split(",")] if wanted else list(EXTENSIONS)
setup(ext_modules=[EXTENSIONS[n] for n in names])
