"""Membership churn as a fault class: spare nodes, every kind of change,
outcomes recorded, liveness judged on the final membership."""

from __future__ import annotations

from collections import Counter

import pytest

from raftcore.errors import (
    InvalidMembershipChange,
    LeadershipLost,
    MembershipChangeInProgress,
    MembershipMismatch,
    NotLeader,
)
from raftcore.membership import Membership
from raftcore.sim import SimOptions, Simulation
from raftcore.sim.churn import ChurnClient, classify_change
from raftcore.sim.cli import _options, build_parser, main
from raftcore.sim.options import FAULT_KINDS, parse_faults
from raftcore.sim.rng import Rng

STEPS = 4000


def test_churn_is_a_fault_class_of_its_own_and_of_all() -> None:
    assert "churn" in FAULT_KINDS
    assert "churn" in parse_faults("all")
    assert parse_faults("churn") == {"churn"}
    o = SimOptions(seed=1, nodes=3, faults="churn").resolve()
    assert o.churn and o.spares == 2 and o.churn_interval == round(o.fault_interval / 2, 4)
    assert SimOptions(seed=1, faults="net,crash").resolve().spares == 0
    assert SimOptions(seed=1, faults="churn", spares=4).resolve().spares == 4


def test_replay_command_carries_the_churn_options() -> None:
    o = SimOptions(seed=4, nodes=3, faults="churn,crash", spares=3, churn_interval=0.05)
    resolved = o.resolve()
    args = build_parser().parse_args(resolved.cli_args())
    assert _options(args, args.seed).resolve() == resolved
    assert "--spares 3" in resolved.replay_command()


def test_without_churn_there_are_no_spares_and_no_changes() -> None:
    sim = Simulation(SimOptions(seed=3, nodes=3, steps=1500, faults="net,crash"))
    result = sim.run()
    assert result.ok
    assert len(sim.nodes) == 3 and sim.churn is None and result.churn == ()
    assert "churn_requests" not in result.stats
    assert result.final_membership == Membership.of([1, 2, 3])


@pytest.mark.parametrize("seed", [0, 2, 5, 7])
def test_churn_with_every_fault_runs_clean(seed: int) -> None:
    result = Simulation(SimOptions(seed=seed, nodes=5, steps=STEPS, faults="all")).run()
    assert result.ok, "\n".join(map(str, result.violations)) + "\n" + result.replay_command()
    assert result.stats["churn_requests"] > 0 and result.stats["churn_ok"] > 0
    assert result.stats["memberships_committed"] > 1
    assert result.recovery_time is not None


@pytest.mark.parametrize("seed", [0, 3, 7])
def test_churn_alone_runs_clean(seed: int) -> None:
    result = Simulation(SimOptions(seed=seed, nodes=3, steps=STEPS, faults="churn")).run()
    assert result.ok, "\n".join(map(str, result.violations)) + "\n" + result.replay_command()


def test_churn_covers_every_kind_of_change_and_outcome() -> None:
    kinds: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    voter_counts: set[int] = set()
    for seed in range(6):
        sim = Simulation(SimOptions(seed=seed, nodes=3, steps=STEPS, faults="churn,crash"))
        result = sim.run()
        # Safety holds; liveness may not (tests/sim/test_membership_liveness_regressions.py).
        assert all(v.kind == "liveness" for v in result.violations), result.violations
        assert sim.churn is not None
        kinds.update(sim.churn.kinds)
        outcomes.update({k: v for k, v in sim.churn.outcomes.items() if v})
        for _, m in sim.checker.committed_memberships:
            voter_counts.add(len(m.configs[-1]))
    assert set(kinds) == {
        "add-learners",
        "add-voters",
        "promote",
        "remove-voters",
        "remove-leader",
        "replace",
        "shrink-to-one",
        "grow-back",
        "remove-nodes",
        "update",
        "set-quorum",
        "invalid",
    }, kinds
    assert {"ok", "not_leader", "invalid"} <= set(outcomes), outcomes
    assert 1 in voter_counts and max(voter_counts) >= 4  # down to one voter and back up


def test_every_request_is_recorded_with_its_outcome() -> None:
    result = Simulation(SimOptions(seed=2, nodes=3, steps=STEPS, faults="churn")).run()
    assert result.churn and all(r.outcome is not None for r in result.churn)
    assert sum(result.stats[f"churn_{o}"] for o in ("ok", "not_leader", "invalid")) <= len(
        result.churn
    )
    for rec in result.churn:
        if rec.outcome == "ok":
            assert rec.result is not None and not rec.result[1].is_joint
    log = [text for _, kind, text in result.log if kind == "churn"]
    assert any(" ok: " in t for t in log)


def test_catch_up_is_judged_on_the_final_membership() -> None:
    # A run that ends with nodes removed: they need not catch up.
    for seed in range(20):
        sim = Simulation(SimOptions(seed=seed, nodes=3, steps=STEPS, faults="all"))
        result = sim.run()
        assert result.ok, result.violations
        final = result.final_membership
        assert final is not None
        if final.node_ids() != set(sim.nodes):
            break
    else:
        raise AssertionError("no run removed a node for good")
    assert {n.id for n in sim.liveness.members()} == set(final.node_ids())
    assert any(k == "liveness" and "every node applied" in t for _, k, t in result.log)


@pytest.mark.parametrize(("nodes", "spares"), [(1, 0), (2, 0), (1, 1)])
def test_churn_on_tiny_clusters(nodes: int, spares: int) -> None:
    opts = SimOptions(seed=1, nodes=nodes, spares=spares, steps=1500, faults="churn")
    result = Simulation(opts).run()
    assert result.ok, result.violations


def test_classify_change() -> None:
    assert classify_change(None) == "ok"
    assert classify_change(NotLeader(None, None)) == "not_leader"
    assert classify_change(MembershipChangeInProgress()) == "in_progress"
    assert classify_change(InvalidMembershipChange("x")) == "invalid"
    assert classify_change(MembershipMismatch(None, None)) == "mismatch"
    assert classify_change(LeadershipLost(None)) == "leadership_lost"


def test_choices_are_valid_for_the_membership_they_are_made_for() -> None:
    class NoDriver:
        pass

    client = ChurnClient(NoDriver(), Rng(5), (1, 2, 3, 4, 5), interval=1.0, timeout=1.0)  # type: ignore[arg-type]
    m = Membership.of([1, 2, 3])
    seen = Counter[str]()
    for _ in range(400):
        kind, change, _retain = client.choose(m, 1)
        seen[kind] += 1
        ids = {n for n, _ in getattr(change, "nodes", ())} | set(getattr(change, "ids", ()))
        assert ids <= {1, 2, 3, 4, 5}, change  # only nodes that exist
    assert "grow-back" not in seen and "remove-leader" in seen
    single = Membership.of([4])
    assert any(client.choose(single, 4)[0] == "grow-back" for _ in range(100))


def test_cli_runs_churn(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--seed", "3", "--nodes", "3", "--steps", "800", "--faults", "churn"])
    out = capsys.readouterr().out
    assert "faults=churn" in out and "spares=2" in out
    assert rc == 0, out
