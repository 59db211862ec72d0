"""scripts/mutate.py: its mutants are valid code, and it always restores the tree."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mutate() -> ModuleType:
    name = "vaspace_mutate_script"
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "mutate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


SAMPLE = '''"""A docstring with 1 == 2 in it."""


def f(a: int = 3, b: bool = False) -> bool:
    """Neither 4 < 5 here."""
    if a == 1 and not b:
        raise ValueError(f"{a == 2}")
    while b:
        b = a in (7,)
    return True  # pragma: no mutate
'''


def test_every_kind_of_mutant_and_nothing_else(mutate: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "sample.py"
    path.write_text(SAMPLE)
    muts = mutate.mutants_of(path)
    got = sorted((m.line, m.what) for m in muts)
    assert got == sorted([
        (4, "3 -> 4"), (4, "3 -> 2"), (4, "False -> True"),  # defaults, not annotations
        (6, "Eq -> NotEq"), (6, "and -> or"), (6, "1 -> 2"), (6, "1 -> 0"),
        (6, "drop not"), (6, "negate condition"),
        (7, "remove raise"),  # the f-string inside is left alone
        (8, "negate condition"),
        (9, "In -> NotIn"), (9, "7 -> 8"), (9, "7 -> 6"),
    ])
    original = path.read_bytes()
    for m in muts:
        changed = mutate.apply(m, original)
        assert changed != original
        ast.parse(changed)


def test_policy_modules_give_valid_mutants(mutate: ModuleType) -> None:
    for files, tests in mutate.MODULES.values():
        assert all((REPO / "tests" / t).exists() for t in tests), tests
        for rel in files:
            path = mutate.PKG / rel
            original = path.read_bytes()
            muts = mutate.mutants_of(path)
            assert muts, rel
            for m in muts:
                ast.parse(mutate.apply(m, original), filename=m.describe())


@pytest.fixture
def victim(mutate: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file to mutate, with the script's backups kept under tmp_path."""
    monkeypatch.setattr(mutate, "BACKUP", tmp_path / "backup")
    path = tmp_path / "m.py"
    path.write_text("x = 1\n")
    return path


def test_file_is_restored_on_error(mutate: ModuleType, victim: Path) -> None:
    before = victim.stat().st_mtime_ns
    with pytest.raises(KeyboardInterrupt), mutate.mutable(victim):
        victim.write_text("x = 2\n")
        raise KeyboardInterrupt
    assert victim.read_text() == "x = 1\n" and victim.stat().st_mtime_ns == before
    assert not mutate.BACKUP.exists()


def test_a_killed_run_is_undone_by_the_next(mutate: ModuleType, victim: Path) -> None:
    before = victim.stat().st_mtime_ns
    cm = mutate.mutable(victim)
    cm.__enter__()
    victim.write_text("x = 2\n")  # ... and the run is SIGKILLed here: no exit
    assert mutate.restore_leftovers() == [str(victim)]
    assert victim.read_text() == "x = 1\n" and victim.stat().st_mtime_ns == before
    assert mutate.restore_leftovers() == []


def test_every_equivalent_entry_names_a_real_mutant(mutate: ModuleType) -> None:
    """An entry whose line was edited away is stale: its argument no longer applies."""
    live = set()
    for files, _ in mutate.MODULES.values():
        for rel in files:
            muts = mutate.mutants_of(mutate.PKG / rel)
            for k in range(len(muts)):
                live.update(mutate.equivalent_keys(rel, muts, k))
    stale = [key for key in mutate.EQUIVALENT if key not in live]
    assert stale == []


def test_equivalent_mutants_are_left_out_of_the_score(mutate: ModuleType) -> None:
    ms = [mutate.Mutant("f.py", i, 0, 0, "", "x", outcome=o)
          for i, o in enumerate(["killed", "survived", "equivalent", "equivalent", "timeout"])]
    s = mutate.score(ms)
    assert (s.killed, s.survived, s.timeout, s.equivalent) == (1, 1, 1, 2)
    assert s.percent == pytest.approx(200 / 3)
    assert "equiv" in mutate.report({"m": ms}).splitlines()[0]


def test_every_c_mutant_still_applies(mutate: ModuleType, tmp_path: Path) -> None:
    """A C mutant whose sed no longer matches its file's text tests nothing: it
    is reported "not applied", which is easy to miss in a long run."""
    for rel, expr, _, what in mutate.C_MUTANTS:
        src = (mutate.PKG / rel).read_bytes()
        out = subprocess.run(["sed", "-e", expr], input=src, capture_output=True, check=True)
        assert out.stdout != src, (rel, what)
    whats = {what for *_, what in mutate.C_MUTANTS}
    assert set(mutate.C_EQUIVALENT) <= whats  # no argument for a mutant that is gone
