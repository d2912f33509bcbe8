"""The node harness: runs every node's engine by the engine contract.

Each ``Engine.handle`` call is a *step*: the harness feeds the event in at
the node's clock reading, folds the step into the trace, executes the
commands the engine returned and reports everything to the invariant
checker, which looks at what changed.

Driving rules (the engine contract): storage commands run in order into the
node's volatile view and become durable after a short random delay, reported
with one ``IoFlushed`` per flush; ``Apply`` runs on the state machine at once
and is reported with ``Applied`` a little later, in order; messages get the
network's delays; timers fire at ``next_deadline``, re-read after each step.
Snapshots: ``BuildSnapshot`` takes the state machine's bytes at once and
reports ``SnapshotBuilt`` (the snapshot then durable) a little later, in
order with ``Applied``; ``SendSnapshotChunk`` reads the chunk from the
node's durable snapshot (dropped if a newer one replaced it);
``WriteSnapshotChunk`` collects chunks in memory (a crash loses them);
``InstallSnapshot`` makes the snapshot durable at once and restores the
state machine a little later, reporting ``SnapshotInstalled`` (so a crash
in between restarts from a snapshot newer than the log).
A node asking to be woken again and again at one instant without progress
is reported as a busy loop. A paused node's actions wait until it resumes.

The harness also starts, crashes and restarts nodes: a crash loses the
engine, the state machine and every unflushed write (``SimStorage.crash``);
a restart builds a new engine from the durable state.

With ``ManualTiming`` (``raftcore.sim.manual``) every delay is fixed and
messages wait in a ``Mailbox`` where they can be delivered early, dropped or
duplicated by hand.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Hashable
from typing import Any, Protocol

import attrs

from raftcore.commands import (
    AppendLog,
    Apply,
    BuildSnapshot,
    Command,
    InstallSnapshot,
    PurgeLog,
    Respond,
    SaveVote,
    Send,
    SendSnapshotChunk,
    Stopped,
    TruncateLog,
    WriteSnapshotChunk,
)
from raftcore.config import Config
from raftcore.entries import Entry, EntryKind
from raftcore.errors import RemoteProtocolError
from raftcore.events import (
    Applied,
    Event,
    Initialize,
    IoFlushed,
    MessageReceived,
    SnapshotBuilt,
    SnapshotInstalled,
    Wakeup,
)
from raftcore.ids import ZERO_LOG_ID, LeaderIdMode, NodeId, Vote, vote_gt
from raftcore.membership import Membership
from raftcore.messages import Message
from raftcore.sim.answers import AnswerRecord
from raftcore.sim.invariants import InvariantChecker
from raftcore.sim.kv import StateMachineFactory
from raftcore.sim.network import SimNetwork
from raftcore.sim.node import SimEngine, SimNode
from raftcore.sim.scheduler import Scheduler
from raftcore.sim.storage import SimSnapshot
from raftcore.sim.trace import Trace
from raftcore.snapshots import SnapshotMeta
from raftcore.state import Role

__all__ = ["ClientEnd", "Harness", "Mailbox", "ManualTiming"]

#: Consecutive wakeups of one node at one virtual instant that count as a busy loop.
_BUSY_LOOP = 64

Applies = list[tuple[tuple[Any, ...], dict[int, Any]]]


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


class ClientEnd(Protocol):
    """Where answers go, and word of requests no engine will answer
    (``raftcore.sim.clients.ClientTraffic``)."""

    def answer(self, cmd: Respond, node: SimNode) -> None: ...
    def lost(self, request_id: Hashable) -> None: ...
    def refused(self, request_id: Hashable) -> None: ...


class Mailbox:
    """Manual driving: messages in flight by id. Each arrives after the fixed
    latency unless it is delivered early, duplicated or dropped by hand."""

    def __init__(
        self,
        sched: Scheduler,
        network: SimNetwork,
        latency: float,
        deliver: Callable[[NodeId, NodeId, Message], None],
    ) -> None:
        self._sched = sched
        self._network = network
        self._latency = latency
        self._deliver = deliver
        self._next_msg = 0
        #: message id -> (src, dst, message, due)
        self.in_flight: dict[int, tuple[NodeId, NodeId, Message, float]] = {}

    def post(self, src: NodeId, dst: NodeId, msg: Message) -> None:
        """A node sends ``msg`` (a cut link loses it at once)."""
        net = self._network
        net.sent += 1
        if not net.connected(src, dst):
            net.cut_drops += 1
            return
        self._enqueue(src, dst, msg)

    def _enqueue(self, src: NodeId, dst: NodeId, msg: Message) -> None:
        self._next_msg += 1
        mid = self._next_msg
        due = self._sched.now + self._latency
        self.in_flight[mid] = (src, dst, msg, due)
        self._sched.push(due, self._arrive, (mid,))

    def _arrive(self, mid: int) -> None:
        rec = self.in_flight.pop(mid, None)
        if rec is not None:
            self._deliver(rec[1], rec[0], rec[2])

    def deliver(self, mid: int) -> bool:
        """Deliver a message now; False if it is gone."""
        rec = self.in_flight.pop(mid, None)
        if rec is None:
            return False
        src, dst, msg, _ = rec
        self._deliver(dst, src, msg)
        return True

    def drop(self, mid: int) -> bool:
        """Lose a message; False if it is gone."""
        if self.in_flight.pop(mid, None) is None:
            return False
        self._network.lost += 1
        return True

    def duplicate(self, mid: int) -> bool:
        """Send a copy of a message (arriving ``latency`` from now)."""
        rec = self.in_flight.get(mid)
        if rec is None:
            return False
        src, dst, msg, _ = rec
        self._enqueue(src, dst, msg)
        self._network.duplicated += 1
        return True


class Harness:
    """Steps the nodes' engines and executes their commands (see the module docstring)."""

    def __init__(
        self,
        nodes: dict[NodeId, SimNode],
        sched: Scheduler,
        trace: Trace,
        checker: InvariantChecker,
        network: SimNetwork,
        answers: AnswerRecord,
        *,
        config: Config,
        engine_factory: Callable[..., SimEngine],
        sm_factory: StateMachineFactory,
        leader_id_mode: LeaderIdMode,
        stop_on_violation: bool,
        manual: ManualTiming | None = None,
    ) -> None:
        self.nodes = nodes
        self.sched = sched
        self.trace = trace
        self.checker = checker
        self.network = network
        self.answers = answers
        self.config = config
        self.engine_factory = engine_factory
        self.sm_factory = sm_factory
        self.leader_id_mode = leader_id_mode
        self.stop_on_violation = stop_on_violation
        self.manual = manual
        self.mailbox = (
            Mailbox(sched, network, manual.latency, self.deliver) if manual is not None else None
        )
        #: Engine steps so far (``Engine.handle`` calls).
        self.steps = 0
        self.crashes = 0
        #: Who hears answers, and of requests lost or refused (set once the
        #: clients are built: they hand requests to ``handle``).
        self.clients: ClientEnd | None = None
        #: The fault injector's crash of a node with writes in flight
        #: (``SimNode.crash_on_write``), run right after the step that wrote.
        self.on_write_crash: Callable[[SimNode], None] | None = None
        #: ``on_step_limit`` runs after each step from the one that reaches
        #: ``step_limit`` on (the end of the faults phase; the Simulation then
        #: lifts the limit).
        self.step_limit: float = math.inf
        self.on_step_limit: Callable[[], None] | None = None
        #: The entries each snapshot covers, by id (what an install fills in).
        self.snapshot_entries: dict[str, tuple[Entry, ...]] = {}
        self.snapshot_stats = {
            "snapshots_built": 0,
            "snapshot_chunks_sent": 0,
            "snapshot_transfers": 0,
            "snapshots_installed": 0,
            "log_purges": 0,
        }

    def violation(self, kind: str, message: str, node: NodeId | None = None) -> None:
        """Report a violation found outside a step (at the current step and time)."""
        self.checker.at(self.steps, self.sched.now, node)
        self.checker.violation(kind, message, node)

    # -- the step ------------------------------------------------------------------------

    def handle(self, node: SimNode, event: Event) -> None:
        """One step: ``node``'s engine handles ``event``; its commands run."""
        eng = node.engine
        assert eng is not None
        sched = self.sched
        now = sched.now
        local = node.local(now)
        self.steps += 1
        steps = self.steps
        checker = self.checker
        checker.at(steps, now, node.id)
        # What the step decides with: its commit counts under this membership.
        before = eng.membership
        was_leader = eng.role is Role.LEADER
        try:
            cmds = eng.handle(event, local)
        except RemoteProtocolError as e:
            checker.violation("remote-protocol-error", f"engine rejected {event!r}: {e}")
            if self.stop_on_violation:
                sched.stop()
            return
        except Exception as e:
            tb = traceback.format_exc(limit=-3).strip().replace("\n", " | ")
            checker.violation("engine-exception", f"{type(e).__name__}: {e} on {event!r}: {tb}")
            sched.stop()
            return
        self.trace.step(steps, node.id, local, event, cmds)
        applied = self._execute(node, cmds) if cmds else None
        checker.on_state(node.id, eng.role, eng.vote, eng.committed, lambda: before)
        if not was_leader and eng.role is Role.LEADER:
            self._check_lease_bypass(node, eng.vote)
        if applied:
            for entries, results in applied:
                checker.on_apply(node.id, entries, results)
        checker.after_step(node.id, eng.role, eng.committed, eng.membership)
        if self.answers.change_answers:
            self.answers.check_change_answers()
        if not node.alive:  # stopped
            return
        storage = node.storage
        if node.crash_on_write and storage.pending:
            # The injected crash lands while writes are in flight.
            node.crash_on_write = False
            assert self.on_write_crash is not None
            self.on_write_crash(node)
        else:
            if storage.pending and not storage.flush_scheduled:
                manual = self.manual
                if manual is None:
                    storage.flush_scheduled = True
                    sched.push(now + storage.next_flush_delay(), self.flush, (node, storage.epoch))
                elif manual.flush_delay is not None:
                    storage.flush_scheduled = True
                    sched.push(now + manual.flush_delay, self.flush, (node, storage.epoch))
            self._arm_timer(node, woke=isinstance(event, Wakeup))
        if checker.violations and self.stop_on_violation and self.manual is None:
            sched.stop()
        if steps >= self.step_limit and self.on_step_limit is not None:
            self.on_step_limit()

    def _execute(self, node: SimNode, cmds: list[Command]) -> Applies | None:
        checker = self.checker
        storage = node.storage
        nid = node.id
        applied: Applies | None = None
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
            elif isinstance(cmd, PurgeLog):
                assert node.engine is not None
                checker.on_purge(nid, cmd.upto, node.engine.committed)
                self.snapshot_stats["log_purges"] += 1
                problem = storage.execute(cmd)
                if problem:
                    checker.violation("storage-contract", problem)
            elif isinstance(cmd, BuildSnapshot):
                self._build_snapshot(node, cmd)
            elif isinstance(cmd, SendSnapshotChunk):
                self._send_chunk(node, cmd)
            elif isinstance(cmd, WriteSnapshotChunk):
                self._write_chunk(node, cmd)
            elif isinstance(cmd, InstallSnapshot):
                self._install_snapshot(node, cmd)
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
                    self.sched.stop()
            else:  # pragma: no cover - the Command union is exhaustive
                checker.violation("unknown-command", repr(cmd))
        return applied

    def _send(self, node: SimNode, to: NodeId, msg: Message) -> None:
        if to == node.id or to not in self.nodes:
            self.checker.violation("bad-send", f"message to {to}: {msg!r}")
            return
        self.checker.on_send(node.id, msg, node.storage.durable_vote)
        if self.mailbox is not None:
            self.mailbox.post(node.id, to, msg)
            return
        sched = self.sched
        for delay in self.network.plan(node.id, to):
            sched.push(sched.now + delay, self.deliver, (to, node.id, msg))

    def _apply(self, node: SimNode, cmd: Apply) -> dict[int, Any]:
        sm = node.sm
        assert sm is not None
        answers = self.answers
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
                answers.applied(node, e.data, e.log_id)
        node.sm_index = cmd.entries[-1].log_id.index
        self._in_order(node, self._applied, Applied(cmd.entries[-1].log_id, tuple(results.items())))
        return results

    def _in_order(self, node: SimNode, action: Callable[..., None], *args: Any) -> None:
        """Run ``action`` a little later, after the node's earlier ``Applied`` reports."""
        delay = node.rng.uniform(0.0, 0.001) if self.manual is None else self.manual.apply_delay
        t = max(self.sched.now + delay, node.applied_at)
        node.applied_at = t
        self.sched.push(t, action, (node, node.incarnation, *args))

    # -- snapshots -------------------------------------------------------------------------

    def _build_snapshot(self, node: SimNode, cmd: BuildSnapshot) -> None:
        sm = node.sm
        storage = node.storage
        idx = cmd.last_log_id.index
        if storage.log_id_at(idx) != cmd.last_log_id:
            self.checker.violation("snapshot", f"{cmd!r} names an entry not in the log")
            return
        data = sm.snapshot()  # type: ignore[union-attr]
        node.snapshots_made += 1
        sid = f"n{node.id}-{node.incarnation}-{node.snapshots_made}"
        meta = SnapshotMeta(cmd.last_log_id, cmd.membership, sid, len(data))
        entries = tuple(storage.log[:idx])
        self.snapshot_entries[sid] = entries
        self.checker.on_snapshot_state(node.id, cmd.last_log_id, data, kind="built")
        self._in_order(node, self._snapshot_built, SimSnapshot(meta, data, entries))

    def _snapshot_built(self, node: SimNode, incarnation: int, snap: SimSnapshot) -> None:
        if incarnation != node.incarnation or not node.alive:
            return  # the crash came first: the snapshot was never finished
        if self.sched.hold(node.paused_until, self._snapshot_built, (node, incarnation, snap)):
            return
        self._keep_snapshot(node, snap)
        self.snapshot_stats["snapshots_built"] += 1
        self.handle(node, SnapshotBuilt(snap.meta))

    def _keep_snapshot(self, node: SimNode, snap: SimSnapshot) -> None:
        """The snapshot store keeps the newest snapshot."""
        old = node.storage.snapshot
        if old is None or old.meta.last_log_id.index < snap.meta.last_log_id.index:
            node.storage.snapshot = snap

    def _send_chunk(self, node: SimNode, cmd: SendSnapshotChunk) -> None:
        snap = node.storage.snapshot
        m = cmd.message
        if snap is None or snap.meta != m.meta:
            return  # replaced by a newer one: the engine moves on to that
        if m.offset == 0:
            self.snapshot_stats["snapshot_transfers"] += 1
        self.snapshot_stats["snapshot_chunks_sent"] += 1
        self._send(node, cmd.to, m._replace(data=snap.data[m.offset : m.offset + cmd.length]))

    def _write_chunk(self, node: SimNode, cmd: WriteSnapshotChunk) -> None:
        r = node.receiving
        if cmd.offset == 0:
            r = node.receiving = (cmd.meta, bytearray())
        if r is None or r[0] != cmd.meta or len(r[1]) != cmd.offset:
            got = "nothing" if r is None else f"{len(r[1])} bytes of {r[0].snapshot_id}"
            self.checker.violation(
                "snapshot", f"chunk of {cmd.meta.snapshot_id} at {cmd.offset} after {got}"
            )
            return
        r[1].extend(cmd.data)

    def _install_snapshot(self, node: SimNode, cmd: InstallSnapshot) -> None:
        r = node.receiving
        meta = cmd.meta
        if r is None or r[0] != meta or len(r[1]) != meta.size:
            self.checker.violation("snapshot", f"install of {meta.snapshot_id}, not all written")
            return
        node.receiving = None
        entries = self.snapshot_entries.get(meta.snapshot_id)
        if entries is None:
            self.checker.violation("snapshot", f"install of {meta.snapshot_id}, never built")
            return
        snap = SimSnapshot(meta, bytes(r[1]), entries)
        self._keep_snapshot(node, snap)  # finished: durable before the state machine has it
        self._in_order(node, self._snapshot_installed, snap)

    def _snapshot_installed(self, node: SimNode, incarnation: int, snap: SimSnapshot) -> None:
        if incarnation != node.incarnation or not node.alive:
            return
        if self.sched.hold(node.paused_until, self._snapshot_installed, (node, incarnation, snap)):
            return
        self._restore(node, snap, "installed")
        self.snapshot_stats["snapshots_installed"] += 1
        self.handle(node, SnapshotInstalled(snap.meta))

    def _restore(self, node: SimNode, snap: SimSnapshot, kind: str) -> None:
        """Replace ``node``'s state machine with ``snap`` and tell the checker."""
        sm = node.sm
        assert sm is not None
        lid = snap.meta.last_log_id
        sm.restore(snap.data, lid)  # type: ignore[attr-defined]
        node.sm_index = lid.index
        self.checker.at(self.steps, self.sched.now, node.id)
        state = sm.snapshot()  # type: ignore[attr-defined]
        self.checker.on_snapshot_state(node.id, lid, state, kind=kind)
        for e in snap.entries:
            if e.kind is EntryKind.NORMAL:
                self.answers.applied(node, e.data, e.log_id)

    def _respond(self, node: SimNode, cmd: Respond) -> None:
        if self.answers.answered(node, cmd):
            assert self.clients is not None
            self.clients.answer(cmd, node)

    def _arm_timer(self, node: SimNode, *, woke: bool) -> None:
        eng = node.engine
        assert eng is not None
        now = self.sched.now
        d = eng.next_deadline
        if woke and d is not None and d <= node.local(now):
            if node.wake_time == now:
                node.wake_count += 1
                if node.wake_count >= _BUSY_LOOP:
                    self.checker.violation(
                        "busy-loop",
                        f"woken {node.wake_count} times at one instant; next_deadline stays {d!r}",
                    )
                    self.sched.stop()
                    return
            else:
                node.wake_time, node.wake_count = now, 1
        if d == node.timer_local:
            return
        node.timer_token += 1
        node.timer_local = d
        if d is not None:
            t = max(node.virtual(d), now)
            self.sched.push(t, self._timer, (node, node.timer_token))

    # -- scheduled actions -----------------------------------------------------------------

    def _timer(self, node: SimNode, token: int) -> None:
        if token != node.timer_token or not node.alive:
            return
        if self.sched.hold(node.paused_until, self._timer, (node, token)):
            return
        node.timer_local = None
        self.handle(node, Wakeup())

    def deliver(self, dst: NodeId, src: NodeId, msg: Message) -> None:
        """``msg`` from ``src`` reaches ``dst`` (unless it is down or cut off)."""
        node = self.nodes[dst]
        if not node.alive:
            return
        network = self.network
        if not network.connected(src, dst):
            network.cut_drops += 1
            return
        if self.sched.hold(node.paused_until, self.deliver, (dst, src, msg)):
            return
        network.delivered += 1
        self.handle(node, MessageReceived(src, msg))

    def flush(self, node: SimNode, epoch: int, count: int | None = None) -> None:
        """``node``'s storage flushes (``count`` pending writes, or as its
        timing says; manually: all); the engine hears ``IoFlushed``."""
        storage = node.storage
        if epoch != storage.epoch or not node.alive:
            return
        if self.sched.hold(node.paused_until, self.flush, (node, epoch)):
            return
        storage.flush_scheduled = False
        if count is None and self.manual is not None:
            count = len(storage.pending)
        done = storage.flush() if count is None else storage.flush(count)
        if not done:
            return
        self.checker.at(self.steps, self.sched.now, node.id)
        self.checker.on_durable(
            node.id,
            [c.vote for c in done if isinstance(c, SaveVote)],
            any(isinstance(c, TruncateLog) for c in done),
        )
        self.handle(node, IoFlushed(done[-1].io_id))

    def _applied(self, node: SimNode, incarnation: int, event: Applied) -> None:
        if incarnation != node.incarnation or not node.alive:
            return
        if self.sched.hold(node.paused_until, self._applied, (node, incarnation, event)):
            return
        self.handle(node, event)

    # -- node lifecycle -----------------------------------------------------------------------

    def boot(self, voters: tuple[NodeId, ...]) -> None:
        """Start every node; node 1 forms the cluster of ``voters``."""
        for node in self.nodes.values():
            self.start(node)
        self.handle(self.nodes[1], Initialize(Membership.of(voters)))

    def start(self, node: SimNode) -> None:
        """Start a new incarnation of ``node`` from its durable state."""
        node.incarnation += 1
        node.sm = self.sm_factory()
        node.sm_index = 0
        node.applied_data = set()
        node.receiving = None
        local = node.local(self.sched.now)
        recovered = node.storage.recovered_state()
        snap = node.storage.snapshot
        if snap is not None:
            # The state machine starts from the latest snapshot.
            self._restore(node, snap, "restored")
            recovered = attrs.evolve(recovered, applied=snap.meta.last_log_id)
        try:
            node.engine = self.engine_factory(
                node.id,
                self.config,
                recovered,
                node.rng.fork(f"engine-{node.incarnation}"),
                now=local,
            )
        except Exception as e:
            self.violation("engine-exception", f"restart failed: {type(e).__name__}: {e}", node.id)
            self.sched.stop()
            return
        node.alive = True
        node.disk_failed = node.stopped = False
        node.timer_local = None
        node.timer_token += 1
        node.wake_count = 0
        self.checker.at(self.steps, self.sched.now, node.id)
        self.checker.on_restart(
            node.id, node.engine.vote, snap.meta.last_log_id if snap is not None else ZERO_LOG_ID
        )
        self._arm_timer(node, woke=False)

    def crash(self, node: SimNode, keep: int | None = None) -> None:
        """Crash ``node``: unflushed writes are lost (but the first ``keep``;
        default: as the storage's randomness says), and so are the requests
        it held; requests waiting to be batched are refused."""
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
        self.checker.at(self.steps, self.sched.now, node.id)
        self.checker.on_durable(
            node.id,
            [c.vote for c in kept if isinstance(c, SaveVote)],
            any(isinstance(c, TruncateLog) for c in kept),
        )
        self.checker.on_crash(node.id)
        answers = self.answers
        lost = answers.held_on(node.id)
        if lost or refused:
            clients = self.clients
            assert clients is not None
            for rid in lost:
                answers.release(rid)
                clients.lost(rid)
            for rid, _ in refused:  # never reached the engine
                clients.refused(rid)

    def restart(self, node: SimNode, token: int) -> None:
        """Restart ``node`` unless it is up or crashed again since (``token``)."""
        if node.alive or token != node.crash_token:
            return
        self.trace.note("restart", f"node {node.id} restarts from its durable state")
        self.start(node)

    def _check_lease_bypass(self, node: SimNode, vote: Vote) -> None:
        """``node`` was just elected: no older leader may still answer lease
        reads (its lease says nobody else can be elected yet; a transfer
        revokes it before the voters may waive it)."""
        now = self.sched.now
        for other in self.nodes.values():
            eng = other.engine
            if (
                other is node
                or not other.alive
                or eng is None
                or eng.role is not Role.LEADER
                or not vote_gt(vote, eng.vote, self.leader_id_mode)
            ):
                continue
            local = other.local(now)
            end = eng.lease_read_end(local)
            if end is not None and local < end:
                self.violation(
                    "lease-bypassed",
                    f"node {node.id} elected with {vote!r} while leader {other.id} "
                    f"({eng.vote!r}) still answers lease reads for {end - local:.4f}s",
                    node.id,
                )

    def find_leader(self) -> NodeId | None:
        """The live leader with the greatest vote, if any (the simulator is omniscient)."""
        best: tuple[NodeId, Vote] | None = None
        mode = self.leader_id_mode
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
