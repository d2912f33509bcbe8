"""The simulation: a whole cluster on virtual time, in one thread, from one seed.

One event loop (a heap of ``(time, seq, action)``) drives every node's
engine, storage, network and clients. Each ``Engine.handle`` call is a
*step*; after every step the invariant checker looks at what changed, and
the step is folded into ``trace_digest`` so a seed's trace can be compared
byte for byte across runs and machines.

A run has three phases:

1. *faults*: for ``steps`` engine steps, clients issue puts and gets while
   faults are injected at random: network bursts (loss, duplication, delay
   and reordering, stragglers), partitions (symmetric, one-way, partial,
   bridge), crash and restart (unflushed writes lost, sometimes a torn
   prefix kept), disk failures (``StorageFailed``: the engine must stop),
   process pauses and forced elections. Clocks drift (each node's ``now``
   is ``t * (1 + drift) + offset``) the whole run.
2. *heal*: the network is repaired and crashed nodes restart. Within
   ``liveness_timeouts * election_timeout_max`` a leader must be elected and
   a write answered, and within as long again every node must apply it.
3. *check*: the client history is checked for linearizability.

With ``churn`` the cluster also has ``spares`` uninitialized nodes and a
``ChurnClient`` (``raftcore.sim.churn``) changes the membership all along
the faults phase; liveness and catch-up are then judged on the final
committed membership.

The driver also checks the client protocol: every request is answered at
most once, by the node incarnation that holds it; an OK answer comes only
after that node applied the entry; a request refused with ``NotLeader`` is
never applied anywhere (checked for payloads sent exactly once, which every
put is); a membership change answered OK names its committed final
membership; an engine stopped by ``StorageFailed`` has answered every request
it held (writes and membership changes). A node asking to be woken again and
again at one instant without progress is reported as a busy loop.

``Simulation(..., manual=ManualTiming())`` builds a simulation without the
seeded scheduler, for ``raftcore.sim.manual.SimControl`` to drive step by
step (fixed delays, no random timing anywhere).

Driving rules (the engine contract): storage commands run in order into the
node's volatile view and become durable after a short random delay, reported
with one ``IoFlushed`` per flush; ``Apply`` runs on the state machine at once
and is reported with ``Applied`` a little later, in order; messages get the
network's delays; timers fire at ``next_deadline``, re-read after each step.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import math
import traceback
from collections.abc import Callable, Hashable
from typing import Any, Protocol

import attrs

from raftcore.commands import (
    AppendLog,
    Apply,
    Command,
    Respond,
    SaveVote,
    Send,
    Stopped,
    TruncateLog,
)
from raftcore.engine import Engine
from raftcore.entries import EntryKind
from raftcore.errors import ClientError, NotInitialized, NotLeader, RemoteProtocolError
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
from raftcore.ids import LogId, NodeId, Vote, vote_gt
from raftcore.membership import Change, Membership
from raftcore.messages import Message
from raftcore.sim.churn import ChurnClient, ChurnRecord
from raftcore.sim.invariants import InvariantChecker, InvariantViolation, LeaderTerm
from raftcore.sim.kv import KvCodec, KvStateMachine, StateMachine, StateMachineFactory, TupleKvCodec
from raftcore.sim.linearizability import HistoryRecorder, Op, check_history
from raftcore.sim.network import (
    NetParams,
    SimNetwork,
    bridge_links,
    one_way_links,
    partial_links,
    split_links,
)
from raftcore.sim.options import ResolvedOptions, SimOptions
from raftcore.sim.rng import Rng
from raftcore.sim.storage import SimStorage
from raftcore.sim.workload import LivenessProbe, Workload
from raftcore.state import Metrics, Role


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


__all__ = ["ManualTiming", "SimResult", "Simulation", "TraceSink"]

#: Receives one dict per trace record (steps, faults, restarts).
TraceSink = Callable[[dict[str, Any]], None]

_FAULTS, _HEALING, _DONE = "faults", "healing", "done"
#: Fault kinds injected by the chaos schedule (``drift`` is set up front).
_CHAOS_KINDS = (("net", 3), ("partition", 3), ("crash", 3), ("election", 1))
#: Consecutive wakeups of one node at one virtual instant that count as a busy loop.
_BUSY_LOOP = 64
#: Client requests reaching a node within this window form one batch.
_BATCH_WINDOW = 0.001
#: A missed liveness deadline is reported after this many windows in all,
#: saying whether the cluster recovered late (and when) or not at all.
_OVERTIME = 10


@attrs.frozen
class ManualTiming:
    """Fixed delays for a manually driven simulation (``raftcore.sim.manual``).

    Every message arrives ``latency`` after it is sent unless dropped or
    delivered earlier by hand; storage writes become durable ``flush_delay``
    after the step that issued them (``None``: only by explicit flushes), all
    at once; ``Applied`` follows ``apply_delay`` after ``Apply``.
    """

    latency: float = 0.001
    flush_delay: float | None = 0.001
    apply_delay: float = 0.0


@attrs.frozen
class SimResult:
    """The outcome of one run."""

    options: ResolvedOptions
    violations: tuple[InvariantViolation, ...]
    elections: int
    #: Index of the last entry committed anywhere.
    committed: int
    trace_digest: str
    history: tuple[Op, ...]
    steps: int
    virtual_time: float
    leaders: tuple[LeaderTerm, ...]
    #: ``(virtual time, kind, text)`` for faults, crashes, restarts, heal, liveness.
    log: tuple[tuple[float, str, str], ...]
    stats: dict[str, int]
    #: Virtual seconds from heal to the first answered write (None: never).
    recovery_time: float | None
    linearizability_checked: bool
    #: Every membership change request (with ``churn``) and its outcome.
    churn: tuple[ChurnRecord, ...] = ()
    #: The committed membership at the end of the run.
    final_membership: Membership | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def seed(self) -> int:
        return self.options.seed

    def replay_command(self) -> str:
        return self.options.replay_command()

    def summary(self) -> str:
        status = "ok" if self.ok else f"FAIL ({len(self.violations)} violation(s))"
        rec = f"{self.recovery_time:.3f}s" if self.recovery_time is not None else "-"
        return (
            f"seed {self.seed}: {status} nodes={self.options.nodes} "
            f"mode={self.options.leader_id_mode.value} "
            f"pre_vote={'on' if self.options.pre_vote else 'off'} steps={self.steps} "
            f"vtime={self.virtual_time:.2f}s elections={self.elections} "
            f"committed={self.committed} ops={len(self.history)} recovery={rec} "
            + (
                f"changes={self.stats.get('churn_ok', 0)} voters={self._voters()} "
                if self.churn
                else ""
            )
            + f"digest={self.trace_digest[:16]}"
        )

    def _voters(self) -> str:
        m = self.final_membership
        return ",".join(map(str, sorted(m.voter_ids()))) if m is not None else "-"

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "violations": [str(v) for v in self.violations],
            "elections": self.elections,
            "committed": self.committed,
            "trace_digest": self.trace_digest,
            "steps": self.steps,
            "virtual_time": round(self.virtual_time, 6),
            "ops": len(self.history),
            "recovery_time": (
                round(self.recovery_time, 6) if self.recovery_time is not None else None
            ),
            "linearizability_checked": self.linearizability_checked,
            "nodes": self.options.nodes,
            "mode": self.options.leader_id_mode.value,
            "pre_vote": self.options.pre_vote,
            "options": self.options.as_dict(),
            "stats": self.stats,
            "final_voters": (
                sorted(self.final_membership.voter_ids()) if self.final_membership else None
            ),
            "replay": self.replay_command(),
        }


class _Node:
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
        "rng",
        "sm",
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
        self.paused_until = 0.0
        self.timer_local: float | None = None
        self.timer_token = 0
        #: Applied events are reported in order: not before this virtual time.
        self.applied_at = 0.0
        #: Payloads this incarnation's state machine applied.
        self.applied_data: set[Any] = set()
        #: Client requests waiting to be handed over as one batch.
        self.client_queue: list[tuple[Hashable, Any]] = []
        self.wake_time = -1.0
        self.wake_count = 0


class _View:
    """The invariant checker's window onto node storage."""

    def __init__(self, nodes: dict[NodeId, _Node]) -> None:
        self._nodes = nodes

    def log_id_at(self, node: NodeId, index: int) -> LogId | None:
        return self._nodes[node].storage.log_id_at(index)

    def durable_log_id_at(self, node: NodeId, index: int) -> LogId | None:
        return self._nodes[node].storage.durable_log_id_at(index)

    def memberships(self, node: NodeId, durable: bool = False) -> list[tuple[LogId, Membership]]:
        st = self._nodes[node].storage
        return st.durable_memberships if durable else st.memberships


class Simulation:
    """One seeded run. ``Simulation(SimOptions(seed=7)).run()`` -> ``SimResult``.

    ``state_machine`` builds one state machine per node incarnation (see
    ``raftcore.sim.kv``); ``codec`` tells the clients how to talk to it.
    ``trace`` receives every step as a dict (the CLI writes them as NDJSON).
    ``engine`` builds each node's engine, called like ``Engine(node_id, config,
    recovered, rng, now=...)``: pass a wrapper (see ``SimEngine``) to test a variant.
    ``manual`` turns the seeded scheduler off (see ``raftcore.sim.manual``).
    """

    def __init__(
        self,
        options: SimOptions | ResolvedOptions | None = None,
        *,
        state_machine: StateMachineFactory = KvStateMachine,
        codec: KvCodec | None = None,
        trace: TraceSink | None = None,
        engine: Callable[..., SimEngine] = Engine,
        manual: ManualTiming | None = None,
    ) -> None:
        if options is None:
            options = SimOptions()
        self.options = options.resolve() if isinstance(options, SimOptions) else options
        opts = self.options
        self.config = opts.config()
        self.sm_factory = state_machine
        self.engine_factory = engine
        self.codec: KvCodec = codec if codec is not None else TupleKvCodec()
        self.trace = trace
        self.rng = Rng(opts.seed)
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._now = 0.0
        self.steps = 0
        self.phase = _FAULTS
        self._digest = hashlib.sha256()
        self.log: list[tuple[float, str, str]] = []
        self._stop = False
        self._ran = False

        self.manual = manual
        self.nodes: dict[NodeId, _Node] = {}
        for n in range(1, opts.nodes + opts.spares + 1):
            self.nodes[n] = _Node(n, SimStorage(n, self.rng.fork(f"storage-{n}")), self.rng.fork(n))
        self._node_ids = tuple(self.nodes)
        #: The voters of the initial membership (the rest are spares).
        self.initial_voters = tuple(range(1, opts.nodes + 1))
        self.checker = InvariantChecker(opts.leader_id_mode, _View(self.nodes))

        faults = opts.faults
        base = NetParams(
            loss=opts.loss if "net" in faults else 0.0,
            dup=opts.dup if "net" in faults else 0.0,
            straggle=0.002 if "net" in faults else 0.0,
        )
        self.base_delay = (base.delay_min, base.delay_max)
        self.network = SimNetwork(self._node_ids, self.rng.fork("network"), base)
        clock_rng = self.rng.fork("clocks")
        for node in self.nodes.values():
            d = clock_rng.uniform(-opts.clock_drift, opts.clock_drift)
            o = clock_rng.uniform(0.0, 100.0)
            if "drift" in faults:
                node.drift, node.offset = d, o
        self.chaos_rng = self.rng.fork("chaos")
        self.client_rng = self.rng.fork("client-net")

        self.recorder = HistoryRecorder()
        self.workload = Workload(
            self,
            self.rng.fork("workload"),
            self.recorder,
            self.codec,
            clients=opts.clients,
            keys=opts.keys,
            timeout=opts.client_timeout,
        )
        self.probe = LivenessProbe(
            self,
            self.recorder,
            self.codec,
            self._find_leader,
            self._on_probe_ok,
            interval=opts.heartbeat_interval,
            timeout=opts.client_timeout / 2,
        )
        self.churn: ChurnClient | None = None
        if opts.churn and manual is None:
            self.churn = ChurnClient(
                self,
                self.rng.fork("churn"),
                self._node_ids,
                interval=opts.churn_interval,
                timeout=2 * opts.client_timeout,
            )
        #: Change requests an engine may answer: request id -> (change, retain).
        self._change_requests: dict[Hashable, tuple[Change, bool]] = {}
        #: OK change answers of the current step, checked once it is observed.
        self._change_answers: list[tuple[NodeId, Change, bool, Any]] = []
        #: Manual driving: messages in flight by id, and who hears answers.
        self._in_flight: dict[int, tuple[NodeId, NodeId, Message, float]] = {}
        self._next_msg = 0
        self.on_answer: Callable[[Hashable, Any, ClientError | None], None] | None = None
        self.on_unanswered: Callable[[Hashable, str], None] | None = None
        self._request_ids = 0
        #: request id -> (node, incarnation) for requests an engine holds.
        self._inflight: dict[Hashable, tuple[NodeId, int]] = {}
        self._answered: set[Hashable] = set()
        #: What each request asked for, and how often each payload was sent:
        #: a payload sent once identifies its entry.
        self._request_data: dict[Hashable, Any] = {}
        self._data_count: dict[Any, int] = {}
        #: Payloads of requests refused with NotLeader: they must never commit.
        self._refused_data: set[Any] = set()
        self.heal_time: float | None = None
        self.recovery_time: float | None = None
        #: ``(step, time, text)`` of a missed liveness deadline, reported once
        #: the run knows whether the cluster recovers late or never.
        self._overdue: tuple[int, float, str] | None = None
        self._catchup_target = 0
        self._catchup_deadline = math.inf
        self._catchup_window = 0.0
        self.faults_injected = 0
        self.crashes = 0
        self.max_steps = opts.steps * 4 + 200_000

    # -- Driver protocol (for the clients) ---------------------------------------

    @property
    def now(self) -> float:
        return self._now

    @property
    def node_ids(self) -> tuple[NodeId, ...]:
        return self._node_ids

    def schedule(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        self._push(self._now + delay, fn, args)

    def new_request_id(self) -> int:
        self._request_ids += 1
        return self._request_ids

    def submit(self, node: NodeId, request_id: Hashable, data: Any) -> None:
        self._track_request(request_id, data)
        self.schedule(
            self.client_rng.uniform(0.0001, 0.002), self._client_arrive, node, request_id, data
        )

    def _track_request(self, request_id: Hashable, data: Any) -> None:
        self._request_data[request_id] = data
        with contextlib.suppress(TypeError):  # unhashable payloads are not tracked
            self._data_count[data] = self._data_count.get(data, 0) + 1

    # -- driver protocol (for the churn client) -----------------------------------

    def submit_change(
        self,
        node: NodeId,
        request_id: Hashable,
        change: Change,
        retain: bool,
        expected: LogId | None,
    ) -> None:
        ev = ChangeMembership(request_id, change, retain, expected)
        self.schedule(self.client_rng.uniform(0.0001, 0.002), self._change_arrive, node, ev)

    def membership_of(self, node: NodeId) -> Membership | None:
        n = self.nodes.get(node)
        if n is None or not n.alive or n.engine is None:
            return None
        return n.engine.membership

    def committed_membership(self) -> tuple[LogId, Membership] | None:
        return self.checker.committed_membership

    def find_leader(self) -> NodeId | None:
        return self._find_leader()

    def note(self, kind: str, text: str) -> None:
        self._note(kind, text)

    # -- plumbing ---------------------------------------------------------------------

    def _push(self, t: float, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    def _local(self, node: _Node, t: float) -> float:
        return t * (1.0 + node.drift) + node.offset

    def _virtual(self, node: _Node, local: float) -> float:
        """The earliest virtual time at which ``node``'s clock reads ``local``."""
        k = 1.0 + node.drift
        t = (local - node.offset) / k
        while t * k + node.offset < local:
            t = math.nextafter(t, math.inf)
        return t

    def _note(self, kind: str, text: str) -> None:
        self.log.append((self._now, kind, text))
        self._digest.update(f"N|{self._now!r}|{kind}|{text}\n".encode())
        if self.trace is not None:
            self.trace({"t": self._now, "kind": kind, "text": text})

    def _violation(self, kind: str, message: str, node: NodeId | None = None) -> None:
        self.checker.at(self.steps, self._now, node)
        self.checker.violation(kind, message, node)

    def _deferred(self, node: _Node, fn: Callable[..., None], args: tuple[Any, ...]) -> bool:
        """Hold actions for a paused node until it resumes."""
        if node.paused_until > self._now:
            self._push(node.paused_until, fn, args)
            return True
        return False

    # -- the step ------------------------------------------------------------------------

    def _handle(self, node: _Node, event: Event) -> None:
        eng = node.engine
        assert eng is not None
        now = self._now
        local = self._local(node, now)
        self.steps += 1
        checker = self.checker
        checker.at(self.steps, now, node.id)
        # What the step decides with: its commit counts under this membership.
        before = eng.membership
        try:
            cmds = eng.handle(event, local)
        except RemoteProtocolError as e:
            checker.violation("remote-protocol-error", f"engine rejected {event!r}: {e}")
            self._stop = self._stop or self.options.stop_on_violation
            return
        except Exception as e:
            tb = traceback.format_exc(limit=-3).strip().replace("\n", " | ")
            checker.violation("engine-exception", f"{type(e).__name__}: {e} on {event!r}: {tb}")
            self._stop = True
            return
        line = f"S|{self.steps}|{now!r}|{node.id}|{local!r}|{event!r}|{cmds!r}\n"
        self._digest.update(line.encode())
        if self.trace is not None:
            self.trace(
                {
                    "step": self.steps,
                    "t": now,
                    "node": node.id,
                    "now": local,
                    "event": repr(event),
                    "commands": [repr(c) for c in cmds],
                }
            )
        applied = self._execute(node, cmds) if cmds else None
        checker.on_state(node.id, eng.role, eng.vote, eng.committed, lambda: before)
        if applied:
            for entries, results in applied:
                checker.on_apply(node.id, entries, results)
        checker.after_step(node.id, eng.role, eng.committed, eng.membership)
        if self._change_answers:
            for nid, change, retain, result in self._change_answers:
                try:
                    lid, m = result
                except (TypeError, ValueError):
                    checker.violation(
                        "change-answer", f"change {change!r} answered OK with {result!r}", nid
                    )
                    continue
                checker.on_change_answer(nid, change, retain, lid, m)
            self._change_answers.clear()
        if not node.alive:  # stopped
            return
        storage = node.storage
        if node.crash_on_write and storage.pending:
            # The injected crash lands while writes are in flight.
            node.crash_on_write = False
            self._note(
                "fault", f"node {node.id} crashes with {len(storage.pending)} unflushed write(s)"
            )
            self._crash(node)
            self._schedule_restart(node)
        else:
            if storage.pending and not storage.flush_scheduled:
                manual = self.manual
                if manual is None:
                    storage.flush_scheduled = True
                    self._push(now + storage.next_flush_delay(), self._flush, (node, storage.epoch))
                elif manual.flush_delay is not None:
                    storage.flush_scheduled = True
                    self._push(now + manual.flush_delay, self._flush, (node, storage.epoch))
            self._arm_timer(node, woke=isinstance(event, Wakeup))
        if checker.violations and self.options.stop_on_violation and self.manual is None:
            self._stop = True
        if self.phase is _FAULTS and self.steps >= self.options.steps:
            self.phase = _HEALING
            self._push(now, self._heal, ())

    def _execute(
        self, node: _Node, cmds: list[Command]
    ) -> list[tuple[tuple[Any, ...], dict[int, Any]]] | None:
        checker = self.checker
        storage = node.storage
        nid = node.id
        applied: list[tuple[tuple[Any, ...], dict[int, Any]]] | None = None
        for cmd in cmds:
            if node.disk_failed and not isinstance(cmd, Respond | Stopped):
                checker.violation("storage-failure", f"{cmd!r} after StorageFailed")
                continue
            if isinstance(cmd, Send):
                self._send(node, cmd.to, cmd.message)
            elif isinstance(cmd, AppendLog):
                if cmd.entries:
                    first = cmd.entries[0].log_id.index
                    prev = storage.log_id_at(first - 1)
                    if prev is not None and first - 1 == len(storage.log):
                        checker.on_append(nid, prev, cmd.entries)
                problem = storage.execute(cmd)
                if problem:
                    checker.violation("storage-contract", problem)
            elif isinstance(cmd, SaveVote):
                problem = storage.execute(cmd)
                if problem:
                    checker.violation("storage-contract", problem)
            elif isinstance(cmd, TruncateLog):
                checker.on_truncate(nid, cmd.since, storage.log_id_at(cmd.since))
                problem = storage.execute(cmd)
                if problem:
                    checker.violation("storage-contract", problem)
            elif isinstance(cmd, Apply):
                if cmd.entries:
                    results = self._apply(node, cmd)
                    if applied is None:
                        applied = []
                    applied.append((cmd.entries, results))
            elif isinstance(cmd, Respond):
                self._respond(node, cmd)
            elif isinstance(cmd, Stopped):
                if node.disk_failed:
                    node.stopped = True
                else:
                    checker.violation("unexpected-stop", f"engine stopped: {cmd.reason}")
                    node.alive = False
                    self._stop = True
            else:  # pragma: no cover - the Command union is exhaustive
                checker.violation("unknown-command", repr(cmd))
        return applied

    def _send(self, node: _Node, to: NodeId, msg: Message) -> None:
        if to == node.id or to not in self.nodes:
            self.checker.violation("bad-send", f"message to {to}: {msg!r}")
            return
        self.checker.on_send(node.id, msg, node.storage.durable_vote)
        if self.manual is not None:
            self._send_manual(node.id, to, msg)
            return
        for delay in self.network.plan(node.id, to):
            self._push(self._now + delay, self._deliver, (to, node.id, msg))

    def _send_manual(self, src: NodeId, dst: NodeId, msg: Message) -> None:
        """Manual driving: the message waits in ``_in_flight`` until it arrives
        after the fixed latency, or is delivered, duplicated or dropped by hand."""
        assert self.manual is not None
        net = self.network
        net.sent += 1
        if not net.connected(src, dst):
            net.cut_drops += 1
            return
        self._next_msg += 1
        mid = self._next_msg
        due = self._now + self.manual.latency
        self._in_flight[mid] = (src, dst, msg, due)
        self._push(due, self._arrive, (mid,))

    def _arrive(self, mid: int) -> None:
        rec = self._in_flight.pop(mid, None)
        if rec is not None:
            self._deliver(rec[1], rec[0], rec[2])

    def _apply(self, node: _Node, cmd: Apply) -> dict[int, Any]:
        sm = node.sm
        assert sm is not None
        results: dict[int, Any] = {}
        for e in cmd.entries:
            if e.kind is EntryKind.NORMAL:
                try:
                    results[e.log_id.index] = sm.apply(e.data)
                except Exception as ex:
                    self.checker.violation(
                        "state-machine-error", f"applying {e!r}: {type(ex).__name__}: {ex}"
                    )
                    results[e.log_id.index] = None
                with contextlib.suppress(TypeError):  # unhashable payloads are not tracked
                    node.applied_data.add(e.data)
                    if e.data in self._refused_data and self._data_count.get(e.data) == 1:
                        self.checker.violation(
                            "client-protocol",
                            f"applied {e.log_id} whose request was refused with NotLeader",
                        )
        event = Applied(cmd.entries[-1].log_id, tuple(results.items()))
        delay = node.rng.uniform(0.0, 0.001) if self.manual is None else self.manual.apply_delay
        t = max(self._now + delay, node.applied_at)
        node.applied_at = t
        self._push(t, self._applied, (node, node.incarnation, event))
        return results

    def _respond(self, node: _Node, cmd: Respond) -> None:
        rid = cmd.request_id
        held = self._inflight.pop(rid, None)
        if held is None:
            what = "again" if rid in self._answered else "to an unknown request"
            self.checker.violation("client-protocol", f"answered {what}: {cmd!r}")
            return
        if held != (node.id, node.incarnation):
            self.checker.violation("client-protocol", f"answered a request held by {held}: {cmd!r}")
            return
        self._answered.add(rid)
        change = self._change_requests.pop(rid, None)
        if change is not None:
            if cmd.error is None:
                self._change_answers.append((node.id, change[0], change[1], cmd.result))
        else:
            self._check_answer(node, cmd)
        if self.manual is not None:
            self._client_answer(rid, cmd.result, cmd.error)
            return
        self.schedule(
            self.client_rng.uniform(0.0001, 0.002), self._client_answer, rid, cmd.result, cmd.error
        )

    def _check_answer(self, node: _Node, cmd: Respond) -> None:
        """An OK answer follows the apply; a refusal means never appended."""
        data = self._request_data.pop(cmd.request_id, None)
        with contextlib.suppress(TypeError):
            unique = self._data_count.get(data, 0) == 1
            if cmd.error is None:
                if data not in node.applied_data:
                    self.checker.violation(
                        "client-protocol", f"answered {cmd!r} before applying {data!r}"
                    )
            elif isinstance(cmd.error, NotLeader | NotInitialized) and unique:
                self._refused_data.add(data)
                if any(data in n.applied_data for n in self.nodes.values()):
                    self.checker.violation(
                        "client-protocol", f"refused {cmd!r} but {data!r} was applied"
                    )

    def _arm_timer(self, node: _Node, *, woke: bool) -> None:
        eng = node.engine
        assert eng is not None
        d = eng.next_deadline
        if woke and d is not None and d <= self._local(node, self._now):
            if node.wake_time == self._now:
                node.wake_count += 1
                if node.wake_count >= _BUSY_LOOP:
                    self.checker.violation(
                        "busy-loop",
                        f"woken {node.wake_count} times at one instant; next_deadline stays {d!r}",
                    )
                    self._stop = True
                    return
            else:
                node.wake_time, node.wake_count = self._now, 1
        if d == node.timer_local:
            return
        node.timer_token += 1
        node.timer_local = d
        if d is not None:
            t = max(self._virtual(node, d), self._now)
            self._push(t, self._timer, (node, node.timer_token))

    # -- actions -----------------------------------------------------------------------------

    def _timer(self, node: _Node, token: int) -> None:
        if token != node.timer_token or not node.alive:
            return
        if self._deferred(node, self._timer, (node, token)):
            return
        node.timer_local = None
        self._handle(node, Wakeup())

    def _deliver(self, dst: NodeId, src: NodeId, msg: Message) -> None:
        node = self.nodes[dst]
        if not node.alive:
            return
        if not self.network.connected(src, dst):
            self.network.cut_drops += 1
            return
        if self._deferred(node, self._deliver, (dst, src, msg)):
            return
        self.network.delivered += 1
        self._handle(node, MessageReceived(src, msg))

    def _flush(self, node: _Node, epoch: int, count: int | None = None) -> None:
        storage = node.storage
        if epoch != storage.epoch or not node.alive:
            return
        if self._deferred(node, self._flush, (node, epoch)):
            return
        storage.flush_scheduled = False
        if count is None and self.manual is not None:
            count = len(storage.pending)
        done = storage.flush() if count is None else storage.flush(count)
        if not done:
            return
        self.checker.at(self.steps, self._now, node.id)
        self.checker.on_durable(
            node.id,
            [c.vote for c in done if isinstance(c, SaveVote)],
            any(isinstance(c, TruncateLog) for c in done),
        )
        self._handle(node, IoFlushed(done[-1].io_id))

    def _applied(self, node: _Node, incarnation: int, event: Applied) -> None:
        if incarnation != node.incarnation or not node.alive:
            return
        if self._deferred(node, self._applied, (node, incarnation, event)):
            return
        self._handle(node, event)

    def _client_arrive(self, nid: NodeId, rid: Hashable, data: Any) -> None:
        node = self.nodes[nid]
        if not node.alive:
            self._client_refused(rid)
            return
        # Requests arriving close together go to the engine as one batch, as
        # an adapter that coalesces writes would hand them over.
        if not node.client_queue:
            self._push(self._now + _BATCH_WINDOW, self._client_batch, (node, node.incarnation))
        node.client_queue.append((rid, data))

    def _client_batch(self, node: _Node, incarnation: int) -> None:
        if incarnation != node.incarnation or not node.alive:
            return
        if self._deferred(node, self._client_batch, (node, incarnation)):
            return
        batch, node.client_queue = node.client_queue, []
        for rid, _ in batch:
            self._inflight[rid] = (node.id, node.incarnation)
        if len(batch) == 1:
            self._handle(node, ClientWrite(*batch[0]))
        else:
            self._handle(node, ClientWriteBatch(tuple(batch)))

    def _change_arrive(self, nid: NodeId, ev: ChangeMembership) -> None:
        node = self.nodes[nid]
        rid = ev.request_id
        if not node.alive:
            self._client_refused(rid)
            return
        if self._deferred(node, self._change_arrive, (nid, ev)):
            return
        self._inflight[rid] = (node.id, node.incarnation)
        self._change_requests[rid] = (ev.change, ev.retain)
        self._handle(node, ev)

    def _client_refused(self, rid: Hashable) -> None:
        self._change_requests.pop(rid, None)
        if self.on_unanswered is not None:
            self.on_unanswered(rid, "refused")
        elif self.probe.owns(rid):
            self.probe.on_refused(rid)
        elif self.churn is not None and self.churn.owns(rid):
            self.churn.on_refused(rid)
        else:
            self.workload.on_refused(rid)

    def _client_lost(self, rid: Hashable) -> None:
        self._change_requests.pop(rid, None)
        if self.on_unanswered is not None:
            self.on_unanswered(rid, "lost")
        elif self.probe.owns(rid):
            self.probe.on_lost(rid)
        elif self.churn is not None and self.churn.owns(rid):
            self.churn.on_lost(rid)
        else:
            self.workload.on_lost(rid)

    def _client_answer(self, rid: Hashable, result: Any, error: ClientError | None) -> None:
        if self.on_answer is not None:
            self.on_answer(rid, result, error)
        elif self.probe.owns(rid):
            self.probe.on_response(rid, result, error)
        elif self.churn is not None and self.churn.owns(rid):
            self.churn.on_response(rid, result, error)
        else:
            self.workload.on_response(rid, result, error)

    # -- node lifecycle -------------------------------------------------------------------------

    def _start_node(self, node: _Node) -> None:
        node.incarnation += 1
        node.sm = self.sm_factory()
        node.applied_data = set()
        local = self._local(node, self._now)
        try:
            node.engine = self.engine_factory(
                node.id,
                self.config,
                node.storage.recovered_state(),
                node.rng.fork(f"engine-{node.incarnation}"),
                now=local,
            )
        except Exception as e:
            self._violation("engine-exception", f"restart failed: {type(e).__name__}: {e}", node.id)
            self._stop = True
            return
        node.alive = True
        node.disk_failed = node.stopped = False
        node.timer_local = None
        node.timer_token += 1
        node.wake_count = 0
        self.checker.at(self.steps, self._now, node.id)
        self.checker.on_restart(node.id, node.engine.vote)
        self._arm_timer(node, woke=False)

    def _crash(self, node: _Node, keep: int | None = None) -> None:
        node.alive = False
        node.engine = None
        node.sm = None
        node.timer_token += 1
        node.timer_local = None
        node.crash_token += 1
        node.crash_on_write = False
        node.paused_until = 0.0
        refused, node.client_queue = node.client_queue, []
        self.crashes += 1
        kept = node.storage.crash() if keep is None else node.storage.crash(keep=keep)
        self.checker.at(self.steps, self._now, node.id)
        self.checker.on_durable(
            node.id,
            [c.vote for c in kept if isinstance(c, SaveVote)],
            any(isinstance(c, TruncateLog) for c in kept),
        )
        self.checker.on_crash(node.id)
        lost = [rid for rid, (n, _) in self._inflight.items() if n == node.id]
        for rid in lost:
            del self._inflight[rid]
            self._client_lost(rid)
        for rid, _ in refused:  # never reached the engine
            self._client_refused(rid)

    def _restart(self, node: _Node, token: int) -> None:
        if node.alive or token != node.crash_token:
            return
        self._note("restart", f"node {node.id} restarts from its durable state")
        self._start_node(node)

    def _find_leader(self) -> NodeId | None:
        """The live leader with the greatest vote, if any (the simulator is omniscient)."""
        best: tuple[NodeId, Vote] | None = None
        mode = self.options.leader_id_mode
        for node in self.nodes.values():
            eng = node.engine
            if (
                node.alive
                and eng is not None
                and eng.role is Role.LEADER
                and (best is None or vote_gt(eng.vote, best[1], mode))
            ):
                best = (node.id, eng.vote)
        return best[0] if best is not None else None

    # -- faults ---------------------------------------------------------------------------------

    def _chaos(self) -> None:
        if self.phase is not _FAULTS:
            return
        r = self.chaos_rng
        kinds = [k for k, weight in _CHAOS_KINDS for _ in range(weight) if k in self.options.faults]
        if kinds:
            kind = r.choice(kinds)
            if kind == "net":
                self._net_fault(r)
            elif kind == "partition":
                self._partition_fault(r)
            elif kind == "crash":
                self._crash_fault(r)
            else:
                self._election_fault(r)
        self.schedule(r.expovariate(self.options.fault_interval), self._chaos)

    def _net_fault(self, r: Rng) -> None:
        base = self.network.base
        what = r.choice(("loss", "dup", "delay", "mixed"))
        p = base
        if what in ("loss", "mixed"):
            p = attrs.evolve(p, loss=round(r.uniform(0.05, 0.5), 3))
        if what in ("dup", "mixed"):
            p = attrs.evolve(p, dup=round(r.uniform(0.05, 0.4), 3))
        if what in ("delay", "mixed"):
            p = attrs.evolve(p, delay_min=0.0002, delay_max=round(r.uniform(0.02, 0.25), 4))
        dur = r.uniform(0.1, 1.5)
        token = self.network.set_burst(p)
        self.faults_injected += 1
        self._note(
            "fault",
            f"network {what} burst for {dur:.2f}s: loss={p.loss} dup={p.dup} "
            f"delay={p.delay_min}..{p.delay_max}s",
        )
        self.schedule(dur, self._end_burst, token)

    def _end_burst(self, token: int) -> None:
        if self.phase is _FAULTS:
            self.network.end_burst(token)

    def _partition_fault(self, r: Rng) -> None:
        ids = list(self._node_ids)
        n = len(ids)
        if n < 2:
            return
        leader = self._find_leader()
        kinds = ["split", "one-way", "partial"]
        if leader is not None:
            kinds.append("isolate-leader")
        if n >= 3:
            kinds.append("bridge")
        what = r.choice(kinds)
        if what == "isolate-leader" and leader is not None:
            links = split_links([[leader], [i for i in ids if i != leader]])
            desc = f"leader {leader} isolated"
        elif what == "split":
            k = r.randint(1, n // 2)
            minority = sorted(r.sample(ids, k))
            rest = [i for i in ids if i not in minority]
            links = split_links([minority, rest])
            desc = f"split {minority} | {rest}"
        elif what == "one-way":
            x = r.choice(ids)
            others = [i for i in ids if i != x]
            if r.chance(0.5):
                links = one_way_links([x], others)
                desc = f"one-way: node {x} cannot send to {others}"
            else:
                links = one_way_links(others, [x])
                desc = f"one-way: node {x} cannot hear {others}"
        elif what == "partial":
            x = r.choice(ids)
            y = r.choice([i for i in ids if i != x])
            links = partial_links(ids, x, [y])
            desc = f"partial: node {x} reaches only node {y}"
        else:
            order = list(ids)
            r.shuffle(order)
            b = order[0]
            cut = r.randint(2, n - 1)
            left, right = sorted(order[1:cut]), sorted(order[cut:])
            links = bridge_links(left, b, right)
            desc = f"bridge: {left} <-> node {b} <-> {right}"
        dur = r.uniform(0.1, 1.5)
        pid = self.network.partition(links)
        self.faults_injected += 1
        self._note("fault", f"partition ({desc}) for {dur:.2f}s")
        self.schedule(dur, self._heal_partition, pid, desc)

    def _heal_partition(self, pid: int, desc: str) -> None:
        if self.phase is _FAULTS:
            self.network.heal_partition(pid)
            self._note("heal", f"partition healed ({desc})")

    def _crash_fault(self, r: Rng) -> None:
        alive = [n for n in self.nodes.values() if n.alive and not n.crash_on_write]
        down = len(self.nodes) - len(alive)
        limit = max(1, len(self.nodes) // 2)
        if self.churn is not None:
            # Keep a quorum of the current voters up (spares and removed nodes
            # do not count), so that changes can still commit.
            voters = self._voters()
            up = {a.id for a in alive}
            down = sum(1 for n in voters if n not in up)
            limit = max(1, len(voters) // 2)
        leader = self._find_leader()
        if r.chance(0.3):
            candidates = [n for n in alive if n.paused_until <= self._now]
            if not candidates:
                return
            node = self.nodes[leader] if leader is not None and r.chance(0.5) else None
            if node is None or node not in candidates:
                node = r.choice(candidates)
            dur = r.uniform(0.05, 1.0)
            node.paused_until = self._now + dur
            self.faults_injected += 1
            self._note("fault", f"node {node.id} paused for {dur:.2f}s")
            return
        if not alive or down >= limit:
            return
        target = self.nodes[leader] if leader is not None and r.chance(0.4) else r.choice(alive)
        self.faults_injected += 1
        if r.chance(0.15) and target.paused_until <= self._now:
            self._disk_failure(target, leader)
            return
        if r.chance(0.5) and not target.storage.pending:
            # Wait for the node's next write, so unflushed writes are lost.
            target.crash_on_write = True
            return
        pending = len(target.storage.pending)
        self._note(
            "fault",
            f"node {target.id} crashes"
            + (" (leader)" if target.id == leader else "")
            + (f" with {pending} unflushed write(s)" if pending else ""),
        )
        self._crash(target)
        self._schedule_restart(target)

    def _disk_failure(self, node: _Node, leader: NodeId | None) -> None:
        """The disk fails: the engine must stop at once; the node restarts later."""
        self._note(
            "fault",
            f"node {node.id}{' (leader)' if node.id == leader else ''} loses its disk: "
            "StorageFailed",
        )
        node.disk_failed = True
        self._handle(node, StorageFailed("injected disk failure"))
        if not node.stopped:
            self._violation("storage-failure", "engine did not stop after StorageFailed", node.id)
        else:
            # Every request the engine held is answered as it stops (NodeStopped).
            me = (node.id, node.incarnation)
            held = [rid for rid, at in self._inflight.items() if at == me]
            if held:
                self._violation(
                    "storage-failure",
                    f"engine stopped without answering request(s) {held} it held",
                    node.id,
                )
        if node.alive:
            self._crash(node)
            self._schedule_restart(node)

    def _election_fault(self, r: Rng) -> None:
        alive = [n for n in self.nodes.values() if n.alive and n.paused_until <= self._now]
        if not alive:
            return
        node = r.choice(alive)
        self.faults_injected += 1
        if r.chance(0.8):
            self._note("fault", f"node {node.id} forced to start an election")
            self._handle(node, TriggerElection())
        else:
            self._note("fault", f"node {node.id} forced to send heartbeats")
            self._handle(node, TriggerHeartbeat())

    def _schedule_restart(self, node: _Node) -> None:
        r = self.chaos_rng
        downtime = 0.0 if r.chance(0.15) else r.uniform(0.05, 1.5)
        self.schedule(downtime, self._restart, node, node.crash_token)

    # -- phases ---------------------------------------------------------------------------------

    def _voters(self) -> frozenset[NodeId]:
        """The voters of the newest committed membership (initially: every voter)."""
        mc = self.checker.committed_membership
        return mc[1].voter_ids() if mc is not None else frozenset(self.initial_voters)

    def _members(self) -> list[_Node]:
        """The nodes that must catch up: with churn, the members of the newest
        committed membership (removed nodes receive nothing more)."""
        mc = self.checker.committed_membership
        if self.churn is None or mc is None:
            return list(self.nodes.values())
        ids = mc[1].node_ids()
        return [n for n in self.nodes.values() if n.id in ids]

    def _heal(self) -> None:
        self.heal_time = self._now
        if self.churn is not None:
            self.churn.stop()
        leader = self._find_leader()
        if leader is not None and "crash" in self.options.faults and self.chaos_rng.chance(0.5):
            # Make recovery start from a lost leader, not a comfortable one.
            self._note("fault", f"leader {leader} crashes just before healing")
            self._crash(self.nodes[leader])
        self.network.heal()
        self.network.set_base(NetParams(delay_min=self.base_delay[0], delay_max=self.base_delay[1]))
        for node in self.nodes.values():
            node.paused_until = min(node.paused_until, self._now)
            node.crash_on_write = False
            if not node.alive:
                self._note("restart", f"node {node.id} restarts (heal)")
                self._start_node(node)
        self._note("heal", "network healed, every node up; waiting for a leader and a write")
        window = self.options.liveness_timeouts * self.options.election_timeout_max
        self.schedule(0.0, self.probe.tick)
        self.schedule(window, self._liveness_deadline)

    def _liveness_deadline(self) -> None:
        if self.recovery_time is not None or self.phase is _DONE:
            return
        leader = self._find_leader()
        what = "no leader" if leader is None else f"leader {leader} but no write answered"
        self._overdue = (
            self.steps,
            self._now,
            f"{what} within {self._now - (self.heal_time or 0.0):.3f}s after healing "
            f"({self.probe.attempts} attempt(s))",
        )
        # Run on a while, to tell a slow recovery from none at all.
        window = self.options.liveness_timeouts * self.options.election_timeout_max
        self.schedule(window * (_OVERTIME - 1), self._liveness_final)

    def _report_overdue(self, outcome: str) -> None:
        assert self._overdue is not None
        step, t, text = self._overdue
        self.checker.at(step, t, None)
        self.checker.violation("liveness", f"{text}; {outcome}")
        self._stop = True

    def _liveness_final(self) -> None:
        if self.recovery_time is not None or self.phase is _DONE:
            return
        leader = self._find_leader()
        since = self._now - (self.heal_time or 0.0)
        if leader is None:
            self._report_overdue(f"still no leader after {since:.3f}s" + self._diagnose_no_leader())
        else:
            self._report_overdue(f"leader {leader} but still no write answered after {since:.3f}s")

    def _diagnose_no_leader(self) -> str:
        """What the cluster's state says about a missing leader.

        A candidate (a live node the engine lets campaign: a voter of its own
        membership, or one whose removal is not yet committed) needs an
        election quorum of its membership; Raft lets a voter refuse it only
        when the voter's own log is newer. Two shapes are named:

        - *the newest log is on nodes that never campaign*: they are not
          voters of their own membership and no candidate's log is as new,
          so every candidate is refused on log grounds;
        - *candidate c could win on logs alone*: an election quorum of its
          membership has logs no newer than its own, so something else keeps
          refusing it (its membership, a lease, term races between
          candidates).
        """
        live: dict[NodeId, tuple[Membership | None, LogId, Role]] = {}
        for node in self.nodes.values():
            eng = node.engine
            if node.alive and eng is not None:
                live[node.id] = (eng.membership, node.storage.last_log_id(), eng.role)
        campaigning = (Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE)
        candidates: list[tuple[NodeId, LogId]] = []
        could_win: list[str] = []
        for c, (m, last, role) in sorted(live.items()):
            if m is None or role not in campaigning:
                continue
            candidates.append((c, last))
            voters = m.voter_ids()
            log_ok = {c} | {v for v in voters if v in live and live[v][1] <= last}
            if m.quorum_set().is_election_quorum(log_ok):
                could_win.append(f"{c} (logs allow {','.join(map(str, sorted(log_ok)))})")
        out = ""
        best = max((last for _, last in candidates), default=None)
        ahead = [
            n
            for n, (m, last, role) in sorted(live.items())
            if role not in campaigning and m is not None and (best is None or last > best)
        ]
        if ahead:
            out += (
                "; the newest log is on nodes that never campaign: "
                f"{','.join(map(str, ahead))} (candidates: "
                f"{','.join(str(c) for c, _ in candidates) or 'none'})"
            )
        if could_win:
            out += "; could win on logs alone: " + " ".join(could_win)
        return out

    def _on_probe_ok(self, leader: NodeId) -> None:
        assert self.heal_time is not None
        self.recovery_time = self._now - self.heal_time
        self._note(
            "liveness",
            f"write answered by leader {leader} {self.recovery_time:.3f}s after healing",
        )
        if self._overdue is not None:
            self._report_overdue(
                f"recovered late: a write was answered {self.recovery_time:.3f}s after healing"
            )
            return
        self.workload.stop()
        self._catchup_target = self.checker.committed_index
        window = self.options.liveness_timeouts * self.options.election_timeout_max
        self._catchup_window = window
        self._catchup_deadline = self._now + window
        self.schedule(0.0, self._check_caught_up)

    def _check_caught_up(self) -> None:
        target = self._catchup_target
        behind = {
            n.id: self.checker.applied_index(n.id)
            for n in self._members()
            if self.checker.applied_index(n.id) < target
        }
        if not behind and self.workload.outstanding == 0:
            self._note("liveness", f"every node applied index {target}")
            self.phase = _DONE
            self._stop = True
            return
        if self._now >= self._catchup_deadline:
            if behind:
                self._violation(
                    "liveness",
                    f"nodes did not catch up to index {target} within "
                    f"{self._catchup_window:.3f}s of the first answered write: applied {behind}",
                )
            self.phase = _DONE
            self._stop = True
            return
        self.schedule(self.options.heartbeat_interval, self._check_caught_up)

    # -- run --------------------------------------------------------------------------------------

    def run(self) -> SimResult:
        """Run the simulation to the end (once per ``Simulation``)."""
        if self._ran:
            raise RuntimeError("a Simulation runs once; build a new one to run again")
        self._ran = True
        opts = self.options
        self._digest.update(f"O|{opts.describe()}\n".encode())
        if self.manual is not None:
            raise RuntimeError("a manually driven simulation has no run(); see SimControl")
        self._boot()
        self.workload.start()
        if self.churn is not None:
            self.churn.start()
        if {k for k, _ in _CHAOS_KINDS} & opts.faults:
            self.schedule(self.chaos_rng.expovariate(opts.fault_interval), self._chaos)
        heap = self._heap
        while heap and not self._stop:
            t, _, fn, args = heapq.heappop(heap)
            self._now = t
            fn(*args)
            if self.steps > self.max_steps:
                self._violation(
                    "liveness", f"step budget {self.max_steps} exhausted in phase {self.phase}"
                )
                break
        self.workload.abandon()
        if self.churn is not None:
            self.churn.abandon()
        violations = list(self.checker.violations)
        history = self.recorder.ops()
        lin_checked = False
        if opts.check_linearizability:
            lin_checked = True
            for v in check_history(history):
                violations.append(
                    InvariantViolation(
                        self.steps, self._now, None, "linearizability", f"key {v.key!r}: {v.reason}"
                    )
                )
        net = self.network
        stats = {
            "faults": self.faults_injected,
            "crashes": self.crashes,
            "messages_sent": net.sent,
            "messages_delivered": net.delivered,
            "messages_lost": net.lost,
            "messages_cut": net.cut_drops,
            "messages_duplicated": net.duplicated,
            "messages_straggled": net.straggled,
            "flushes": sum(n.storage.flushes for n in self.nodes.values()),
            "writes_lost_on_crash": sum(n.storage.lost_on_crash for n in self.nodes.values()),
            "client_ops": self.workload.invoked,
            "invariant_checks": self.checker.checks,
        }
        for outcome, count in self.workload.outcomes.items():
            stats[f"ops_{outcome.value}"] = count
        churn: tuple[ChurnRecord, ...] = ()
        if self.churn is not None:
            churn = tuple(self.churn.records)
            stats["churn_requests"] = len(churn)
            for name, count in self.churn.outcomes.items():
                stats[f"churn_{name}"] = count
            stats["memberships_committed"] = len(self.checker.committed_memberships)
        mc = self.checker.committed_membership
        return SimResult(
            options=opts,
            violations=tuple(violations),
            elections=self.checker.elections,
            committed=self.checker.committed_index,
            trace_digest=self._digest.hexdigest(),
            history=tuple(history),
            steps=self.steps,
            virtual_time=self._now,
            leaders=tuple(self.checker.leaders),
            log=tuple(self.log),
            stats=stats,
            recovery_time=self.recovery_time,
            linearizability_checked=lin_checked,
            churn=churn,
            final_membership=mc[1] if mc is not None else None,
        )

    def _boot(self) -> None:
        """Start every node; node 1 forms the cluster of the initial voters."""
        for node in self.nodes.values():
            self._start_node(node)
        self._handle(self.nodes[1], Initialize(Membership.of(self.initial_voters)))
