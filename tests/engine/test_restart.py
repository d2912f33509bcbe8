"""Restarting from durable state (``RecoveredState``)."""

from __future__ import annotations

import pytest
from helpers import (
    ELECTION_MIN,
    LEASE,
    MEMBERSHIP_ID,
    FixedRng,
    config,
    engine,
    ent,
    flush,
    membership,
    mentry,
    recv,
    vote_request,
)

from raftcore import (
    INITIAL_VOTE,
    ZERO_LOG_ID,
    AppendLog,
    Applied,
    Apply,
    ClientWrite,
    Command,
    ConfigError,
    Engine,
    IoFlushed,
    LeaderIdMode,
    LogId,
    MessageReceived,
    RecoveredState,
    Role,
    SaveVote,
    Send,
    TriggerElection,
    Vote,
    VoteRequest,
    VoteResponse,
    Wakeup,
)
from raftcore.entries import membership_entry
from raftcore.testing.loopback import LoopbackCluster, Rand

LOG = [ent(1, 1, 2, "a"), ent(1, 1, 3, "b")]


def test_restart_restores_vote_log_and_membership() -> None:
    e = engine(2, entries=LOG, vote=Vote(1, 1, True), now=10.0)
    m = e.metrics()
    assert m.role is Role.FOLLOWER
    assert m.vote == Vote(1, 1, True)
    assert m.last_log_id == LogId(1, 1, 3)
    assert m.membership == membership((1, 2, 3))
    assert m.committed == ZERO_LOG_ID
    assert e.next_deadline == 10.0 + ELECTION_MIN


def test_restarted_leader_is_a_follower_and_campaigns_in_a_new_term() -> None:
    e = engine(1, entries=LOG, vote=Vote(1, 1, True))
    assert e.role is Role.FOLLOWER
    assert e.handle(TriggerElection(), 0.0) == [SaveVote(1, Vote(2, 1, False))]


def test_restarted_candidate_does_not_reuse_its_term() -> None:
    e = engine(1, entries=LOG, vote=Vote(3, 1, False), pre_vote=False)
    assert e.role is Role.FOLLOWER
    assert e.handle(Wakeup(), ELECTION_MIN) == [SaveVote(1, Vote(4, 1, False))]


def test_restart_io_ids_start_fresh() -> None:
    e = engine(2, entries=LOG, vote=Vote(1, 1, True))
    v = Vote(2, 3, False)
    assert recv(e, 3, VoteRequest(v, LogId(1, 1, 3)), LEASE) == [SaveVote(1, v)]
    assert e.handle(IoFlushed(1), LEASE) == [Send(3, VoteResponse(v, True, v, LogId(1, 1, 3)))]


def test_a_restarted_voter_honours_its_leaders_lease_from_its_start() -> None:
    """It may have acknowledged the leader just before it stopped, and the
    leader may serve lease reads counting on that acknowledgement: until a
    lease has passed since the restart it grants no other candidate."""
    e = engine(2, entries=LOG, vote=Vote(1, 1, True), now=5.0)
    v = Vote(2, 3, False)
    refused = Send(3, VoteResponse(Vote(1, 1, True), False, v, LogId(1, 1, 3)))
    assert recv(e, 3, VoteRequest(v, LogId(1, 1, 3)), 5.0 + LEASE / 2) == [refused]
    assert recv(e, 3, VoteRequest(v, LogId(1, 1, 3)), 5.0 + LEASE) == [SaveVote(1, v)]


def test_committed_but_unapplied_entries_are_applied_on_first_call() -> None:
    e = engine(2, entries=LOG, vote=Vote(1, 1, True), committed=LogId(1, 1, 3))
    assert e.handle(Wakeup(), 0.0) == [Apply((mentry(), *LOG))]
    assert e.handle(Wakeup(), 0.0) == []
    assert e.handle(Applied(LogId(1, 1, 3)), 0.0) == []
    assert e.metrics().applied == LogId(1, 1, 3)


def test_applied_entries_are_not_applied_again() -> None:
    e = engine(
        2, entries=LOG, vote=Vote(1, 1, True), committed=LogId(1, 1, 3), applied=LogId(1, 1, 2)
    )
    assert e.handle(Wakeup(), 0.0) == [Apply((LOG[1],))]


def test_restart_with_a_purged_prefix_never_emits_an_empty_apply() -> None:
    """Entries up to ``last_purged`` are gone from the log: there is nothing the
    engine can hand to the state machine for them. An ``Apply(())`` would crash
    an adapter that reports ``Applied(entries[-1].log_id)``."""
    m = membership_entry(LogId(1, 1, 4), membership((1, 2, 3)))
    rec = RecoveredState(vote=Vote(1, 1, True), entries=(m,), last_purged=LogId(1, 1, 3))
    try:
        e = Engine(2, config(), rec, FixedRng())
    except ConfigError as err:  # refusing a state machine behind the purge is fine too
        assert err.field.startswith("recovered")
        return
    out = e.handle(Wakeup(), 0.0)
    assert all(c.entries for c in out if isinstance(c, Apply)), out


def test_recovered_entries_must_be_contiguous() -> None:
    rec = RecoveredState(entries=(mentry(), ent(1, 1, 3)))
    with pytest.raises(ConfigError) as exc:
        Engine(1, config(), rec, FixedRng())
    assert exc.value.field == "recovered.entries"


@pytest.mark.parametrize("committed", [LogId(1, 1, 5), LogId(1, 1, 1)])
def test_recovered_commit_the_log_cannot_back_is_ignored(committed: LogId) -> None:
    """A stored commit index is a hint: one beyond the log, or naming an entry
    the log does not hold, was stored before its entry was durable."""
    rec = RecoveredState(entries=(mentry(),), committed=committed)
    e = Engine(1, config(), rec, FixedRng())
    assert e.committed == ZERO_LOG_ID


def test_recovered_applied_not_in_the_log_is_refused() -> None:
    rec = RecoveredState(entries=(mentry(),), applied=LogId(1, 1, 5))
    with pytest.raises(ConfigError) as exc:
        Engine(1, config(), rec, FixedRng())
    assert exc.value.field == "recovered.applied"


@pytest.mark.parametrize("mode", list(LeaderIdMode))
def test_restarted_voter_keeps_its_vote(mode: LeaderIdMode) -> None:
    v = Vote(5, 1, False)
    e = engine(3, vote=v, mode=mode)
    # The same candidate asking again is granted, with nothing new to save.
    assert recv(e, 1, vote_request(5, 1), 0.0) == [Send(1, VoteResponse(v, True, v, MEMBERSHIP_ID))]
    # A candidate of an earlier term never is.
    assert recv(e, 2, vote_request(4, 2), 0.0) == [
        Send(2, VoteResponse(v, False, Vote(4, 2, False), MEMBERSHIP_ID))
    ]


def _trace(seed: int) -> list[list[Command]]:
    """One node's commands for a fixed event script, with two restarts."""
    log = [mentry()]
    vote = INITIAL_VOTE
    out: list[list[Command]] = []
    now = 0.0
    for _ in range(3):
        e = Engine(1, config(), RecoveredState(vote=vote, entries=tuple(log)), Rand(seed), now=now)
        d = e.next_deadline
        assert d is not None
        now = d
        out.append(e.handle(Wakeup(), now))
        out.append(e.handle(TriggerElection(), now))
        out.append(flush(e, now))
        v = e.vote
        out.append(e.handle(MessageReceived(2, VoteResponse(v, True, v, MEMBERSHIP_ID)), now))
        out.append(flush(e, now))
        out.append(e.handle(ClientWrite(now, "x"), now))
        out.append(flush(e, now))
        now += 0.5
        out.append(e.handle(Wakeup(), now))
        # Restart from what the commands made durable (everything was flushed).
        for cmds in out:
            for c in cmds:
                if isinstance(c, SaveVote):
                    vote = c.vote
                elif isinstance(c, AppendLog) and c.entries[0].index > log[-1].index:
                    log.extend(c.entries)
    return out


def test_same_state_events_and_seed_give_same_commands() -> None:
    assert _trace(3) == _trace(3)
    # The seed only moves deadlines; the traces differ in their timestamps.
    assert _trace(3) != _trace(4)


def test_restarted_follower_catches_up_in_a_cluster() -> None:
    c = LoopbackCluster([1, 2, 3], config(), seed=1)
    c.initialize(1)
    lid = c.elect()
    c.handle(lid, ClientWrite("a", 1))
    c.advance(0.5)
    f = next(n for n in c.nodes if n != lid)
    c.nodes[f].restart(c.now)
    restarted = c.nodes[f].engine
    assert restarted.role is Role.FOLLOWER
    assert restarted.committed == ZERO_LOG_ID  # not stored by the loopback
    c.handle(lid, ClientWrite("b", 2))
    c.advance(1.0)
    assert c.leader() == lid
    assert c.nodes[f].log == c.nodes[lid].log
    assert c.nodes[f].engine.committed == c.nodes[lid].engine.committed
    # The restarted state machine is rebuilt from the log by Apply.
    assert [e.log_id for e in c.nodes[f].applied] == [e.log_id for e in c.nodes[lid].log]


def test_loopback_restart_forgets_old_io_ids() -> None:
    """The in-process harness restarts a node with a fresh engine, whose io ids
    start again at 1; it must not then report the old engine's io ids flushed
    (``IoFlushed(n)`` for an io the new engine never issued is refused)."""
    c = LoopbackCluster([1, 2, 3], config(), seed=2)
    c.initialize(1)
    leader = c.elect()
    for k in range(3):
        c.handle(leader, ClientWrite(k, k))
    c.advance(0.5)
    f = next(n for n in c.nodes if n != leader)
    c.nodes[f].restart(c.now)
    c.advance(1.0)  # the restarted node handles heartbeats without storage work
    assert c.leader() == leader
    assert c.nodes[f].engine.committed == c.nodes[leader].engine.committed
