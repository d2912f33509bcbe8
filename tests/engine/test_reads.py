"""Linearizable reads on the leader (docs/reads.md): exact commands.

ReadIndex confirms leadership with one heartbeat round shared by the reads
waiting when it starts; lease reads need no round inside the lease; a new
leader answers no read before its own first entry commits; reads never
wait forever; and a deposed leader that has not noticed never answers
(known bug 10).
"""

from __future__ import annotations

from helpers import MEMBERSHIP_ID, ack, config, engine, make_leader, mentry, recv

from raftcore import (
    ZERO_LOG_ID,
    AppendRequest,
    Apply,
    ClientRead,
    ClientWrite,
    LeadershipLost,
    LogId,
    NodeStopped,
    NotLeader,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadPolicy,
    ReadTimeout,
    Respond,
    Send,
    Stopped,
    StorageFailed,
    Vote,
    Wakeup,
)
from raftcore.entries import blank
from raftcore.testing.loopback import LoopbackCluster

L = Vote(1, 1, True)
B2 = LogId(1, 1, 2)  # the leader's blank entry, committed by make_leader()


def hb(to: int, seq: int, now: float, commit: int = 2) -> Send:
    return Send(to, AppendRequest(L, B2, (), commit, seq, now))


def test_read_index_answers_after_a_quorum_acknowledges_a_heartbeat_round() -> None:
    e = make_leader()
    s = e.seq
    assert e.handle(ClientRead("r"), 0.5) == [hb(2, s + 1, 0.5), hb(3, s + 2, 0.5)]
    # One acknowledgement makes a quorum with the leader: the read point is
    # the commit index when the round started.
    assert recv(e, 2, ack(AppendRequest(L, B2, (), 2, s + 1, 0.5)), 0.6) == [Respond("r", B2)]
    assert recv(e, 3, ack(AppendRequest(L, B2, (), 2, s + 2, 0.5)), 0.6) == []


def test_reads_waiting_together_share_one_round_and_later_ones_wait_for_the_next() -> None:
    e = make_leader()
    s = e.seq
    e.handle(ClientRead("a"), 0.5)
    assert e.handle(ClientRead("b"), 0.5) == []  # joins the waiting list, no new round
    # "b" came after the round started: rounds are not joined once started.
    out = recv(e, 2, ack(AppendRequest(L, B2, (), 2, s + 1, 0.5)), 0.6)
    assert out == [Respond("a", B2), hb(2, s + 3, 0.6), hb(3, s + 4, 0.6)]
    # An acknowledgement of the old round does not confirm the new one...
    assert recv(e, 3, ack(AppendRequest(L, B2, (), 2, s + 2, 0.5)), 0.7) == []
    # ...one of the new round does.
    assert recv(e, 3, ack(AppendRequest(L, B2, (), 2, s + 4, 0.6)), 0.7) == [Respond("b", B2)]


def test_a_lease_read_needs_no_round_inside_the_lease() -> None:
    """The followers acknowledged at 0.0; the lease (1.0) shortened by the
    drift allowance (1%) ends just before 0.99."""
    e = make_leader()
    assert e.handle(ClientRead("r", ReadPolicy.LEASE), 0.5) == [Respond("r", B2)]
    s = e.seq
    # Past the shortened lease it takes a round like any ReadIndex read.
    assert e.handle(ClientRead("q", ReadPolicy.LEASE), 0.995) == [
        hb(2, s + 1, 0.995),
        hb(3, s + 2, 0.995),
    ]


def test_a_new_leader_answers_no_read_before_its_first_entry_commits() -> None:
    e = make_leader(commit_blank=False)
    assert e.committed.index < 2
    assert e.handle(ClientRead("r"), 0.1) == []  # no round yet: it waits
    assert e.handle(ClientRead("lease", ReadPolicy.LEASE), 0.1) == []  # nor any lease read
    # The blank entry commits: the round for both starts at once.
    s = e.seq
    sent = AppendRequest(L, MEMBERSHIP_ID, (blank(B2),), 0, 1, 0.0)  # the first append to 2
    out = recv(e, 2, ack(sent), 0.2)
    assert out == [
        Apply((mentry(), blank(B2))),
        hb(2, s + 1, 0.2),
        Send(3, AppendRequest(L, ZERO_LOG_ID, (), 2, s + 2, 0.2)),  # 3's match is unknown
    ]
    assert recv(e, 3, ack(AppendRequest(L, B2, (), 2, s + 2, 0.2)), 0.3) == [
        Respond("r", B2),
        Respond("lease", B2),
    ]


def test_a_read_nobody_confirms_times_out_and_next_deadline_says_when() -> None:
    e = make_leader(check_quorum=False, read_timeout=0.5)
    e.handle(ClientRead("r"), 0.1)  # its round's heartbeats go at 0.1
    assert e.next_deadline == 0.25  # the leader's tick comes first...
    e.handle(Wakeup(), 0.25)
    assert e.next_deadline == 0.35  # ...then the next heartbeat
    e.handle(Wakeup(), 0.35)
    assert e.next_deadline == 0.6  # the read's deadline (and a heartbeat)
    out = e.handle(Wakeup(), 0.6)
    assert out[-1] == Respond("r", None, ReadTimeout(0.5))
    assert e.next_deadline == 0.85  # no read waits any more


def test_a_leader_that_steps_down_answers_its_waiting_reads_leadership_lost() -> None:
    e = make_leader()
    e.handle(ClientRead("r"), 0.5)
    out = recv(
        e, 2, ack(AppendRequest(Vote(2, 2, True), B2, (), 2, 99, 0.5), Vote(2, 2, True)), 0.6
    )
    assert Respond("r", None, LeadershipLost(2)) in out


def test_a_follower_asks_the_leader_once_for_all_its_waiting_reads() -> None:
    e = engine(2, vote=L)
    s = e.seq
    assert e.handle(ClientRead("a"), 0.0) == [Send(1, ReadIndexRequest(L, s + 1))]
    assert e.handle(ClientRead("b"), 0.0) == []  # waits for the next request
    # The leader's answer serves "a"; "b" goes in the next request.
    assert recv(e, 1, ReadIndexResponse(L, s + 1, B2), 0.1) == [
        Respond("a", B2),
        Send(1, ReadIndexRequest(L, s + 2)),
    ]
    # A leader that could not confirm: NotLeader, with the leader it knows.
    assert recv(e, 1, ReadIndexResponse(L, s + 2, None), 0.2) == [
        Respond("b", None, NotLeader(1, "addr-1"))
    ]
    # An answer to nothing in flight (a repeat, a late one) changes nothing.
    assert recv(e, 1, ReadIndexResponse(L, s + 2, B2), 0.2) == []


def test_a_follower_read_times_out_when_the_leader_never_answers() -> None:
    e = engine(2, vote=L, read_timeout=0.5)
    e.handle(ClientRead("a"), 0.0)
    assert e.next_deadline == 0.5  # before the election timeout (1.0)
    assert e.handle(Wakeup(), 0.5) == [Respond("a", None, ReadTimeout(0.5))]
    assert e.next_deadline == 1.0


def test_a_node_that_knows_no_leader_refuses_reads() -> None:
    e = engine(2)
    assert e.handle(ClientRead("r"), 0.0) == [Respond("r", None, NotLeader(None, None))]


def test_the_leader_answers_a_followers_request_after_a_confirmation_round() -> None:
    e = make_leader()
    s = e.seq
    assert recv(e, 2, ReadIndexRequest(L, 7), 0.5) == [hb(2, s + 1, 0.5), hb(3, s + 2, 0.5)]
    assert recv(e, 3, ack(AppendRequest(L, B2, (), 2, s + 2, 0.5)), 0.6) == [
        Send(2, ReadIndexResponse(L, 7, B2))
    ]
    # From an older leadership, or at a node that does not lead: no read point.
    old = Vote(0, 2, True)
    assert recv(e, 2, ReadIndexRequest(old, 8), 0.6) == [Send(2, ReadIndexResponse(L, 8, None))]
    f = engine(3, vote=L)
    assert recv(f, 2, ReadIndexRequest(L, 9), 0.0) == [Send(2, ReadIndexResponse(L, 9, None))]


def test_a_leader_that_steps_down_tells_a_waiting_follower() -> None:
    e = make_leader()
    recv(e, 2, ReadIndexRequest(L, 7), 0.5)
    newer = Vote(2, 3, True)
    out = recv(e, 3, ack(AppendRequest(newer, B2, (), 2, 99, 0.5), newer), 0.6)
    assert Send(2, ReadIndexResponse(newer, 7, None)) in out


def test_a_single_voter_confirms_at_once() -> None:
    e = make_leader(1, (1,))
    assert e.handle(ClientRead("r"), 0.5) == [Respond("r", e.committed)]


def test_known_bug_10_a_partitioned_old_leader_never_answers_a_read() -> None:
    """Leader 1 is cut off; 2 and 3 elect a new leader and commit a write.
    The old leader (check-quorum off, so it still thinks it leads) must not
    answer a read with its stale state: every read it gets times out."""
    c = LoopbackCluster([1, 2, 3], config(check_quorum=False, pre_vote=False), seed=1)
    c.initialize(1)
    old = c.elect()
    others = [n for n in (1, 2, 3) if n != old]
    for n in others:
        c.dropped |= {(old, n), (n, old)}
    c.advance(5.0)
    new = next(n for n in others if c.nodes[n].engine.role.value == "leader")
    c.handle(new, ClientWrite("w", "fresh"))
    c.advance(0.5)
    assert c.nodes[new].responses["w"].error is None
    for policy in ReadPolicy:
        rid = f"stale-{policy.value}"
        c.handle(old, ClientRead(rid, policy))
        c.advance(5.0)
        answer = c.nodes[old].responses[rid]
        assert answer.error is not None, f"the old leader answered {answer} ({policy})"
    # Reads on the new leader are answered, at a point that includes the write.
    c.handle(new, ClientRead("ok"))
    c.advance(0.5)
    answer = c.nodes[new].responses["ok"]
    write_index = c.nodes[new].responses["w"].result
    assert answer.error is None and answer.result.index >= 3, answer
    assert write_index == "fresh"  # (the loopback state machine echoes the data)


def test_a_leader_whose_disk_fails_sends_nothing_more_not_even_to_a_waiting_follower() -> None:
    """Regression (simulator seeds 30, 357, ... of the issue-11 campaign): a
    stopped engine emits only answers to its own clients; the follower's
    read times out on its side."""
    e = make_leader()
    recv(e, 2, ReadIndexRequest(L, 7), 0.5)
    e.handle(ClientRead("mine"), 0.5)
    assert e.handle(StorageFailed("disk"), 0.6) == [
        Respond("mine", None, NodeStopped("disk")),
        Stopped("disk"),
    ]
