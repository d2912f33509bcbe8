"""Snapshots on every node: a finished build, purging the log it covers,
and a restart whose snapshot is newer than its log's purge point.

The leader's streaming is in ``_snapshot_send``; the follower's receiving
and installing in ``_snapshot_receive`` (docs/snapshots.md).
"""

from __future__ import annotations

from raftcore.engine._progress import SnapshotSend
from raftcore.engine._snapshot_send import send_chunks
from raftcore.engine._state import NodeState
from raftcore.errors import LocalProtocolError
from raftcore.snapshots import SnapshotMeta


def on_snapshot_built(s: NodeState, meta: SnapshotMeta) -> None:
    if s.building is None or meta.last_log_id != s.building:
        raise LocalProtocolError(
            f"SnapshotBuilt({meta.last_log_id!r}) answers no BuildSnapshot "
            f"(building: {s.building!r})"
        )
    s.building = None
    s.snapshots_built += 1
    if s.snapshot is not None and meta.last_log_id.index <= s.snapshot.last_log_id.index:
        return  # one installed meanwhile covers as much
    s.snapshot = meta
    ld = s.leader
    if ld is not None:
        # The older snapshot is gone from the store: transfers start over
        # from the new one (the follower restarts at offset 0 for a new id).
        for n, p in ld.progress.items():
            if p.snapshot is not None:
                p.snapshot = SnapshotSend(meta)
                send_chunks(s, n, p, s.last_now)
    purge_if_due(s)


def purge_if_due(s: NodeState, upto: int | None = None) -> None:
    """Purge what the latest snapshot covers, keeping ``purge_keep`` entries
    (or up to ``upto``, when asked to: ``TriggerPurge``).

    A leader also keeps every entry a follower in the replication window
    (at most ``snapshot_lag_threshold`` behind) still needs; one further
    behind, or already receiving a snapshot, does not hold the purge back.
    """
    snap = s.snapshot
    if snap is None:
        return
    log = s.log
    c = s.config
    last = snap.last_log_id.index
    target = last - c.purge_keep if upto is None else min(upto, last)
    if target <= log.last_purged.index:
        return
    ld = s.leader
    if ld is not None:
        end = log.last_index
        for p in ld.progress.values():
            m = p.matching.index
            if p.snapshot is None and end - m <= c.snapshot_lag_threshold and m < target:
                target = m
        if target <= log.last_purged.index:
            return
    lid = log.log_id_at(target)
    assert lid is not None
    s.purge(lid)


def discard_covered_log(s: NodeState, meta: SnapshotMeta) -> None:
    """The state machine is snapshot ``meta``: drop the log it covers.

    If the log holds the snapshot's last log id, the entries after it stay
    (Raft §7); otherwise the whole log goes. The snapshot's membership is
    the one in effect at its last log id.
    """
    lid = meta.last_log_id
    idx = lid.index
    log = s.log
    if idx <= log.last_purged.index:
        return
    if log.log_id_at(idx) != lid:
        # The log does not continue the snapshot: none of it is kept, and no
        # acknowledgement of it may leave any more.
        s.drop_gated_acks(log.first_index)
        if log.last_index > idx:
            s.truncate(idx + 1)
    s.purge(lid)
    assert meta.membership is not None
    s.memberships = [meta.membership] + [m for m in s.memberships if m[0].index > idx]
    s.membership_changed()


def recover_snapshot(s: NodeState) -> None:
    """On start: a snapshot newer than the log's purge point (a crash after
    the snapshot became durable and before its purge, or in the middle of an
    install) gets its purge now, unless the log continues it."""
    snap = s.snapshot
    if snap is None or snap.last_log_id.index <= s.log.last_purged.index:
        return
    if s.log.log_id_at(snap.last_log_id.index) != snap.last_log_id:
        discard_covered_log(s, snap)
