"""``Engine``: the public face of the state machine."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from raftcore.commands import Command, Respond, Stopped
from raftcore.config import Config
from raftcore.engine.base import NEVER, Rng
from raftcore.engine.io import IoProgress
from raftcore.engine.log import Log
from raftcore.engine.membership import MembershipHandler
from raftcore.entries import EntryKind, membership_entry
from raftcore.errors import ConfigError, LocalProtocolError, NodeStopped
from raftcore.events import (
    Applied,
    ChangeMembership,
    ClientWrite,
    ClientWriteBatch,
    Event,
    Initialize,
    IoFlushed,
    MessageReceived,
    StorageFailed,
    TriggerElection,
    TriggerHeartbeat,
    Wakeup,
)
from raftcore.ids import INITIAL_VOTE, LogId
from raftcore.membership import Membership
from raftcore.messages import AppendRequest, AppendResponse, VoteRequest, VoteResponse
from raftcore.quorum import check_safe
from raftcore.state import FollowerProgress, Metrics, RecoveredState, Role


def _check_recovered(rec: RecoveredState, log: Log) -> None:
    """Refuse a recovered state whose parts contradict each other.

    Starting from one would either skip entries or wedge replication (a
    "committed" entry the leader must overwrite), so it is an error to fix in
    the storage, not something to run with.
    """
    purged = rec.last_purged.index
    if rec.applied.index < purged:
        raise ConfigError(
            "recovered.applied",
            f"{rec.applied!r} is before the purged prefix {rec.last_purged!r}: "
            "install the snapshot that covers it first",
        )
    if rec.applied.index > purged and log.log_id_at(rec.applied.index) != rec.applied:
        raise ConfigError("recovered.applied", f"{rec.applied!r} is not in the recovered log")
    if rec.membership is not None and rec.membership[0].index > purged:
        raise ConfigError("recovered.membership", "must be the membership at or before last_purged")


class Engine(MembershipHandler):
    """A Raft node as a pure state machine.

    ``handle(event, now)`` returns the commands to execute, in order;
    ``next_deadline`` is the earliest ``now`` at which the engine wants a
    ``Wakeup``. Same recovered state, events and rng: same commands.
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
        if isinstance(node_id, bool) or not isinstance(node_id, int) or node_id <= 0:
            raise ConfigError("node_id", f"must be a positive int, got {node_id!r}")
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
        _check_recovered(rec, self.log)
        # A stored commit index is a hint; one the durable log cannot back
        # (stored before its entry was flushed) is ignored, not trusted.
        committed = rec.committed
        if committed.index > rec.last_purged.index and self.log.log_id_at(committed.index) != (
            committed
        ):
            committed = rec.last_purged
        self.committed = max(committed, rec.applied, rec.last_purged)
        self.apply_requested = rec.applied.index
        self.memberships = [] if rec.membership is None else [rec.membership]
        self.memberships += [
            (e.log_id, e.data) for e in self.log.all_entries() if e.kind is EntryKind.MEMBERSHIP
        ]
        self.membership = None
        self.quorum = None
        self.election_deadline = None
        self.leader_heard_at = NEVER
        self.term_seen = 0
        self.round_vote = INITIAL_VOTE
        self.granted = set()
        self.self_vote_io = 0
        self.election_started_at = now
        self.progress = {}
        self.leader_first_index = 0
        self.heartbeat_deadline = NEVER
        self.pending_writes = {}
        self.membership_change = None
        self.queued_change = None
        self.seq = 0
        self.gated = deque()
        self.stopped = None
        self._last_now = now
        self._out = []
        self._election_timeout = config.election_timeout_max
        # Arms the election timer when this node is a voter.
        self._membership_changed()
        # Entries known committed but not applied yet are applied on the first call.
        self._advance_apply()
        self._dispatch: dict[type, Callable[[Any, float], None]] = {
            MessageReceived: self._on_message,
            ClientWrite: self._on_client_write,
            ClientWriteBatch: self._on_client_write_batch,
            ChangeMembership: self._on_change_membership,
            IoFlushed: self._on_io_flushed,
            Applied: self._on_applied_event,
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
        if not now >= self._last_now:  # also refuses NaN
            raise LocalProtocolError(f"time went backwards: {now} < {self._last_now}")
        handler = self._dispatch.get(type(event))
        if handler is None:
            raise LocalProtocolError(f"not an engine event: {event!r}")
        self._last_now = now
        out = self._out
        handler(event, now)
        self._out = []
        return out

    @property
    def next_deadline(self) -> float | None:
        if self.stopped is not None:
            return None
        if self.role is Role.LEADER:
            return self.heartbeat_deadline
        return self.election_deadline

    def metrics(self) -> Metrics:
        return Metrics(
            node_id=self.node_id,
            role=self.role,
            vote=self.vote,
            leader_id=self.leader_id(),
            last_log_id=self.log.last_log_id(),
            committed=self.committed,
            applied=self.applied,
            membership=self.membership,
            replication={n: p.matching for n, p in self.progress.items()},
            followers={
                n: FollowerProgress(p.matching, p.acked_at, p.probing)
                for n, p in self.progress.items()
            },
            stopped=self.stopped,
        )

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
            self._on_append_request(ev.sender, msg, now)  # type: ignore[arg-type]
        elif t is AppendResponse:
            self._on_append_response(ev.sender, msg, now)  # type: ignore[arg-type]
        elif t is VoteRequest:
            self._on_vote_request(ev.sender, msg, now)  # type: ignore[arg-type]
        elif t is VoteResponse:
            self._on_vote_response(ev.sender, msg, now)  # type: ignore[arg-type]
        else:
            raise LocalProtocolError(f"not a raft message: {msg!r}")

    def _on_client_write(self, ev: ClientWrite, now: float) -> None:
        self._on_client_writes(((ev.request_id, ev.data),), now)

    def _on_client_write_batch(self, ev: ClientWriteBatch, now: float) -> None:
        if ev.requests:
            self._on_client_writes(ev.requests, now)

    def _on_io_flushed(self, ev: IoFlushed, now: float) -> None:
        try:
            changed = self.io.flush(ev.io_id)
        except ValueError as e:
            raise LocalProtocolError(str(e)) from None
        if not changed:
            return
        self._release_gated()
        if self.apply_requested < self.committed.index:
            self._advance_apply()
        if self.role is Role.LEADER:
            if self.io.durable_log_id.index > self.committed.index:
                self._leader_commit()
        elif self.role is Role.CANDIDATE:
            self._self_vote_durable(now)

    def _on_applied_event(self, ev: Applied, now: float) -> None:
        self._on_applied(ev.upto, ev.results)

    def _on_wakeup(self, ev: Wakeup, now: float) -> None:
        if self.role is Role.LEADER:
            if now >= self.heartbeat_deadline:
                self._leader_tick(now)
        elif self.election_deadline is not None and now >= self.election_deadline:
            self._election_due(now)

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
        self._append([membership_entry(LogId(0, 0, 1), m)])
        if self.is_voter():
            # Elect at once: there is no leader to wait for.
            self._election_due(now)

    def _on_storage_failed(self, ev: StorageFailed, now: float) -> None:
        """Stop: every request still waiting is answered ``NodeStopped``, once.

        In a fixed order: the writes by log index, then the membership change
        in progress, then a change queued behind this leader's first commit.
        """
        self.stopped = ev.reason
        err = NodeStopped(ev.reason)
        for rid in self.pending_writes.values():
            self._emit(Respond(rid, None, err))
        self.pending_writes = {}
        self._answer_change_stopped(err)
        self.gated.clear()
        self.election_deadline = None
        self._emit(Stopped(ev.reason))

    def _on_trigger_election(self, ev: TriggerElection, now: float) -> None:
        if self._self_voter:
            self._start_election(now)

    def _on_trigger_heartbeat(self, ev: TriggerHeartbeat, now: float) -> None:
        if self.role is Role.LEADER:
            self._heartbeat_all(now)
