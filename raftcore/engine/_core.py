"""``Engine``: the public face of the state machine."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from raftcore.commands import Command, Respond, Stopped
from raftcore.config import Config
from raftcore.engine import _election as election
from raftcore.engine import _follower as follower
from raftcore.engine import _leader as leader
from raftcore.engine import _membership as membership
from raftcore.engine import _reads as reads
from raftcore.engine import _snapshot_receive as snapshot_receive
from raftcore.engine import _transfer as transfer
from raftcore.engine._apply import advance_apply, build_snapshot, on_applied
from raftcore.engine._io import IoProgress
from raftcore.engine._log import Log
from raftcore.engine._replication import heartbeat_all
from raftcore.engine._roles import RemoteRead
from raftcore.engine._snapshot import on_snapshot_built, purge_if_due, recover_snapshot
from raftcore.engine._state import NEVER, NodeState, Rng
from raftcore.entries import EntryKind, membership_entry
from raftcore.errors import ConfigError, LocalProtocolError, NodeStopped, TransferInProgress
from raftcore.events import (
    Applied,
    ChangeMembership,
    ClientRead,
    ClientWrite,
    ClientWriteBatch,
    Event,
    Initialize,
    IoFlushed,
    MessageReceived,
    SnapshotBuilt,
    SnapshotInstalled,
    StorageFailed,
    TransferLeader,
    TriggerElection,
    TriggerHeartbeat,
    TriggerPurge,
    TriggerSnapshot,
    Wakeup,
)
from raftcore.ids import INITIAL_VOTE, LogId, check_node_id
from raftcore.membership import Membership
from raftcore.messages import (
    AppendRequest,
    AppendResponse,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    ReadIndexRequest,
    ReadIndexResponse,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from raftcore.quorum import check_safe
from raftcore.state import FollowerProgress, Metrics, RecoveredState, Role


def _check_recovered(rec: RecoveredState, log: Log) -> None:
    """Refuse a recovered state whose parts contradict each other.

    Starting from one would either skip entries or wedge replication (a
    "committed" entry the leader must overwrite), so it is an error to fix in
    the storage, not something to run with. (``log`` is the log after a
    newer snapshot's purge, which ``recover_snapshot`` finished.)
    """
    purged = log.last_purged.index
    if rec.applied.index < purged:
        raise ConfigError(
            "recovered.applied",
            f"{rec.applied!r} is before the purged prefix {log.last_purged!r}: "
            "install the snapshot that covers it first",
        )
    if rec.applied.index > purged and log.log_id_at(rec.applied.index) != rec.applied:
        raise ConfigError("recovered.applied", f"{rec.applied!r} is not in the recovered log")
    if rec.membership is not None and rec.membership[0].index > rec.last_purged.index:
        raise ConfigError("recovered.membership", "must be the membership at or before last_purged")


class Engine(NodeState):
    """A Raft node as a pure state machine.

    ``handle(event, now)`` returns the commands to execute, in order;
    ``next_deadline`` is the earliest ``now`` at which the engine wants a
    ``Wakeup``. Same recovered state, events and rng: same commands.

    The state is ``NodeState``'s; each event goes to the handler function of
    its concern (``_election``, ``_follower``, ``_leader``,
    ``_membership``, ``_apply``), leader-only handlers only through the ``LeaderState``.
    """

    # ``node_id``, ``config`` and ``event`` are typed ``object`` on purpose: a
    # compiled (mypyc) build checks annotated argument types at the boundary
    # and would raise a bare TypeError before the ConfigError or
    # LocalProtocolError that names the problem.
    def __init__(
        self,
        node_id: object,
        config: object,
        recovered: RecoveredState | None = None,
        rng: Rng | None = None,
        *,
        now: float = 0.0,
    ) -> None:
        node_id = check_node_id(node_id, "node_id")
        if not isinstance(config, Config):
            raise ConfigError("config", f"must be a raftcore.Config, got {type(config).__name__}")
        if rng is None or not callable(getattr(rng, "uniform", None)):
            raise ConfigError("rng", "must provide uniform(a, b), e.g. random.Random(seed)")
        rec = recovered if recovered is not None else RecoveredState()
        self.node_id = node_id
        self.config = config
        self.rng = rng
        try:
            self.log = Log(rec.entries, rec.last_purged)
        except ValueError as e:
            raise ConfigError("recovered.entries", str(e)) from None
        self.vote = rec.vote
        self.io = IoProgress(rec.vote, self.log.last_log_id())
        self.role = Role.LEARNER
        self.applied = rec.applied
        self.memberships = [] if rec.membership is None else [rec.membership]
        self.memberships += [
            (e.log_id, e.data) for e in self.log.all_entries() if e.kind is EntryKind.MEMBERSHIP
        ]
        self.out = []
        self.gated = deque()
        self.leader = None
        self.candidate = None
        self.membership = None
        self.quorum = None
        self.self_voter = False
        self.election_deadline = None
        # A restarted node may have acknowledged a leader just before it
        # stopped, and that leader may be serving lease reads on the strength
        # of it: honour the lease from the start, as if heard from it now.
        self.leader_heard_at = now
        self.lease_vote = rec.vote
        self.term_seen = 0
        self.pending_writes = {}
        self.seq = 0
        self.stopped = None
        self.last_now = now
        self.election_timeout = config.election_timeout_max
        self.snapshot = rec.snapshot
        self.building = None
        self.receiving = None
        self.installing = None
        self.snapshots_built = self.snapshots_installed = 0
        self.remote_reads = []
        self.remote_inflight = None
        self.committed = rec.last_purged  # provisional, for recover_snapshot
        recover_snapshot(self)
        _check_recovered(rec, self.log)
        # A stored commit index is a hint; one the durable log cannot back
        # (stored before its entry was flushed) is ignored, not trusted.
        purged = self.log.last_purged
        committed = rec.committed
        if committed.index > purged.index and self.log.log_id_at(committed.index) != committed:
            committed = purged
        self.committed = max(committed, rec.applied, purged)
        self.apply_requested = rec.applied.index
        # Arms the election timer when this node is a voter.
        self.membership_changed()
        # Entries known committed but not applied yet are applied on the first
        # call, and a purge the last run did not get to is done then.
        advance_apply(self)
        purge_if_due(self)
        self._dispatch: dict[type, Callable[[Any, float], None]] = {
            MessageReceived: self._on_message,
            ClientWrite: self._on_client_write,
            ClientWriteBatch: self._on_client_write_batch,
            ClientRead: self._on_client_read,
            ChangeMembership: self._on_change_membership,
            TransferLeader: self._on_transfer_leader,
            IoFlushed: self._on_io_flushed,
            Applied: self._on_applied,
            SnapshotBuilt: self._on_snapshot_built,
            SnapshotInstalled: self._on_snapshot_installed,
            TriggerSnapshot: self._on_trigger_snapshot,
            TriggerPurge: self._on_trigger_purge,
            Wakeup: self._on_wakeup,
            Initialize: self._on_initialize,
            StorageFailed: self._on_storage_failed,
            TriggerElection: self._on_trigger_election,
            TriggerHeartbeat: self._on_trigger_heartbeat,
        }

    # -- the contract ------------------------------------------------------------

    def handle(self, event: Event | object, now: float) -> list[Command]:
        """Feed one event at time ``now``; returns the commands to execute in order.

        ``event`` is one of ``raftcore.events``; anything else raises
        ``LocalProtocolError``.
        """
        if self.stopped is not None:
            return []
        if not now >= self.last_now:  # also refuses NaN
            raise LocalProtocolError(f"time went backwards: {now} < {self.last_now}")
        handler = self._dispatch.get(type(event))
        if handler is None:
            raise LocalProtocolError(f"not an engine event: {event!r}")
        self.last_now = now
        out = self.out
        try:
            handler(event, now)
        finally:
            # Never leave output behind for the next call, even if a handler raised.
            self.out = []
        return out

    @property
    def next_deadline(self) -> float | None:
        if self.stopped is not None:
            return None
        ld = self.leader
        if ld is not None:
            due = ld.heartbeat_deadline
            if ld.reads_waiting or ld.read_round is not None:
                d = reads.read_deadline(ld)
                if d is not None and d < due:
                    due = d
            t = ld.transfer
            if t is not None and t.deadline < due:
                due = t.deadline
            return due
        if self.remote_reads or self.remote_inflight is not None:
            d = reads.remote_read_deadline(self)
            e = self.election_deadline
            if d is not None and (e is None or d < e):
                return d
        return self.election_deadline

    def metrics(self) -> Metrics:
        ld = self.leader
        progress = ld.progress if ld is not None else {}
        return Metrics(
            node_id=self.node_id,
            role=self.role,
            vote=self.vote,
            leader_id=self.leader_id(),
            last_log_id=self.log.last_log_id(),
            committed=self.committed,
            applied=self.applied,
            membership=self.membership,
            replication={n: p.matching for n, p in progress.items()},
            followers={
                n: FollowerProgress(
                    p.matching,
                    p.acked_at,
                    p.probing,
                    None if p.snapshot is None else p.snapshot.acked,
                )
                for n, p in progress.items()
            },
            stopped=self.stopped,
            snapshot=None if self.snapshot is None else self.snapshot.last_log_id,
            last_purged=self.log.last_purged,
            snapshots_installed=self.snapshots_installed,
            snapshots_built=self.snapshots_built,
            transfer_to=None if ld is None or ld.transfer is None else ld.transfer.to,
        )

    def lease_read_end(self, now: float) -> float | None:
        """Until when (this node's clock) a leader answers lease reads without
        a round; ``None`` when it does not lead or lease reads are off."""
        ld = self.leader
        if ld is None or self.stopped is not None:
            return None
        end = reads.lease_read_end(self, ld, now)
        return None if end == NEVER else end

    @property
    def last_log_id(self) -> LogId:
        return self.log.last_log_id()

    # -- dispatch --------------------------------------------------------------

    def _on_message(self, ev: MessageReceived, now: float) -> None:
        # Read untyped: a compiled build would type-check ``ev.message`` and raise
        # a bare TypeError on a non-message before the LocalProtocolError below.
        msg: object = getattr(ev, "message")  # noqa: B009
        t = type(msg)
        if t is AppendRequest:
            follower.on_append_request(self, ev.sender, msg, now)  # type: ignore[arg-type]
        elif t is AppendResponse:
            leader.on_append_response(self, ev.sender, msg, now)  # type: ignore[arg-type]
        elif t is VoteRequest:
            election.on_vote_request(self, ev.sender, msg, now)  # type: ignore[arg-type]
        elif t is VoteResponse:
            election.on_vote_response(self, ev.sender, msg, now)  # type: ignore[arg-type]
        elif t is InstallSnapshotRequest:
            snapshot_receive.on_install_request(self, ev.sender, msg, now)  # type: ignore[arg-type]
        elif t is InstallSnapshotResponse:
            leader.on_install_response(self, ev.sender, msg, now)  # type: ignore[arg-type]
        elif t is ReadIndexRequest:
            reads.on_read_index_request(self, self.leader, ev.sender, msg, now)  # type: ignore[arg-type]
        elif t is ReadIndexResponse:
            reads.on_read_index_response(self, ev.sender, msg)  # type: ignore[arg-type]
        elif t is TimeoutNow:
            election.on_timeout_now(self, ev.sender, msg, now)  # type: ignore[arg-type]
        else:
            raise LocalProtocolError(f"not a raft message: {msg!r}")

    def _on_client_write(self, ev: ClientWrite, now: float) -> None:
        self._on_client_writes(((ev.request_id, ev.data),), now)

    def _on_client_write_batch(self, ev: ClientWriteBatch, now: float) -> None:
        if ev.requests:
            self._on_client_writes(ev.requests, now)

    def _on_client_writes(self, requests: tuple[tuple[Hashable, Any], ...], now: float) -> None:
        ld = self.leader
        if ld is None:
            err = self.refusal()
            for rid, _ in requests:
                self.emit(Respond(rid, None, err))
            return
        t = ld.transfer
        if t is not None:
            busy = TransferInProgress(t.to)
            for rid, _ in requests:
                self.emit(Respond(rid, None, busy))
            return
        leader.on_client_writes(self, ld, requests, now)

    def _on_client_read(self, ev: ClientRead, now: float) -> None:
        ld = self.leader
        if ld is None:
            reads.on_follower_read(self, ev, now)
            return
        reads.on_client_read(self, ld, ev, now)

    def _on_change_membership(self, ev: ChangeMembership, now: float) -> None:
        ld = self.leader
        if ld is None:
            self.emit(Respond(ev.request_id, None, self.refusal()))
            return
        if ld.transfer is not None:
            self.emit(Respond(ev.request_id, None, TransferInProgress(ld.transfer.to)))
            return
        membership.on_change_membership(self, ld, ev, now)

    def _on_transfer_leader(self, ev: TransferLeader, now: float) -> None:
        ld = self.leader
        if ld is None:
            self.emit(Respond(ev.request_id, None, self.refusal()))
            return
        transfer.on_transfer_leader(self, ld, ev, now)

    def _on_io_flushed(self, ev: IoFlushed, now: float) -> None:
        try:
            changed = self.io.flush(ev.io_id)
        except ValueError as e:
            raise LocalProtocolError(str(e)) from None
        if not changed:
            return
        self.release_gated()
        if self.apply_requested < self.committed.index:
            advance_apply(self)
        ld = self.leader
        if ld is not None:
            if self.io.durable_log_id.index > self.committed.index:
                leader.leader_commit(self, ld)
        elif self.role is Role.CANDIDATE:
            election.self_vote_durable(self, now)

    def _on_applied(self, ev: Applied, now: float) -> None:
        on_applied(self, ev.upto, ev.results)

    def _on_snapshot_built(self, ev: SnapshotBuilt, now: float) -> None:
        on_snapshot_built(self, ev.meta)

    def _on_snapshot_installed(self, ev: SnapshotInstalled, now: float) -> None:
        snapshot_receive.on_snapshot_installed(self, ev.meta)

    def _on_trigger_snapshot(self, ev: TriggerSnapshot, now: float) -> None:
        build_snapshot(self)

    def _on_trigger_purge(self, ev: TriggerPurge, now: float) -> None:
        upto: object = getattr(ev, "upto")  # noqa: B009 - see _on_message
        if isinstance(upto, bool) or not isinstance(upto, int):
            raise LocalProtocolError(f"TriggerPurge needs an int index, got {upto!r}")
        purge_if_due(self, upto)

    def _on_wakeup(self, ev: Wakeup, now: float) -> None:
        ld = self.leader
        if ld is not None:
            t = ld.transfer
            if now >= ld.heartbeat_deadline or (t is not None and now >= t.deadline):
                leader.leader_tick(self, ld, now)
            if self.leader is ld and (ld.reads_waiting or ld.read_round is not None):
                d = reads.read_deadline(ld)
                if d is not None and d <= now:
                    reads.expire_reads(self, ld, now)
        else:
            if self.remote_reads or self.remote_inflight is not None:
                d = reads.remote_read_deadline(self)
                if d is not None and d <= now:
                    reads.expire_remote_reads(self, now)
            if self.election_deadline is not None and now >= self.election_deadline:
                election.election_due(self, now)

    def _on_initialize(self, ev: Initialize, now: float) -> None:
        if self.log.last_index > 0 or self.vote != INITIAL_VOTE or self.memberships:
            raise LocalProtocolError(
                f"node {self.node_id} is already initialized (vote {self.vote!r}, "
                f"last log {self.log.last_log_id()!r})"
            )
        m = ev.membership
        if not isinstance(m, Membership):
            raise LocalProtocolError(f"Initialize needs a Membership, got {m!r}")
        check_safe(m.quorum_set(), self.config.leader_id_mode)  # ConfigError if unsafe
        self.append([membership_entry(LogId(0, 0, 1), m)])
        if self.is_voter():
            # Elect at once: there is no leader to wait for.
            election.election_due(self, now)

    def _on_storage_failed(self, ev: StorageFailed, now: float) -> None:
        """Stop: every request still waiting is answered ``NodeStopped``, once.

        In a fixed order: the writes by log index, then the membership change
        in progress, then a change queued behind this leader's first commit.
        """
        self.stopped = ev.reason
        err = NodeStopped(ev.reason)
        for rid in self.pending_writes.values():
            self.emit(Respond(rid, None, err))
        self.pending_writes = {}
        ld = self.leader
        if ld is not None:
            membership.answer_change_stopped(self, ld, err)
            if ld.transfer is not None:
                self.emit(Respond(ld.transfer.request_id, None, err))
            for rid in ld.take_reads():
                if type(rid) is not RemoteRead:  # a stopped node sends nothing more
                    self.emit(Respond(rid, None, err))
        pending = self.remote_reads + (self.remote_inflight[2] if self.remote_inflight else [])
        for rid, _ in pending:
            self.emit(Respond(rid, None, err))
        self.remote_reads, self.remote_inflight = [], None
        self.gated.clear()
        self.election_deadline = None
        self.emit(Stopped(ev.reason))

    def _on_trigger_election(self, ev: TriggerElection, now: float) -> None:
        # Not while honouring another leader's lease: that leader may be
        # answering lease reads on the strength of it (TransferLeader is
        # the way to move a live leader).
        holder = election.lease_holder(self, now)
        if self.self_voter and (holder is None or holder == self.node_id):
            election.start_election(self, now)

    def _on_trigger_heartbeat(self, ev: TriggerHeartbeat, now: float) -> None:
        ld = self.leader
        if ld is not None:
            heartbeat_all(self, ld, now)
