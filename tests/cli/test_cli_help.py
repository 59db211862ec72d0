"""--help with an example everywhere, shell completion, and the small parsers."""

from __future__ import annotations

import click
import pytest
from cli_helpers import invoke, run

import vaspace
from vaspace.cli import cli
from vaspace.cli.output import human_size, parse_addr, parse_size


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*path, name))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, (*path, name)))
    return out


COMMANDS = _commands(cli)


def test_every_issue_command_exists() -> None:
    for path in [("ls",), ("show",), ("create",), ("rm",), ("seg", "create"), ("seg", "rm"),
                 ("seg", "attach"), ("seg", "detach"), ("ps",), ("maps",), ("map",),
                 ("demo",)]:
        assert path in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_help_has_an_example(path: tuple[str, ...]) -> None:
    r = invoke(*path, "--help")
    assert r.code == 0 and r.stderr == ""
    assert "Example" in r.stdout
    assert f"vaspace {' '.join(path)}" in r.stdout.split("Example", 1)[1]


def test_root_help_documents_completion_and_names() -> None:
    r = invoke("--help")
    assert r.code == 0
    assert "_VASPACE_COMPLETE=bash_source vaspace" in r.stdout
    assert "name:123" in r.stdout


def test_bash_completion_script_and_names(registry: str) -> None:
    script = run(_VASPACE_COMPLETE="bash_source")
    assert script.code == 0 and "complete -o nosort -F" in script.stdout
    vaspace.vas_create("db-main", 0o600)
    vaspace.vas_create("other", 0o600)
    vaspace.segment_create_sz("dbseg", 0x4000_0000_0000, 4096, 0o600)
    words = invoke(_VASPACE_COMPLETE="bash_complete", COMP_WORDS="vaspace rm d",
                   COMP_CWORD="2")
    assert words.stdout.split() == ["plain,db-main"]
    words = invoke(_VASPACE_COMPLETE="bash_complete",
                   COMP_WORDS="vaspace seg attach db-main d", COMP_CWORD="4")
    assert words.stdout.split() == ["plain,dbseg"]


def test_version() -> None:
    assert invoke("--version").stdout.strip() == f"vaspace, version {vaspace.__version__}"


@pytest.mark.parametrize(("text", "value"), [
    ("4096", 4096), ("0x1000", 4096), ("64M", 64 << 20), ("1G", 1 << 30), ("1g", 1 << 30),
    ("2KiB", 2048), ("1.5G", 3 << 29), ("16MB", 16 << 20), ("1_024", 1024), ("1T", 1 << 40)])
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "M", "64Q", "-1", "1.5.5G", "0x", "ten"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_parse_addr() -> None:
    assert parse_addr("0x4000_0000_0000") == 0x4000_0000_0000
    assert parse_addr("4096") == 4096
    for bad in ("zz", "-0x10", "0x"):
        with pytest.raises(ValueError, match="is not an address"):
            parse_addr(bad)


@pytest.mark.parametrize(("n", "text"), [
    (0, "0B"), (1023, "1023B"), (4096, "4K"), (64 << 20, "64M"), (3 << 29, "1.5G"),
    ((1 << 30) + 1, "1.0G"), (8 << 40, "8T")])
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text
