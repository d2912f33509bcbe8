"""Drive a simulated cluster by hand, one action at a time.

``SimControl`` runs the same nodes, storage, network, invariant checker and
client bookkeeping as a seeded ``Simulation.run()``, without its scheduler:
no chaos, no workload, no random timing. Whatever happens is what the caller
asks for, so a property-based test (``fuzz/test_membership_fuzz.py``) can
choose every action and shrink a failure to a minimal schedule::

    from raftcore.membership import AddVoters
    from raftcore.sim.manual import SimControl

    c = SimControl(nodes=3, spares=2)
    c.start()                       # node 1 forms the cluster {1, 2, 3}
    c.advance(1.0)                  # timers, arrivals, flushes, applies
    leader = c.leader()
    rid = c.change(leader, AddVoters({4: "n4"}))
    c.advance(0.5)
    assert c.answer(rid).error is None
    c.assert_ok()                   # every invariant, or SimulationFailure

Timing is fixed (``ManualTiming``): a message arrives ``latency`` after it is
sent, storage writes become durable ``flush_delay`` after the step that
issued them, ``Applied`` follows ``apply_delay`` after ``Apply``; engines
wake at their own deadlines. On top of that the caller can deliver a message
early (reordering), drop or duplicate it, flush a node's storage now (or only
part of it), crash a node keeping exactly ``keep`` of its unflushed writes,
restart it, cut links and heal them, read with a ``ReadPolicy`` (on a
leader or a follower) and transfer leadership. The only randomness left is each
engine's own (election timeouts), from ``seed``.

The invariant checker runs after every engine step as in a seeded run;
``check()`` also sweeps every log for the membership invariants and returns
the violations found since the previous call.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable
from typing import Any

import attrs

from raftcore.engine import Engine
from raftcore.errors import ClientError
from raftcore.events import (
    ChangeMembership,
    ClientWrite,
    ReadPolicy,
    TransferLeader,
    TriggerElection,
    TriggerHeartbeat,
    TriggerPurge,
    TriggerSnapshot,
)
from raftcore.ids import LeaderIdMode, LogId, NodeId
from raftcore.membership import Change, Membership
from raftcore.messages import Message
from raftcore.sim.cluster import Simulation
from raftcore.sim.harness import Mailbox, ManualTiming
from raftcore.sim.invariants import InvariantViolation
from raftcore.sim.kv import KvCodec, KvStateMachine, StateMachineFactory
from raftcore.sim.linearizability import OpKind, Outcome, Violation, check_history
from raftcore.sim.network import Link, split_links
from raftcore.sim.node import SimEngine
from raftcore.sim.options import SimOptions
from raftcore.sim.trace import TraceSink
from raftcore.sim.workload import classify

__all__ = ["Answer", "InFlight", "ManualTiming", "SimControl", "SimulationFailure"]


class SimulationFailure(AssertionError):
    """Raised by ``SimControl.assert_ok``: the violations, one per line."""

    def __init__(self, violations: Iterable[InvariantViolation]) -> None:
        self.violations = list(violations)
        super().__init__("\n".join(str(v) for v in self.violations))


@attrs.frozen
class InFlight:
    """A message on its way: deliver, drop or duplicate it by ``id``."""

    id: int
    src: NodeId
    dst: NodeId
    message: Message
    #: When it arrives by itself (virtual seconds).
    due: float


@attrs.frozen
class Answer:
    """What became of a request: an engine answer, or ``refused`` / ``lost``."""

    result: Any = None
    error: ClientError | None = None
    #: ``"answered"``, ``"refused"`` (the node was down) or ``"lost"`` (it crashed).
    how: str = "answered"

    @property
    def ok(self) -> bool:
        return self.how == "answered" and self.error is None


class SimControl:
    """A simulated cluster driven step by step (see the module docstring).

    ``nodes`` initial voters and ``spares`` uninitialized extra nodes, ids
    ``1 .. nodes + spares``; ``engine`` and ``state_machine`` as for
    ``Simulation``.
    """

    def __init__(
        self,
        *,
        nodes: int = 3,
        spares: int = 2,
        seed: int = 0,
        leader_id_mode: LeaderIdMode = LeaderIdMode.ADVANCED,
        pre_vote: bool = False,
        check_quorum: bool = False,
        max_entries_per_append: int = 32,
        election_timeout_min: float = 0.150,
        election_timeout_max: float = 0.300,
        heartbeat_interval: float = 0.050,
        snapshot_every: int = 0,
        purge_keep: int = 0,
        snapshot_lag_threshold: int = 0,
        snapshot_chunk_size: int = 64,
        snapshot_window: int = 2,
        timing: ManualTiming | None = None,
        state_machine: StateMachineFactory = KvStateMachine,
        codec: KvCodec | None = None,
        engine: Callable[..., SimEngine] = Engine,
        trace: TraceSink | None = None,
    ) -> None:
        opts = SimOptions(
            seed=seed,
            nodes=nodes,
            spares=spares,
            faults="none",
            leader_id_mode=leader_id_mode,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            max_entries_per_append=max_entries_per_append,
            loss=0.0,
            dup=0.0,
            election_timeout_min=election_timeout_min,
            election_timeout_max=election_timeout_max,
            heartbeat_interval=heartbeat_interval,
            stop_on_violation=False,
            snapshot_every=snapshot_every,
            purge_keep=purge_keep,
            snapshot_lag_threshold=snapshot_lag_threshold,
            snapshot_chunk_size=snapshot_chunk_size,
            snapshot_window=snapshot_window,
        )
        self.timing = timing if timing is not None else ManualTiming()
        self.sim = Simulation(
            opts,
            state_machine=state_machine,
            codec=codec,
            trace=trace,
            engine=engine,
            manual=self.timing,
        )
        self.sim.phase = "manual"
        self.sim.on_answer = self._on_answer
        self.sim.on_unanswered = self._on_unanswered
        self.answers: dict[Hashable, Answer] = {}
        #: Client op ids of the reads and writes in flight, by request id.
        self._ops: dict[Hashable, tuple[int, OpKind]] = {}
        self._reported = 0
        self.started = False
        #: Engine steps one ``advance`` may take before it reports a busy loop.
        self.step_budget = 200_000

    # -- the cluster -----------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.sim.now

    @property
    def node_ids(self) -> tuple[NodeId, ...]:
        return self.sim.node_ids

    @property
    def initial_voters(self) -> tuple[NodeId, ...]:
        return self.sim.initial_voters

    @property
    def steps(self) -> int:
        return self.sim.steps

    @property
    def trace_digest(self) -> str:
        return self.sim.trace.hexdigest()

    def start(self) -> None:
        """Start every node; node 1 forms the cluster of the initial voters."""
        if self.started:
            raise RuntimeError("already started")
        self.started = True
        self.sim.harness.boot(self.sim.initial_voters)

    def is_up(self, node: NodeId) -> bool:
        return self.sim.nodes[node].alive

    def engine(self, node: NodeId) -> SimEngine | None:
        """The node's engine while it is up."""
        n = self.sim.nodes[node]
        return n.engine if n.alive else None

    def membership(self, node: NodeId) -> Membership | None:
        """The node's effective membership (``None`` while down or uninitialized)."""
        return self.sim.membership_of(node)

    @property
    def committed_membership(self) -> tuple[LogId, Membership] | None:
        """The newest membership entry committed anywhere."""
        return self.sim.checker.committed_membership

    @property
    def committed_memberships(self) -> list[tuple[LogId, Membership]]:
        """Every membership entry in the committed prefix, in log order."""
        return list(self.sim.checker.committed_memberships)

    @property
    def committed_index(self) -> int:
        return self.sim.checker.committed_index

    def leader(self) -> NodeId | None:
        """The live leader with the greatest vote, if any."""
        return self.sim.find_leader()

    # -- time ------------------------------------------------------------------------------

    def advance(self, dt: float) -> None:
        """Let ``dt`` virtual seconds pass: everything due in that time happens
        (timers, message arrivals, flushes, applies), in time order."""
        if dt < 0:
            raise ValueError(f"time cannot go back: dt={dt}")
        sim = self.sim
        start = sim.steps

        def over_budget() -> bool:
            if sim.steps - start > self.step_budget:
                sim.harness.violation(
                    "busy-loop", f"more than {self.step_budget} engine steps within {dt}s"
                )
                return True
            return False

        sim.sched.run_until(sim.now + dt, over_budget)

    def next_event_time(self) -> float | None:
        """When the next scheduled action is due (``None``: nothing scheduled)."""
        return self.sim.sched.next_time()

    # -- network ---------------------------------------------------------------------------

    @property
    def _mailbox(self) -> Mailbox:
        mailbox = self.sim.harness.mailbox
        assert mailbox is not None
        return mailbox

    def in_flight(self) -> list[InFlight]:
        """Messages sent and not yet delivered or dropped, oldest first."""
        return [
            InFlight(mid, src, dst, msg, due)
            for mid, (src, dst, msg, due) in sorted(self._mailbox.in_flight.items())
        ]

    def deliver(self, msg_id: int) -> bool:
        """Deliver a message now (ahead of the others); False if it is gone.
        A cut link or a down receiver still loses it."""
        return self._mailbox.deliver(msg_id)

    def drop(self, msg_id: int) -> bool:
        """Lose a message."""
        return self._mailbox.drop(msg_id)

    def duplicate(self, msg_id: int) -> bool:
        """Send a copy of a message (arriving ``latency`` from now)."""
        return self._mailbox.duplicate(msg_id)

    def partition(self, groups: Iterable[Collection[NodeId]]) -> int:
        """Cut every link between the groups (nodes in no group keep their
        links); returns an id for ``heal``."""
        return self.cut(split_links(groups))

    def cut(self, links: Iterable[Link]) -> int:
        """Cut directed links ``(src, dst)``; returns an id for ``heal``."""
        links = frozenset(links)
        pid = self.sim.network.partition(links)
        self.sim.note("fault", f"cut {sorted(links)} (partition {pid})")
        return pid

    def heal(self, partition: int | None = None) -> None:
        """Heal one partition, or every one."""
        net = self.sim.network
        if partition is None:
            net.heal()
            self.sim.note("heal", "every partition healed")
        else:
            net.heal_partition(partition)
            self.sim.note("heal", f"partition {partition} healed")

    # -- nodes -------------------------------------------------------------------------------

    def pending_writes(self, node: NodeId) -> int:
        """Storage writes of the node not yet durable."""
        return len(self.sim.nodes[node].storage.pending)

    def flush(self, node: NodeId, count: int | None = None) -> int:
        """Make the node's first ``count`` pending writes durable now (all by
        default) and report it; returns how many became durable."""
        n = self.sim.nodes[node]
        if not n.alive or not n.storage.pending:
            return 0
        before = len(n.storage.pending)
        self.sim.harness.flush(n, n.storage.epoch, before if count is None else count)
        return before - len(n.storage.pending) if n.alive else 0

    def crash(self, node: NodeId, keep: int = 0) -> bool:
        """Crash the node: of its unflushed writes the first ``keep`` reach the
        disk, the rest are lost. False if it was already down."""
        n = self.sim.nodes[node]
        if not n.alive:
            return False
        pending = len(n.storage.pending)
        self.sim.note(
            "fault", f"node {node} crashes keeping {min(keep, pending)} of {pending} unflushed"
        )
        self.sim.harness.crash(n, keep=keep)
        return True

    def restart(self, node: NodeId) -> bool:
        """Restart a crashed node from its durable state. False if it is up."""
        n = self.sim.nodes[node]
        if n.alive:
            return False
        self.sim.note("restart", f"node {node} restarts")
        self.sim.harness.start(n)
        return n.alive

    def trigger_election(self, node: NodeId) -> None:
        n = self.sim.nodes[node]
        if n.alive:
            self.sim.harness.handle(n, TriggerElection())

    def trigger_heartbeat(self, node: NodeId) -> None:
        n = self.sim.nodes[node]
        if n.alive:
            self.sim.harness.handle(n, TriggerHeartbeat())

    def trigger_snapshot(self, node: NodeId) -> None:
        """The node snapshots what it applied (with ``snapshot_every=0`` too)."""
        n = self.sim.nodes[node]
        if n.alive:
            self.sim.harness.handle(n, TriggerSnapshot())

    def trigger_purge(self, node: NodeId, upto: int) -> None:
        n = self.sim.nodes[node]
        if n.alive:
            self.sim.harness.handle(n, TriggerPurge(upto))

    # -- clients -----------------------------------------------------------------------------

    def write(self, node: NodeId, key: str = "k", value: Any = None) -> Hashable:
        """A put of a unique value (recorded for ``check_history``); returns the
        request id. The node handles it at once."""
        sim = self.sim
        rid = sim.new_request_id()
        value = value if value is not None else f"w{rid}"
        op = sim.recorder.invoke(1, OpKind.PUT, key, value, sim.now)
        self._ops[rid] = (op, OpKind.PUT)
        self._submit(node, rid, ClientWrite(rid, sim.codec.encode_put(key, value)))
        return rid

    def read(self, node: NodeId, key: str = "k", policy: ReadPolicy | None = None) -> Hashable:
        """A get (recorded for ``check_history``); returns the request id.

        Without ``policy`` it goes through the log; with one it is a
        ``ClientRead`` (ReadIndex or lease; on a follower, a follower read)
        served from the node's state machine once it applied the read point.
        """
        sim = self.sim
        if policy is not None and sim.clients.read_local is None:
            raise ValueError("this state machine's codec has no read_local: read through the log")
        rid = sim.new_request_id()
        op = sim.recorder.invoke(2, OpKind.GET, key, None, sim.now)
        self._ops[rid] = (op, OpKind.GET)
        if policy is None:
            self._submit(node, rid, ClientWrite(rid, sim.codec.encode_get(key)))
        else:
            sim.clients.read_now(node, rid, key, policy)
        return rid

    def transfer_leader(self, node: NodeId, to: NodeId | None = None) -> Hashable:
        """Ask ``node`` to hand leadership to ``to`` (``None``: the most
        up-to-date voter); returns the request id. The answer is the new
        leader's id once ``node`` handed over, or an error."""
        sim = self.sim
        rid = ("transfer", sim.new_request_id())
        n = sim.nodes[node]
        if not n.alive:
            self._on_unanswered(rid, "refused")
            return rid
        sim.answers.hold_transfer(rid, n)
        sim.harness.handle(n, TransferLeader(rid, to))
        return rid

    def change(
        self,
        node: NodeId,
        change: Change,
        retain: bool = False,
        expected: LogId | None = None,
    ) -> Hashable:
        """Ask ``node`` to change the membership; returns the request id."""
        rid = ("change", self.sim.new_request_id())
        self._submit(node, rid, ChangeMembership(rid, change, retain, expected))
        return rid

    def _submit(self, node: NodeId, rid: Hashable, ev: ClientWrite | ChangeMembership) -> None:
        sim = self.sim
        n = sim.nodes[node]
        if not n.alive:
            self._on_unanswered(rid, "refused")
            return
        if isinstance(ev, ChangeMembership):
            sim.answers.hold_change(rid, n, ev.change, ev.retain)
        else:
            sim.answers.hold(rid, n)
            sim.answers.track(rid, ev.data)
        sim.harness.handle(n, ev)

    def answer(self, rid: Hashable) -> Answer | None:
        """What became of a request so far (``None``: nothing yet)."""
        return self.answers.get(rid)

    def _on_answer(self, rid: Hashable, result: Any, error: ClientError | None) -> None:
        self.answers[rid] = Answer(result, error)
        op = self._ops.pop(rid, None)
        if op is not None:
            op_id, kind = op
            value = self.sim.codec.decode_get(result) if kind is OpKind.GET else None
            self.sim.recorder.complete(op_id, classify(error), self.sim.now, value)

    def _on_unanswered(self, rid: Hashable, how: str) -> None:
        self.answers[rid] = Answer(how=how)
        op = self._ops.pop(rid, None)
        if op is not None:
            outcome = Outcome.FAIL if how == "refused" else Outcome.UNKNOWN
            self.sim.recorder.complete(op[0], outcome, self.sim.now)

    # -- checks ------------------------------------------------------------------------------

    @property
    def violations(self) -> list[InvariantViolation]:
        """Every violation so far."""
        return list(self.sim.checker.violations)

    def check(self) -> list[InvariantViolation]:
        """Sweep every log for the membership invariants and the committed
        entry's durability, then return the violations found since the last
        call (the per-step checks ran as the steps happened)."""
        checker = self.sim.checker
        checker.at(self.sim.steps, self.sim.now, None)
        checker.check_memberships()
        checker.check_commit_durable()
        new = checker.violations[self._reported :]
        self._reported = len(checker.violations)
        return list(new)

    def assert_ok(self) -> None:
        """``check()``, raising ``SimulationFailure`` if anything was violated."""
        new = self.check()
        if new:
            raise SimulationFailure(new)

    def check_history(self) -> list[Violation]:
        """Linearizability of the reads and writes so far (unanswered ones may
        or may not have happened)."""
        return check_history(self.sim.recorder.ops())

    # -- recovery -----------------------------------------------------------------------------

    def heal_all(self) -> None:
        """Heal every partition and restart every crashed node."""
        self.heal()
        for n in self.sim.nodes.values():
            if not n.alive:
                self.restart(n.id)

    def await_leader(self, timeout: float = 5.0, step: float = 0.01) -> NodeId | None:
        """Advance until a leader exists (at most ``timeout``); the leader or None."""
        deadline = self.now + timeout
        while True:
            leader = self.leader()
            if leader is not None or self.now >= deadline:
                return leader
            self.advance(min(step, deadline - self.now))
