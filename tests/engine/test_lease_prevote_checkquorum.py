"""Leader lease, pre-vote and check-quorum (Raft dissertation 9.6, 6.2).

- Lease: a voter that heard from a live leader within ``leader_lease`` refuses
  to vote for anyone else; a leader
  refuses while a quorum acknowledged it within the lease.
- Pre-vote: a would-be candidate first asks without changing any vote, so a
  node that cannot win never bumps terms.
- Check-quorum: a leader that has not heard from a quorum within the lease
  steps down and refuses writes.
"""

from __future__ import annotations

import pytest
from helpers import (
    ELECTION_MIN,
    HEARTBEAT,
    LEASE,
    MEMBERSHIP_ID,
    ack,
    engine,
    flush,
    make_leader,
    recv,
    requests_to,
    vote_request,
)

from raftcore import (
    INITIAL_VOTE,
    AppendRequest,
    ClientWrite,
    Engine,
    LeadershipLost,
    NotLeader,
    Respond,
    Role,
    SaveVote,
    Send,
    TriggerElection,
    Vote,
    VoteRequest,
    VoteResponse,
    Wakeup,
)
from raftcore.codec import CodecError, decode_message, encode_message

L = Vote(1, 1, True)
CAND = Vote(2, 3, False)


def _follower(heard_at: float = 1.0) -> Engine:
    e = engine(2, vote=L)
    recv(e, 1, AppendRequest(L, MEMBERSHIP_ID, (), 0, 1, heard_at), heard_at)
    flush(e, heard_at)
    return e


# -- lease on followers -------------------------------------------------------


@pytest.mark.parametrize("pre_vote", [False, True])
def test_follower_refuses_vote_within_lease(pre_vote: bool) -> None:
    e = _follower(1.0)
    req = VoteRequest(CAND, MEMBERSHIP_ID, pre_vote=pre_vote)
    assert recv(e, 3, req, 1.0 + LEASE / 2) == [
        Send(3, VoteResponse(L, False, CAND, MEMBERSHIP_ID, pre_vote=pre_vote))
    ]
    assert e.vote == L
    assert e.role is Role.FOLLOWER


def test_follower_grants_once_lease_expired() -> None:
    e = _follower(1.0)
    assert recv(e, 3, VoteRequest(CAND, MEMBERSHIP_ID), 1.0 + LEASE) == [SaveVote(1, CAND)]
    assert e.vote == CAND


def test_follower_grants_pre_vote_once_lease_expired() -> None:
    e = _follower(1.0)
    deadline = e.next_deadline
    req = VoteRequest(CAND, MEMBERSHIP_ID, pre_vote=True)
    assert recv(e, 3, req, 1.0 + LEASE) == [
        Send(3, VoteResponse(L, True, CAND, MEMBERSHIP_ID, pre_vote=True))
    ]
    # A pre-vote changes nothing: no vote, no timer reset.
    assert e.vote == L
    assert e.next_deadline == deadline


def test_only_a_transfer_from_the_leader_followed_bypasses_the_lease() -> None:
    """A vote request waives the lease only by naming, in ``transfer_from``,
    the very leader this voter follows: one from an earlier leader (a stale
    ``TimeoutNow``) is refused like any other."""
    e = _follower(1.0)
    stale = VoteRequest(CAND, MEMBERSHIP_ID, transfer_from=Vote(0, 1, True))
    assert recv(e, 3, stale, 1.25) == [Send(3, VoteResponse(L, False, CAND, MEMBERSHIP_ID))]
    handover = VoteRequest(CAND, MEMBERSHIP_ID, transfer_from=L)
    assert recv(e, 3, handover, 1.25) == [SaveVote(1, CAND)]
    assert e.vote == CAND
    # The flag survives the codec, and a malformed one is refused.
    assert decode_message(encode_message(handover)) == handover
    forged = encode_message(VoteRequest(CAND, MEMBERSHIP_ID))[:-1] + b"\xf5"
    with pytest.raises(CodecError, match="transfer_from"):
        decode_message(forged)


def test_lease_does_not_block_the_leader_itself() -> None:
    """The leader we follow may start a new election (e.g. after a restart)."""
    e = _follower(1.0)
    v = Vote(2, 1, False)
    assert recv(e, 1, VoteRequest(v, MEMBERSHIP_ID), 1.25) == [SaveVote(1, v)]


def test_lease_does_not_block_a_greater_log_check() -> None:
    # Out of the lease but with a shorter log: still refused (5.4.1).
    from helpers import ent

    e = engine(2, entries=[ent(1, 1, 2)], vote=L)
    out = recv(e, 3, VoteRequest(CAND, MEMBERSHIP_ID), 5.0)
    assert out == [Send(3, VoteResponse(L, False, CAND, e.last_log_id))]


# -- lease on the leader --------------------------------------------------------


def test_leader_refuses_votes_within_its_lease() -> None:
    e = make_leader()
    assert recv(e, 3, vote_request(2, 3), LEASE / 2) == [
        Send(3, VoteResponse(L, False, CAND, e.last_log_id))
    ]
    assert e.role is Role.LEADER


def test_leader_grants_after_its_lease_without_check_quorum() -> None:
    e = make_leader(check_quorum=False)
    last = e.last_log_id
    assert recv(e, 3, VoteRequest(CAND, last), LEASE) == [SaveVote(4, CAND)]
    assert e.role is Role.FOLLOWER


# -- pre-vote -----------------------------------------------------------------


def test_pre_vote_does_not_change_voter_state() -> None:
    e = engine(3)
    before = e.metrics()
    deadline = e.next_deadline
    out = recv(e, 1, vote_request(1, 1, pre_vote=True), 0.5)
    assert out == [
        Send(1, VoteResponse(INITIAL_VOTE, True, Vote(1, 1, False), MEMBERSHIP_ID, pre_vote=True))
    ]
    assert e.metrics() == before
    assert e.next_deadline == deadline


def test_isolated_node_never_bumps_its_term() -> None:
    """Pre-vote: a node that cannot reach anyone keeps its vote and term."""
    e = engine(1)
    now = 0.0
    for _ in range(20):
        d = e.next_deadline
        assert d is not None
        now = d
        out = e.handle(Wakeup(), now)
        assert not any(isinstance(c, SaveVote) for c in out)
    assert e.vote == INITIAL_VOTE
    assert e.role is Role.PRE_CANDIDATE


def test_pre_vote_refused_by_majority_keeps_term() -> None:
    e = engine(1)
    e.handle(Wakeup(), 1.0)
    pv = Vote(1, 1, False)
    for n in (2, 3):
        refusal = VoteResponse(INITIAL_VOTE, False, pv, MEMBERSHIP_ID, pre_vote=True)
        assert recv(e, n, refusal, 1.0) == []
    assert e.role is Role.PRE_CANDIDATE
    assert e.vote == INITIAL_VOTE


def test_pre_candidate_follows_a_leader() -> None:
    e = engine(1)
    e.handle(Wakeup(), 1.0)
    leader = Vote(1, 2, True)
    assert recv(e, 2, AppendRequest(leader, MEMBERSHIP_ID, (), 0, 1, 1.0), 1.0) == [
        SaveVote(1, leader)
    ]
    assert e.role is Role.FOLLOWER


# -- check-quorum -------------------------------------------------------------


def test_check_quorum_leader_steps_down_without_acks() -> None:
    e = make_leader()
    now = 0.0
    while now < LEASE:
        now += HEARTBEAT
        e.handle(Wakeup(), now)
        if now < LEASE:
            assert e.role is Role.LEADER
    assert now == LEASE
    assert e.role is Role.FOLLOWER
    assert e.next_deadline == LEASE + ELECTION_MIN
    assert e.handle(ClientWrite("w", "x"), now) == [Respond("w", None, NotLeader(None, None))]


def test_check_quorum_step_down_answers_pending_writes() -> None:
    e = make_leader()
    e.handle(ClientWrite("w", "x"), 0.0)
    for t in (0.25, 0.5, 0.75):
        e.handle(Wakeup(), t)
    assert e.handle(Wakeup(), LEASE) == [Respond("w", None, LeadershipLost(None))]
    assert e.role is Role.FOLLOWER


def test_stepped_down_leader_reports_no_leader() -> None:
    e = make_leader()
    for t in (0.25, 0.5, 0.75, 1.0):
        e.handle(Wakeup(), t)
    assert e.role is Role.FOLLOWER
    # It no longer leads: metrics must not name itself as the leader.
    assert e.metrics().leader_id is None


def test_check_quorum_leader_stays_with_a_quorum_of_acks() -> None:
    e = make_leader()
    now = 0.0
    while now < 10 * LEASE:
        now += HEARTBEAT
        out = e.handle(Wakeup(), now)
        for r in requests_to(out, 2):
            recv(e, 2, ack(r), now)
    assert e.role is Role.LEADER


def test_check_quorum_leader_steps_down_with_a_minority_of_acks() -> None:
    e = make_leader(1, (1, 2, 3, 4, 5))
    now = 0.0
    while e.role is Role.LEADER and now < 10 * LEASE:
        now += HEARTBEAT
        out = e.handle(Wakeup(), now)
        for r in requests_to(out, 2):
            recv(e, 2, ack(r), now)
    assert e.role is Role.FOLLOWER
    assert now == LEASE


def test_without_check_quorum_leader_never_steps_down() -> None:
    e = make_leader(check_quorum=False)
    now = 0.0
    while now < 10 * LEASE:
        now += HEARTBEAT
        e.handle(Wakeup(), now)
    assert e.role is Role.LEADER


def test_trigger_election_bypasses_pre_vote_but_not_the_lease_it_honours() -> None:
    """Inside the lease of the leader it follows a node does not campaign
    (that leader may be answering lease reads on the strength of its
    acknowledgement); after it, a forced election skips pre-vote."""
    e = _follower(1.0)
    assert e.handle(TriggerElection(), 1.25) == []
    assert e.role is Role.FOLLOWER
    assert e.handle(TriggerElection(), 1.0 + LEASE) == [SaveVote(1, Vote(2, 2, False))]
    assert e.metrics().role is Role.CANDIDATE
