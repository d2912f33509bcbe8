"""The engine's behaviour, pinned: the trace digests of 60 simulator seeds.

A trace digest covers every event fed to every engine and every command it
returned, so a refactoring of the engine that changes nothing keeps every
digest byte-identical. A deliberate behaviour change updates the pins in its
own commit, saying why:

    RAFTCORE_UPDATE_PINS=1 .venv/bin/pytest tests/sim/test_pinned_behaviour.py

The seeds cover both leader-id modes, pre-vote on and off, and membership
churn (every seed runs ``--faults all``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from raftcore.sim import SimOptions, Simulation

PINS = Path(__file__).with_name("pinned_digests.json")
SEEDS = range(60)
STEPS = 6000


def run(seed: int) -> tuple[str, dict[str, object]]:
    result = Simulation(SimOptions(seed=seed, nodes=5, faults="all", steps=STEPS)).run()
    assert result.ok, f"seed {seed}: {result.violations}"
    o = result.options
    churned = sum(1 for r in result.churn)
    return result.trace_digest, {
        "leader_id_mode": o.leader_id_mode.value,
        "pre_vote": o.pre_vote,
        "churn": o.churn and churned > 0,
    }


@pytest.fixture(scope="module")
def runs() -> dict[int, tuple[str, dict[str, object]]]:
    return {seed: run(seed) for seed in SEEDS}


def test_trace_digests_are_pinned(runs: dict[int, tuple[str, dict[str, object]]]) -> None:
    digests = {str(seed): digest for seed, (digest, _) in runs.items()}
    if os.environ.get("RAFTCORE_UPDATE_PINS"):
        PINS.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    pinned = json.loads(PINS.read_text())
    changed = sorted(int(s) for s in digests if digests[s] != pinned.get(s))
    assert not changed, (
        f"behaviour changed for seeds {changed}: a refactoring must keep every digest; "
        "a deliberate behaviour change updates the pins (see this module's docstring)"
    )


def test_the_pinned_seeds_cover_both_modes_pre_vote_and_churn(
    runs: dict[int, tuple[str, dict[str, object]]],
) -> None:
    options = [o for _, o in runs.values()]
    assert {o["leader_id_mode"] for o in options} == {"standard", "advanced"}
    assert {o["pre_vote"] for o in options} == {True, False}
    assert any(o["churn"] for o in options)
