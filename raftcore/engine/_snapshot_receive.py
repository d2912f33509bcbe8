"""The follower's side of a snapshot transfer: writing chunks, installing.

Chunks are written in order through the state-machine stream
(``WriteSnapshotChunk``); the follower answers each with the next offset it
wants, so a lost, repeated or reordered chunk costs a resend, never a wrong
snapshot. The chunk that completes it is followed by ``InstallSnapshot``;
only once the state machine reports ``SnapshotInstalled`` does the engine
drop the log the snapshot covers, and only once that purge is durable does
it answer the leader.
"""

from __future__ import annotations

from raftcore.commands import InstallSnapshot, Respond, WriteSnapshotChunk
from raftcore.engine._apply import advance_apply
from raftcore.engine._snapshot import discard_covered_log
from raftcore.engine._state import NodeState
from raftcore.errors import LeadershipLost, LocalProtocolError, RemoteProtocolError
from raftcore.ids import ZERO_LOG_ID, LogId, NodeId, compare_votes
from raftcore.messages import InstallSnapshotRequest, InstallSnapshotResponse
from raftcore.snapshots import SnapshotMeta

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _validate(sender: NodeId, req: InstallSnapshotRequest) -> None:
    v = req.vote
    if not v.committed or v.node_id != sender:
        raise RemoteProtocolError(f"snapshot chunk from {sender} carries a non-leader vote {v!r}")
    meta = req.meta
    sid = meta.snapshot_id
    if not 0 < len(sid) <= 128 or not _ID_CHARS.issuperset(sid):
        # Snapshot stores name files after it: letters, digits, '-' and '_' only.
        raise RemoteProtocolError(f"snapshot from {sender} has an invalid id {sid[:140]!r}")
    lid = meta.last_log_id
    if lid.index < 1 or (lid.term, lid.node_id) > (v.term, v.node_id):
        raise RemoteProtocolError(f"snapshot from {sender} ends at an impossible {lid!r}")
    if meta.membership is None or meta.membership[0].index > lid.index:
        raise RemoteProtocolError(f"snapshot from {sender} has no membership at {lid!r}")
    end = req.offset + len(req.data)
    if req.offset < 0 or end > meta.size or (not req.data and meta.size > 0):
        raise RemoteProtocolError(
            f"snapshot chunk from {sender}: {len(req.data)} bytes at {req.offset} "
            f"do not fit a snapshot of {meta.size}"
        )


def on_install_request(
    s: NodeState, sender: NodeId, req: InstallSnapshotRequest, now: float
) -> None:
    _validate(sender, req)
    if req.vote != s.vote:
        c = compare_votes(req.vote, s.vote, s.config.leader_id_mode)
        if c is None or c < 0:
            s.send(sender, _reply(s, req, 0, False, ZERO_LOG_ID))
            return
    s.follow(req.vote, now)
    if s.installing is not None:
        return  # answered once the install is done
    meta = req.meta
    if meta.last_log_id.index <= s.committed.index:
        # What it covers is committed here already: nothing to install.
        s.send_when_durable(sender, _reply(s, req, meta.size, True, meta.last_log_id))
        return
    r = s.receiving
    expected = r[1] if r is not None and r[0].snapshot_id == meta.snapshot_id else 0
    if req.offset != expected:
        s.send_when_durable(sender, _reply(s, req, expected, False, ZERO_LOG_ID))
        return
    s.emit(WriteSnapshotChunk(meta, req.offset, req.data))
    end = req.offset + len(req.data)
    if end < meta.size:
        s.receiving = (meta, end)
        s.send_when_durable(sender, _reply(s, req, end, False, ZERO_LOG_ID))
        return
    s.receiving = None
    s.installing = (meta, sender, req.seq, req.sent_at)
    s.emit(InstallSnapshot(meta))


def on_snapshot_installed(s: NodeState, meta: SnapshotMeta) -> None:
    inst = s.installing
    if inst is None or inst[0] != meta:
        raise LocalProtocolError(f"SnapshotInstalled({meta!r}) answers no InstallSnapshot")
    s.installing = None
    s.snapshots_installed += 1
    lid = meta.last_log_id
    discard_covered_log(s, meta)
    if s.snapshot is None or lid.index > s.snapshot.last_log_id.index:
        s.snapshot = meta
    if lid.index > s.committed.index:
        s.committed = lid
    if lid.index > s.apply_requested:
        s.apply_requested = lid.index
    if lid.index > s.applied.index:
        s.applied = lid
    pw = s.pending_writes
    for idx in [i for i in pw if i <= lid.index]:
        # Writes of an earlier leadership of this node that the snapshot
        # covers: this node never applies them, so their results are unknown.
        s.emit(Respond(pw.pop(idx), None, LeadershipLost(s.leader_id())))
    advance_apply(s)
    if s.self_voter:
        s.commit_advanced()
    _, leader, seq, sent_at = inst
    reply = InstallSnapshotResponse(s.vote, meta.snapshot_id, meta.size, True, lid, seq, sent_at)
    s.send_when_durable(leader, reply)


def _reply(
    s: NodeState, req: InstallSnapshotRequest, next_offset: int, done: bool, matching: LogId
) -> InstallSnapshotResponse:
    return InstallSnapshotResponse(
        s.vote, req.meta.snapshot_id, next_offset, done, matching, req.seq, req.sent_at
    )
