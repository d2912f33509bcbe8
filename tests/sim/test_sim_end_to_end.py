"""Whole-cluster runs against the real engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from raftcore.ids import LeaderIdMode
from raftcore.sim import SimOptions, SimResult, Simulation
from raftcore.sim.cli import main
from raftcore.sim.linearizability import Outcome

STEPS = 2500


def explain(result: SimResult) -> str:
    return "\n".join(str(v) for v in result.violations) + "\nreplay: " + result.replay_command()


@pytest.mark.parametrize("seed", range(10))
def test_seeds_run_clean_with_all_faults(seed: int) -> None:
    result = Simulation(SimOptions(seed=seed, steps=STEPS)).run()
    assert result.ok, explain(result)
    assert result.elections >= 1 and result.committed > 0
    assert result.recovery_time is not None
    assert any(op.outcome is Outcome.OK for op in result.history)


def test_faults_really_happen() -> None:
    totals: dict[str, int] = {}
    for seed in range(4):
        result = Simulation(SimOptions(seed=seed, steps=STEPS, fault_interval=0.15)).run()
        assert result.ok, explain(result)
        for k, n in result.stats.items():
            totals[k] = totals.get(k, 0) + n
    for key in (
        "crashes",
        "writes_lost_on_crash",
        "messages_lost",
        "messages_cut",
        "messages_duplicated",
        "ops_ok",
        "ops_fail",
        "ops_unknown",
    ):
        assert totals[key] > 0, key


@pytest.mark.parametrize("mode", list(LeaderIdMode))
@pytest.mark.parametrize("pre_vote", [True, False])
def test_both_leader_id_modes(mode: LeaderIdMode, pre_vote: bool) -> None:
    result = Simulation(
        SimOptions(seed=40, nodes=5, steps=STEPS, leader_id_mode=mode, pre_vote=pre_vote)
    ).run()
    assert result.options.leader_id_mode is mode
    assert result.ok, explain(result)


def test_same_seed_same_trace() -> None:
    a = Simulation(SimOptions(seed=9, steps=1500)).run()
    b = Simulation(SimOptions(seed=9, steps=1500)).run()
    c = Simulation(SimOptions(seed=10, steps=1500)).run()
    assert a.trace_digest == b.trace_digest
    assert a.history == b.history and a.steps == b.steps
    assert a.trace_digest != c.trace_digest


def test_trace_does_not_depend_on_hash_seed(tmp_path: Path) -> None:
    code = (
        "from raftcore.sim import Simulation, SimOptions;"
        "print(Simulation(SimOptions(seed=4, steps=800)).run().trace_digest)"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_no_faults_is_quiet_and_live() -> None:
    result = Simulation(SimOptions(seed=5, nodes=3, steps=1500, faults="none")).run()
    assert result.ok, explain(result)
    assert result.elections == 1
    assert result.stats["faults"] == 0 and result.stats["crashes"] == 0
    assert result.recovery_time is not None and result.recovery_time < 0.5


def test_liveness_after_heavy_faults() -> None:
    result = Simulation(
        SimOptions(seed=21, nodes=5, steps=4000, faults="all", fault_interval=0.1)
    ).run()
    assert result.ok, explain(result)
    assert result.stats["faults"] > 5
    assert result.recovery_time is not None
    assert result.recovery_time <= 10 * result.options.election_timeout_max


class Counter:
    """A user state machine: a running sum, with a codec that maps puts and
    gets onto it loosely (linearizability off)."""

    def __init__(self) -> None:
        self.total = 0

    def apply(self, data: Any) -> Any:
        self.total += len(repr(data))
        return self.total


def test_pluggable_state_machine() -> None:
    result = Simulation(
        SimOptions(seed=3, nodes=3, steps=1500, check_linearizability=False),
        state_machine=Counter,
    ).run()
    assert result.ok, explain(result)
    assert not result.linearizability_checked


def test_trace_and_json_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.ndjson"
    rc = main(["--seed", "2", "--steps", "600", "--trace", str(trace), "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    record = json.loads(out[-1])
    assert rc == (0 if record["ok"] else 1)
    for key in ("seed", "ok", "violations", "elections", "committed", "trace_digest", "options"):
        assert key in record
    lines = [json.loads(x) for x in trace.read_text().splitlines()]
    steps = [x for x in lines if "step" in x]
    assert steps and {"t", "node", "event", "commands"} <= set(steps[0])
    assert len(steps) == record["steps"]


def test_campaign_cli(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--seeds", "0:2", "--steps", "500"])
    out = capsys.readouterr().out
    assert "2 seed(s)" in out
    assert rc == (0 if "0 failed" in out else 1)
    if rc:
        assert "replay seed" in out and "python -m raftcore.sim --seed" in out


def test_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--demo", "--steps", "1500"])
    out = capsys.readouterr().out
    assert "becomes leader" in out and "linearizab" in out and "replay:" in out
