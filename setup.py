"""Build the C extension modules and the C API's shared library.

setuptools reads the project metadata from pyproject.toml; this file only lists
the extensions, because they need per-module sources and flags.  Setting
``VASPACE_EXT=name[,name]`` builds only the named ones (a development aid so
that work on one module does not need the others to compile).

The C API (``libvaspace.so``, and ``libmvas.so`` for programs written for
libmvas) is not a Python extension: it is a plain shared library, linked
against libpython, that C programs link with.  ``build_ext`` builds it next
to the extensions, inside the package.  When it cannot be built (no shared
libpython, no compiler for it) the package still builds, without it, and
says why.
"""

import json
import os
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"]

# The heap's Python-free core (src/vaspace/heap/core/); _heapcore.c holds the
# CPython bindings.  tests/heap/c/ builds the same files into a plain C test.
HEAP_CORE_SOURCES = [
    f"src/vaspace/heap/core/{name}.c"
    for name in ("region", "undo", "alloc", "lock", "seqlock", "durable", "dict", "array",
                 "list", "own", "lane")
]

# vaspace._core, one file per concept (src/vaspace/core/core.h has the map).
CORE_SOURCES = [
    f"src/vaspace/core/{name}.c"
    for name in ("module", "errors", "table", "mappings", "moves", "plans", "threads", "switch",
                 "fork", "lookups", "view", "fixedmap", "heap_api")
]

EXTENSIONS = {
    "_core": Extension(
        "vaspace._core",
        sources=CORE_SOURCES,
        depends=["src/vaspace/core/core.h", "src/vaspace/vaspace_core_api.h"],
        extra_compile_args=CFLAGS,
        libraries=["pthread"],
    ),
    "_heapcore": Extension(
        "vaspace.heap._heapcore",
        sources=["src/vaspace/heap/_heapcore.c", *HEAP_CORE_SOURCES],
        depends=["src/vaspace/heap/core/core.h", "src/vaspace/heap/core/layout.h"],
        extra_compile_args=CFLAGS,
        libraries=["pthread"],
    ),
}

CAPI_SOURCE = "src/libvaspace/libvaspace.c"
CAPI_LIB = "libvaspace.so"
# libmvas.so is a linker script naming libvaspace.so (as libc.so names
# libc.so.6): `cc ... -lmvas` links the one library, and a process never
# loads two copies of it.
MVAS_SCRIPT = "/* libmvas.so: vaspace serves libmvas's API */\nINPUT(libvaspace.so)\n"


def _libpython() -> tuple[str, str] | None:
    """(directory, name) of the shared libpython to link with, or None."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlib = sysconfig.get_config_var("LDLIBRARY") or ""  # libpython3.11.so
    if not ldlib.startswith("lib") or ".so" not in ldlib:
        return None
    return libdir, ldlib[3:ldlib.index(".so")]


class BuildWithCapi(build_ext):
    """build_ext, then the C API's library in the package directory."""

    def run(self) -> None:
        super().run()
        if os.environ.get("VASPACE_EXT") and "capi" not in os.environ["VASPACE_EXT"]:
            return
        try:
            self._build_capi()
        except Exception as exc:  # noqa: BLE001 - the Python package must still build
            self.warn(f"vaspace: the C API (libvaspace.so) was not built: {exc}")

    def _build_capi(self) -> None:
        found = _libpython()
        if found is None:
            raise RuntimeError("this Python has no shared libpython to embed")
        libdir, pylib = found
        pkgdir = os.path.dirname(self.get_ext_fullpath("vaspace._core"))
        os.makedirs(pkgdir, exist_ok=True)
        objects = self.compiler.compile(
            [CAPI_SOURCE],
            output_dir=self.build_temp,
            include_dirs=[sysconfig.get_path("include"), "src/vaspace/include"],
            # The interpreter to start when the package is not under a
            # site-packages (an in-place or editable build).
            macros=[("VASPACE_BUILD_EXECUTABLE",
                     json.dumps(os.path.abspath(sys.executable), ensure_ascii=False))],
            extra_postargs=[*CFLAGS, "-fPIC"],
        )
        self.compiler.link_shared_object(
            objects,
            os.path.join(pkgdir, CAPI_LIB),
            libraries=[pylib, "pthread", "dl"],
            library_dirs=[libdir],
            runtime_library_dirs=[libdir],
            extra_postargs=[f"-Wl,-soname,{CAPI_LIB}"],
        )
        with open(os.path.join(pkgdir, "libmvas.so"), "w") as f:
            f.write(MVAS_SCRIPT)


wanted = os.environ.get("VASPACE_EXT")
names = [n.strip() for n in wanted.split(",") if n.strip() in EXTENSIONS] if wanted else list(
    EXTENSIONS)
setup(ext_modules=[EXTENSIONS[n] for n in names], cmdclass={"build_ext": BuildWithCapi})
