"""Membership changes that once left a healed cluster with no leader, ever.

Found by the churn campaign (``python -m raftcore.sim --seeds 0:200 --nodes 5
--faults all``: 53 of 200 seeds failed liveness) and fixed in the engine
(commit 03c51ba): a voter no longer refuses a candidate for being outside its
own, possibly stale, membership; a voter removed by a membership entry not yet
known committed still campaigns (Raft thesis 4.2.2). Each deadlock is shown
by a minimal manual schedule and by a seed; seed 157 recovered only after
5.06 s (bound 3 s) for a related reason.
"""

from __future__ import annotations

import pytest

from raftcore.membership import AddLearners, ReplaceVoters
from raftcore.sim import SimOptions, Simulation
from raftcore.sim.manual import SimControl


def need(condition: bool, what: str) -> None:
    """A step of the schedule that must work for the test to mean anything."""
    if not condition:
        raise RuntimeError(f"schedule broken: {what}")


def await_membership(c: SimControl, node: int, voters: set[int]) -> None:
    for _ in range(1000):
        m = c.membership(node)
        if m is not None and not m.is_joint and m.configs[-1] == voters:
            return
        c.advance(0.0005)
    need(False, f"node {node} never got the membership {voters}")


def test_new_voters_with_a_stale_membership_can_still_elect() -> None:
    # Was: 6 needed 4 or 5, which refused it for not being a voter of their
    # own stale membership ({1,2,3}) — and only a leader could update them.
    c = SimControl(nodes=3, spares=3, check_quorum=True)
    c.start()
    leader = c.await_leader()
    need(leader is not None, "no first leader")
    assert leader is not None
    # 4 and 5 learn the membership {1,2,3} (as learners), then are cut off.
    c.change(leader, AddLearners({4: "n4", 5: "n5"}))
    c.advance(0.2)
    away = c.partition([[4, 5], [1, 2, 3, 6]])
    # The voters become {6} alone, then {4, 5, 6}: the joint [{6}, {4,5,6}]
    # cannot commit without 4 or 5, and 6 steps down (check-quorum).
    c.change(leader, ReplaceVoters({6: "n6"}))
    c.advance(1.0)
    need(c.leader() == 6, "6 did not take over")
    c.change(6, ReplaceVoters({4: "n4", 5: "n5", 6: "n6"}))
    c.advance(1.0)
    need(c.leader() is None, "6 did not step down")
    c.heal(away)
    # Every node is up and connected: 6 needs 4 or 5, which still believe the
    # voters are {1, 2, 3} and refuse it without looking at its log.
    assert c.await_leader(timeout=30.0) is not None
    assert c.check() == []


def test_nodes_leaving_the_voters_campaign_until_that_commits() -> None:
    # Was: 1 and 2, the only holders of the final membership, stopped
    # campaigning on appending it; 3-5 were refused on log grounds.
    c = SimControl(nodes=3, spares=2, check_quorum=True)
    c.start()
    need(c.await_leader() == 1, "1 did not lead")
    c.advance(0.05)
    # {1,2,3} -> {3,4,5}, keeping 1 and 2 as learners. The final membership
    # reaches only 1 and 2: the links to the new voters fail at that moment.
    c.change(1, ReplaceVoters({3: "n3", 4: "n4", 5: "n5"}), retain=True)
    await_membership(c, 1, {3, 4, 5})
    cut = c.cut([(1, n) for n in (3, 4, 5)])
    c.advance(1.0)  # 1 steps down; 1 and 2 hold the final membership, 3-5 do not
    need(c.leader() != 1, "1 did not step down")
    c.heal(cut)
    # 3, 4 and 5 need a majority of {1, 2, 3}, whose logs are newer; 1 and 2
    # are not voters of their own (uncommitted) membership and never campaign.
    assert c.await_leader(timeout=30.0) is not None
    assert c.check() == []


def test_seed_12_churn_was_a_stale_membership_deadlock() -> None:
    # python -m raftcore.sim --seed 12 --nodes 5 --faults churn
    result = Simulation(SimOptions(seed=12, nodes=5, faults="churn")).run()
    assert result.ok, result.violations


def test_seed_143_all_faults_was_a_retired_too_early_deadlock() -> None:
    # python -m raftcore.sim --seed 143 --nodes 5 --faults all
    result = Simulation(SimOptions(seed=143, nodes=5, faults="all")).run()
    assert result.ok, result.violations


def test_seed_157_all_faults_recovers_in_time() -> None:
    # Was: 5.06 s. Voters removed by the committed membership but holding an
    # older one kept campaigning (pre-vote off) and a lagging new voter kept
    # granting them, so the real candidates kept losing term races.
    # python -m raftcore.sim --seed 157 --nodes 5 --faults all
    result = Simulation(SimOptions(seed=157, nodes=5, faults="all")).run()
    assert result.ok, result.violations


@pytest.mark.parametrize("seed", [436, 462])
def test_campaign_seeds_where_the_only_possible_leader_was_always_a_term_behind(seed: int) -> None:
    # python -m raftcore.sim --seed N --nodes 5 --faults all: healed clusters
    # took 17.0 s and 5.8 s to elect (see
    # test_a_refused_candidates_term_is_remembered_for_our_own_campaign).
    result = Simulation(SimOptions(seed=seed, nodes=5, faults="all")).run()
    assert result.ok, result.violations
