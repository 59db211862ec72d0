"""``vaspace demo`` runs to completion, says what happened, and leaves nothing behind.

The timings differ from run to run, so the checks are on how the printed
words relate to the printed numbers (a "faster" must be faster, by the
printed factor), never on a fixed sentence or a wall-clock limit.
"""

from __future__ import annotations

import glob
import json
import re

import pytest
from cli_helpers import invoke, run

from vaspace.cli.demo_steps import versus

NUMBER = r"([0-9]+\.[0-9]+) us"
VERSUS = r"([0-9.]+)x (faster|slower) than the same-CPU process switch"
HALF_UNIT = 0.0005  # the printed microseconds carry 3 decimals


def _leftovers() -> set[str]:
    return set(glob.glob("/dev/shm/vaspace-demo-*"))


def _value(out: str, label: str, tail: str = "") -> re.Match[str]:
    m = re.search(re.escape(label) + r"\s+" + NUMBER + tail, out)
    assert m, f"no line {label!r} in:\n{out}"
    return m


def _check_versus(ns_text: str, times: str, word: str, base_text: str) -> None:
    """The word and the factor agree with the two printed numbers (within their rounding)."""
    us, base = float(ns_text), float(base_text)
    lo = max(us - HALF_UNIT, 1e-9)
    hi = us + HALF_UNIT
    base_lo, base_hi = max(base - HALF_UNIT, 1e-9), base + HALF_UNIT
    if word == "faster":
        assert lo <= base_hi, (us, base)
        bounds = (base_lo / hi, base_hi / lo)
    else:
        assert hi >= base_lo, (us, base)
        bounds = (lo / base_hi, hi / base_lo)
    factor = float(times)
    slack = 0.5 if factor >= 10 else 0.05  # the factor's own rounding
    assert bounds[0] - slack <= factor <= bounds[1] + slack, (factor, bounds)


def test_demo_tells_the_story_and_its_words_follow_its_numbers() -> None:
    before = _leftovers()
    r = run("demo", timeout=120)
    assert r.code == 0, r.stderr
    assert r.stderr == ""
    out = r.stdout
    assert "step 1" in out and "step 2" in out and "step 3" in out
    assert "walked 8 nodes: the same list, at the same addresses" in out
    # the walker printed each node at its raw address, in list order
    walked = [line.split()[4] for line in out.splitlines() if ": value " in line]
    assert walked == ["'pointers'", "'stored'", "'in'", "'a'", "'segment'", "'stay'",
                      "'valid'", "'everywhere'"]
    # each VAS shows the bytes written into it, at the one address
    assert "in VAS 'red'   reads 'red: hello from VAS red'" in out
    assert "in VAS 'blue'  reads 'blue: VAS blue holds other bytes'" in out
    pinned = _value(out, "process switch (pipe ping-pong), same CPU").group(1)
    _value(out, "process switch (pipe ping-pong), unpinned")
    nomove = _value(out, "vas_switch 'left' <-> 'right' (they share", r"\s+" + VERSUS)
    moving = _value(out, "vas_switch 'red' <-> 'blue' (different data", r"\s+" + VERSUS)
    for m in (nomove, moving):
        _check_versus(m.group(1), m.group(2), m.group(3), pinned)
    # the per-syscall figure is what the moving switch adds over the one that moves nothing
    each = re.search(r"2 syscalls \(2 mremap\), about ([0-9.]+) us each here", out)
    assert each, out
    added = max(float(moving.group(1)) - float(nomove.group(1)), 0) / 2
    assert abs(float(each.group(1)) - added) <= HALF_UNIT * 2
    assert "~5 us" not in out and "on this VM" not in out
    assert _leftovers() <= before


@pytest.mark.parametrize(("ns", "base", "text"), [
    (50.0, 2000.0, "40x faster than"), (9000.0, 2000.0, "4.5x slower than"),
    (2000.0, 50.0, "40x slower than"), (1500.0, 2000.0, "1.3x faster than"),
    (2000.0, 2000.0, "1.0x faster than")])
def test_versus_follows_the_ratio(ns: float, base: float, text: str) -> None:
    assert versus(ns, base) == text


def test_demo_json_measures_both_switches(registry: str) -> None:
    """In-process (click's runner): the demo's own registry does not touch the caller's."""
    r = invoke("demo", "--quick", "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"vas_switch_ns", "vas_switch_nomove_ns", "proc_switch_pinned_ns",
                        "proc_switch_unpinned_ns",
                        "machine", "nodes", "rounds", "n"}
    assert doc["nodes"] == 8
    assert (doc["rounds"], doc["n"]) == (5, 500)
    for key in ("vas_switch_ns", "vas_switch_nomove_ns", "proc_switch_pinned_ns",
                "proc_switch_unpinned_ns"):
        assert doc[key] > 0
    # the caller's registry is untouched (and still the one in use)
    assert json.loads(invoke("ls", "--json").stdout)["vases"] == []
