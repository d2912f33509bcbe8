"""Log replication from the leader's side: Raft paper section 5.3.

Probe then pipeline, window bounds, conflict back-tracking, heartbeats and
the replication timeout. Each test asserts the exact commands of one event.
"""

from __future__ import annotations

import pytest
from helpers import (
    HEARTBEAT,
    MEMBERSHIP_ID,
    ack,
    engine,
    ent,
    make_leader,
    membership,
    mentry,
    recv,
    requests_to,
    sends,
)

from raftcore import (
    ZERO_LOG_ID,
    AppendLog,
    AppendRequest,
    AppendResponse,
    Apply,
    ClientWrite,
    ClientWriteBatch,
    Entry,
    LeaderIdMode,
    LogId,
    Role,
    Send,
    TriggerHeartbeat,
    Vote,
    Wakeup,
)
from raftcore.entries import blank, membership_entry
from raftcore.testing.loopback import LoopbackCluster

L = Vote(1, 1, True)
B2 = LogId(1, 1, 2)  # the leader's blank entry


def w(index: int, data: str = "x") -> Entry:
    return ent(1, 1, index, data)


def test_leader_start_replication() -> None:
    """TestLeaderStartReplication: a write is appended locally and sent to every
    follower at once, with the previous log id and the commit index."""
    e = make_leader()
    assert e.handle(ClientWrite("a", "x"), 0.5) == [
        AppendLog(4, (w(3),)),
        Send(2, AppendRequest(L, B2, (w(3),), 2, 3, 0.5)),
        Send(3, AppendRequest(L, B2, (w(3),), 2, 4, 0.5)),
    ]
    assert e.last_log_id == LogId(1, 1, 3)
    assert e.committed == B2  # not before a quorum has it


def test_batch_is_one_append_and_one_message() -> None:
    e = make_leader()
    entries = (w(3, "x"), w(4, "y"))
    assert e.handle(ClientWriteBatch((("a", "x"), ("b", "y"))), 0.5) == [
        AppendLog(4, entries),
        Send(2, AppendRequest(L, B2, entries, 2, 3, 0.5)),
        Send(3, AppendRequest(L, B2, entries, 2, 4, 0.5)),
    ]


def test_empty_batch_does_nothing() -> None:
    e = make_leader()
    assert e.handle(ClientWriteBatch(()), 0.5) == []
    assert e.last_log_id == B2


def test_pipeline_does_not_wait_for_acks() -> None:
    e = make_leader()
    e.handle(ClientWrite("a", "x"), 0.5)
    assert e.handle(ClientWrite("b", "y"), 0.5) == [
        AppendLog(5, (w(4, "y"),)),
        Send(2, AppendRequest(L, LogId(1, 1, 3), (w(4, "y"),), 2, 5, 0.5)),
        Send(3, AppendRequest(L, LogId(1, 1, 3), (w(4, "y"),), 2, 6, 0.5)),
    ]


def test_inflight_window_bounds_messages() -> None:
    e = make_leader(max_inflight_appends=2)
    e.handle(ClientWrite("a", "x"), 0.5)
    first = requests_to(e.handle(ClientWrite("b", "y"), 0.5), 2)
    # Window full for both followers: the third entry is only appended locally.
    assert e.handle(ClientWrite("c", "z"), 0.5) == [AppendLog(6, (w(5, "z"),))]
    # One answer frees one slot; everything not yet sent goes in one message.
    e.handle(ClientWrite("d", "q"), 0.5)
    req3 = AppendRequest(L, LogId(1, 1, 2), (w(3),), 2, 3, 0.5)
    assert recv(e, 2, ack(req3), 0.5) == [
        Send(2, AppendRequest(L, LogId(1, 1, 4), (w(5, "z"), w(6, "q")), 2, 7, 0.5)),
    ]
    assert first == [AppendRequest(L, LogId(1, 1, 3), (w(4, "y"),), 2, 5, 0.5)]


def test_inflight_byte_window_bounds_messages() -> None:
    e = make_leader(max_inflight_bytes=100)
    big = "b" * 200
    out = e.handle(ClientWrite("a", big), 0.5)
    assert len(sends(out)) == 2  # a single message may exceed the window
    # The window is now over its byte budget: nothing more is sent.
    assert e.handle(ClientWrite("b", "y"), 0.5) == [AppendLog(5, (w(4, "y"),))]


def test_entries_per_message_are_bounded() -> None:
    e = make_leader(max_entries_per_append=2)
    reqs = tuple((f"r{i}", i) for i in range(5))
    out = e.handle(ClientWriteBatch(reqs), 0.5)
    ents = [ent(1, 1, 3 + i, i) for i in range(5)]
    assert out == [
        AppendLog(4, tuple(ents)),
        Send(2, AppendRequest(L, B2, (ents[0], ents[1]), 2, 3, 0.5)),
        Send(2, AppendRequest(L, ents[1].log_id, (ents[2], ents[3]), 2, 4, 0.5)),
        Send(2, AppendRequest(L, ents[3].log_id, (ents[4],), 2, 5, 0.5)),
        Send(3, AppendRequest(L, B2, (ents[0], ents[1]), 2, 6, 0.5)),
        Send(3, AppendRequest(L, ents[1].log_id, (ents[2], ents[3]), 2, 7, 0.5)),
        Send(3, AppendRequest(L, ents[3].log_id, (ents[4],), 2, 8, 0.5)),
    ]


def test_bytes_per_message_are_bounded() -> None:
    e = make_leader(max_bytes_per_append=300)
    data = ["a" * 100, "b" * 100, "c" * 100]  # about 124 bytes each
    out = e.handle(ClientWriteBatch(tuple((d, d) for d in data)), 0.5)
    sizes = [len(r.entries) for r in requests_to(out, 2)]
    assert sizes == [2, 1]


def test_new_leader_probes_one_message_at_a_time() -> None:
    e = make_leader(commit_blank=False)
    # The probe with the blank entry is unanswered: nothing more is sent.
    assert e.handle(ClientWrite("a", "x"), 0.5) == [AppendLog(4, (w(3),))]
    probe = AppendRequest(L, MEMBERSHIP_ID, (blank(B2),), 0, 1, 0.0)
    # The probe is answered: the blank commits (the leader's copy is durable),
    # and replication switches to pipelining and sends the rest.
    assert recv(e, 2, ack(probe), 0.5) == [
        Apply((mentry(), blank(B2))),
        Send(2, AppendRequest(L, B2, (w(3),), 2, 3, 0.5)),
    ]


LONG_LOG = [ent(1, 2, 2), ent(1, 2, 3), ent(2, 2, 4)]
L3 = Vote(3, 1, True)
B5 = blank(LogId(3, 1, 5))


def test_conflict_hint_backtracks_in_one_step() -> None:
    e = make_leader(entries=LONG_LOG, vote=Vote(2, 2, True), commit_blank=False)
    assert e.metrics().replication == {2: ZERO_LOG_ID, 3: ZERO_LOG_ID}
    # The follower has only the membership entry: it asks for index 2 next.
    refusal = AppendResponse(L3, False, ZERO_LOG_ID, 2, MEMBERSHIP_ID, 1, 0.0)
    assert recv(e, 2, refusal, 0.25) == [
        Send(2, AppendRequest(L3, MEMBERSHIP_ID, (*LONG_LOG, B5), 0, 3, 0.25)),
    ]
    # A duplicate of the old refusal is stale: it does not restart the probe.
    assert recv(e, 2, refusal, 0.25) == []
    # The answer to the new probe commits everything (previous-term entries
    # with the leader's own blank entry), once the leader's copy is durable.
    full = AppendRequest(L3, MEMBERSHIP_ID, (*LONG_LOG, B5), 0, 3, 0.25)
    assert recv(e, 2, ack(full), 0.25) == [Apply((mentry(), *LONG_LOG, B5))]
    assert e.metrics().replication[2] == B5.log_id
    assert e.committed == B5.log_id


def test_conflict_hint_zero_restarts_from_the_first_entry() -> None:
    e = make_leader(entries=LONG_LOG, vote=Vote(2, 2, True), commit_blank=False)
    refusal = AppendResponse(L3, False, ZERO_LOG_ID, 0, ZERO_LOG_ID, 1, 0.0)
    assert recv(e, 2, refusal, 0.25) == [
        Send(2, AppendRequest(L3, ZERO_LOG_ID, (mentry(), *LONG_LOG, B5), 0, 3, 0.25)),
    ]


def test_leader_bcast_beat() -> None:
    """TestLeaderBcastBeat: an idle leader sends an empty append, carrying the
    commit index, to every follower each heartbeat interval."""
    e = make_leader()
    assert e.next_deadline == HEARTBEAT
    assert e.handle(Wakeup(), 0.1) == []
    assert e.handle(Wakeup(), HEARTBEAT) == [
        Send(2, AppendRequest(L, B2, (), 2, 3, HEARTBEAT)),
        Send(3, AppendRequest(L, B2, (), 2, 4, HEARTBEAT)),
    ]
    assert e.next_deadline == 2 * HEARTBEAT


def test_heartbeats_are_suppressed_while_replication_flows() -> None:
    e = make_leader()
    e.handle(ClientWrite("a", "x"), 0.125)
    # Both followers got an append at 0.125: nothing to do at the old deadline.
    assert e.handle(Wakeup(), HEARTBEAT) == []
    assert e.next_deadline == 0.125 + HEARTBEAT
    out = e.handle(Wakeup(), 0.125 + HEARTBEAT)
    assert out == [
        Send(2, AppendRequest(L, B2, (), 2, 5, 0.375)),
        Send(3, AppendRequest(L, B2, (), 2, 6, 0.375)),
    ]


def test_heartbeat_only_to_the_idle_follower() -> None:
    e = make_leader(commit_blank=False)
    probe = AppendRequest(L, MEMBERSHIP_ID, (blank(B2),), 0, 1, 0.0)
    recv(e, 2, ack(probe), 0.125)
    # Follower 2 (pipelining) gets the write at 0.125; follower 3 is still
    # being probed, so it gets nothing.
    assert requests_to(e.handle(ClientWrite("a", "x"), 0.125), 3) == []
    assert e.handle(Wakeup(), HEARTBEAT) == [
        Send(3, AppendRequest(L, ZERO_LOG_ID, (), 2, 4, HEARTBEAT)),
    ]


def test_trigger_heartbeat() -> None:
    e = make_leader()
    assert e.handle(TriggerHeartbeat(), 0.0625) == [
        Send(2, AppendRequest(L, B2, (), 2, 3, 0.0625)),
        Send(3, AppendRequest(L, B2, (), 2, 4, 0.0625)),
    ]
    # Not a leader: nothing to do.
    assert engine().handle(TriggerHeartbeat(), 0.0) == []


def test_replication_timeout_resends_from_last_match() -> None:
    e = make_leader(check_quorum=False, replication_timeout=0.5)
    e.handle(ClientWrite("a", "x"), 0.0)
    # Heartbeats at 0.25: nobody answers them.
    e.handle(Wakeup(), 0.25)
    assert e.handle(Wakeup(), 0.5) == [
        Send(2, AppendRequest(L, B2, (w(3),), 2, 7, 0.5)),
        Send(3, AppendRequest(L, B2, (w(3),), 2, 8, 0.5)),
    ]


def test_acks_from_learners_replicate_but_do_not_commit() -> None:
    e = make_leader(1, (1, 2, 3), learners=(4,), commit_blank=False)
    assert sorted(e.metrics().replication) == [2, 3, 4]
    probe = AppendRequest(L, MEMBERSHIP_ID, (blank(B2),), 0, 3, 0.0)
    assert recv(e, 4, ack(probe), 0.0) == []
    assert e.committed == ZERO_LOG_ID  # the learner plus the leader is no quorum
    assert e.metrics().replication[4] == B2


def test_response_from_a_non_member_is_ignored() -> None:
    e = make_leader()
    before = e.metrics()
    resp = AppendResponse(L, True, B2, 0, B2, 1, 0.0)
    assert recv(e, 9, resp, 0.0) == []
    assert e.metrics() == before


def test_response_for_another_leader_is_ignored() -> None:
    e = make_leader(vote=Vote(1, 2, True))
    before = e.metrics()
    old = Vote(1, 2, True)
    assert recv(e, 2, AppendResponse(old, True, MEMBERSHIP_ID, 0, B2, 1, 0.0), 0.0) == []
    assert e.metrics() == before


def test_response_to_a_follower_is_ignored() -> None:
    e = engine(2, vote=Vote(1, 1, True))
    assert recv(e, 3, AppendResponse(Vote(1, 1, True), True, MEMBERSHIP_ID, 0, B2, 1, 0.0)) == []


# -- Figure 7: the leader brings any follower log in line with its own --------

FIG7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIG7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}
# Which node led each term (standard mode: one leader per term).
TERM_LEADER = {1: 1, 2: 2, 3: 3, 4: 2, 5: 3, 6: 1, 7: 2}


def fig7_log(terms: list[int]) -> list[Entry]:
    # Index 1 of every log is the membership entry, written in term 1 by node 1.
    out = [membership_entry(LogId(1, 1, 1), membership((1, 2, 3)))]
    out += [ent(t, TERM_LEADER[t], i, f"{t}@{i}") for i, t in enumerate(terms[1:], start=2)]
    return out


@pytest.mark.parametrize("mode", list(LeaderIdMode))
@pytest.mark.parametrize("follower", sorted(FIG7_FOLLOWERS))
def test_leader_sync_follower_log(follower: str, mode: LeaderIdMode) -> None:
    """TestLeaderSyncFollowerLog (figure 7): whatever the follower's log, the new
    leader of term 8 makes it identical to its own."""
    from helpers import config

    from raftcore import Engine, RecoveredState
    from raftcore.testing.loopback import Rand

    # No lease: the nodes "restart" at time 0 and would honour node 2's lease.
    c = LoopbackCluster([1, 2, 3], config(leader_id_mode=mode, pre_vote=False, check_quorum=False))
    logs = {1: fig7_log(FIG7_LEADER), 2: fig7_log(FIG7_FOLLOWERS[follower])}
    logs[3] = logs[1]
    for n, node in c.nodes.items():
        node.log = list(logs[n])
        node.vote = Vote(7, 2, True)
        node.engine = Engine(
            n, c.config, RecoveredState(vote=node.vote, entries=tuple(node.log)), Rand(n)
        )
    c.handle(1, __import__("raftcore").TriggerElection())
    c.deliver_all()
    assert c.nodes[1].engine.role is Role.LEADER
    assert c.nodes[1].engine.vote == Vote(8, 1, True)
    c.advance(1.0)
    leader_log = c.nodes[1].log
    assert leader_log[-1].log_id == LogId(8, 1, 11)
    assert c.nodes[2].log == leader_log
    assert c.nodes[2].engine.last_log_id == LogId(8, 1, 11)
    assert c.nodes[1].engine.committed == LogId(8, 1, 11)
