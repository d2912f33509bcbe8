"""Snapshots, purge and snapshot streaming (docs/snapshots.md).

Each test asserts the exact commands of one event: when a snapshot is
built, what is purged and what is kept, how chunks flow within the window
and recover from loss, duplication, a newer snapshot and a leadership
change, and how a follower installs one (Raft §7).
"""

from __future__ import annotations

import pytest
from helpers import (
    MEMBERSHIP_ID,
    FixedRng,
    ack,
    config,
    engine,
    ent,
    flush,
    make_leader,
    membership,
    recv,
    requests_to,
)

from raftcore import (
    AppendLog,
    AppendRequest,
    AppendResponse,
    Applied,
    Apply,
    BuildSnapshot,
    ClientWriteBatch,
    Engine,
    Entry,
    InstallSnapshot,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    LocalProtocolError,
    LogId,
    PurgeLog,
    RecoveredState,
    RemoteProtocolError,
    Role,
    SaveVote,
    Send,
    SendSnapshotChunk,
    SnapshotBuilt,
    SnapshotInstalled,
    SnapshotMeta,
    TriggerSnapshot,
    TruncateLog,
    Vote,
    Wakeup,
    WriteSnapshotChunk,
)
from raftcore.entries import membership_entry
from raftcore.membership import Membership
from raftcore.testing.loopback import LoopbackCluster

L = Vote(1, 1, True)  # the leader's vote in make_leader()
M = (MEMBERSHIP_ID, membership((1, 2, 3)))


def w(index: int, term: int = 1, node: int = 1) -> Entry:
    return ent(term, node, index, f"v{index}")


def write_and_commit(e: Engine, n: int, now: float = 1.0, acks: tuple[int, ...] = (2, 3)) -> None:
    """Leader: write ``n`` entries, the followers ``acks`` acknowledge, all applied."""
    out = e.handle(ClientWriteBatch(tuple((f"r{i}", i) for i in range(n))), now)
    flush(e, now)
    for s in out:
        if isinstance(s, Send) and isinstance(s.message, AppendRequest) and s.to in acks:
            recv(e, s.to, ack(s.message), now)
    e.handle(Applied(e.committed), now)


def snap(
    lid: LogId, sid: str = "s1", size: int = 10, m: tuple[LogId, Membership] | None = M
) -> SnapshotMeta:
    return SnapshotMeta(lid, m, sid, size)


# -- policy and trigger --------------------------------------------------------------


def test_snapshot_every_n_applied_entries_asks_the_state_machine() -> None:
    """Once ``snapshot_every`` entries are handed to the state machine since
    the last snapshot, a BuildSnapshot follows the Apply in the same stream,
    naming the last entry handed over and the membership there."""
    e = make_leader(snapshot_every=4)  # index 2 applied: below the policy
    out = e.handle(ClientWriteBatch((("a", "x"), ("b", "y"))), 1.0)
    for s in out:
        if isinstance(s, Send) and isinstance(s.message, AppendRequest):
            recv(e, s.to, ack(s.message), 1.0)
    assert flush(e, 1.0) == [
        Apply((ent(1, 1, 3, "x"), ent(1, 1, 4, "y"))),
        BuildSnapshot(LogId(1, 1, 4), M),
    ]
    # One build at a time: more applied entries ask for nothing until it is done.
    write_and_commit(e, 5)
    assert e.building == LogId(1, 1, 4)


def test_no_snapshot_policy_builds_only_on_trigger() -> None:
    e = make_leader(snapshot_every=None)
    write_and_commit(e, 20)
    assert e.building is None
    assert e.handle(TriggerSnapshot(), 2.0) == [BuildSnapshot(LogId(1, 1, 22), M)]
    assert e.handle(TriggerSnapshot(), 2.0) == []  # one is being built
    meta = snap(LogId(1, 1, 22))
    e.handle(SnapshotBuilt(meta), 2.0)
    assert e.handle(TriggerSnapshot(), 2.0) == []  # the latest already covers everything


def test_snapshot_built_for_nothing_asked_is_refused() -> None:
    e = make_leader(snapshot_every=None)
    with pytest.raises(LocalProtocolError, match="answers no BuildSnapshot"):
        e.handle(SnapshotBuilt(snap(LogId(1, 1, 2))), 1.0)


# -- purge ---------------------------------------------------------------------------


def test_follower_purges_up_to_the_snapshot_minus_purge_keep() -> None:
    entries = [w(i) for i in range(2, 11)]
    e = engine(2, entries=entries, committed=LogId(1, 1, 10), purge_keep=3, snapshot_every=None)
    e.handle(Applied(LogId(1, 1, 10)), 0.0)
    assert e.handle(TriggerSnapshot(), 0.0) == [BuildSnapshot(LogId(1, 1, 10), M)]
    io = e.io.issued
    assert e.handle(SnapshotBuilt(snap(LogId(1, 1, 10))), 0.0) == [PurgeLog(io + 1, LogId(1, 1, 7))]
    mt = e.metrics()
    assert (mt.snapshot, mt.last_purged, mt.snapshots_built) == (LogId(1, 1, 10), LogId(1, 1, 7), 1)
    assert e.log.first_index == 8 and len(e.log) == 3


def test_leader_keeps_what_a_follower_in_the_window_needs() -> None:
    """Follower 3 matches index 2 only, 8 behind (within the lag threshold):
    the purge stops at 2. Once it is further behind than the threshold, it
    no longer holds the purge back (it will get the snapshot)."""
    e = make_leader(snapshot_every=None, purge_keep=0, snapshot_lag_threshold=8)
    out = e.handle(ClientWriteBatch(tuple((f"r{i}", i) for i in range(8))), 1.0)
    flush(e, 1.0)
    for r in requests_to(out, 2):
        recv(e, 2, ack(r), 1.0)
    e.handle(Applied(e.committed), 1.0)
    assert e.committed == LogId(1, 1, 10)
    e.handle(TriggerSnapshot(), 1.0)
    io = e.io.issued
    assert e.handle(SnapshotBuilt(snap(LogId(1, 1, 10))), 1.0) == [PurgeLog(io + 1, LogId(1, 1, 2))]
    # One more entry puts follower 3 nine behind: the next tick purges the rest.
    out = e.handle(ClientWriteBatch((("z", "z"),)), 1.0)
    flush(e, 1.0)
    recv(e, 2, ack(requests_to(out, 2)[0]), 1.0)
    cmds = e.handle(Wakeup(), 1.25)
    assert [c for c in cmds if isinstance(c, PurgeLog)] == [PurgeLog(e.io.issued, LogId(1, 1, 10))]


# -- streaming: the leader's side ----------------------------------------------------------


def lagging_leader(size: int = 25, **kw: object) -> Engine:
    """A leader whose log is purged up to 10 (snapshot s1 of ``size`` bytes),
    with follower 2 up to date and follower 3 matching index 2 only (not
    holding back the purge: the lag threshold is 0)."""
    c = config(
        **{
            "snapshot_every": None,
            "purge_keep": 0,
            "snapshot_lag_threshold": 0,
            "snapshot_chunk_size": 10,
            **kw,
        }
    )
    e = make_leader(cfg=c)
    write_and_commit(e, 8, acks=(2,))
    e.handle(TriggerSnapshot(), 1.0)
    e.handle(SnapshotBuilt(snap(LogId(1, 1, 10), size=size)), 1.0)
    assert e.log.last_purged == LogId(1, 1, 10)
    return e


def conflict(to_seq: int, hint: int, now: float = 1.0) -> AppendResponse:
    return AppendResponse(L, False, LogId(0, 0, 0), hint, LogId(0, 0, 0), to_seq, now)


def chunk(meta: SnapshotMeta, offset: int, seq: int, now: float = 1.0) -> InstallSnapshotRequest:
    return InstallSnapshotRequest(L, meta, offset, b"", seq, now)


def test_a_follower_behind_the_purge_gets_the_snapshot_in_chunks_within_the_window() -> None:
    e = lagging_leader(snapshot_window=2)
    meta = e.snapshot
    assert meta is not None
    # Follower 3 answers the pending append with a conflict at 3: index 2 is purged.
    seq = e.seq
    out = recv(e, 3, conflict(seq, 3), 1.5)
    assert out == [
        SendSnapshotChunk(3, chunk(meta, 0, seq + 1, 1.5), 10),
        SendSnapshotChunk(3, chunk(meta, 10, seq + 2, 1.5), 10),
    ]
    assert e.metrics().followers[3].snapshot_offset == 0
    # The first chunk acknowledged: the window lets the last one go.
    resp = InstallSnapshotResponse(L, "s1", 10, False, LogId(0, 0, 0), seq + 1, 1.5)
    assert recv(e, 3, resp, 1.5) == [SendSnapshotChunk(3, chunk(meta, 20, seq + 3, 1.5), 5)]
    # Installed: replication continues with entries after the snapshot.
    done = InstallSnapshotResponse(L, "s1", 25, True, LogId(1, 1, 10), seq + 3, 1.5)
    assert recv(e, 3, done, 1.5) == []  # nothing after index 10 yet: probing at 11
    assert e.metrics().followers[3].matching == LogId(1, 1, 10)
    assert e.metrics().followers[3].snapshot_offset is None


def test_a_lost_chunk_is_resent_from_the_offset_the_follower_asks_for() -> None:
    e = lagging_leader(size=40, snapshot_window=3)
    meta = e.snapshot
    assert meta is not None
    seq = e.seq
    recv(e, 3, conflict(seq, 3), 1.5)  # chunks 0, 10, 20 in flight
    # Chunk 0 was lost: the answer to chunk 10 asks for 0 again.
    gap = InstallSnapshotResponse(L, "s1", 0, False, LogId(0, 0, 0), seq + 2, 1.5)
    assert recv(e, 3, gap, 1.5) == [
        SendSnapshotChunk(3, chunk(meta, 0, seq + 4, 1.5), 10),
        SendSnapshotChunk(3, chunk(meta, 10, seq + 5, 1.5), 10),
        SendSnapshotChunk(3, chunk(meta, 20, seq + 6, 1.5), 10),
    ]
    # The answer to chunk 20 of the first round (sent before the rewind) asks
    # for 0 too: it rewinds nothing again.
    stale = InstallSnapshotResponse(L, "s1", 0, False, LogId(0, 0, 0), seq + 3, 1.5)
    assert recv(e, 3, stale, 1.5) == []


def test_an_unanswered_chunk_is_resent_after_the_replication_timeout() -> None:
    e = lagging_leader(snapshot_window=1, replication_timeout=0.5)
    meta = e.snapshot
    assert meta is not None
    seq = e.seq
    recv(e, 3, conflict(seq, 3), 1.5)
    resp = InstallSnapshotResponse(L, "s1", 10, False, LogId(0, 0, 0), seq + 1, 1.5)
    assert recv(e, 3, resp, 1.5) == [SendSnapshotChunk(3, chunk(meta, 10, seq + 2, 1.5), 10)]
    # Chunk 10 is never answered: one replication timeout later it goes
    # again (after follower 2's heartbeat, seq + 3).
    cmds = e.handle(Wakeup(), 2.0)
    assert [c for c in cmds if isinstance(c, SendSnapshotChunk)] == [
        SendSnapshotChunk(3, chunk(meta, 10, seq + 4, 2.0), 10)
    ]


def test_a_newer_snapshot_restarts_the_transfer_from_offset_zero() -> None:
    e = lagging_leader(snapshot_window=1, replication_timeout=0.5)
    seq = e.seq
    recv(e, 3, conflict(seq, 3), 1.5)
    write_and_commit(e, 2, 1.5, acks=(2,))
    e.handle(TriggerSnapshot(), 1.5)
    newer = snap(LogId(1, 1, 12), "s2", 7)
    io, s = e.io.issued, e.seq
    # s1 is gone from the store: s2 goes from its first byte.
    assert e.handle(SnapshotBuilt(newer), 1.5) == [
        SendSnapshotChunk(3, chunk(newer, 0, s + 1, 1.5), 7),
        PurgeLog(io + 1, LogId(1, 1, 12)),
    ]
    # The answer to s1's first chunk is about a transfer that is over.
    old = InstallSnapshotResponse(L, "s1", 10, False, LogId(0, 0, 0), seq + 1, 1.5)
    assert recv(e, 3, old, 1.5) == []


def test_losing_leadership_abandons_the_transfer() -> None:
    e = lagging_leader()
    recv(e, 3, conflict(e.seq, 3), 1.5)
    resp = InstallSnapshotResponse(Vote(2, 3, False), "s1", 10, False, LogId(0, 0, 0), 1, 1.5)
    assert recv(e, 3, resp, 1.5) == [SaveVote(e.io.issued, Vote(2, 3, False))]
    assert e.leader is None
    assert [c for c in e.handle(Wakeup(), 5.0) if isinstance(c, SendSnapshotChunk)] == []


def test_a_done_answer_that_claims_past_the_commit_index_is_refused() -> None:
    e = lagging_leader()
    recv(e, 3, conflict(e.seq, 3), 1.5)
    bad = InstallSnapshotResponse(L, "s1", 25, True, LogId(1, 1, 99), 1, 1.5)
    with pytest.raises(RemoteProtocolError, match="past the commit index"):
        recv(e, 3, bad, 1.5)


# -- streaming: the follower's side ----------------------------------------------------


def follower(vote: Vote = L) -> Engine:
    """Follower 2 with log [membership, 1-1-2 .. 1-1-4], committed and applied 2."""
    entries = [w(2), w(3), w(4)]
    e = engine(2, entries=entries, committed=LogId(1, 1, 2), vote=vote, snapshot_every=None)
    e.handle(Wakeup(), 0.0)  # hands the committed entries to the state machine
    e.handle(Applied(LogId(1, 1, 2)), 0.0)
    return e


def data_chunk(meta: SnapshotMeta, offset: int, data: bytes, seq: int) -> InstallSnapshotRequest:
    return InstallSnapshotRequest(L, meta, offset, data, seq, 1.0)


NONE = LogId(0, 0, 0)


def answer(sid: str, nxt: int, seq: int, done: bool = False, m: LogId = NONE) -> Send:
    return Send(1, InstallSnapshotResponse(L, sid, nxt, done, m, seq, 1.0))


def test_follower_writes_chunks_in_order_and_answers_the_next_offset() -> None:
    e = follower()
    meta = snap(LogId(1, 1, 8), size=6)
    assert recv(e, 1, data_chunk(meta, 0, b"abc", 7), 1.0) == [
        WriteSnapshotChunk(meta, 0, b"abc"),
        answer("s1", 3, 7),
    ]
    # A repeated chunk and a chunk past a gap both get "send from 3".
    assert recv(e, 1, data_chunk(meta, 0, b"abc", 8), 1.0) == [answer("s1", 3, 8)]
    assert recv(e, 1, data_chunk(meta, 5, b"f", 9), 1.0) == [answer("s1", 3, 9)]
    # The last chunk: written, then installed; no answer until installed.
    assert recv(e, 1, data_chunk(meta, 3, b"def", 10), 1.0) == [
        WriteSnapshotChunk(meta, 3, b"def"),
        InstallSnapshot(meta),
    ]
    # Chunks of it that arrive while it installs are not answered.
    assert recv(e, 1, data_chunk(meta, 3, b"def", 11), 1.0) == []


def test_install_discards_a_log_that_does_not_hold_the_snapshots_last_entry() -> None:
    """Raft §7: the follower's entry 4 is not the snapshot's; the whole log
    goes (entries after the snapshot index too), the membership is the
    snapshot's, and the answer waits for the purge to be durable."""
    e = follower()
    nodes = {n: f"addr-{n}" for n in (1, 2, 3, 4)}
    joint = Membership((frozenset({1, 2, 3}), frozenset({2, 3, 4})), nodes)
    meta = snap(LogId(2, 3, 3), size=1, m=(LogId(2, 3, 3), joint))
    flush(e)
    recv(e, 3, InstallSnapshotRequest(Vote(2, 3, True), meta, 0, b"x", 5, 1.0), 1.0)
    io = e.io.issued
    out = e.handle(SnapshotInstalled(meta), 1.0)
    assert out == [TruncateLog(io + 1, 4), PurgeLog(io + 2, LogId(2, 3, 3))]
    assert e.log.last_log_id() == LogId(2, 3, 3) and len(e.log) == 0
    assert e.membership == joint
    mt = e.metrics()
    assert (mt.committed, mt.applied, mt.snapshot) == (LogId(2, 3, 3),) * 3
    assert flush(e, 1.0) == [
        Send(3, InstallSnapshotResponse(Vote(2, 3, True), "s1", 1, True, LogId(2, 3, 3), 5, 1.0))
    ]


def test_an_ack_waiting_for_its_flush_is_dropped_when_an_install_discards_its_entry() -> None:
    """Regression (simulator seed 308): the follower acknowledged entry 5 of
    an old leader (the ack waits for the append's flush), then installed a
    newer leader's snapshot of index 6 whose log has another entry at 5.
    The old ack must never leave: the log no longer holds that entry."""
    e = follower()
    flush(e)
    out = recv(e, 1, AppendRequest(L, LogId(1, 1, 4), (w(5),), 2, 3, 1.0), 1.0)
    assert out == [AppendLog(e.io.issued, (w(5),))]  # its ack is gated on the flush
    new = Vote(2, 3, True)
    meta = snap(LogId(2, 3, 6), size=1)
    recv(e, 3, InstallSnapshotRequest(new, meta, 0, b"x", 9, 1.0), 1.0)
    e.handle(SnapshotInstalled(meta), 1.0)
    assert flush(e, 1.0) == [
        Send(3, InstallSnapshotResponse(new, "s1", 1, True, LogId(2, 3, 6), 9, 1.0))
    ]


def test_install_keeps_the_entries_after_a_matching_last_entry() -> None:
    e = follower()
    meta = snap(LogId(1, 1, 3), size=1)
    flush(e)
    recv(e, 1, data_chunk(meta, 0, b"x", 5), 1.0)
    io = e.io.issued
    assert e.handle(SnapshotInstalled(meta), 1.0) == [PurgeLog(io + 1, LogId(1, 1, 3))]
    assert e.log.first_index == 4 and e.log.last_log_id() == LogId(1, 1, 4)
    assert flush(e, 1.0) == [answer("s1", 1, 5, True, LogId(1, 1, 3))]


def test_a_snapshot_this_follower_has_committed_already_needs_no_install() -> None:
    e = follower()
    flush(e)
    meta = snap(LogId(1, 1, 2), size=100)
    assert recv(e, 1, data_chunk(meta, 0, b"x" * 10, 5), 1.0) == [
        answer("s1", 100, 5, True, LogId(1, 1, 2))
    ]


def test_entries_committed_while_installing_apply_on_top_of_the_snapshot() -> None:
    """An append commits entries 2..4 while the snapshot of index 3 installs:
    nothing is applied until the install is done, then only entry 4."""
    e = follower()
    flush(e)
    meta = snap(LogId(1, 1, 3), size=1)
    recv(e, 1, data_chunk(meta, 0, b"x", 5), 1.0)
    out = recv(e, 1, AppendRequest(L, LogId(1, 1, 4), (), 4, 6, 1.0), 1.0)
    assert not [c for c in out if isinstance(c, Apply)]
    out = e.handle(SnapshotInstalled(meta), 1.0)
    assert [c for c in out if isinstance(c, Apply)] == [Apply((w(4),))]


def test_a_chunk_of_an_impossible_snapshot_is_refused() -> None:
    e = follower()
    bad = snap(LogId(1, 1, 8), size=2, m=None)
    with pytest.raises(RemoteProtocolError, match="no membership"):
        recv(e, 1, data_chunk(bad, 0, b"x", 5), 1.0)
    with pytest.raises(RemoteProtocolError, match="invalid id"):
        recv(e, 1, data_chunk(snap(LogId(1, 1, 8), "../../etc/x"), 0, b"x", 5), 1.0)
    with pytest.raises(RemoteProtocolError, match="do not fit"):
        recv(e, 1, data_chunk(snap(LogId(1, 1, 8), size=2), 1, b"xy", 5), 1.0)


def test_a_stale_leaders_chunk_is_answered_with_the_newer_vote() -> None:
    e = follower(vote=Vote(3, 3, True))
    meta = snap(LogId(1, 1, 8), size=2)
    assert recv(e, 1, data_chunk(meta, 0, b"x", 5), 1.0) == [
        Send(1, InstallSnapshotResponse(Vote(3, 3, True), "s1", 0, False, LogId(0, 0, 0), 5, 1.0))
    ]


# -- restart -------------------------------------------------------------------------


def test_restart_finishes_a_purge_a_crash_interrupted() -> None:
    """The snapshot of index 3 is durable, the log's purge never happened and
    its entry 3 is not the snapshot's (a crash in the middle of an install):
    the engine discards the log on start."""
    log = (membership_entry(MEMBERSHIP_ID, membership((1, 2, 3))), w(2), w(3), w(4))
    meta = snap(LogId(2, 3, 3), size=1)
    rec = RecoveredState(entries=log, applied=LogId(2, 3, 3), snapshot=meta)
    e = Engine(2, config(snapshot_every=None), rec, FixedRng())
    assert e.handle(Wakeup(), 0.0) == [TruncateLog(1, 4), PurgeLog(2, LogId(2, 3, 3))]
    assert (e.committed, e.applied, e.log.last_log_id()) == (LogId(2, 3, 3),) * 3


def test_restart_with_a_log_that_continues_the_snapshot_keeps_it() -> None:
    log = (membership_entry(MEMBERSHIP_ID, membership((1, 2, 3))), w(2), w(3), w(4))
    meta = snap(LogId(1, 1, 3), size=1)
    rec = RecoveredState(entries=log, applied=LogId(1, 1, 3), snapshot=meta)
    e = Engine(2, config(snapshot_every=None), rec, FixedRng())
    assert e.handle(Wakeup(), 0.0) == []
    assert e.committed == LogId(1, 1, 3) and e.log.last_log_id() == LogId(1, 1, 4)


# -- whole clusters (instant storage, FIFO delivery) ---------------------------------------


def test_a_node_that_was_down_catches_up_through_a_snapshot_then_entries() -> None:
    cfg = config(snapshot_every=10, purge_keep=2, snapshot_lag_threshold=5, snapshot_chunk_size=64)
    c = LoopbackCluster([1, 2, 3], cfg, seed=4)
    c.initialize(1)
    leader = c.elect()
    down = next(n for n in (1, 2, 3) if n != leader)
    c.down.add(down)
    for i in range(60):
        c.handle(leader, ClientWriteBatch(((f"w{i}", i),)))
        c.advance(0.01)
    lead = c.nodes[leader]
    assert lead.engine.log.last_purged.index > 40
    c.down.discard(down)
    c.advance(3.0)
    back = c.nodes[down]
    assert back.engine.metrics().snapshots_installed == 1
    assert [e.log_id for e in back.applied] == [e.log_id for e in lead.applied]
    # It restarts from its snapshot and the log after it.
    back.restart(c.now)
    c.advance(1.0)
    assert [e.log_id for e in back.applied] == [e.log_id for e in lead.applied]
    assert back.engine.log.first_index > 1


def test_restart_purges_what_its_snapshot_covers_beyond_purge_keep() -> None:
    """The last run stopped before the purge that followed its snapshot."""
    log = (membership_entry(MEMBERSHIP_ID, membership((1, 2, 3))), *[w(i) for i in range(2, 9)])
    meta = snap(LogId(1, 1, 6), size=1)
    rec = RecoveredState(entries=log, applied=LogId(1, 1, 6), snapshot=meta)
    e = Engine(2, config(snapshot_every=None, purge_keep=2), rec, FixedRng())
    assert e.handle(Wakeup(), 0.0) == [PurgeLog(1, LogId(1, 1, 4))]
    assert e.log.first_index == 5


def test_a_snapshot_installed_during_a_membership_change_takes_the_membership_in_force() -> None:
    """The follower holds the joint entry of a change (index 3, not
    committed) and the final membership after it (index 5). A snapshot of
    index 4 covers the joint entry: it is adopted with the snapshot, and the
    entry after it (the final membership, kept with the suffix) stays the
    one in effect. A snapshot past both makes its own membership the one in
    effect."""
    joint = Membership(
        (frozenset({1, 2, 3}), frozenset({1, 2, 4})), {n: f"addr-{n}" for n in (1, 2, 3, 4)}
    )
    final = membership((1, 2, 4))
    entries = [
        w(2),
        membership_entry(LogId(1, 1, 3), joint),
        w(4),
        membership_entry(LogId(1, 1, 5), final),
    ]
    e = engine(2, entries=entries, committed=LogId(1, 1, 2), vote=L, snapshot_every=None)
    e.handle(Wakeup(), 0.0)
    assert e.membership == final
    meta = snap(LogId(1, 1, 4), size=1, m=(LogId(1, 1, 3), joint))
    recv(e, 1, data_chunk(meta, 0, b"x", 5), 1.0)
    io = e.io.issued
    assert e.handle(SnapshotInstalled(meta), 1.0) == [PurgeLog(io + 1, LogId(1, 1, 4))]
    assert e.memberships == [(LogId(1, 1, 3), joint), (LogId(1, 1, 5), final)]
    assert e.membership == final
    # A second snapshot, past everything this follower holds: its own membership.
    # (It removed this node: it is no longer a voter.)
    gone = membership((1, 4))
    later = snap(LogId(2, 1, 9), "s2", size=1, m=(LogId(2, 1, 7), gone))
    recv(e, 1, InstallSnapshotRequest(Vote(2, 1, True), later, 0, b"y", 6, 1.0), 1.0)
    e.handle(SnapshotInstalled(later), 1.0)
    assert e.memberships == [(LogId(2, 1, 7), gone)]
    assert e.membership == gone and e.role is Role.LEARNER
