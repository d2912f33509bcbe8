"""The simulation: a whole cluster on virtual time, in one thread, from one seed.

One event loop drives every node's engine, storage, network and clients.
Each ``Engine.handle`` call is a *step*; after every step the invariant
checker looks at what changed, and the step is folded into ``trace_digest``
so a seed's trace can be compared byte for byte across runs and machines.

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

The driver also checks the client protocol (``raftcore.sim.answers``): every
request is answered at most once, by the node incarnation that holds it; an
OK answer comes only after that node applied the entry; a request refused
with ``NotLeader`` is never applied anywhere; a membership change answered
OK names its committed final membership; an engine stopped by
``StorageFailed`` has answered every request it held.

``Simulation`` only wires the parts together and runs the phases; each part
has a module of its own:

- ``scheduler``: virtual time and the event queue (``Scheduler``);
- ``trace``: the trace digest, the log of notes, the trace sink (``Trace``);
- ``node``: one node's state and clock (``SimNode``);
- ``harness``: steps the engines and executes their commands; starts,
  crashes and restarts nodes (``Harness``; ``Mailbox`` for manual driving);
- ``answers``: which request each engine holds, how it was answered, the
  checks on answers (``AnswerRecord``);
- ``clients``: requests on their way to the nodes and answers on their way
  back to the workload, the probe or the churn client (``ClientTraffic``);
- ``faults``: the chaos schedule and clock drift (``FaultInjector``);
- ``liveness``: recovery and catch-up after healing (``LivenessCheck``);
- ``result``: what a run returns (``SimResult``).

``Simulation(..., manual=ManualTiming())`` builds a simulation without the
seeded scheduler, for ``raftcore.sim.manual.SimControl`` to drive step by
step (fixed delays, no random timing anywhere).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

import attrs

from raftcore.engine import Engine
from raftcore.errors import ClientError
from raftcore.events import ReadPolicy
from raftcore.ids import LogId, NodeId
from raftcore.membership import Change, Membership
from raftcore.sim.answers import AnswerRecord
from raftcore.sim.churn import ChurnClient, ChurnRecord
from raftcore.sim.clients import ClientTraffic
from raftcore.sim.faults import FaultInjector, base_net_params
from raftcore.sim.harness import Harness, ManualTiming
from raftcore.sim.invariants import InvariantChecker, InvariantViolation
from raftcore.sim.kv import KvCodec, KvStateMachine, StateMachineFactory, TupleKvCodec
from raftcore.sim.linearizability import HistoryRecorder, check_history
from raftcore.sim.liveness import LivenessCheck
from raftcore.sim.network import SimNetwork
from raftcore.sim.node import SimEngine, SimNode, StorageView
from raftcore.sim.options import ResolvedOptions, SimOptions
from raftcore.sim.result import SimResult
from raftcore.sim.rng import Rng
from raftcore.sim.scheduler import Scheduler
from raftcore.sim.storage import SimStorage
from raftcore.sim.trace import Trace, TraceSink
from raftcore.sim.transfers import TransferClient
from raftcore.sim.workload import Workload

__all__ = ["ManualTiming", "SimEngine", "SimResult", "Simulation", "TraceSink"]

_FAULTS, _HEALING, _DONE = "faults", "healing", "done"


class Simulation:
    """One seeded run. ``Simulation(SimOptions(seed=7)).run()`` -> ``SimResult``.

    ``state_machine`` builds one state machine per node incarnation (see
    ``raftcore.sim.kv``); ``codec`` tells the clients how to talk to it.
    ``trace`` receives every step as a dict (the CLI writes them as NDJSON).
    ``engine`` builds each node's engine, called like ``Engine(node_id, config,
    recovered, rng, now=...)``: pass a wrapper (see ``SimEngine``) to test a variant.
    ``manual`` turns the seeded scheduler off (see ``raftcore.sim.manual``).

    It is also the driver the clients talk to (``workload.Driver``,
    ``churn.ChurnDriver``).
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
        probe = state_machine()
        if self.options.snapshot_every and not (
            callable(getattr(probe, "snapshot", None)) and callable(getattr(probe, "restore", None))
        ):
            # A state machine without snapshot() and restore(): no snapshots.
            self.options = attrs.evolve(self.options, snapshot_every=0)
        opts = self.options
        self.config = opts.config()
        self.codec: KvCodec = codec if codec is not None else TupleKvCodec()
        self.manual = manual
        self.rng = rng = Rng(opts.seed)
        self.phase = _FAULTS
        self.max_steps = opts.steps * 4 + 200_000
        self._ran = False

        self.sched = Scheduler()
        self.trace = Trace(self.sched, trace)
        self.nodes: dict[NodeId, SimNode] = {}
        for n in range(1, opts.nodes + opts.spares + 1):
            self.nodes[n] = SimNode(n, SimStorage(n, rng.fork(f"storage-{n}")), rng.fork(n))
        self._node_ids = tuple(self.nodes)
        #: The voters of the initial membership (the rest are spares).
        self.initial_voters = tuple(range(1, opts.nodes + 1))
        self.checker = InvariantChecker(opts.leader_id_mode, StorageView(self.nodes))
        self.network = SimNetwork(self._node_ids, rng.fork("network"), base_net_params(opts))
        self.answers = AnswerRecord(self.checker, self.nodes)
        self.harness = Harness(
            self.nodes,
            self.sched,
            self.trace,
            self.checker,
            self.network,
            self.answers,
            config=self.config,
            engine_factory=engine,
            sm_factory=state_machine,
            leader_id_mode=opts.leader_id_mode,
            stop_on_violation=opts.stop_on_violation,
            manual=manual,
        )
        churn = opts.churn and manual is None
        self.transfers = TransferClient(self.harness, self.answers, self._node_ids)
        self.faults = FaultInjector(
            opts,
            self.harness,
            self.answers,
            rng.fork("chaos"),
            rng.fork("clocks"),
            initial_voters=self.initial_voters,
            churn=churn,
            transfers=self.transfers,
        )

        self.recorder = HistoryRecorder()
        self.workload = Workload(
            self,
            rng.fork("workload"),
            self.recorder,
            self.codec,
            clients=opts.clients,
            keys=opts.keys,
            timeout=opts.client_timeout,
            read_ratio=0.5 if self._read_local(probe) is not None else 0.0,
        )
        self.liveness = LivenessCheck(
            opts,
            self.harness,
            self,
            self.recorder,
            self.codec,
            self.workload,
            churn=churn,
            on_done=self._done,
        )
        self.probe = self.liveness.probe
        self.churn: ChurnClient | None = None
        if churn:
            self.churn = ChurnClient(
                self,
                rng.fork("churn"),
                self._node_ids,
                interval=opts.churn_interval,
                timeout=2 * opts.client_timeout,
            )
        self.clients = ClientTraffic(
            self.harness,
            self.answers,
            rng.fork("client-net"),
            workload=self.workload,
            probe=self.probe,
            churn=self.churn,
            transfers=self.transfers,
        )
        self.clients.read_local = self._read_local(probe)
        self.harness.clients = self.clients
        self.harness.on_write_crash = self.faults.crash_in_flight
        self.harness.step_limit = opts.steps
        self.harness.on_step_limit = self._faults_over

    # -- driver protocol (for the clients) ---------------------------------------

    @property
    def now(self) -> float:
        return self.sched.now

    @property
    def node_ids(self) -> tuple[NodeId, ...]:
        return self._node_ids

    @property
    def steps(self) -> int:
        """Engine steps so far."""
        return self.harness.steps

    def schedule(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        self.sched.push(self.sched.now + delay, fn, args)

    def new_request_id(self) -> int:
        return self.answers.new_request_id()

    def _read_local(self, probe: object) -> Callable[[Any, str], Any] | None:
        """How clients read a key from a node's state machine after a
        ``ClientRead`` (the codec's ``read_local``); ``None``: this state
        machine and codec cannot, so gets go through the log only."""
        read = getattr(self.codec, "read_local", None)
        if not callable(read):
            return None
        if isinstance(self.codec, TupleKvCodec) and not isinstance(probe, KvStateMachine):
            return None
        return read  # type: ignore[no-any-return]

    def submit(self, node: NodeId, request_id: Hashable, data: Any) -> None:
        self.clients.submit(node, request_id, data)

    def submit_read(self, node: NodeId, request_id: Hashable, key: str, policy: ReadPolicy) -> None:
        self.clients.submit_read(node, request_id, key, policy)

    def submit_change(
        self,
        node: NodeId,
        request_id: Hashable,
        change: Change,
        retain: bool,
        expected: LogId | None,
    ) -> None:
        self.clients.submit_change(node, request_id, change, retain, expected)

    def membership_of(self, node: NodeId) -> Membership | None:
        n = self.nodes.get(node)
        if n is None or not n.alive or n.engine is None:
            return None
        return n.engine.membership

    def committed_membership(self) -> tuple[LogId, Membership] | None:
        return self.checker.committed_membership

    def find_leader(self) -> NodeId | None:
        return self.harness.find_leader()

    def note(self, kind: str, text: str) -> None:
        self.trace.note(kind, text)

    # -- who hears answers, when driven by hand --------------------------------------

    @property
    def on_answer(self) -> Callable[[Hashable, Any, ClientError | None], None] | None:
        return self.clients.on_answer

    @on_answer.setter
    def on_answer(self, fn: Callable[[Hashable, Any, ClientError | None], None] | None) -> None:
        self.clients.on_answer = fn

    @property
    def on_unanswered(self) -> Callable[[Hashable, str], None] | None:
        return self.clients.on_unanswered

    @on_unanswered.setter
    def on_unanswered(self, fn: Callable[[Hashable, str], None] | None) -> None:
        self.clients.on_unanswered = fn

    # -- phases ---------------------------------------------------------------------------

    def _faults_over(self) -> None:
        """The faults phase has taken its steps: heal next."""
        if self.phase is not _FAULTS:
            return
        self.phase = _HEALING
        self.harness.step_limit = math.inf
        self.faults.stop()
        self.sched.push(self.sched.now, self._heal, ())

    def _heal(self) -> None:
        if self.churn is not None:
            self.churn.stop()
        self.faults.heal()
        self.trace.note("heal", "network healed, every node up; waiting for a leader and a write")
        self.liveness.start()

    def _done(self) -> None:
        self.phase = _DONE
        self.sched.stop()

    def _over_budget(self) -> bool:
        if self.harness.steps > self.max_steps:
            self.harness.violation(
                "liveness", f"step budget {self.max_steps} exhausted in phase {self.phase}"
            )
            return True
        return False

    # -- run --------------------------------------------------------------------------------------

    def run(self) -> SimResult:
        """Run the simulation to the end (once per ``Simulation``)."""
        if self._ran:
            raise RuntimeError("a Simulation runs once; build a new one to run again")
        self._ran = True
        opts = self.options
        self.trace.options(opts.describe())
        if self.manual is not None:
            raise RuntimeError("a manually driven simulation has no run(); see SimControl")
        self.harness.boot(self.initial_voters)
        self.workload.start()
        if self.churn is not None:
            self.churn.start()
        self.faults.start()
        self.sched.run(self._over_budget)
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
                        self.steps, self.now, None, "linearizability", f"key {v.key!r}: {v.reason}"
                    )
                )
        churn: tuple[ChurnRecord, ...] = ()
        if self.churn is not None:
            churn = tuple(self.churn.records)
        mc = self.checker.committed_membership
        return SimResult(
            options=opts,
            violations=tuple(violations),
            elections=self.checker.elections,
            committed=self.checker.committed_index,
            trace_digest=self.trace.hexdigest(),
            history=tuple(history),
            steps=self.steps,
            virtual_time=self.now,
            leaders=tuple(self.checker.leaders),
            log=tuple(self.trace.log),
            stats=self._stats(),
            recovery_time=self.liveness.recovery_time,
            linearizability_checked=lin_checked,
            churn=churn,
            final_membership=mc[1] if mc is not None else None,
        )

    def _stats(self) -> dict[str, int]:
        net = self.network
        nodes = self.nodes.values()
        stats = {
            "faults": self.faults.injected,
            "crashes": self.harness.crashes,
            **{f"client_reads_{k}": n for k, n in self.workload.reads_by_policy.items()},
            **self.harness.snapshot_stats,
            **self.transfers.stats(),
            "messages_sent": net.sent,
            "messages_delivered": net.delivered,
            "messages_lost": net.lost,
            "messages_cut": net.cut_drops,
            "messages_duplicated": net.duplicated,
            "messages_straggled": net.straggled,
            "flushes": sum(n.storage.flushes for n in nodes),
            "writes_lost_on_crash": sum(n.storage.lost_on_crash for n in nodes),
            "client_ops": self.workload.invoked,
            "invariant_checks": self.checker.checks,
        }
        for outcome, count in self.workload.outcomes.items():
            stats[f"ops_{outcome.value}"] = count
        if self.churn is not None:
            stats["churn_requests"] = len(self.churn.records)
            for name, count in self.churn.outcomes.items():
                stats[f"churn_{name}"] = count
            stats["memberships_committed"] = len(self.checker.committed_memberships)
        return stats
