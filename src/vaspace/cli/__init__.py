"""The ``vaspace`` command: see, manage and demo first-class address spaces.

One root group; each command (or group of commands) lives in its own module
and is added with ``add_command``.  Every error, whether a vaspace
``OSError``, a bad argument or a usage mistake, ends in one place,
``VaspaceGroup.main``, which prints exactly one line,
``vaspace: error: <what and why>``, on stderr and exits 1 (2 for usage
errors, as click does).  Nothing prints a traceback: a user should read what
went wrong, not where in our code it was noticed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from .. import __version__

EPILOG = """\b
Objects are named by NAME or by ID: an argument made only of digits is an
id; write name:123 for a VAS or segment whose name is made of digits.
\b
Shell completion (bash; zsh and fish likewise with zsh_source, fish_source):
  eval "$(_VASPACE_COMPLETE=bash_source vaspace)"
\b
Example:
  vaspace demo
  vaspace create db && vaspace seg create table --start 0x400000000000 --size 64M
  vaspace seg attach db table --rw && vaspace ls
"""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(message: str, code: int) -> int:
    click.echo(f"vaspace: error: {_one_line(message)}", err=True)
    return code


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (a test runner's buffer)
        pass


class VaspaceGroup(click.Group):
    """The root group; its ``main`` turns every failure into one stderr line."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name=prog_name or "vaspace",
                              complete_var=complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.UsageError as exc:
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            code = _fail(exc.format_message() + hint, exc.exit_code)
        except click.ClickException as exc:
            code = _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            code = _fail("interrupted", 130)
        except KeyboardInterrupt:
            code = _fail("interrupted", 130)
        except BrokenPipeError:
            # The reader went away (``vaspace ls | head -1``): not an error to report.
            _silence_stdout()
            code = 141
        except OSError as exc:
            # vaspace's errors carry "<strerror>: <what>" and name the object
            # (and the holders, for EBUSY); plain OS errors name the file.
            text = exc.strerror or str(exc)
            if exc.filename is not None and str(exc.filename) not in text:
                text = f"{text}: {exc.filename}"
            code = _fail(text, 1)
        except ValueError as exc:
            code = _fail(str(exc), 1)
        except Exception as exc:
            # A bug of ours: still one line, unless a developer asks for the traceback.
            if os.environ.get("VASPACE_DEBUG"):
                raise
            code = _fail(f"internal error: {type(exc).__name__}: {exc} "
                         "(run with VASPACE_DEBUG=1 for the traceback)", 1)
        if not standalone_mode:
            return code
        sys.exit(code)


@click.group(cls=VaspaceGroup, epilog=EPILOG,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--root", metavar="DIR", envvar="VASPACE_ROOT", show_envvar=True,
              help="Registry directory (default /dev/shm/vaspace).")
@click.version_option(__version__, prog_name="vaspace")
def cli(root: str | None) -> None:
    """See, manage and demo first-class virtual address spaces (VASes).

    A VAS is a named set of segments; a segment is memory at a fixed address,
    so pointers stored in it are valid in every process that attaches it.
    """
    if root:
        os.environ["VASPACE_ROOT"] = root


def _register() -> None:
    from . import config, create, demo, fsck, ls, maps, picture, ps, rm, seg, show

    for mod in (ls, show, create, rm, seg, ps, maps, picture, demo, config):
        cli.add_command(mod.command)
    cli.add_command(fsck.command)


_register()


def main(argv: Sequence[str] | None = None) -> None:
    """The console script's entry point (``vaspace = vaspace.cli:main``)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="vaspace")


__all__ = ["cli", "main"]
