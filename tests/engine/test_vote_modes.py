"""The two leader-id modes.

ADVANCED: leader ids ``(term, node_id)`` are totally ordered, so a voter may
grant a second candidate of the same term if its node id is greater.
STANDARD: classic Raft, one vote per term; two candidates of one term are
incomparable and a voter grants only the first.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from helpers import LEASE, MEMBERSHIP_ID, config, engine, ent, flush, recv, vote_request

from raftcore import (
    ZERO_LOG_ID,
    AppendRequest,
    AppendResponse,
    ClientWrite,
    Command,
    LeaderIdMode,
    LogId,
    Role,
    SaveVote,
    Send,
    TriggerElection,
    Vote,
    VoteRequest,
    VoteResponse,
)
from raftcore.ids import compare_votes
from raftcore.testing.loopback import LoopbackCluster

MODES = list(LeaderIdMode)
ADV = LeaderIdMode.ADVANCED
STD = LeaderIdMode.STANDARD


def granted(out: Sequence[Command]) -> bool | None:
    """The ``granted`` flag of the (single) vote response sent, once durable."""
    rs = [c.message for c in out if isinstance(c, Send) and isinstance(c.message, VoteResponse)]
    return rs[0].granted if rs else None


def ask(mode: LeaderIdMode, voter_vote: Vote, cand: Vote) -> bool:
    e = engine(3, vote=voter_vote, mode=mode)
    # Asked once the lease a restarted voter honours has passed.
    out = recv(e, cand.node_id, VoteRequest(cand, MEMBERSHIP_ID), LEASE)
    g = granted(out)
    if g is None:
        out = flush(e, LEASE)
        g = granted(out)
    assert g is not None
    return g


# -- rules both modes share --------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("voter_vote", "cand", "expect"),
    [
        (Vote(0, 0, False), Vote(1, 1, False), True),  # fresh voter
        (Vote(1, 1, False), Vote(1, 1, False), True),  # same candidate again
        (Vote(2, 1, False), Vote(1, 1, False), False),  # smaller term
        (Vote(2, 1, True), Vote(1, 2, False), False),  # smaller term than a leader
        (Vote(1, 2, False), Vote(2, 1, False), True),  # greater term
        (Vote(1, 2, True), Vote(2, 1, False), True),  # greater term than a leader
    ],
)
def test_common_vote_rules(mode: LeaderIdMode, voter_vote: Vote, cand: Vote, expect: bool) -> None:
    assert ask(mode, voter_vote, cand) is expect


@pytest.mark.parametrize("mode", MODES)
def test_grant_saves_whole_vote_before_answering(mode: LeaderIdMode) -> None:
    e = engine(3, vote=Vote(1, 2, True), mode=mode)
    v = Vote(2, 1, False)
    assert recv(e, 1, VoteRequest(v, MEMBERSHIP_ID), LEASE) == [SaveVote(1, v)]
    assert flush(e, LEASE) == [Send(1, VoteResponse(v, True, v, MEMBERSHIP_ID))]


@pytest.mark.parametrize("mode", MODES)
def test_leader_of_greater_term_is_followed_in_both_modes(mode: LeaderIdMode) -> None:
    e = engine(2, vote=Vote(1, 3, False), mode=mode)
    e.handle(TriggerElection(), 0.0)
    leader = Vote(3, 1, True)
    recv(e, 1, AppendRequest(leader, MEMBERSHIP_ID, (), 0, 1, 0.0), 0.0)
    assert e.role is Role.FOLLOWER
    assert e.vote == leader


@pytest.mark.parametrize("mode", MODES)
def test_cluster_elects_and_commits_in_both_modes(mode: LeaderIdMode) -> None:
    c = LoopbackCluster([1, 2, 3, 4, 5], config(leader_id_mode=mode), seed=7)
    c.initialize(1)
    lid = c.elect()
    for i in range(5):
        c.handle(lid, ClientWrite(i, f"v{i}"))
    c.advance(1.0)
    logs = [node.log for node in c.nodes.values()]
    assert all(log == logs[0] for log in logs)
    assert len(logs[0]) == 7  # membership, blank, five writes
    assert all(node.engine.committed == logs[0][-1].log_id for node in c.nodes.values())
    assert set(c.nodes[lid].responses) == set(range(5))


@pytest.mark.parametrize(
    ("voted_for", "candidate", "expect"),
    [
        (None, 1, True),
        (None, 2, True),
        (1, 1, True),
        (2, 2, True),
        (1, 2, False),
        (2, 1, False),
    ],
)
def test_follower_vote(voted_for: int | None, candidate: int, expect: bool) -> None:
    """TestFollowerVote (standard Raft): in one term a follower grants the
    candidate it already voted for, or anyone if it has not voted, and nobody else."""
    voter_vote = Vote(1, 0, False) if voted_for is None else Vote(1, voted_for, False)
    assert ask(STD, voter_vote, Vote(1, candidate, False)) is expect


# -- where the modes differ -----------------------------------------------------


@pytest.mark.parametrize(("mode", "expect"), [(ADV, True), (STD, False)])
def test_second_candidate_same_term_greater_id(mode: LeaderIdMode, expect: bool) -> None:
    """ADVANCED grants (1,3) after (1,2): the greater leader id wins.
    STANDARD refuses: one vote per term."""
    assert ask(mode, Vote(1, 2, False), Vote(1, 3, False)) is expect


@pytest.mark.parametrize("mode", MODES)
def test_second_candidate_same_term_smaller_id_refused(mode: LeaderIdMode) -> None:
    assert ask(mode, Vote(1, 2, False), Vote(1, 1, False)) is False


@pytest.mark.parametrize(("mode", "expect"), [(ADV, True), (STD, False)])
def test_candidate_greater_than_established_leader_of_same_term(
    mode: LeaderIdMode, expect: bool
) -> None:
    """Outside any lease, ADVANCED orders (1,3) above the committed (1,2);
    STANDARD keeps following the term's leader."""
    assert ask(mode, Vote(1, 2, True), Vote(1, 3, False)) is expect


def test_standard_never_grants_two_candidates_one_term() -> None:
    e = engine(3, mode=STD)
    recv(e, 1, vote_request(1, 1), 0.0)
    assert granted(flush(e)) is True
    for other in (2, 4, 5):
        assert granted(recv(e, other, vote_request(1, other), 0.0)) is False
    assert e.vote == Vote(1, 1, False)


def test_advanced_grants_increasing_ids_in_one_term() -> None:
    e = engine(3, (1, 2, 3, 4, 5), mode=ADV)
    recv(e, 1, vote_request(1, 1), 0.0)
    assert granted(flush(e)) is True
    recv(e, 4, vote_request(1, 4), 0.0)
    assert granted(flush(e)) is True
    assert granted(recv(e, 2, vote_request(1, 2), 0.0)) is False
    assert e.vote == Vote(1, 4, False)


@pytest.mark.parametrize(("mode", "adopted"), [(ADV, True), (STD, False)])
def test_candidate_meets_rival_of_same_term(mode: LeaderIdMode, adopted: bool) -> None:
    """A refusal carrying a rival candidate's vote of the same term: ADVANCED
    adopts the greater rival and steps back; STANDARD cannot order them and
    stays a candidate (its term will move on at the next timeout)."""
    e = engine(1, mode=mode)
    e.handle(TriggerElection(), 0.0)
    flush(e)
    mine = Vote(1, 1, False)
    rival = Vote(1, 2, False)
    out = recv(e, 3, VoteResponse(rival, False, mine, MEMBERSHIP_ID), 0.0)
    if adopted:
        assert out == [SaveVote(2, rival)]
        assert (e.role, e.vote) == (Role.FOLLOWER, rival)
    else:
        assert out == []
        assert (e.role, e.vote) == (Role.CANDIDATE, mine)


@pytest.mark.parametrize(("mode", "follows"), [(ADV, False), (STD, True)])
def test_candidate_hears_leader_with_smaller_id_same_term(
    mode: LeaderIdMode, follows: bool
) -> None:
    """Candidate (1,3) gets an append from the established leader (1,2).
    STANDARD: a committed vote outranks any uncommitted one of its term: follow.
    ADVANCED: (1,3) is the greater leader id: refuse, the old leader will step down."""
    e = engine(3, mode=mode)
    e.handle(TriggerElection(), 0.0)
    flush(e)
    leader = Vote(1, 2, True)
    out = recv(e, 2, AppendRequest(leader, MEMBERSHIP_ID, (), 0, 1, 0.0), 0.0)
    if follows:
        assert out == [SaveVote(2, leader)]
        assert e.role is Role.FOLLOWER
    else:
        assert out == [
            Send(
                2,
                AppendResponse(Vote(1, 3, False), False, ZERO_LOG_ID, 0, MEMBERSHIP_ID, 1, 0.0),
            )
        ]
        assert e.role is Role.CANDIDATE


def test_vote_order() -> None:
    a, b = Vote(1, 1, False), Vote(1, 2, False)
    assert compare_votes(a, b, ADV) == -1
    assert compare_votes(a, b, STD) is None
    # A committed vote outranks an uncommitted rival of its term in standard mode.
    assert compare_votes(Vote(1, 1, True), b, STD) == 1
    assert compare_votes(Vote(1, 1, True), Vote(1, 1, False), STD) == 1
    assert compare_votes(Vote(2, 1, False), Vote(1, 2, True), STD) == 1


def test_log_ids_order_by_term_then_node_then_index() -> None:
    assert LogId(1, 2, 1) > LogId(1, 1, 9)
    assert LogId(2, 1, 1) > LogId(1, 2, 9)
    # In advanced mode two leaders of one term write distinguishable entries.
    assert ent(1, 1, 5).log_id != ent(1, 2, 5).log_id
