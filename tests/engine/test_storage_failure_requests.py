"""A storage failure answers every request the engine holds, once, then silence.

An engine holds three kinds of request: client writes (``pending_writes``),
the membership change it is carrying out (``LeaderState.membership_change``) and a
change queued until the membership is known committed (``queued_change``).
``StorageFailed`` answers them all with ``NodeStopped``, in that order
(writes by log index), before ``Stopped``; after it the engine emits nothing.
"""

from __future__ import annotations

from helpers import MEMBERSHIP_ID, ack, flush, make_leader, membership, recv, requests_to

from raftcore import (
    AppendLog,
    AppendRequest,
    Applied,
    Command,
    Engine,
    IoFlushed,
    LogId,
    Respond,
    Role,
    Stopped,
    TriggerElection,
    TriggerHeartbeat,
    Vote,
    Wakeup,
)
from raftcore.entries import blank, membership_entry
from raftcore.errors import NodeStopped
from raftcore.events import ChangeMembership, ClientWrite, ClientWriteBatch, StorageFailed
from raftcore.membership import AddLearners, AddVoters, leave_joint, next_membership

STOP = NodeStopped("disk full")
M123 = membership([1, 2, 3])


def _ack_round(
    e: Engine, cmds: list[Command], among: tuple[int, ...], now: float = 0.5
) -> list[Command]:
    """Followers ``among`` acknowledge every append ``cmds`` sent them."""
    out: list[Command] = []
    for n in among:
        for req in requests_to(cmds, n):
            out += recv(e, n, ack(req), now)
    return out


def _assert_silent(e: Engine, now: float = 1.0) -> None:
    """A stopped engine takes every further event and emits nothing."""
    v = e.vote
    events = [
        ClientWrite("late", 9),
        ClientWriteBatch((("late2", 1),)),
        ChangeMembership("late-change", AddLearners({6: "addr-6"})),
        IoFlushed(e.io.issued),
        Applied(e.committed),
        Wakeup(),
        TriggerHeartbeat(),
        TriggerElection(),
        AppendRequest(Vote(v.term + 1, 2, True), MEMBERSHIP_ID, (), 0, 99, now),
        StorageFailed("again"),
    ]
    for ev in events:
        if isinstance(ev, AppendRequest):
            assert recv(e, 2, ev, now) == [], ev
        else:
            assert e.handle(ev, now) == [], ev
        now += 100.0
    assert e.next_deadline is None
    assert e.metrics().stopped == "disk full"


def _assert_cleared(e: Engine) -> None:
    assert e.pending_writes == {}
    ld = e.leader
    assert ld is None or (ld.membership_change is None and ld.queued_change is None)


def test_storage_failure_in_the_joint_phase_answers_the_change_and_the_writes() -> None:
    e = make_leader()
    out = e.handle(ChangeMembership("c", AddVoters({4: "addr-4"})), 0.5)
    assert [type(c) for c in out if isinstance(c, AppendLog | Respond)] == [AppendLog]
    assert e.membership is not None and e.membership.is_joint
    e.handle(ClientWriteBatch((("a", 1), ("b", 2))), 0.5)
    assert e.handle(StorageFailed("disk full"), 0.5) == [
        Respond("a", None, STOP),
        Respond("b", None, STOP),
        Respond("c", None, STOP),
        Stopped("disk full"),
    ]
    _assert_cleared(e)
    _assert_silent(e)


def test_storage_failure_in_the_final_phase_answers_the_change() -> None:
    e = make_leader()
    out = e.handle(ChangeMembership("c", AddVoters({4: "addr-4"})), 0.5)
    e.handle(ClientWrite("a", 1), 0.5)
    out += flush(e, 0.5)
    out = _ack_round(e, out, (2, 3))
    # The joint entry committed, the final one is appended, not committed.
    assert e.committed.index >= 3 and e.membership is not None and not e.membership.is_joint
    assert e.leader is not None and e.leader.membership_change == ("c", False)
    assert [c for c in out if isinstance(c, Respond)] == []
    e.handle(ClientWrite("b", 2), 0.5)
    assert e.handle(StorageFailed("disk full"), 0.5) == [
        Respond("a", None, STOP),
        Respond("b", None, STOP),
        Respond("c", None, STOP),
        Stopped("disk full"),
    ]
    _assert_cleared(e)
    _assert_silent(e)


def test_storage_failure_answers_a_change_queued_behind_the_first_commit() -> None:
    e = make_leader(commit_blank=False)
    assert e.handle(ChangeMembership("q", AddLearners({4: "addr-4"})), 0.5) == []
    assert e.leader is not None and e.leader.queued_change is not None
    e.handle(ClientWrite("a", 1), 0.5)
    assert e.handle(StorageFailed("disk full"), 0.5) == [
        Respond("a", None, STOP),
        Respond("q", None, STOP),
        Stopped("disk full"),
    ]
    _assert_cleared(e)
    _assert_silent(e)


def test_storage_failure_answers_a_change_queued_while_leaving_a_predecessors_joint() -> None:
    # The predecessor (node 2, term 1) died mid-change: its joint entry is in
    # the log. The new leader commits its blank, which commits the joint one,
    # and leaves the joint config by itself; a change asked meanwhile queues.
    joint = next_membership(M123, AddVoters({4: "addr-4"}), retain=False)
    j = membership_entry(LogId(1, 2, 2), joint)
    e = make_leader(commit_blank=False, entries=(j,), vote=Vote(1, 2, True))
    assert e.vote == Vote(2, 1, True) and e.role is Role.LEADER
    b3 = blank(LogId(2, 1, 3))
    req = AppendRequest(e.vote, j.log_id, (b3,), 0, 1, 0.0)
    out = recv(e, 2, ack(req), 0.5) + recv(e, 3, ack(req), 0.5)
    final = leave_joint(joint, retain=True)
    appended = [c.entries for c in out if isinstance(c, AppendLog)]
    assert appended == [(membership_entry(LogId(2, 1, 4), final),)]
    assert e.committed == b3.log_id and e.membership == final
    assert e.leader is not None and e.leader.membership_change is None
    assert e.handle(ChangeMembership("q", AddLearners({5: "addr-5"})), 0.5) == []
    assert e.leader is not None and e.leader.queued_change is not None
    e.handle(ClientWrite("w", 1), 0.5)
    assert e.handle(StorageFailed("disk full"), 0.5) == [
        Respond("w", None, STOP),
        Respond("q", None, STOP),
        Stopped("disk full"),
    ]
    _assert_cleared(e)
    _assert_silent(e)


def test_storage_failure_on_an_idle_leader_answers_nothing() -> None:
    e = make_leader()
    assert e.handle(StorageFailed("disk full"), 0.5) == [Stopped("disk full")]
    _assert_silent(e)


def test_committed_but_unapplied_writes_are_answered_once() -> None:
    # A write whose entry committed but was not applied yet is still waiting:
    # answered NodeStopped, and a late Applied answers nothing more.
    e = make_leader()
    out = e.handle(ClientWrite("a", 1), 0.5)
    out += flush(e, 0.5)
    _ack_round(e, out, (2, 3))
    assert e.committed == LogId(1, 1, 3) and e.applied.index == 2
    assert e.handle(StorageFailed("disk full"), 0.5) == [
        Respond("a", None, STOP),
        Stopped("disk full"),
    ]
    assert e.handle(Applied(LogId(1, 1, 3), ((3, "r"),)), 0.5) == []
    _assert_cleared(e)
