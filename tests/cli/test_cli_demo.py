"""``vaspace demo`` runs to completion, says what happened, and leaves nothing behind."""

from __future__ import annotations

import glob
import json
import time

from cli_helpers import invoke, run


def _leftovers() -> set[str]:
    return set(glob.glob("/dev/shm/vaspace-demo-*"))


def test_demo_runs_in_under_30s_and_tells_the_story() -> None:
    before = _leftovers()
    t0 = time.monotonic()
    r = run("demo", timeout=60)
    elapsed = time.monotonic() - t0
    assert r.code == 0, r.stderr
    assert r.stderr == ""
    assert elapsed < 30
    out = r.stdout
    assert "step 1" in out and "step 2" in out and "step 3" in out
    assert "walked 8 nodes: the same list, at the same addresses" in out
    # the walker printed each node at its raw address, in list order
    walked = [line.split()[4] for line in out.splitlines() if ": value " in line]
    assert walked == ["'pointers'", "'stored'", "'in'", "'a'", "'segment'", "'stay'",
                      "'valid'", "'everywhere'"]
    assert "in VAS 'red'   reads 'red: hello from VAS red'" in out
    assert "in VAS 'blue'  reads 'blue: VAS blue holds other bytes'" in out
    assert "faster than the same-CPU process switch" in out  # the switch that moves nothing
    assert "slower than the same-CPU process switch" in out  # the conflicting one, honestly
    assert _leftovers() <= before


def test_demo_json_measures_both_switches(registry: str) -> None:
    """In-process (click's runner): the demo's own registry does not touch the caller's."""
    r = invoke("demo", "--quick", "--json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"vas_switch_ns", "vas_switch_nomove_ns", "proc_switch_pinned_ns",
                        "proc_switch_unpinned_ns",
                        "machine", "nodes", "rounds", "n"}
    assert doc["nodes"] == 8
    for key in ("vas_switch_ns", "vas_switch_nomove_ns", "proc_switch_pinned_ns",
                "proc_switch_unpinned_ns"):
        assert doc[key] > 0
    # the caller's registry is untouched (and still the one in use)
    assert json.loads(invoke("ls", "--json").stdout)["vases"] == []
