"""One regression test per bug that real Raft implementations shipped
(docs/design/known-raft-bugs.md), items 1, 3-9, 12, 14.
"""

from __future__ import annotations

import pytest
from helpers import (
    LEASE,
    MEMBERSHIP_ID,
    FixedRng,
    ack,
    config,
    engine,
    ent,
    flush,
    grant,
    make_leader,
    membership,
    mentry,
    recv,
    requests_to,
    vote_request,
)

from raftcore import (
    INITIAL_VOTE,
    ZERO_LOG_ID,
    AppendLog,
    AppendRequest,
    AppendResponse,
    Applied,
    Apply,
    ClientWrite,
    Command,
    ConfigError,
    Engine,
    Entry,
    IoFlushed,
    LeaderIdMode,
    LogId,
    RecoveredState,
    Role,
    SaveVote,
    Send,
    TriggerElection,
    TriggerHeartbeat,
    TruncateLog,
    Vote,
    VoteRequest,
    VoteResponse,
    Wakeup,
)
from raftcore.entries import blank
from raftcore.testing.loopback import LoopbackCluster


class DurableStore:
    """Storage that executes storage commands strictly in order and makes a
    prefix of them durable on ``flush`` — what an adapter must do."""

    def __init__(self, vote: Vote = INITIAL_VOTE, entries: tuple[Entry, ...] = ()) -> None:
        self.vote = vote
        self.log = list(entries)
        self.pending: list[Command] = []

    def take(self, cmds: list[Command]) -> list[Command]:
        self.pending += [c for c in cmds if isinstance(c, SaveVote | AppendLog | TruncateLog)]
        return cmds

    def flush(self, upto: int) -> None:
        while self.pending:
            c = self.pending[0]
            assert isinstance(c, SaveVote | AppendLog | TruncateLog)
            if c.io_id > upto:
                break
            self.pending.pop(0)
            if isinstance(c, SaveVote):
                self.vote = c.vote
            elif isinstance(c, AppendLog):
                assert c.entries[0].index == len(self.log) + 1, "append must follow the log"
                self.log.extend(c.entries)
            else:
                del self.log[c.since - 1 :]

    def recovered(self) -> RecoveredState:
        return RecoveredState(vote=self.vote, entries=tuple(self.log))


# -- 1 ----------------------------------------------------------------------------


def test_figure8_previous_term_entry_is_not_committed_by_counting_replicas() -> None:
    """Bug 1, Raft paper figure 8: a leader must not commit an entry of an
    earlier term because a majority stores it; it commits only once an entry
    of its own term is stored by a majority, and the old entry with it.

    Figure 8 (c): S1 led term 2 and wrote 2-1-2 to S1, S2; S5 led term 3
    (its entry never left S5); S1 is leader again in term 4 and copies 2-1-2
    to S3. A majority (S1, S2, S3) of five stores it, yet it must stay
    uncommitted: in (d) S5 could still be elected and overwrite it.
    """
    old = ent(2, 1, 2, "old")
    # (Started a lease ago: the lease it honours for S5 since its restart is over.)
    e = engine(1, (1, 2, 3, 4, 5), entries=[old], vote=Vote(3, 5, True), now=-LEASE)
    e.handle(TriggerElection(), 0.0)
    flush(e)
    v4 = Vote(4, 1, False)
    recv(e, 2, grant(v4, old.log_id), 0.0)
    recv(e, 3, grant(v4, old.log_id), 0.0)
    assert e.role is Role.LEADER
    flush(e)  # the leader's own copies (old entry and blank 4-1-3) are durable
    l4 = Vote(4, 1, True)
    b = blank(LogId(4, 1, 3))
    # S2 and S3 confirm they hold 2-1-2 (the new blank has not reached them).
    for n in (2, 3):
        resp = AppendResponse(l4, True, old.log_id, 0, old.log_id, 1, 0.0)
        out = recv(e, n, resp, 0.0)
        assert not any(isinstance(c, Apply) for c in out)
    assert e.committed == ZERO_LOG_ID
    assert e.metrics().replication[2] == old.log_id
    # The commit index sent to followers does not move either.
    hb = requests_to(e.handle(TriggerHeartbeat(), 0.0), 4)
    assert [r.leader_commit for r in hb] == [0]
    # Figure 8 (e): the term-4 entry reaches a majority: both commit together.
    resp = AppendResponse(l4, True, b.log_id, 0, b.log_id, 2, 0.0)
    assert recv(e, 2, resp, 0.0) == []
    assert recv(e, 3, resp, 0.0) == [Apply((mentry((1, 2, 3, 4, 5)), old, b))]
    assert e.committed == b.log_id


# -- 3 ----------------------------------------------------------------------------


@pytest.mark.parametrize("peer_is_leader", [True, False])
@pytest.mark.parametrize("seed", [1, 2])
def test_partial_partition_has_a_stable_leader(peer_is_leader: bool, seed: int) -> None:
    """Bug 3, partial-partition livelock: in a 5-node cluster one node reaches
    only one peer. Without pre-vote and check-quorum it keeps starting
    elections that depose the leader through that peer. With them, the leader
    stays the same and writes keep committing."""
    c = LoopbackCluster(range(1, 6), config(pre_vote=True, check_quorum=True), seed=seed)
    c.initialize(1)
    leader = c.elect()
    c.handle(leader, ClientWrite("warmup", 0))
    c.advance(1.0)
    followers = [n for n in c.nodes if n != leader]
    peer = leader if peer_is_leader else followers[0]
    isolated = followers[-1]
    assert isolated != peer
    # The isolated node is a voter with an up-to-date log when cut off.
    assert c.nodes[isolated].engine.role is Role.FOLLOWER
    assert c.nodes[isolated].log == c.nodes[leader].log
    for n in c.nodes:
        if n not in (isolated, peer):
            c.dropped |= {(isolated, n), (n, isolated)}
    vote = c.nodes[leader].engine.vote
    for k in range(60):  # 30 s of virtual time, 120 election timeouts
        c.handle(leader, ClientWrite(k, k))
        c.advance(0.5)
        assert c.leader() == leader, f"leadership changed at {c.now}"
    assert c.nodes[leader].engine.vote == vote
    for n in c.nodes:
        if n != isolated:
            assert c.nodes[n].engine.vote == vote
    responses = c.nodes[leader].responses
    assert all(responses[k].error is None for k in range(59))
    assert c.nodes[leader].engine.committed == c.nodes[leader].log[-1].log_id


# -- 4 ----------------------------------------------------------------------------


def test_term_and_vote_are_persisted_together() -> None:
    """Bug 4, term and vote persisted separately: a crash between the two
    writes let a node vote twice in one term. Here one SaveVote carries the
    whole vote (term and candidate) and the grant waits for it; a node
    restarted from either durable state never grants two candidates of a term."""
    store = DurableStore(entries=(mentry(),))
    e = Engine(3, config(leader_id_mode=LeaderIdMode.STANDARD), store.recovered(), FixedRng())
    v = Vote(5, 1, False)
    out = store.take(recv(e, 1, VoteRequest(v, MEMBERSHIP_ID), 0.0))
    assert out == [SaveVote(1, v)]  # term 5 and candidate 1, one write, no grant yet

    # Crash before the write is durable: the grant never left, so voting
    # again (for anyone) is safe; the node restarts with its old vote.
    crashed = Engine(3, config(leader_id_mode=LeaderIdMode.STANDARD), store.recovered(), FixedRng())
    assert crashed.vote == INITIAL_VOTE

    # Durable, then crash and restart: the grant went out, and the restarted
    # node refuses any other candidate of term 5.
    store.flush(1)
    assert e.handle(IoFlushed(1), 0.0) == [Send(1, VoteResponse(v, True, v, MEMBERSHIP_ID))]
    r = Engine(3, config(leader_id_mode=LeaderIdMode.STANDARD), store.recovered(), FixedRng())
    assert r.vote == v
    for rival in (2, 4):
        out = recv(r, rival, vote_request(5, rival), 1.0)
        assert out == [Send(rival, VoteResponse(v, False, Vote(5, rival, False), MEMBERSHIP_ID))]
    assert r.vote == v


# -- 5 ----------------------------------------------------------------------------


def test_append_is_not_acknowledged_before_it_is_durable() -> None:
    """Bug 5: acknowledging an append before it is durable loses acknowledged
    (possibly committed) writes on power loss. The AppendResponse is emitted
    only once an IoFlushed covers the append."""
    leader = Vote(1, 1, True)
    e = engine(2)
    e1 = ent(1, 1, 2, "x")
    req = AppendRequest(leader, MEMBERSHIP_ID, (e1,), 0, 1, 0.0)
    assert recv(e, 1, req, 0.0) == [SaveVote(1, leader), AppendLog(2, (e1,))]
    # A heartbeat whose prev is the unflushed entry is not acknowledged either.
    hb = AppendRequest(leader, e1.log_id, (), 0, 2, 0.125)
    assert recv(e, 1, hb, 0.125) == []
    assert e.handle(Wakeup(), 0.25) == []
    # The vote alone being durable is not enough.
    assert e.handle(IoFlushed(1), 0.25) == []
    assert e.handle(IoFlushed(2), 0.25) == [
        Send(1, AppendResponse(leader, True, e1.log_id, 0, e1.log_id, 1, 0.0)),
        Send(1, AppendResponse(leader, True, e1.log_id, 0, e1.log_id, 2, 0.125)),
    ]


# -- 6 ----------------------------------------------------------------------------


def test_single_voter_does_not_commit_before_its_own_flush() -> None:
    """Bug 6: a single-voter cluster is its own quorum, so the only thing
    standing between a write and its commit is the local flush. It must not
    commit (nor apply, nor answer) before that flush."""
    e = engine(1, (1,))
    assert e.handle(Wakeup(), 1.0) == [SaveVote(1, Vote(1, 1, False))]
    b = blank(LogId(1, 1, 2))
    assert flush(e, 1.0) == [SaveVote(2, Vote(1, 1, True)), AppendLog(3, (b,))]
    # The committed vote is durable, the blank entry is not.
    assert e.handle(IoFlushed(2), 1.0) == []
    assert e.committed == ZERO_LOG_ID
    assert e.handle(IoFlushed(3), 1.0) == [Apply((mentry((1,)), b))]
    e.handle(Applied(b.log_id), 1.0)
    w = ent(1, 1, 3, "x")
    assert e.handle(ClientWrite("w", "x"), 1.0) == [AppendLog(4, (w,))]
    assert e.handle(Wakeup(), 1.25) == []
    assert e.committed == b.log_id
    assert e.handle(IoFlushed(4), 1.25) == [Apply((w,))]


# -- 7 ----------------------------------------------------------------------------


def test_truncation_is_durable_before_the_new_entries_are_acknowledged() -> None:
    """Bug 7: a truncation that is not durable lets a restart replay the
    truncated suffix. Storage executes commands in order; the ack for the
    replacing entry waits for a flush that covers the TruncateLog, and a
    restart from that durable state has no trace of the old suffix."""
    old = [ent(1, 1, 2, "a"), ent(1, 1, 3, "b")]
    store = DurableStore(Vote(1, 1, True), (mentry(), *old))
    e = Engine(2, config(), store.recovered(), FixedRng())
    new_leader = Vote(2, 3, True)
    n2 = ent(2, 3, 2, "c")
    req = AppendRequest(new_leader, MEMBERSHIP_ID, (n2,), 0, 1, 0.0)
    out = store.take(recv(e, 3, req, 0.0))
    assert out == [SaveVote(1, new_leader), TruncateLog(2, 2), AppendLog(3, (n2,))]
    # Crash after the truncation but before the append is durable: the
    # suffix is gone for good, and no ack for 2-3-2 was sent.
    store.flush(2)
    mid = Engine(2, config(), store.recovered(), FixedRng())
    assert mid.last_log_id == MEMBERSHIP_ID
    # Everything durable: the ack goes out, and a restart has the new entry.
    store.flush(3)
    assert e.handle(IoFlushed(3), 0.0) == [
        Send(3, AppendResponse(new_leader, True, n2.log_id, 0, n2.log_id, 1, 0.0))
    ]
    r = Engine(2, config(), store.recovered(), FixedRng())
    assert r.last_log_id == n2.log_id
    assert store.log == [mentry(), n2]
    # The restarted node does not claim the truncated entry 1-1-3.
    probe = AppendRequest(new_leader, LogId(1, 1, 3), (), 0, 2, 0.5)
    assert recv(r, 3, probe, 0.5) == [
        Send(3, AppendResponse(new_leader, False, ZERO_LOG_ID, 3, n2.log_id, 2, 0.5))
    ]


# -- 8 ----------------------------------------------------------------------------


def test_node_with_lost_log_tail_is_not_elected() -> None:
    """Bug 8: a node that lost the tail of its log (disk corruption, unsynced
    writes) must not win an election against nodes holding committed entries,
    or it would erase them. Voters refuse a shorter log, at once and without
    changing their vote."""
    full = [ent(1, 1, 2, "a"), ent(1, 1, 3, "b")]
    voter = engine(
        2, entries=full, vote=Vote(1, 1, True), committed=LogId(1, 1, 3), applied=LogId(1, 1, 3)
    )
    v = Vote(2, 3, False)
    out = recv(voter, 3, VoteRequest(v, LogId(1, 1, 2)), 5.0)
    assert out == [Send(3, VoteResponse(Vote(1, 1, True), False, v, LogId(1, 1, 3)))]
    assert voter.vote == Vote(1, 1, True)

    # Whole cluster: the leader dies, a follower restarts with only its
    # membership entry; the other follower must become leader.
    c = LoopbackCluster([1, 2, 3], config(), seed=3)
    c.initialize(1)
    leader = c.elect()
    for k in range(3):
        c.handle(leader, ClientWrite(k, k))
    c.advance(1.0)
    committed = c.nodes[leader].engine.committed
    assert committed.index == 5
    c.down.add(leader)
    damaged, healthy = (n for n in c.nodes if n != leader)
    node = c.nodes[damaged]
    node.log = node.log[:1]
    node.restart(c.now)
    # MemNode.restart keeps the old engine's last io id; reset it so the
    # harness does not flush io ids the new engine never issued (see
    # test_restart.py::test_loopback_restart_forgets_old_io_ids).
    node.unflushed = 0
    assert node.engine.last_log_id == MEMBERSHIP_ID
    for _ in range(40):
        c.advance(0.5)
        new = c.leader()
        assert new != damaged, "a node missing committed entries was elected"
    assert c.leader() == healthy
    # The committed entries survived and were copied back.
    ids = [e.log_id for e in node.log]
    assert committed in ids
    assert [e.log_id for e in c.nodes[healthy].log][: committed.index] == ids[: committed.index]


# -- 9 ----------------------------------------------------------------------------


def test_candidate_never_counts_a_higher_vote_as_a_grant() -> None:
    """Bug 9: a candidate treated a response carrying the responder's higher
    vote as a grant. Neither a refusal nor a (bogus) 'grant' holding a vote
    other than the candidate's own counts; a higher refusal makes it follow."""
    e = engine(1, pre_vote=False)
    e.handle(Wakeup(), 1.0)
    flush(e, 1.0)
    mine = Vote(1, 1, False)
    higher = Vote(2, 2, False)
    # 'granted', but for a vote that is not ours: not counted.
    assert recv(e, 2, VoteResponse(higher, True, mine, MEMBERSHIP_ID), 1.0) == []
    assert e.role is Role.CANDIDATE
    assert e.vote == mine
    # A refusal carrying the higher vote: adopted, never a grant.
    assert recv(e, 3, VoteResponse(higher, False, mine, MEMBERSHIP_ID), 1.0) == [
        SaveVote(2, higher)
    ]
    assert e.metrics().role is Role.FOLLOWER
    assert e.vote == higher
    # Late grants for the abandoned round change nothing.
    assert recv(e, 2, grant(mine), 1.0) == []
    assert e.metrics().role is Role.FOLLOWER


# -- 12 ---------------------------------------------------------------------------


def test_old_flush_does_not_confirm_new_entries_at_the_same_index() -> None:
    """Bug 12, ABA: entries 1-1-2, 1-1-3 are written (io 1), then a new leader
    truncates them and writes 2-3-2 at the same index (io 2-4). The flush of io
    1 arriving now is about the old entries: it must not confirm 2-3-2,
    neither in an ack to the new leader nor in the node's own durable view."""
    old_leader = Vote(1, 1, True)
    new_leader = Vote(2, 3, True)
    e = engine(2, vote=old_leader)
    a2, a3 = ent(1, 1, 2, "a"), ent(1, 1, 3, "b")
    assert recv(e, 1, AppendRequest(old_leader, MEMBERSHIP_ID, (a2, a3), 0, 1, 0.0), 0.0) == [
        AppendLog(1, (a2, a3))
    ]
    n2 = ent(2, 3, 2, "c")
    assert recv(e, 3, AppendRequest(new_leader, MEMBERSHIP_ID, (n2,), 0, 1, 0.0), 0.0) == [
        SaveVote(2, new_leader),
        TruncateLog(3, 2),
        AppendLog(4, (n2,)),
    ]
    # The old leader's ack would claim 1-1-3, which the node has already
    # decided to replace: it is withdrawn (simulator seeds 298 and 469 caught
    # it being sent after the replacement was durable).
    assert e.handle(IoFlushed(1), 0.0) == []
    # The node's own record of what is durable does not claim index 2 or 3.
    assert e.io.durable_log_id == MEMBERSHIP_ID
    assert e.handle(IoFlushed(3), 0.0) == []
    assert e.handle(IoFlushed(4), 0.0) == [
        Send(3, AppendResponse(new_leader, True, n2.log_id, 0, n2.log_id, 1, 0.0))
    ]
    assert e.io.durable_log_id == n2.log_id


def test_new_leader_does_not_count_itself_with_a_flush_from_before_truncation() -> None:
    """Bug 12, leader side: a node's log was rewritten (old entries 2..4 at io 1,
    truncated and replaced at io 2-4); the flush of io 1 arrives late. When
    the node then becomes leader, it must count its own copy of its new entry
    as durable only after that entry's own flush."""
    old_leader, new_leader = Vote(1, 2, True), Vote(2, 3, True)
    e = engine(1, vote=old_leader)
    x = (ent(1, 2, 2), ent(1, 2, 3), ent(1, 2, 4))
    assert recv(e, 2, AppendRequest(old_leader, MEMBERSHIP_ID, x, 0, 1, 0.0), 0.0) == [
        AppendLog(1, x)
    ]
    n2 = ent(2, 3, 2)
    recv(e, 3, AppendRequest(new_leader, MEMBERSHIP_ID, (n2,), 0, 1, 0.0), 0.0)
    # No ack for 1-2-4: the truncation withdrew it.
    assert e.handle(IoFlushed(1), 0.0) == []
    assert e.io.durable_log_id == MEMBERSHIP_ID  # not 1-2-4, not 2-3-2
    v3 = Vote(3, 1, False)
    assert e.handle(TriggerElection(), 1.0) == [SaveVote(5, v3)]
    assert e.handle(IoFlushed(5), 1.0) == [
        Send(3, AppendResponse(new_leader, True, n2.log_id, 0, n2.log_id, 1, 0.0)),
        Send(2, VoteRequest(v3, n2.log_id)),
        Send(3, VoteRequest(v3, n2.log_id)),
    ]
    v3c = Vote(3, 1, True)
    b = blank(LogId(3, 1, 3))
    assert recv(e, 2, grant(v3, x[-1].log_id), 1.0) == [
        SaveVote(6, v3c),
        AppendLog(7, (b,)),
        Send(2, AppendRequest(v3c, n2.log_id, (b,), 0, 1, 1.0)),
        Send(3, AppendRequest(v3c, n2.log_id, (b,), 0, 2, 1.0)),
    ]
    # One follower has the blank; the leader's own copy is not durable: 1 of 3.
    assert recv(e, 2, AppendResponse(v3c, True, b.log_id, 0, b.log_id, 1, 1.0), 1.0) == []
    assert e.committed == ZERO_LOG_ID
    assert e.handle(IoFlushed(6), 1.0) == []
    assert e.handle(IoFlushed(7), 1.0) == [Apply((mentry(), n2, b))]


# -- 14 ---------------------------------------------------------------------------


def _two_live_nodes() -> tuple[LoopbackCluster, int, int]:
    """A 3-node cluster with one follower down: every commit needs the other."""
    c = LoopbackCluster([1, 2, 3], config(), seed=5)
    c.initialize(1)
    leader = c.elect()
    c.advance(1.0)
    f, down = (n for n in c.nodes if n != leader)
    c.down.add(down)
    return c, leader, f


def test_lost_append_response_does_not_stall_replication() -> None:
    """Bug 14: after a lost append response the follower must not stay
    'in flight' (or be believed up to date) forever: heartbeats and the
    replication timeout make the leader find out and resend, so the entry
    commits without any new client traffic."""
    c, leader, f = _two_live_nodes()
    c.dropped.add((f, leader))
    c.handle(leader, ClientWrite("w", "x"))
    c.deliver_all()
    c.dropped.clear()
    entry = c.nodes[leader].log[-1].log_id
    assert c.nodes[f].engine.last_log_id == entry  # the follower has it...
    assert c.nodes[leader].engine.committed != entry  # ...the leader does not know
    c.advance(5.0)  # several replication timeouts and many heartbeats
    assert c.leader() == leader
    assert c.nodes[leader].engine.committed == entry
    assert c.nodes[leader].responses["w"].error is None


def test_lost_append_request_does_not_stall_replication() -> None:
    """Bug 14, the request itself lost: the follower never got the entry."""
    c, leader, f = _two_live_nodes()
    c.dropped.add((leader, f))
    c.handle(leader, ClientWrite("w", "x"))
    c.deliver_all()
    c.dropped.clear()
    entry = c.nodes[leader].log[-1].log_id
    assert c.nodes[f].engine.last_log_id != entry
    c.advance(5.0)
    assert c.leader() == leader
    assert c.nodes[f].engine.last_log_id == entry
    assert c.nodes[leader].engine.committed == entry


def test_heartbeat_answer_does_not_hide_a_lost_append() -> None:
    """Bug 14 at engine level: the answer to a heartbeat (which proves only the
    heartbeat's prev) must not retire the unanswered append sent before it;
    within the replication timeout the entry is sent again."""
    e = make_leader(replication_timeout=1.0)
    out = e.handle(ClientWrite("w", "x"), 0.0)
    w = ent(1, 1, 3, "x")
    assert requests_to(out, 2) == [AppendRequest(Vote(1, 1, True), LogId(1, 1, 2), (w,), 2, 3, 0.0)]
    # The append to 2 and its answer are lost; heartbeats are answered.
    resent = False
    now = 0.0
    while now < 3.0 and not resent:
        now += 0.25
        for r in requests_to(e.handle(Wakeup(), now), 2):
            if r.entries:
                resent = True
            else:
                recv(e, 2, ack(r), now)
    assert resent, "the lost entry was never sent again"
    assert now <= 1.0 + 0.25


def test_truncation_withdraws_an_unsent_ack_for_replaced_entries() -> None:
    """Simulator seeds 298/469: a follower's ack to leader A waited for its
    flush; leader B's append then truncated and replaced A's entry at the same
    index. Once everything was durable, the ack went out claiming A's entry,
    which the durable log no longer held. The ack must be withdrawn; the ack
    to B (for the entry that replaced it) goes out after the flush."""
    a_vote, b_vote = Vote(6, 4, True), Vote(7, 1, True)
    e = engine(5, voters=(1, 2, 3, 4, 5), vote=a_vote)
    a2 = ent(6, 4, 2, "from-a")
    assert recv(e, 4, AppendRequest(a_vote, MEMBERSHIP_ID, (a2,), 0, 9, 0.0)) == [
        AppendLog(1, (a2,))
    ]
    b2 = ent(7, 1, 2, "from-b")
    assert recv(e, 1, AppendRequest(b_vote, MEMBERSHIP_ID, (b2,), 0, 3, 0.1), 0.1) == [
        SaveVote(2, b_vote),
        TruncateLog(3, 2),
        AppendLog(4, (b2,)),
    ]
    assert e.handle(IoFlushed(4), 0.2) == [
        Send(1, AppendResponse(b_vote, True, b2.log_id, 0, b2.log_id, 3, 0.1))
    ]


# -- found by review ----------------------------------------------------------


def test_state_machine_never_applies_an_entry_not_durable_in_the_local_log() -> None:
    """A follower used to apply committed entries before its own copy was
    durable; a durable state machine then recorded applied=X, the node
    crashed, and restarted with a log that lacked X but "committed" X — every
    repair from the leader was refused as overwriting a committed entry.
    Now apply waits for local durability, and a contradictory recovered state
    is refused with a clear error instead of wedging replication."""
    lead = Vote(2, 2, True)
    e = engine(3, vote=Vote(1, 1, True), entries=[ent(1, 1, 2, "old")])
    n2, n3 = ent(2, 2, 2, "a"), ent(2, 2, 3, "b")
    out = recv(e, 2, AppendRequest(lead, MEMBERSHIP_ID, (n2, n3), 3, 1, 1.0), 1.0)
    assert Apply((mentry(),)) in out  # only the durable membership entry
    assert all(n2 not in c.entries for c in out if isinstance(c, Apply))
    with pytest.raises(ConfigError) as err:
        Engine(
            3,
            config(),
            RecoveredState(vote=lead, entries=(mentry(), ent(1, 1, 2, "old")), applied=n3.log_id),
            FixedRng(),
        )
    assert err.value.field == "recovered.applied"


def test_without_check_quorum_no_lease_blocks_a_triggered_election() -> None:
    """With check-quorum off, a leader that can send but not hear never steps
    down, and followers that keep hearing it never time out (inherent to Raft:
    that is what check-quorum is for). Voters used to honour its lease as
    well, so even an operator's TriggerElection was refused forever. The
    lease now applies only with check-quorum, as in etcd."""
    for check_quorum in (False, True):
        c = LoopbackCluster([1, 2, 3], config(check_quorum=check_quorum), seed=1)
        c.initialize(1)
        old = c.elect()
        others = [n for n in (1, 2, 3) if n != old]
        for o in others:
            c.dropped.add((o, old))
        c.advance(0.2)
        c.handle(others[0], TriggerElection())
        c.advance(5.0)
        leaders = [n for n in others if c.nodes[n].engine.role is Role.LEADER]
        assert leaders, f"no new leader with check_quorum={check_quorum}"
        c.handle(leaders[0], ClientWrite("w", b"x"))
        c.advance(1.0)
        assert c.nodes[leaders[0]].responses["w"].error is None


def test_restart_after_purge_needs_the_snapshot_and_keeps_the_membership() -> None:
    """Restarting with a purged prefix used to skip the purged entries when
    the state machine was rebuilt from scratch (applied=0), and to forget the
    membership when its entry was purged (the node became a learner forever)."""
    purged = LogId(1, 1, 3)
    entries = (ent(1, 1, 4, "d"),)
    with pytest.raises(ConfigError) as err:
        Engine(1, config(), RecoveredState(entries=entries, last_purged=purged), FixedRng())
    assert err.value.field == "recovered.applied"
    m = (MEMBERSHIP_ID, membership((1, 2, 3)))
    e = Engine(
        1,
        config(),
        RecoveredState(entries=entries, last_purged=purged, applied=purged, membership=m),
        FixedRng(),
    )
    assert e.role is Role.FOLLOWER
    assert e.next_deadline is not None


def test_heartbeat_ack_does_not_wait_behind_a_slow_write() -> None:
    """Every append ack used to wait for all pending writes, heartbeats too:
    one slow fsync on a majority held back every heartbeat answer and
    check-quorum deposed a healthy leader. A heartbeat whose prev is already
    durable is answered at once; the write's own ack still waits."""
    lead = Vote(1, 1, True)
    e = engine(2, vote=lead)
    w2 = ent(1, 1, 2, "slow")
    assert recv(e, 1, AppendRequest(lead, MEMBERSHIP_ID, (w2,), 0, 1, 0.1), 0.1) == [
        AppendLog(1, (w2,))
    ]
    hb = recv(e, 1, AppendRequest(lead, MEMBERSHIP_ID, (), 0, 2, 0.2), 0.2)
    assert hb == [
        Send(1, AppendResponse(lead, True, MEMBERSHIP_ID, 0, w2.log_id, 2, 0.2)),
    ]
    assert flush(e, 0.3) == [Send(1, AppendResponse(lead, True, w2.log_id, 0, w2.log_id, 1, 0.1))]
