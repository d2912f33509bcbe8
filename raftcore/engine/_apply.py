"""Handing committed entries to the state machine, asking it for snapshots,
and answering clients."""

from __future__ import annotations

from typing import Any

from raftcore.commands import Apply, BuildSnapshot, Respond
from raftcore.engine._state import NodeState
from raftcore.errors import LocalProtocolError
from raftcore.ids import LogId


def advance_apply(s: NodeState) -> None:
    """Hand newly committed entries to the state machine; snapshot by policy."""
    # Only entries durable here: a durable state machine must never have
    # applied an entry that a crash can take out of this node's log.
    target = min(s.committed.index, s.io.durable_log_id.index)
    start = s.apply_requested + 1
    if target < start or s.installing is not None:
        # (While a snapshot installs, entries wait: they apply on top of it.)
        return
    start = max(start, s.log.first_index)
    s.apply_requested = target
    if start > target:
        return
    s.emit(Apply(tuple(s.log.entries(start, target + 1))))
    every = s.config.snapshot_every
    if every is not None and s.building is None:
        snap = s.snapshot
        if target - (0 if snap is None else snap.last_log_id.index) >= every:
            build_snapshot(s)


def snapshot_index(s: NodeState) -> int:
    snap = s.snapshot
    return 0 if snap is None else snap.last_log_id.index


def build_snapshot(s: NodeState) -> None:
    """Ask the state machine for a snapshot of everything handed to it so far."""
    idx = s.apply_requested
    if s.building is not None or s.installing is not None or idx <= snapshot_index(s):
        return
    lid = s.log.log_id_at(idx)
    assert lid is not None  # applied entries are never purged past the snapshot
    s.building = lid
    s.emit(BuildSnapshot(lid, s.membership_at(idx)))


def on_applied(s: NodeState, upto: LogId, results: tuple[tuple[int, Any], ...]) -> None:
    if upto.index > s.apply_requested:
        raise LocalProtocolError(
            f"Applied({upto!r}) reports more than was handed out (up to index {s.apply_requested})"
        )
    if upto.index <= s.applied.index:
        return
    s.applied = upto
    pw = s.pending_writes
    if not pw:
        return
    get = dict(results).get
    if next(reversed(pw)) <= upto.index:
        # Every waiting write is answered (the usual case): no per-write pops.
        new = tuple.__new__
        s.out.extend([new(Respond, (rid, get(idx), None)) for idx, rid in pw.items()])
        pw.clear()
        return
    while pw:
        idx = next(iter(pw))
        if idx > upto.index:
            break
        rid = pw.pop(idx)
        s.emit(Respond(rid, get(idx)))
