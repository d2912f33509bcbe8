"""One simulated node's state, as the harness keeps it.

A ``SimNode`` holds what outlives a crash (its id, its ``SimStorage``, its
random stream, its clock) and what belongs to one incarnation (the engine,
the state machine, timers, client requests waiting to be batched). It has
no behaviour beyond its clock: ``raftcore.sim.harness`` runs it.

Each node's clock drifts: at virtual time ``t`` its ``now`` reads
``t * (1 + drift) + offset`` (``drift`` and ``offset`` stay 0 unless the
fault injector sets them up).
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any, Protocol

from raftcore.commands import Command
from raftcore.events import Event
from raftcore.ids import LogId, NodeId, Vote
from raftcore.membership import Membership
from raftcore.sim.kv import StateMachine
from raftcore.sim.rng import Rng
from raftcore.sim.storage import SimStorage
from raftcore.snapshots import SnapshotMeta
from raftcore.state import Metrics, Role

__all__ = ["SimEngine", "SimNode", "StorageView"]


class SimEngine(Protocol):
    """What the simulator needs from an engine: ``Engine`` or a wrapper around it."""

    @property
    def vote(self) -> Vote: ...
    @property
    def committed(self) -> LogId: ...
    @property
    def role(self) -> Role: ...
    @property
    def next_deadline(self) -> float | None: ...
    @property
    def membership(self) -> Membership | None: ...
    def handle(self, event: Event, now: float) -> list[Command]: ...
    def metrics(self) -> Metrics: ...
    def lease_read_end(self, now: float) -> float | None: ...


class SimNode:
    """One node: storage and clock for good, engine and state machine per incarnation."""

    __slots__ = (
        "alive",
        "applied_at",
        "applied_data",
        "client_queue",
        "crash_on_write",
        "crash_token",
        "disk_failed",
        "drift",
        "engine",
        "id",
        "incarnation",
        "offset",
        "paused_until",
        "receiving",
        "rng",
        "sm",
        "sm_index",
        "snapshots_made",
        "stopped",
        "storage",
        "timer_local",
        "timer_token",
        "wake_count",
        "wake_time",
    )

    def __init__(self, node_id: NodeId, storage: SimStorage, rng: Rng) -> None:
        self.id = node_id
        self.storage = storage
        self.rng = rng
        self.engine: SimEngine | None = None
        self.sm: StateMachine | None = None
        self.alive = False
        self.incarnation = 0
        self.crash_token = 0
        #: Crash right after the next step that leaves writes unflushed.
        self.crash_on_write = False
        #: A StorageFailed was injected; the engine must stop (``stopped``).
        self.disk_failed = False
        self.stopped = False
        self.drift = 0.0
        self.offset = 0.0
        #: A paused process: its actions wait until this virtual time.
        self.paused_until = 0.0
        self.timer_local: float | None = None
        self.timer_token = 0
        #: Applied events are reported in order: not before this virtual time.
        self.applied_at = 0.0
        #: Payloads this incarnation's state machine applied (for the answer checks).
        self.applied_data: set[Any] = set()
        #: Client requests waiting to be handed over as one batch.
        self.client_queue: list[tuple[Hashable, Any]] = []
        self.wake_time = -1.0
        self.wake_count = 0
        #: A snapshot arriving from the leader (lost on a crash); snapshots built.
        self.receiving: tuple[SnapshotMeta, bytearray] | None = None
        self.snapshots_made = 0
        #: The index of the last entry this incarnation's state machine holds.
        self.sm_index = 0

    def local(self, t: float) -> float:
        """What this node's clock reads at virtual time ``t``."""
        return t * (1.0 + self.drift) + self.offset

    def virtual(self, local: float) -> float:
        """The earliest virtual time at which this node's clock reads ``local``."""
        k = 1.0 + self.drift
        t = (local - self.offset) / k
        while t * k + self.offset < local:
            t = math.nextafter(t, math.inf)
        return t


class StorageView:
    """The invariant checker's window onto node storage."""

    def __init__(self, nodes: dict[NodeId, SimNode]) -> None:
        self._nodes = nodes

    def log_id_at(self, node: NodeId, index: int) -> LogId | None:
        return self._nodes[node].storage.log_id_at(index)

    def durable_log_id_at(self, node: NodeId, index: int) -> LogId | None:
        return self._nodes[node].storage.durable_log_id_at(index)

    def memberships(self, node: NodeId, durable: bool = False) -> list[tuple[LogId, Membership]]:
        st = self._nodes[node].storage
        return st.durable_memberships if durable else st.memberships
