"""Leadership transfer (docs/reads.md#leadership-transfer): exact commands.

The leader refuses writes and membership changes while it hands over,
catches the target up, then sends it ``TimeoutNow`` and gives up lease
reads; the target campaigns at once with ``transfer_from`` naming that
leader, which lets voters following exactly that leader grant it despite
the lease. A transfer not done in time is abandoned; one to a learner or a
non-member is refused.
"""

from __future__ import annotations

import pytest
from helpers import (
    ELECTION_MAX,
    MEMBERSHIP_ID,
    ack,
    config,
    engine,
    flush,
    make_leader,
    recv,
    requests_to,
)

from raftcore import (
    AddVoters,
    AppendRequest,
    ChangeMembership,
    ClientRead,
    ClientWrite,
    Engine,
    InvalidTransfer,
    LeadershipLost,
    LocalProtocolError,
    LogId,
    NodeStopped,
    NotLeader,
    ReadPolicy,
    RemoteProtocolError,
    Respond,
    Role,
    SaveVote,
    Send,
    Stopped,
    StorageFailed,
    TimeoutNow,
    TransferInProgress,
    TransferLeader,
    TransferTimeout,
    Vote,
    VoteRequest,
    VoteResponse,
    Wakeup,
)
from raftcore.testing.loopback import LoopbackCluster

L = Vote(1, 1, True)
B2 = LogId(1, 1, 2)  # the leader's blank entry, committed by make_leader()


def test_a_caught_up_target_gets_timeout_now_at_once_and_writes_are_refused() -> None:
    e = make_leader()
    assert e.handle(TransferLeader("t", 2), 0.5) == [Send(2, TimeoutNow(L, B2))]
    assert e.metrics().transfer_to == 2
    assert e.handle(ClientWrite("w", b"x"), 0.5) == [Respond("w", None, TransferInProgress(2))]
    change = ChangeMembership("c", AddVoters({4: None}))
    assert e.handle(change, 0.5) == [Respond("c", None, TransferInProgress(2))]
    assert e.handle(TransferLeader("t2", 3), 0.5) == [Respond("t2", None, TransferInProgress(2))]
    assert e.last_log_id == B2  # nothing was appended


def test_lease_reads_stop_once_timeout_now_is_sent() -> None:
    """The voters may now elect the target inside the lease: a lease read
    takes a ReadIndex round instead."""
    e = make_leader()
    s = e.seq
    assert e.handle(ClientRead("before", ReadPolicy.LEASE), 0.1) == [Respond("before", B2)]
    assert e.lease_read_end(0.1) is not None
    e.handle(TransferLeader("t", 2), 0.2)
    assert e.lease_read_end(0.2) is None
    out = e.handle(ClientRead("after", ReadPolicy.LEASE), 0.2)
    assert out == [
        Send(2, AppendRequest(L, B2, (), 2, s + 1, 0.2)),
        Send(3, AppendRequest(L, B2, (), 2, s + 2, 0.2)),
    ]


def _write_acked_by(e: Engine, voter: int, now: float) -> AppendRequest:
    """A write the leader sends to 2 and 3, acknowledged by ``voter`` only;
    returns the request to the other one."""
    out = e.handle(ClientWrite("w", b"x"), now)
    out += flush(e, now)
    reqs = {to: requests_to(out, to)[0] for to in (2, 3)}
    recv(e, voter, ack(reqs[voter]), now)
    assert e.committed == LogId(1, 1, 3)
    return reqs[5 - voter]


def test_a_lagging_target_is_caught_up_first() -> None:
    e = make_leader()
    req2 = _write_acked_by(e, 3, 0.1)
    # A transfer to 2 waits for 2's acknowledgement of the write.
    assert e.handle(TransferLeader("t", 2), 0.2) == []
    assert e.metrics().transfer_to == 2
    assert recv(e, 2, ack(req2), 0.25) == [Send(2, TimeoutNow(L, LogId(1, 1, 3)))]


def test_the_target_campaigns_at_once_naming_the_leader() -> None:
    e = engine(2, vote=L)
    recv(e, 1, AppendRequest(L, MEMBERSHIP_ID, (), 1, 1, 1.0), 1.0)
    flush(e, 1.0)
    v = Vote(2, 2, False)
    out = recv(e, 1, TimeoutNow(L, MEMBERSHIP_ID), 1.1)
    assert out == [SaveVote(e.io.issued, v)]
    assert e.role is Role.CANDIDATE
    req = VoteRequest(v, MEMBERSHIP_ID, False, transfer_from=L)
    assert flush(e, 1.1) == [Send(1, req), Send(3, req)]
    # A voter still following that leader grants inside the lease.
    voter = engine(3, vote=L)
    recv(voter, 1, AppendRequest(L, MEMBERSHIP_ID, (), 1, 1, 1.0), 1.0)
    flush(voter, 1.0)
    assert recv(voter, 2, req, 1.15) == [SaveVote(voter.io.issued, v)]
    assert flush(voter, 1.15) == [Send(2, VoteResponse(v, True, v, MEMBERSHIP_ID))]


def test_the_target_ignores_timeout_now_from_a_leader_it_no_longer_follows() -> None:
    newer = Vote(2, 3, True)
    e = engine(2, vote=newer)
    assert recv(e, 1, TimeoutNow(L, MEMBERSHIP_ID), 1.0) == []
    assert e.vote == newer and e.role is Role.FOLLOWER
    # A learner cannot campaign, and a log behind the leader's does not.
    learner = engine(2, voters=(1, 3), learners=(2,), vote=L)
    assert recv(learner, 1, TimeoutNow(L, MEMBERSHIP_ID), 1.0) == []
    behind = engine(2, vote=L)
    assert recv(behind, 1, TimeoutNow(L, LogId(1, 1, 5)), 1.0) == []
    with pytest.raises(RemoteProtocolError, match="non-leader vote"):
        recv(behind, 3, TimeoutNow(L, MEMBERSHIP_ID), 1.0)  # not the sender's vote


def test_the_leader_grants_its_target_and_answers_the_transfer() -> None:
    e = make_leader()
    e.handle(TransferLeader("t", 2), 0.2)
    v = Vote(2, 2, False)
    out = recv(e, 2, VoteRequest(v, B2, False, transfer_from=L), 0.3)
    assert out == [SaveVote(e.io.issued, v), Respond("t", 2)]
    assert e.role is Role.FOLLOWER
    assert flush(e, 0.3) == [Send(2, VoteResponse(v, True, v, B2))]


def test_the_leader_refuses_a_transfer_vote_it_did_not_authorize() -> None:
    """Within its lease, a leader grants ``transfer_from`` only to the target
    it sent ``TimeoutNow``: not to another node, and not before sending it."""
    e = make_leader()
    v3 = Vote(2, 3, False)
    out = recv(e, 3, VoteRequest(v3, B2, False, transfer_from=L), 0.3)
    assert out == [Send(3, VoteResponse(e.vote, False, v3, B2))]
    e.handle(TransferLeader("t", 2), 0.3)
    out = recv(e, 3, VoteRequest(v3, B2, False, transfer_from=L), 0.35)
    assert out == [Send(3, VoteResponse(e.vote, False, v3, B2))]
    assert e.role is Role.LEADER


def test_a_transfer_not_done_in_time_is_abandoned_and_writes_resume() -> None:
    e = make_leader(now=0.0)
    e.handle(TransferLeader("t", 2), 0.1)
    deadline = 0.1 + ELECTION_MAX
    while True:
        d = e.next_deadline
        assert d is not None and d <= deadline
        # Keep a quorum acknowledging, so the leader does not step down.
        out = e.handle(Wakeup(), d)
        for to in (2, 3):
            for req in requests_to(out, to):
                recv(e, to, ack(req), d)
        if any(isinstance(c, Respond) for c in out):
            break
    assert d == deadline
    assert [c for c in out if isinstance(c, Respond)] == [
        Respond("t", None, TransferTimeout(2, ELECTION_MAX))
    ]
    assert e.metrics().transfer_to is None
    out = e.handle(ClientWrite("w", b"x"), d)
    assert not any(isinstance(c, Respond) for c in out)
    # The lease stays revoked: the target may still campaign.
    assert e.lease_read_end(d) is None


def test_timeout_now_is_resent_on_the_heartbeat_tick() -> None:
    e = make_leader()
    e.handle(TransferLeader("t", 2), 0.1)
    assert e.next_deadline == 0.25  # the heartbeat tick
    assert Send(2, TimeoutNow(L, B2)) not in e.handle(Wakeup(), 0.25)  # sent 0.15 s ago
    assert Send(2, TimeoutNow(L, B2)) in e.handle(Wakeup(), 0.5)


@pytest.mark.parametrize(
    ("to", "reason"),
    [
        (4, "node 4 is a learner: only a voter can lead"),
        (9, "node 9 is not a member of the cluster"),
    ],
)
def test_a_learner_or_non_member_is_refused(to: int, reason: str) -> None:
    e = make_leader(learners=(4,))
    assert e.handle(TransferLeader("t", to), 0.5) == [Respond("t", None, InvalidTransfer(reason))]
    assert e.metrics().transfer_to is None


def test_transfer_to_itself_none_other_and_misuse() -> None:
    e = make_leader()
    assert e.handle(TransferLeader("self", 1), 0.5) == [Respond("self", 1)]
    solo = make_leader(voters=(1,))
    assert solo.handle(TransferLeader("t"), 0.5) == [
        Respond("t", None, InvalidTransfer("there is no other voter to transfer to"))
    ]
    with pytest.raises(LocalProtocolError, match="node id or None"):
        e.handle(TransferLeader("bad", "2"), 0.5)  # type: ignore[arg-type]
    follower = engine(2, vote=L)
    recv(follower, 1, AppendRequest(L, MEMBERSHIP_ID, (), 1, 1, 0.1), 0.1)
    assert follower.handle(TransferLeader("t", 3), 0.2) == [
        Respond("t", None, NotLeader(1, "addr-1"))
    ]


def test_no_target_named_picks_the_most_up_to_date_voter() -> None:
    e = make_leader()
    _write_acked_by(e, 3, 0.1)
    assert e.handle(TransferLeader("t"), 0.2) == [Send(3, TimeoutNow(L, LogId(1, 1, 3)))]
    e = make_leader()
    _write_acked_by(e, 2, 0.1)
    assert e.handle(TransferLeader("t"), 0.2) == [Send(2, TimeoutNow(L, LogId(1, 1, 3)))]


def test_stepping_down_for_another_node_answers_leadership_lost() -> None:
    e = make_leader()
    e.handle(TransferLeader("t", 2), 0.2)
    newer = Vote(5, 3, True)
    out = recv(e, 3, AppendRequest(newer, B2, (), 2, 1, 0.3), 0.3)
    assert Respond("t", None, LeadershipLost(3)) in out


def test_a_storage_failure_answers_the_transfer() -> None:
    e = make_leader()
    e.handle(TransferLeader("t", 2), 0.2)
    assert e.handle(StorageFailed("disk"), 0.3) == [
        Respond("t", None, NodeStopped("disk")),
        Stopped("disk"),
    ]


def test_whole_cluster_transfer_then_writes_continue_at_the_target() -> None:
    c = LoopbackCluster([1, 2, 3], config(), seed=3)
    c.initialize(1)
    old = c.elect()
    target = next(n for n in (1, 2, 3) if n != old)
    c.handle(old, ClientWrite("w1", "a"))
    c.advance(0.5)
    c.handle(old, TransferLeader("t", target))
    c.advance(0.5)
    assert c.nodes[old].responses["t"].result == target
    assert c.leader() == target
    assert c.nodes[target].engine.role is Role.LEADER
    c.handle(target, ClientWrite("w2", "b"))
    c.advance(0.5)
    assert c.nodes[target].responses["w2"].error is None
    # The new leader's lease reads work again (its own lease).
    c.handle(target, ClientRead("r", ReadPolicy.LEASE))
    c.advance(0.1)
    assert c.nodes[target].responses["r"].error is None
