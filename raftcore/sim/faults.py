"""Fault injection: what goes wrong during the faults phase, and its repair.

Clocks drift the whole run (each node's ``now`` is ``t * (1 + drift) +
offset``; set up front). Along the faults phase a chaos schedule (its own
random stream, a fault every ``fault_interval`` on average) injects:

- network bursts: loss, duplication, delay and reordering, or all at once;
- partitions: symmetric, one-way, partial, bridge, or the leader isolated;
- crashes: at once, or with the node's next writes in flight (unflushed
  writes lost, sometimes a torn prefix kept), restarting after a random
  downtime; disk failures (``StorageFailed``: the engine must stop and
  answer every request it held); process pauses. With churn, crashes keep
  a quorum of the current voters up;
- forced elections and heartbeats;
- leadership transfers (``raftcore.sim.transfers``).

Each burst and partition heals on its own while the faults phase lasts
(until ``stop()``); ``heal()`` then repairs whatever is left.
"""

from __future__ import annotations

import attrs

from raftcore.events import StorageFailed, TriggerElection, TriggerHeartbeat
from raftcore.ids import NodeId
from raftcore.sim.answers import AnswerRecord
from raftcore.sim.harness import Harness
from raftcore.sim.network import (
    NetParams,
    bridge_links,
    one_way_links,
    partial_links,
    split_links,
)
from raftcore.sim.node import SimNode
from raftcore.sim.options import ResolvedOptions
from raftcore.sim.rng import Rng
from raftcore.sim.transfers import TransferClient

__all__ = ["CHAOS_KINDS", "FaultInjector", "base_net_params"]

#: Fault kinds injected by the chaos schedule, with their weights
#: (``drift`` is set up front, ``churn`` is the churn client's).
CHAOS_KINDS = (("net", 3), ("partition", 3), ("crash", 3), ("election", 1), ("transfer", 1))


def base_net_params(options: ResolvedOptions) -> NetParams:
    """The network outside bursts: lossy and duplicating only with ``net`` faults."""
    net = "net" in options.faults
    return NetParams(
        loss=options.loss if net else 0.0,
        dup=options.dup if net else 0.0,
        straggle=0.002 if net else 0.0,
    )


class FaultInjector:
    """The chaos schedule and clock drift of one run (see the module docstring)."""

    def __init__(
        self,
        options: ResolvedOptions,
        harness: Harness,
        answers: AnswerRecord,
        rng: Rng,
        clock_rng: Rng,
        *,
        initial_voters: tuple[NodeId, ...],
        churn: bool,
        transfers: TransferClient,
    ) -> None:
        self.options = options
        self._harness = harness
        self._sched = harness.sched
        self._trace = harness.trace
        self._nodes = harness.nodes
        self._network = harness.network
        self._checker = harness.checker
        self._answers = answers
        self.rng = rng
        self._initial_voters = initial_voters
        self._churn = churn
        self.transfers = transfers
        base = self._network.base
        self._base_delay = (base.delay_min, base.delay_max)
        #: The faults phase is on: faults are injected and heal on their own.
        self.active = True
        self.injected = 0
        for node in self._nodes.values():
            d = clock_rng.uniform(-options.clock_drift, options.clock_drift)
            o = clock_rng.uniform(0.0, 100.0)
            if "drift" in options.faults:
                node.drift, node.offset = d, o

    def start(self) -> None:
        """Start the chaos schedule (if any kind of it is on)."""
        if {k for k, _ in CHAOS_KINDS} & self.options.faults:
            self._sched.schedule(self.rng.expovariate(self.options.fault_interval), self._chaos)

    def stop(self) -> None:
        """The faults phase is over: no more faults, and those still running no
        longer end on their own (``heal`` repairs them)."""
        self.active = False

    def _chaos(self) -> None:
        if not self.active:
            return
        r = self.rng
        kinds = [k for k, weight in CHAOS_KINDS for _ in range(weight) if k in self.options.faults]
        if kinds:
            kind = r.choice(kinds)
            if kind == "net":
                self._net_fault(r)
            elif kind == "partition":
                self._partition_fault(r)
            elif kind == "crash":
                self._crash_fault(r)
            elif kind == "transfer":
                self.injected += 1
                self.transfers.request(r)
            else:
                self._election_fault(r)
        self._sched.schedule(r.expovariate(self.options.fault_interval), self._chaos)

    # -- network ---------------------------------------------------------------------------

    def _net_fault(self, r: Rng) -> None:
        base = self._network.base
        what = r.choice(("loss", "dup", "delay", "mixed"))
        p = base
        if what in ("loss", "mixed"):
            p = attrs.evolve(p, loss=round(r.uniform(0.05, 0.5), 3))
        if what in ("dup", "mixed"):
            p = attrs.evolve(p, dup=round(r.uniform(0.05, 0.4), 3))
        if what in ("delay", "mixed"):
            p = attrs.evolve(p, delay_min=0.0002, delay_max=round(r.uniform(0.02, 0.25), 4))
        dur = r.uniform(0.1, 1.5)
        token = self._network.set_burst(p)
        self.injected += 1
        self._trace.note(
            "fault",
            f"network {what} burst for {dur:.2f}s: loss={p.loss} dup={p.dup} "
            f"delay={p.delay_min}..{p.delay_max}s",
        )
        self._sched.schedule(dur, self._end_burst, token)

    def _end_burst(self, token: int) -> None:
        if self.active:
            self._network.end_burst(token)

    def _partition_fault(self, r: Rng) -> None:
        ids = list(self._nodes)
        n = len(ids)
        if n < 2:
            return
        leader = self._harness.find_leader()
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
        pid = self._network.partition(links)
        self.injected += 1
        self._trace.note("fault", f"partition ({desc}) for {dur:.2f}s")
        self._sched.schedule(dur, self._heal_partition, pid, desc)

    def _heal_partition(self, pid: int, desc: str) -> None:
        if self.active:
            self._network.heal_partition(pid)
            self._trace.note("heal", f"partition healed ({desc})")

    # -- nodes -------------------------------------------------------------------------------

    def _voters(self) -> frozenset[NodeId]:
        """The voters of the newest committed membership (initially: every voter)."""
        mc = self._checker.committed_membership
        return mc[1].voter_ids() if mc is not None else frozenset(self._initial_voters)

    def _crash_fault(self, r: Rng) -> None:
        nodes = self._nodes
        now = self._sched.now
        alive = [n for n in nodes.values() if n.alive and not n.crash_on_write]
        down = len(nodes) - len(alive)
        limit = max(1, len(nodes) // 2)
        if self._churn:
            # Keep a quorum of the current voters up (spares and removed nodes
            # do not count), so that changes can still commit.
            voters = self._voters()
            up = {a.id for a in alive}
            down = sum(1 for n in voters if n not in up)
            limit = max(1, len(voters) // 2)
        leader = self._harness.find_leader()
        if r.chance(0.3):
            candidates = [n for n in alive if n.paused_until <= now]
            if not candidates:
                return
            node = nodes[leader] if leader is not None and r.chance(0.5) else None
            if node is None or node not in candidates:
                node = r.choice(candidates)
            dur = r.uniform(0.05, 1.0)
            node.paused_until = now + dur
            self.injected += 1
            self._trace.note("fault", f"node {node.id} paused for {dur:.2f}s")
            return
        if not alive or down >= limit:
            return
        target = nodes[leader] if leader is not None and r.chance(0.4) else r.choice(alive)
        self.injected += 1
        if r.chance(0.15) and target.paused_until <= now:
            self._disk_failure(target, leader)
            return
        if r.chance(0.5) and not target.storage.pending:
            # Wait for the node's next write, so unflushed writes are lost.
            target.crash_on_write = True
            return
        pending = len(target.storage.pending)
        self._trace.note(
            "fault",
            f"node {target.id} crashes"
            + (" (leader)" if target.id == leader else "")
            + (f" with {pending} unflushed write(s)" if pending else ""),
        )
        self._harness.crash(target)
        self.schedule_restart(target)

    def crash_in_flight(self, node: SimNode) -> None:
        """The crash waiting for ``node``'s next write lands (the harness calls
        this right after the step that left writes unflushed)."""
        self._trace.note(
            "fault", f"node {node.id} crashes with {len(node.storage.pending)} unflushed write(s)"
        )
        self._harness.crash(node)
        self.schedule_restart(node)

    def _disk_failure(self, node: SimNode, leader: NodeId | None) -> None:
        """The disk fails: the engine must stop at once; the node restarts later."""
        harness = self._harness
        self._trace.note(
            "fault",
            f"node {node.id}{' (leader)' if node.id == leader else ''} loses its disk: "
            "StorageFailed",
        )
        node.disk_failed = True
        harness.handle(node, StorageFailed("injected disk failure"))
        if not node.stopped:
            harness.violation("storage-failure", "engine did not stop after StorageFailed", node.id)
        else:
            # Every request the engine held is answered as it stops (NodeStopped).
            held = self._answers.held_by(node)
            if held:
                harness.violation(
                    "storage-failure",
                    f"engine stopped without answering request(s) {held} it held",
                    node.id,
                )
        if node.alive:
            harness.crash(node)
            self.schedule_restart(node)

    def _election_fault(self, r: Rng) -> None:
        now = self._sched.now
        alive = [n for n in self._nodes.values() if n.alive and n.paused_until <= now]
        if not alive:
            return
        node = r.choice(alive)
        self.injected += 1
        if r.chance(0.8):
            self._trace.note("fault", f"node {node.id} forced to start an election")
            self._harness.handle(node, TriggerElection())
        else:
            self._trace.note("fault", f"node {node.id} forced to send heartbeats")
            self._harness.handle(node, TriggerHeartbeat())

    def schedule_restart(self, node: SimNode) -> None:
        """Restart ``node`` after a random downtime (unless it crashes again first)."""
        r = self.rng
        downtime = 0.0 if r.chance(0.15) else r.uniform(0.05, 1.5)
        self._sched.schedule(downtime, self._harness.restart, node, node.crash_token)

    # -- the end of the faults phase ----------------------------------------------------------

    def heal(self) -> None:
        """End the faults: sometimes crash the leader first (recovery should
        start from a lost leader, not a comfortable one), then repair the
        network, resume paused nodes and restart every crashed one."""
        harness = self._harness
        now = self._sched.now
        leader = harness.find_leader()
        if leader is not None and "crash" in self.options.faults and self.rng.chance(0.5):
            self._trace.note("fault", f"leader {leader} crashes just before healing")
            harness.crash(self._nodes[leader])
        self._network.heal()
        self._network.set_base(
            NetParams(delay_min=self._base_delay[0], delay_max=self._base_delay[1])
        )
        for node in self._nodes.values():
            node.paused_until = min(node.paused_until, now)
            node.crash_on_write = False
            if not node.alive:
                self._trace.note("restart", f"node {node.id} restarts (heal)")
                harness.start(node)
