"""Flexible and hierarchical quorums drive elections and commits in the engine."""

from __future__ import annotations

import pytest
from helpers import FixedRng, ack, config, flush, recv, requests_to

from raftcore import (
    Config,
    Engine,
    Initialize,
    LeaderIdMode,
    LogId,
    Membership,
    RecoveredState,
    Respond,
    Role,
    TriggerElection,
    VoteResponse,
)
from raftcore.entries import membership_entry
from raftcore.errors import ConfigError, InvalidMembershipChange
from raftcore.events import ChangeMembership, ClientWrite
from raftcore.membership import AddVoters, SetQuorum
from raftcore.quorum import Flexible, Hierarchical
from raftcore.testing.loopback import LoopbackCluster

INFO = {n: f"addr-{n}" for n in range(1, 10)}
FLEX = Flexible([1, 2, 3, 4], election=3, commit=2)


def flex_engine(node_id: int = 1) -> Engine:
    m = Membership.with_quorum(FLEX, {n: INFO[n] for n in (1, 2, 3, 4)})
    rec = RecoveredState(entries=(membership_entry(LogId(0, 0, 1), m),))
    return Engine(node_id, config(), rec, FixedRng())


def test_flexible_election_needs_three_of_four() -> None:
    e = flex_engine()
    e.handle(TriggerElection(), 0.0)
    flush(e)
    v = e.vote
    recv(e, 2, VoteResponse(v, True, v, LogId(0, 0, 1)))
    assert e.role is Role.CANDIDATE  # 2 of 4: a commit quorum, not an election quorum
    recv(e, 3, VoteResponse(v, True, v, LogId(0, 0, 1)))
    assert e.metrics().role is Role.LEADER


def test_flexible_commit_needs_two_of_four() -> None:
    e = flex_engine()
    e.handle(TriggerElection(), 0.0)
    flush(e)
    v = e.vote
    for n in (2, 3):
        out = recv(e, n, VoteResponse(v, True, v, LogId(0, 0, 1)))
    out += flush(e)
    (req,) = requests_to(out, 2)
    recv(e, 2, ack(req))
    # The leader's own durable copy plus one follower: committed.
    assert e.committed == req.entries[-1].log_id


def test_unsafe_quorums_are_refused_before_anything_is_written() -> None:
    # Two disjoint pairs could each elect and commit: never a valid membership.
    with pytest.raises(ConfigError, match="do not intersect"):
        Membership((frozenset({1, 2, 3, 4}),), INFO, (("flexible", (1, 2, 3, 4), 2, 2),))
    # Safe with (term, node) leader ids, but in standard mode two disjoint
    # pairs could elect two leaders in one term.
    m = Membership.with_quorum(Flexible([1, 2, 3, 4], election=2, commit=3), INFO)
    e = Engine(1, config(leader_id_mode=LeaderIdMode.STANDARD), RecoveredState(), FixedRng())
    with pytest.raises(ConfigError, match="intersect"):
        e.handle(Initialize(m), 0.0)
    assert e.log.last_index == 0
    ok = Engine(1, config(), RecoveredState(), FixedRng())
    ok.handle(Initialize(m), 0.0)
    assert ok.log.last_index == 1


def _leader(mode: LeaderIdMode = LeaderIdMode.ADVANCED) -> LoopbackCluster:
    c = LoopbackCluster(range(1, 5), Config(leader_id_mode=mode), seed=1)
    c.initialize(1, [1, 2, 3, 4])
    c.elect()
    return c


def _change(c: LoopbackCluster, change: SetQuorum | AddVoters, rid: str) -> Respond:
    lid = c.elect()
    c.handle(lid, ChangeMembership(rid, change))
    c.advance(2.0)
    return c.nodes[lid].responses[rid]


def test_switching_to_a_flexible_quorum_goes_through_a_joint_config() -> None:
    c = _leader()
    r = _change(c, SetQuorum(FLEX), "flex")
    assert r.error is None
    _, m = r.result
    assert m.quorum_set() == FLEX and not m.is_joint
    # With a plain-majority change refused on a flexible config:
    r = _change(c, AddVoters({5: None}), "add")
    assert isinstance(r.error, InvalidMembershipChange) and "SetQuorum" in r.error.reason


def test_standard_mode_refuses_election_quorums_that_do_not_meet() -> None:
    c = _leader(LeaderIdMode.STANDARD)
    # 2 + 3 > 4 meets commit quorums, but two disjoint pairs could elect two
    # leaders in one term: unsafe when a term has one leader.
    r = _change(c, SetQuorum(Flexible([1, 2, 3, 4], election=2, commit=3)), "flex")
    assert isinstance(r.error, InvalidMembershipChange) and "intersect" in r.error.reason
    c2 = _leader(LeaderIdMode.ADVANCED)
    r = _change(c2, SetQuorum(Flexible([1, 2, 3, 4], election=2, commit=3)), "flex")
    assert r.error is None


def test_three_data_centres_survive_losing_one() -> None:
    dcs = Hierarchical([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    c = LoopbackCluster(range(1, 10), Config(), seed=5)
    c.handle(1, Initialize(Membership.with_quorum(dcs, {n: None for n in range(1, 10)})))
    c.deliver_all()
    lid = c.elect()
    lost = next(g for g in ([1, 2, 3], [4, 5, 6], [7, 8, 9]) if lid not in g)
    c.down.update(lost)
    c.handle(lid, ClientWrite("w", "x"))
    c.advance(1.0)
    assert c.nodes[lid].responses["w"].error is None
    # Losing one node in each remaining data centre as well: still a majority
    # of data centres, each with a majority of its nodes.
    for g in ([1, 2, 3], [4, 5, 6], [7, 8, 9]):
        if g != lost:
            c.down.add(next(n for n in g if n != lid))
    c.handle(lid, ClientWrite("w2", "y"))
    c.advance(1.0)
    assert c.nodes[lid].responses["w2"].error is None
