"""The manual control API: a cluster driven one action at a time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from raftcore.errors import InvalidTransfer, MembershipChangeInProgress, NotLeader
from raftcore.events import ReadPolicy
from raftcore.membership import AddLearners, AddVoters, RemoveVoters, ReplaceVoters
from raftcore.messages import AppendRequest
from raftcore.sim import Simulation
from raftcore.sim.cluster import ManualTiming
from raftcore.sim.manual import SimControl, SimulationFailure


def started(**kw: object) -> tuple[SimControl, int]:
    c = SimControl(**kw)  # type: ignore[arg-type]
    c.start()
    leader = c.await_leader()
    assert leader is not None
    c.advance(0.05)
    return c, leader


def test_writes_changes_and_checks() -> None:
    c, leader = started(nodes=3, spares=2)
    w = c.write(leader, "k", "v1")
    c.advance(0.05)
    answer = c.answer(w)
    assert answer is not None and answer.ok
    rid = c.change(leader, AddLearners({4: "n4"}))
    c.advance(0.05)
    answer = c.answer(rid)
    assert answer is not None and answer.ok
    lid, m = answer.result
    assert m.learner_ids() == {4} and c.committed_membership == (lid, m)
    # Shrink to one voter and grow back.
    for voters in ([5], [1, 4, 5]):
        rid = c.change(c.await_leader() or leader, ReplaceVoters({n: f"n{n}" for n in voters}))
        c.advance(1.0)
        answer = c.answer(rid)
        assert answer is not None and (answer.ok or answer.error is not None)
    c.advance(1.0)
    final = c.committed_membership
    assert final is not None and final[1].voter_ids() == {1, 4, 5}
    r = c.read(c.await_leader() or leader, "k")
    c.advance(0.1)
    assert (a := c.answer(r)) is not None and a.ok and a.result == "v1"
    assert c.check() == [] and c.check_history() == []


def test_same_actions_same_run() -> None:
    def run() -> str:
        c, leader = started(nodes=3, spares=1, seed=4)
        c.write(leader)
        c.change(leader, AddVoters({4: "n4"}))
        c.advance(0.3)
        c.crash(leader, keep=0)
        c.advance(1.0)
        c.restart(leader)
        c.advance(1.0)
        return c.trace_digest

    assert run() == run()


def test_messages_can_be_delivered_early_dropped_and_duplicated() -> None:
    c, leader = started(nodes=3, spares=0, timing=ManualTiming(latency=0.01))
    c.write(leader)
    msgs = [m for m in c.in_flight() if isinstance(m.message, AppendRequest)]
    assert {m.dst for m in msgs} == {2, 3}
    assert c.drop(msgs[0].id) and not c.drop(msgs[0].id)
    assert c.duplicate(msgs[1].id)
    assert c.deliver(msgs[1].id)
    assert [m.dst for m in c.in_flight()] == [msgs[1].dst]  # the duplicate
    sent = c.sim.network.sent
    c.advance(0.5)
    assert c.sim.network.sent > sent and c.check() == []


def test_a_partition_stops_messages_both_ways() -> None:
    c, leader = started(nodes=3, spares=0)
    others = [n for n in (1, 2, 3) if n != leader]
    pid = c.partition([[leader], others])
    before = c.committed_index
    w = c.write(leader)
    c.advance(0.1)  # shorter than an election timeout
    assert c.committed_index == before and c.answer(w) is None
    c.heal(pid)
    new = c.await_leader()
    assert new is not None
    c.advance(0.5)
    assert c.check() == []


def test_flush_and_crash_keep_exactly_what_they_are_told() -> None:
    c, leader = started(nodes=3, spares=0)
    c.write(leader)
    c.write(leader)
    assert c.pending_writes(leader) == 2
    assert c.flush(leader, 1) == 1 and c.pending_writes(leader) == 1
    assert c.crash(leader, keep=0) and not c.crash(leader)
    node = c.sim.nodes[leader]
    assert node.storage.lost_on_crash == 1
    assert c.restart(leader) and not c.restart(leader)
    assert c.check() == []


def test_requests_to_a_down_node_are_refused() -> None:
    c, _leader = started(nodes=3, spares=0)
    c.crash(2)
    w = c.write(2)
    ch = c.change(2, RemoveVoters([3]))
    assert (a := c.answer(w)) is not None and a.how == "refused"
    assert (b := c.answer(ch)) is not None and b.how == "refused"


def test_changes_are_answered_like_the_engine_says() -> None:
    c, leader = started(nodes=3, spares=2)
    follower = next(n for n in (1, 2, 3) if n != leader)
    rid = c.change(follower, AddVoters({4: "n4"}))
    assert (a := c.answer(rid)) is not None and isinstance(a.error, NotLeader)
    c.change(leader, AddVoters({4: "n4"}))
    busy = c.change(leader, AddVoters({5: "n5"}))
    assert (b := c.answer(busy)) is not None and isinstance(b.error, MembershipChangeInProgress)


def test_assert_ok_raises_with_every_violation() -> None:
    c, _leader = started(nodes=3, spares=0)
    c.sim.checker.violation("test", "planted")
    with pytest.raises(SimulationFailure, match="planted"):
        c.assert_ok()
    assert c.check() == []  # reported once


def test_a_manual_simulation_has_no_seeded_run() -> None:
    c = SimControl()
    with pytest.raises(RuntimeError):
        c.sim.run()
    assert isinstance(c.sim, Simulation)
    c.start()
    with pytest.raises(RuntimeError):
        c.start()
    with pytest.raises(ValueError):
        c.advance(-1.0)


def test_without_automatic_flushes_nothing_is_durable_until_flushed() -> None:
    c = SimControl(nodes=1, spares=0, timing=ManualTiming(flush_delay=None))
    c.start()
    c.advance(1.0)
    assert c.leader() is None and c.pending_writes(1) > 0  # its own vote is not durable
    c.flush(1)
    assert c.leader() == 1
    w = c.write(1)
    c.advance(1.0)
    assert c.answer(w) is None
    c.flush(1)
    c.advance(0.001)
    assert (a := c.answer(w)) is not None and a.ok


def test_the_docs_example_runs() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "simulator.md"
    section = docs.read_text().split("## Driving a cluster by hand", 1)[1]
    code = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    exec(compile(code, "docs/simulator.md", "exec"), {})


def test_no_leader_diagnosis_names_candidates_that_logs_would_elect() -> None:
    c, _ = started(nodes=3, spares=0, check_quorum=True)
    c.partition([[1], [2], [3]])
    c.advance(2.0)
    assert c.leader() is None
    text = c.sim.liveness.diagnose_no_leader()
    assert "could win on logs alone" in text and "never campaign" not in text


def test_linearizable_reads_on_leaders_and_followers() -> None:
    c, leader = started(nodes=3, spares=0, check_quorum=True)
    follower = next(n for n in (1, 2, 3) if n != leader)
    w = c.write(leader, "k", "v1")
    c.advance(0.05)
    assert (a := c.answer(w)) is not None and a.ok
    rids = [c.read(n, "k", policy) for n in (leader, follower) for policy in ReadPolicy]
    c.advance(0.2)
    for rid in rids:
        assert (a := c.answer(rid)) is not None and a.ok and a.result == "v1", a
    assert c.check() == [] and c.check_history() == []


def test_a_transfer_hands_leadership_to_the_target() -> None:
    c, leader = started(nodes=3, spares=1, check_quorum=True)
    target = next(n for n in (1, 2, 3) if n != leader)
    rid = c.transfer_leader(leader, target)
    c.advance(0.1)  # well inside the old leader's lease
    assert (a := c.answer(rid)) is not None and a.ok and a.result == target, a
    assert c.leader() == target
    refused = c.transfer_leader(target, 4)  # a spare, not a member
    assert (b := c.answer(refused)) is not None and isinstance(b.error, InvalidTransfer)
    r = c.read(leader, "k", ReadPolicy.LEASE)  # the old leader now follows
    c.advance(0.2)
    assert (a := c.answer(r)) is not None and a.ok
    assert c.check() == [] and c.check_history() == []


def test_a_restarted_voter_keeps_an_old_leaders_lease() -> None:
    """A voter that acknowledged the leader, crashed and came straight back
    must not elect a rival inside that leader's lease: the leader may be
    answering lease reads on the strength of its acknowledgement (the
    harness's ``lease-bypassed`` check would report it)."""
    c, leader = started(nodes=3, spares=0, check_quorum=True)
    a, b = (n for n in (1, 2, 3) if n != leader)
    c.cut([(leader, b), (b, leader)])
    c.advance(0.02)  # a acknowledges a heartbeat
    c.crash(a)
    c.restart(a)
    c.trigger_election(b)
    c.advance(0.02)
    assert c.leader() == leader
    eng = c.engine(leader)
    assert eng is not None and eng.lease_read_end(c.sim.nodes[leader].local(c.now)) is not None
    assert c.check() == []
