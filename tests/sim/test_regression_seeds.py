"""Simulator seeds that once found engine bugs: each must stay clean."""

from __future__ import annotations

import pytest

from raftcore.sim import SimOptions, Simulation

# The fault classes these seeds ran with ("all" before membership churn
# joined it): the same schedule, step for step, as when they found the bug.
FAULTS = "net,partition,crash,drift,election"

# seed -> the bug it found (see tests/engine/test_regressions.py)
SEEDS = {
    298: "ack released after a truncation replaced the acknowledged entry",
    469: "ack released after a truncation replaced the acknowledged entry (standard mode)",
}


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_seed_stays_clean(seed: int) -> None:
    result = Simulation(SimOptions(seed=seed, nodes=5, steps=20000, faults=FAULTS)).run()
    assert not result.violations, f"seed {seed} ({SEEDS[seed]}): {result.violations}"
    assert result.ok


def test_seed_308_ack_of_a_log_an_install_discarded_stays_clean() -> None:
    """Seed 308 of the issue-10 campaign: a follower's acknowledgement of an
    entry, waiting for its flush, was sent after a snapshot install had
    discarded that entry (tests/engine/test_snapshots.py has the rule)."""
    result = Simulation(SimOptions(seed=308, nodes=5, steps=20000, faults="all")).run()
    assert result.ok, result.violations
    assert result.stats["snapshots_installed"] > 0
