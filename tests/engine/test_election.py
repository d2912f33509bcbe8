"""Leader election: Raft paper sections 5.1 and 5.2, rule by rule.

Adapted from etcd-io/raft's raft_paper_test.go to a tick-free engine: time is
the ``now`` passed with each event, timeouts are deadlines, and terms are
votes ``(term, node_id, committed)``.
"""

from __future__ import annotations

import pytest
from helpers import (
    ELECTION_MAX,
    ELECTION_MIN,
    HEARTBEAT,
    MEMBERSHIP_ID,
    FixedRng,
    config,
    engine,
    ent,
    flush,
    grant,
    make_leader,
    membership,
    recv,
    vote_request,
)

from raftcore import (
    INITIAL_VOTE,
    ZERO_LOG_ID,
    AppendLog,
    AppendRequest,
    AppendResponse,
    ClientWrite,
    Engine,
    Initialize,
    LeadershipLost,
    LogId,
    RecoveredState,
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
from raftcore.entries import blank
from raftcore.testing.loopback import Rand

V1 = Vote(1, 1, False)
V1C = Vote(1, 1, True)

# -- 5.1: every node starts as a follower ------------------------------------


def test_start_as_follower() -> None:
    rng = FixedRng()
    e = Engine(1, config(), RecoveredState(entries=(ent(0, 0, 1),)), rng, now=3.0)
    # No membership in the log: the node is not a voter of anything yet.
    assert e.role is Role.LEARNER
    assert e.next_deadline is None

    e = engine(now=3.0)
    m = e.metrics()
    assert m.role is Role.FOLLOWER
    assert m.vote == INITIAL_VOTE
    assert m.leader_id is None
    assert m.committed == ZERO_LOG_ID
    assert e.next_deadline == 3.0 + ELECTION_MIN


def test_empty_node_is_a_learner_without_deadline() -> None:
    e = Engine(1, config(), RecoveredState(), FixedRng(), now=0.0)
    assert e.role is Role.LEARNER
    assert e.next_deadline is None
    assert e.handle(Wakeup(), 100.0) == []
    assert e.handle(TriggerElection(), 100.0) == []
    assert e.vote == INITIAL_VOTE


def test_learner_of_the_membership_never_campaigns() -> None:
    e = engine(4, (1, 2, 3), learners=(4,))
    assert e.role is Role.LEARNER
    assert e.next_deadline is None
    assert e.handle(Wakeup(), 50.0) == []
    assert e.handle(TriggerElection(), 50.0) == []
    assert e.vote == INITIAL_VOTE


# -- 5.2: election timeout ----------------------------------------------------


def test_follower_election_timeout_uses_the_configured_range() -> None:
    rng = FixedRng()
    Engine(1, config(), RecoveredState(entries=(ent(0, 0, 1),)), rng)
    assert rng.calls == []  # no membership, no timer
    e = engine()
    assert isinstance(e.rng, FixedRng)
    assert e.rng.calls
    assert set(e.rng.calls) == {(ELECTION_MIN, ELECTION_MAX)}


@pytest.mark.parametrize("seed", range(5))
def test_follower_election_timeout_randomized(seed: int) -> None:
    """TestFollowerElectionTimeoutRandomized: deadlines spread over [min, max)."""
    from helpers import mentry

    e = Engine(1, config(pre_vote=False), RecoveredState(entries=(mentry(),)), Rand(seed))
    deadlines = []
    now = 0.0
    for _ in range(50):
        d = e.next_deadline
        assert d is not None
        assert now + ELECTION_MIN <= d < now + ELECTION_MAX
        deadlines.append(d - now)
        now = d
        # Each timeout starts a new election and re-arms the timer.
        e.handle(Wakeup(), now)
        flush(e, now)
        assert e.role is Role.CANDIDATE
    assert len(set(deadlines)) == len(deadlines)
    assert max(deadlines) - min(deadlines) > (ELECTION_MAX - ELECTION_MIN) / 2


def test_follower_election_timeouts_differ_between_nodes() -> None:
    """TestFollowerElectionTimeoutNonconflict: differently seeded nodes rarely tie."""
    from helpers import mentry

    firsts = set()
    for node in range(1, 21):
        e = Engine(node, config(), RecoveredState(entries=(mentry(range(1, 21)),)), Rand(node))
        firsts.add(e.next_deadline)
    assert len(firsts) == 20


def test_nothing_happens_before_the_deadline() -> None:
    e = engine(pre_vote=False)
    assert e.handle(Wakeup(), ELECTION_MIN - 0.5) == []
    assert e.role is Role.FOLLOWER
    assert e.next_deadline == ELECTION_MIN


def test_follower_start_election() -> None:
    """TestFollowerStartElection: on timeout a follower votes for itself in term+1
    and asks every other voter, once its vote is durable."""
    e = engine(pre_vote=False)
    assert e.handle(Wakeup(), 1.0) == [SaveVote(1, V1)]
    assert e.role is Role.CANDIDATE
    assert e.vote == V1
    assert e.next_deadline == 1.0 + ELECTION_MIN
    assert flush(e, 1.0) == [
        Send(2, VoteRequest(V1, MEMBERSHIP_ID)),
        Send(3, VoteRequest(V1, MEMBERSHIP_ID)),
    ]


def test_follower_start_pre_vote() -> None:
    """With pre-vote the timeout first asks without touching term or vote."""
    e = engine()
    assert e.handle(Wakeup(), 1.0) == [
        Send(2, VoteRequest(V1, MEMBERSHIP_ID, pre_vote=True)),
        Send(3, VoteRequest(V1, MEMBERSHIP_ID, pre_vote=True)),
    ]
    assert e.role is Role.PRE_CANDIDATE
    assert e.vote == INITIAL_VOTE
    assert e.next_deadline == 2.0


def test_candidate_start_new_election() -> None:
    """TestCandidateStartNewElection: a candidate that times out starts term+1."""
    e = engine(pre_vote=False)
    e.handle(Wakeup(), 1.0)
    flush(e, 1.0)
    assert e.handle(Wakeup(), 1.5) == []
    v2 = Vote(2, 1, False)
    assert e.handle(Wakeup(), 2.0) == [SaveVote(2, v2)]
    assert e.role is Role.CANDIDATE
    assert e.next_deadline == 3.0
    assert flush(e, 2.0) == [
        Send(2, VoteRequest(v2, MEMBERSHIP_ID)),
        Send(3, VoteRequest(v2, MEMBERSHIP_ID)),
    ]


def test_pre_candidate_timeout_repeats_pre_vote_without_term_change() -> None:
    e = engine()
    e.handle(Wakeup(), 1.0)
    assert e.handle(Wakeup(), 2.0) == [
        Send(2, VoteRequest(V1, MEMBERSHIP_ID, pre_vote=True)),
        Send(3, VoteRequest(V1, MEMBERSHIP_ID, pre_vote=True)),
    ]
    assert e.vote == INITIAL_VOTE
    assert e.role is Role.PRE_CANDIDATE


def test_trigger_election_skips_pre_vote() -> None:
    e = engine()
    assert e.handle(TriggerElection(), 0.5) == [SaveVote(1, V1)]
    assert e.role is Role.CANDIDATE


def test_vote_requests_are_not_sent_before_own_vote_is_durable() -> None:
    e = engine(pre_vote=False)
    e.handle(Wakeup(), 1.0)
    # An unrelated event does not release them.
    assert e.handle(Wakeup(), 1.25) == []
    assert flush(e, 1.25) != []


# -- 5.2: winning, losing, splitting ------------------------------------------


def _campaign(voters: tuple[int, ...]) -> Engine:
    e = engine(1, voters, pre_vote=False)
    e.handle(Wakeup(), 1.0)
    flush(e, 1.0)
    return e


@pytest.mark.parametrize(
    ("voters", "grants", "refusals", "role"),
    [
        ((1,), (), (), Role.LEADER),
        ((1, 2, 3), (2, 3), (), Role.LEADER),
        ((1, 2, 3), (2,), (3,), Role.LEADER),
        ((1, 2, 3), (), (2, 3), Role.CANDIDATE),
        ((1, 2, 3), (), (), Role.CANDIDATE),
        ((1, 2, 3, 4, 5), (2, 3, 4, 5), (), Role.LEADER),
        ((1, 2, 3, 4, 5), (2, 3), (4, 5), Role.LEADER),
        ((1, 2, 3, 4, 5), (2,), (3, 4, 5), Role.CANDIDATE),
        ((1, 2, 3, 4, 5), (2,), (), Role.CANDIDATE),
        ((1, 2, 3, 4), (2,), (), Role.CANDIDATE),
        ((1, 2, 3, 4), (2, 3), (4,), Role.LEADER),
    ],
)
def test_leader_election_in_one_round(
    voters: tuple[int, ...], grants: tuple[int, ...], refusals: tuple[int, ...], role: Role
) -> None:
    """TestLeaderElectionInOneRoundRPC: a majority of grants (own vote included) elects.

    Refusals carrying a vote that is not greater (here: a voter within its
    leader lease) leave the node a candidate until its timer fires again.
    """
    e = _campaign(voters)
    for n in grants:
        recv(e, n, grant(V1), 1.0)
    for n in refusals:
        recv(e, n, VoteResponse(INITIAL_VOTE, False, V1, MEMBERSHIP_ID), 1.0)
    assert e.role is role
    assert e.vote == (V1C if role is Role.LEADER else V1)


def test_becoming_leader_commands() -> None:
    """A new leader commits its vote, appends a blank entry of its term and
    probes every follower with it; replication does not wait for its own flush."""
    e = _campaign((1, 2, 3))
    b = blank(LogId(1, 1, 2))
    assert recv(e, 2, grant(V1), 1.0) == [
        SaveVote(2, V1C),
        AppendLog(3, (b,)),
        Send(2, AppendRequest(V1C, MEMBERSHIP_ID, (b,), 0, 1, 1.0)),
        Send(3, AppendRequest(V1C, MEMBERSHIP_ID, (b,), 0, 2, 1.0)),
    ]
    assert e.role is Role.LEADER
    assert e.metrics().leader_id == 1
    assert e.next_deadline == 1.0 + HEARTBEAT
    # A grant arriving after the election changes nothing.
    assert recv(e, 3, grant(V1), 1.0) == []


def test_single_voter_elects_itself_at_once() -> None:
    e = engine(1, (1,))
    # Sole voter: no pre-vote round even though pre-vote is on.
    assert e.handle(Wakeup(), 1.0) == [SaveVote(1, V1)]
    b = blank(LogId(1, 1, 2))
    assert flush(e, 1.0) == [SaveVote(2, V1C), AppendLog(3, (b,))]
    assert e.role is Role.LEADER


def test_initialize_single_voter_elects_at_once() -> None:
    e = Engine(1, config(), RecoveredState(), FixedRng())
    m = membership((1,))
    from raftcore.entries import membership_entry

    me = membership_entry(MEMBERSHIP_ID, m)
    assert e.handle(Initialize(m), 0.0) == [AppendLog(1, (me,)), SaveVote(2, V1)]
    flush(e, 0.0)
    assert e.role is Role.LEADER


def test_initialize_multi_voter_starts_pre_vote_at_once() -> None:
    e = Engine(1, config(), RecoveredState(), FixedRng())
    m = membership((1, 2, 3))
    from raftcore.entries import membership_entry

    me = membership_entry(MEMBERSHIP_ID, m)
    assert e.handle(Initialize(m), 0.0) == [
        AppendLog(1, (me,)),
        Send(2, VoteRequest(V1, MEMBERSHIP_ID, pre_vote=True)),
        Send(3, VoteRequest(V1, MEMBERSHIP_ID, pre_vote=True)),
    ]
    assert e.role is Role.PRE_CANDIDATE


def test_pre_vote_quorum_starts_real_election() -> None:
    e = engine()
    e.handle(Wakeup(), 1.0)
    pre_grant = VoteResponse(INITIAL_VOTE, True, V1, MEMBERSHIP_ID, pre_vote=True)
    assert recv(e, 2, pre_grant, 1.0) == [SaveVote(1, V1)]
    assert e.role is Role.CANDIDATE
    assert flush(e, 1.0) == [
        Send(2, VoteRequest(V1, MEMBERSHIP_ID)),
        Send(3, VoteRequest(V1, MEMBERSHIP_ID)),
    ]


def test_candidate_ignores_responses_for_other_rounds() -> None:
    e = _campaign((1, 2, 3))
    # A pre-vote grant, and a grant for an older round, do not count.
    assert recv(e, 2, VoteResponse(V1, True, V1, MEMBERSHIP_ID, pre_vote=True), 1.0) == []
    old = Vote(0, 1, False)
    assert recv(e, 2, VoteResponse(old, True, old, MEMBERSHIP_ID), 1.0) == []
    assert e.role is Role.CANDIDATE


def test_candidate_backs_off_after_seeing_a_greater_log() -> None:
    e = _campaign((1, 2, 3))
    greater = LogId(0, 0, 7)
    # Refused by a voter with a longer log: wait an extra back-off (default
    # election_timeout_max) so that a better candidate goes first.
    assert recv(e, 2, VoteResponse(V1, False, V1, greater), 1.5) == []
    assert e.next_deadline == 1.5 + ELECTION_MAX + ELECTION_MIN
    assert e.role is Role.CANDIDATE


# -- 5.2: voting --------------------------------------------------------------


def test_vote_grant_is_sent_after_the_vote_is_durable() -> None:
    e = engine(2)
    req = vote_request(1, 1)
    assert recv(e, 1, req, 0.5) == [SaveVote(1, V1)]
    assert e.vote == V1
    assert flush(e, 0.5) == [Send(1, VoteResponse(V1, True, V1, MEMBERSHIP_ID))]
    # Granting resets the election timer.
    assert e.next_deadline == 0.5 + ELECTION_MIN


def test_repeated_request_is_granted_again_without_storage() -> None:
    e = engine(2, vote=V1)
    assert recv(e, 1, vote_request(1, 1), 0.5) == [
        Send(1, VoteResponse(V1, True, V1, MEMBERSHIP_ID))
    ]


@pytest.mark.parametrize(
    ("voter_log", "candidate_last", "granted"),
    [
        # Same last log id: up to date.
        ([(1, 2)], LogId(1, 1, 2), True),
        # Same term, longer: up to date.
        ([(1, 2)], LogId(1, 1, 3), True),
        # Same term, shorter: refused.
        ([(1, 2), (1, 3)], LogId(1, 1, 2), False),
        # Greater last term wins even when shorter.
        ([(1, 2), (1, 3)], LogId(2, 2, 2), True),
        # Smaller last term loses even when longer.
        ([(2, 2)], LogId(1, 1, 9), False),
        ([(2, 2)], MEMBERSHIP_ID, False),
    ],
)
def test_voter(voter_log: list[tuple[int, int]], candidate_last: LogId, granted: bool) -> None:
    """TestVoter: grant only a candidate whose log is at least as up to date (5.4.1)."""
    entries = [ent(t, t, i) for t, i in voter_log]
    voter_last = entries[-1].log_id
    e = engine(3, entries=entries, vote=Vote(2, 2, True))
    cand = Vote(3, 2, False)
    out = recv(e, 2, VoteRequest(cand, candidate_last), 0.0)
    if granted:
        assert out == [SaveVote(1, cand)]
        assert flush(e) == [Send(2, VoteResponse(cand, True, cand, voter_last))]
        assert e.vote == cand
    else:
        # Refused at once, and the voter keeps its vote.
        assert out == [Send(2, VoteResponse(Vote(2, 2, True), False, cand, voter_last))]
        assert e.vote == Vote(2, 2, True)


def test_vote_request_carries_last_log_id() -> None:
    """TestVoteRequest: the candidate asks every other voter with its last log id."""
    entries = [ent(1, 2, 2), ent(2, 3, 3)]
    e = engine(1, (1, 2, 3, 4, 5), entries=entries, vote=Vote(2, 3, True), pre_vote=False)
    assert e.handle(Wakeup(), 1.0) == [SaveVote(1, Vote(3, 1, False))]
    req = VoteRequest(Vote(3, 1, False), LogId(2, 3, 3))
    assert flush(e, 1.0) == [Send(n, req) for n in (2, 3, 4, 5)]


def test_stale_vote_request_is_refused() -> None:
    e = engine(3, vote=Vote(3, 2, True))
    out = recv(e, 1, vote_request(2, 1), 5.0)
    assert out == [Send(1, VoteResponse(Vote(3, 2, True), False, Vote(2, 1, False), MEMBERSHIP_ID))]
    assert e.vote == Vote(3, 2, True)


# -- 5.1: a greater vote in any message turns the receiver into a follower ----


def _in_role(role: Role) -> Engine:
    if role is Role.FOLLOWER:
        return engine(1)
    if role is Role.PRE_CANDIDATE:
        e = engine(1)
        e.handle(Wakeup(), 1.0)
        return e
    if role is Role.CANDIDATE:
        return _campaign((1, 2, 3))
    return make_leader(1, now=1.0)


ROLES = [Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE, Role.LEADER]


@pytest.mark.parametrize("role", ROLES)
def test_update_term_from_append_request(role: Role) -> None:
    """TestUpdateTermFromMessage: an append from a leader with a greater vote
    is adopted (saved) and the receiver follows that leader."""
    e = _in_role(role)
    assert e.role is role
    v = Vote(5, 2, True)
    out = recv(e, 2, AppendRequest(v, ZERO_LOG_ID, (), 0, 1, 1.0), 1.0)
    assert isinstance(out[0], SaveVote) and out[0].vote == v
    assert not any(isinstance(c, Send) for c in out)  # the ack waits for the vote to be durable
    assert e.role is Role.FOLLOWER
    assert e.vote == v
    assert e.metrics().leader_id == 2


@pytest.mark.parametrize("role", ROLES)
def test_update_term_from_refusing_vote_response(role: Role) -> None:
    """A refusal carrying a greater vote is adopted, never counted as a grant."""
    e = _in_role(role)
    v = Vote(5, 3, False)
    out = recv(e, 3, VoteResponse(v, False, Vote(e.vote.term + 1, 1), MEMBERSHIP_ID), 1.0)
    assert isinstance(out[0], SaveVote)
    assert out[0].vote == v
    assert e.role is Role.FOLLOWER
    assert e.vote == v


def test_update_term_from_append_response_steps_leader_down() -> None:
    e = make_leader(1, now=1.0)
    e.handle(ClientWrite("w", "x"), 1.0)
    v = Vote(5, 3, True)
    resp = AppendResponse(v, False, ZERO_LOG_ID, 0, MEMBERSHIP_ID, 3, 1.0)
    assert recv(e, 3, resp, 1.0) == [
        SaveVote(5, v),
        # The outcome is unknown; the client is pointed at the new leader.
        Respond("w", None, LeadershipLost(3)),
    ]
    assert e.role is Role.FOLLOWER
    assert e.vote == v
    assert e.metrics().leader_id == 3


@pytest.mark.parametrize("role", ROLES)
def test_reject_stale_append_request(role: Role) -> None:
    """TestRejectStaleTermMessage: an append from a leader with a smaller vote is
    refused with our vote, and changes nothing."""
    e = engine(1, vote=Vote(3, 2, True))
    if role is Role.PRE_CANDIDATE:
        e.handle(Wakeup(), 1.0)
    elif role is Role.CANDIDATE:
        e.handle(TriggerElection(), 1.0)
        flush(e, 1.0)
    elif role is Role.LEADER:
        e = make_leader(1, vote=Vote(3, 2, True), now=1.0)
    before = e.metrics()
    deadline = e.next_deadline
    stale = Vote(2, 3, True)
    out = recv(e, 3, AppendRequest(stale, MEMBERSHIP_ID, (), 0, 9, 0.5), 1.0)
    assert out == [Send(3, AppendResponse(e.vote, False, ZERO_LOG_ID, 0, e.last_log_id, 9, 0.5))]
    assert e.metrics() == before
    assert e.next_deadline == deadline


# -- 5.2: a candidate that hears from a legitimate leader steps back ----------


@pytest.mark.parametrize("leader", [Vote(1, 2, True), Vote(2, 2, True), Vote(1, 3, True)])
def test_candidate_fallback(leader: Vote) -> None:
    """TestCandidateFallback: an append from a leader whose vote is at least the
    candidate's turns the candidate into its follower (ADVANCED: (1,2) and (1,3)
    both exceed the candidate's uncommitted (1,1))."""
    e = _campaign((1, 2, 3))
    out = recv(e, leader.node_id, AppendRequest(leader, MEMBERSHIP_ID, (), 0, 1, 1.0), 1.25)
    assert out == [SaveVote(2, leader)]
    assert e.role is Role.FOLLOWER
    assert e.metrics().leader_id == leader.node_id
    assert e.next_deadline == 1.25 + ELECTION_MIN
    assert flush(e, 1.25) == [
        Send(
            leader.node_id,
            AppendResponse(leader, True, MEMBERSHIP_ID, 0, MEMBERSHIP_ID, 1, 1.0),
        )
    ]


def test_leader_steps_down_for_trigger_election() -> None:
    e = make_leader(1, now=1.0)
    e.handle(ClientWrite("w", "x"), 1.0)
    assert e.handle(TriggerElection(), 1.5) == [
        # No leader is known: the client must not be sent back to this node.
        Respond("w", None, LeadershipLost(None)),
        SaveVote(5, Vote(2, 1, False)),
    ]
    assert e.role is Role.CANDIDATE
