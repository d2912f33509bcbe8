"""Commit on the leader: Raft paper sections 5.3 and 5.4.2.

An entry commits once a quorum holds it durably (the leader's own copy counts
only once flushed), only entries of the leader's own term commit by counting
replicas, and earlier entries commit with them.
"""

from __future__ import annotations

import pytest
from helpers import (
    MEMBERSHIP_ID,
    FixedRng,
    ack,
    config,
    ent,
    flush,
    grant,
    make_leader,
    mentry,
    recv,
    requests_to,
)

from raftcore import (
    ZERO_LOG_ID,
    AppendLog,
    AppendRequest,
    AppendResponse,
    Applied,
    Apply,
    ClientWrite,
    ClientWriteBatch,
    Engine,
    Entry,
    LogId,
    Membership,
    RecoveredState,
    Respond,
    Role,
    SaveVote,
    Send,
    TriggerElection,
    TriggerHeartbeat,
    Vote,
)
from raftcore.entries import blank, membership_entry

L = Vote(1, 1, True)
B2 = LogId(1, 1, 2)


def w(index: int, data: object = "x") -> Entry:
    return ent(1, 1, index, data)


def req(index: int, seq: int, data: object = "x", now: float = 0.5) -> AppendRequest:
    """The pipelined append of ``w(index)`` after the committed blank entry."""
    prev = LogId(1, 1, index - 1)
    return AppendRequest(L, prev, (w(index, data),), 2, seq, now)


def test_leader_commit_entry() -> None:
    """TestLeaderCommitEntry: once a quorum (leader's flushed copy + one
    follower) has the entry it commits, is applied, and the client is answered."""
    e = make_leader()
    e.handle(ClientWrite("a", "x"), 0.5)
    assert flush(e, 0.5) == []  # the leader alone is no quorum of three
    assert recv(e, 2, ack(req(3, 3)), 0.5) == [Apply((w(3),))]
    assert e.committed == LogId(1, 1, 3)
    assert e.handle(Applied(LogId(1, 1, 3), ((3, "ok"),)), 0.5) == [Respond("a", "ok")]
    assert e.metrics().applied == LogId(1, 1, 3)
    # Followers learn the new commit index with the next message.
    assert e.handle(TriggerHeartbeat(), 0.5) == [
        Send(2, AppendRequest(L, LogId(1, 1, 3), (), 3, 5, 0.5)),
        Send(3, AppendRequest(L, B2, (), 3, 6, 0.5)),
    ]


def test_leader_copy_counts_only_once_flushed() -> None:
    e = make_leader()
    e.handle(ClientWrite("a", "x"), 0.5)
    assert recv(e, 2, ack(req(3, 3)), 0.5) == []
    assert e.committed == B2
    assert flush(e, 0.5) == [Apply((w(3),))]


def test_followers_alone_can_commit_without_leader_flush() -> None:
    """Two followers' acks commit the entry (dissertation 10.2.1); the leader
    applies it only once its own copy is durable, so a durable state machine
    never holds an entry a crash could take out of the leader's log."""
    e = make_leader()
    e.handle(ClientWrite("a", "x"), 0.5)
    assert recv(e, 2, ack(req(3, 3)), 0.5) == []
    assert recv(e, 3, ack(req(3, 4)), 0.5) == []
    assert e.committed == w(3).log_id
    assert flush(e, 0.5) == [Apply((w(3),))]


@pytest.mark.parametrize(
    ("voters", "acks", "commits"),
    [
        ((1,), (), True),
        ((1, 2), (), False),
        ((1, 2), (2,), True),
        ((1, 2, 3), (), False),
        ((1, 2, 3), (2,), True),
        ((1, 2, 3, 4), (2,), False),
        ((1, 2, 3, 4), (2, 3), True),
        ((1, 2, 3, 4, 5), (2,), False),
        ((1, 2, 3, 4, 5), (4, 5), True),
    ],
)
def test_leader_acknowledge_commit(
    voters: tuple[int, ...], acks: tuple[int, ...], commits: bool
) -> None:
    """TestLeaderAcknowledgeCommit: commit needs a majority of the voters."""
    e = make_leader(1, voters)
    out = e.handle(ClientWrite("a", "x"), 0.5)
    flush(e, 0.5)
    for n in acks:
        (r,) = requests_to(out, n)
        recv(e, n, ack(r), 0.5)
    assert (e.committed == LogId(1, 1, 3)) is commits


def test_leader_commit_preceding_entries() -> None:
    """TestLeaderCommitPrecedingEntries: entries of earlier terms commit together
    with the new leader's first entry."""
    old = [ent(1, 2, 2, "a"), ent(1, 2, 3, "b")]
    e = make_leader(entries=old, vote=Vote(1, 2, True), commit_blank=False)
    assert e.vote == Vote(2, 1, True)
    b = blank(LogId(2, 1, 4))
    probe = AppendRequest(Vote(2, 1, True), old[-1].log_id, (b,), 0, 1, 0.0)
    assert recv(e, 2, ack(probe), 0.0) == [Apply((mentry(), *old, b))]


@pytest.mark.parametrize(
    ("follower_match", "commits"),
    [
        (MEMBERSHIP_ID, False),
        (LogId(1, 2, 2), False),
        (LogId(1, 2, 3), False),
        (LogId(2, 1, 4), True),
    ],
)
def test_leader_only_commits_log_from_current_term(follower_match: LogId, commits: bool) -> None:
    """TestLeaderOnlyCommitsLogFromCurrentTerm (5.4.2): a quorum holding an entry of
    an earlier term does not commit it; a quorum holding the leader's own
    entry commits it and everything before it."""
    old = [ent(1, 2, 2, "a"), ent(1, 2, 3, "b")]
    e = make_leader(entries=old, vote=Vote(1, 2, True), commit_blank=False)
    resp = AppendResponse(Vote(2, 1, True), True, follower_match, 0, follower_match, 1, 0.0)
    recv(e, 2, resp, 0.0)
    assert e.metrics().replication[2] == follower_match
    assert e.committed == (LogId(2, 1, 4) if commits else ZERO_LOG_ID)


def test_commit_never_moves_back_on_stale_ack() -> None:
    e = make_leader()
    e.handle(ClientWrite("a", "x"), 0.5)
    flush(e, 0.5)
    recv(e, 2, ack(req(3, 3)), 0.5)
    # A late duplicate of an older ack changes nothing.
    old = AppendResponse(L, True, B2, 0, B2, 1, 0.0)
    assert recv(e, 2, old, 0.5) == []
    assert e.metrics().replication[2] == LogId(1, 1, 3)
    assert e.committed == LogId(1, 1, 3)


def test_apply_hands_out_each_entry_once() -> None:
    e = make_leader()
    flush(e, 0.5)
    o1 = e.handle(ClientWrite("a", "x"), 0.5)
    o2 = e.handle(ClientWrite("b", "y"), 0.5)
    flush(e, 0.5)
    assert recv(e, 2, ack(requests_to(o1, 2)[0]), 0.5) == [Apply((w(3),))]
    assert recv(e, 2, ack(requests_to(o2, 2)[0]), 0.5) == [Apply((w(4, "y"),))]


def test_batch_answers_in_log_order_after_apply() -> None:
    e = make_leader()
    out = e.handle(ClientWriteBatch((("a", 1), ("b", 2), ("c", 3))), 0.5)
    flush(e, 0.5)
    assert recv(e, 2, ack(requests_to(out, 2)[0]), 0.5) == [Apply((w(3, 1), w(4, 2), w(5, 3)))]
    # Applied in two steps; entries without a result answer None.
    assert e.handle(Applied(LogId(1, 1, 4), ((3, "r1"),)), 0.5) == [
        Respond("a", "r1"),
        Respond("b", None),
    ]
    assert e.handle(Applied(LogId(1, 1, 5), ((5, "r3"),)), 0.5) == [Respond("c", "r3")]
    # A repeated Applied is harmless.
    assert e.handle(Applied(LogId(1, 1, 5), ()), 0.5) == []


def _joint_leader() -> Engine:
    m = Membership((frozenset({1, 2, 3}), frozenset({1, 4, 5})), {n: None for n in range(1, 6)})
    rec = RecoveredState(entries=(membership_entry(MEMBERSHIP_ID, m),))
    e = Engine(1, config(), rec, FixedRng())
    e.handle(TriggerElection(), 0.0)
    flush(e, 0.0)
    v = Vote(1, 1, False)
    recv(e, 2, grant(v), 0.0)
    recv(e, 3, grant(v), 0.0)
    # A majority of the first config, but not of the second.
    assert e.role is Role.CANDIDATE
    recv(e, 4, grant(v), 0.0)
    assert e.metrics().role is Role.LEADER
    flush(e, 0.0)
    return e


def test_joint_membership_commit_needs_both_majorities() -> None:
    e = _joint_leader()
    m = e.membership
    assert m is not None
    probe = AppendRequest(Vote(1, 1, True), MEMBERSHIP_ID, (blank(B2),), 0, 1, 0.0)
    recv(e, 2, ack(probe), 0.0)
    probe3 = AppendRequest(Vote(1, 1, True), MEMBERSHIP_ID, (blank(B2),), 0, 2, 0.0)
    recv(e, 3, ack(probe3), 0.0)
    assert e.committed == ZERO_LOG_ID  # {1,2,3} agree, {1,4,5} does not yet
    probe4 = AppendRequest(Vote(1, 1, True), MEMBERSHIP_ID, (blank(B2),), 0, 3, 0.0)
    out = recv(e, 4, ack(probe4), 0.0)
    assert out[0] == Apply((membership_entry(MEMBERSHIP_ID, m), blank(B2)))
    # The joint membership is committed and no change of this leader's is in
    # progress: it leaves the joint config on its own (its predecessor died
    # mid-change), keeping the removed voters as learners.
    leave = Membership((frozenset({1, 4, 5}),), m.nodes)
    assert out[1] == AppendLog(4, (membership_entry(LogId(1, 1, 3), leave),))


def test_committed_write_is_answered_after_step_down_and_reelection() -> None:
    """Every client write gets exactly one answer. A write that committed is
    not 'lost' by a step-down: it is answered when applied, even if the node
    has become leader again in between."""
    e = make_leader()
    out = e.handle(ClientWrite("w", "x"), 0.5)
    flush(e, 0.5)
    assert recv(e, 2, ack(requests_to(out, 2)[0]), 0.5) == [Apply((w(3),))]
    # Leadership changes hands before the state machine reports back.
    assert e.handle(TriggerElection(), 0.75) == [SaveVote(5, Vote(2, 1, False))]
    flush(e, 0.75)
    recv(e, 2, grant(Vote(2, 1, False), LogId(1, 1, 3)), 0.75)
    assert e.role is Role.LEADER
    assert e.handle(Applied(LogId(1, 1, 3), ((3, "done"),)), 1.0) == [Respond("w", "done")]
