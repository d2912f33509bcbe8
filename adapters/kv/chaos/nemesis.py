"""The faults, one at a time: inject, hold, heal.

Every choice (which kind next, leader or follower, which peer, how long)
comes from one ``random.Random(seed)``; which node *is* the leader comes from
the cluster, so a rerun with the same seed replays the same schedule of kinds
and choices, not necessarily the same victims.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import attrs

from raftcore.adapters.kv.chaos.cluster import ChaosCluster
from raftcore.adapters.kv.chaos.journal import Journal
from raftcore.adapters.kv.chaos.proxy import isolate, one_way, split
from raftcore.adapters.kv.client import KvClient, KvError, wait_for_leader
from raftcore.adapters.kv.testing import CheckFailed, wait_status

KINDS = (
    "kill-follower",
    "kill-leader",
    "kill-all",
    "pause",
    "partition-isolate",
    "partition-one-way",
    "partition-bridge",
    "lose-disk",
    "transfer-restart",
)


@attrs.define
class NemesisEvent:
    kind: str
    start: float  # the run's clock
    target: str = ""
    healed: float | None = None
    recovered: float | None = None  # the first acknowledged write after the heal
    #: ``ok``; ``skipped`` (not injected: no leader to aim at); ``failed`` (its heal failed).
    outcome: str = "ok"
    detail: str = ""
    #: The longest time without any acknowledged write from ``start`` to the recovery.
    outage: float | None = None

    @property
    def recovery(self) -> float | None:
        if self.healed is None or self.recovered is None:
            return None
        return self.recovered - self.healed

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "target": self.target,
            "start": round(self.start, 3),
            "healed": None if self.healed is None else round(self.healed, 3),
            "outcome": self.outcome,
            "detail": self.detail,
        }


class Deck:
    """Every kind once in a shuffled order, then again: a short run still sees many kinds."""

    def __init__(self, rng: random.Random, kinds: tuple[str, ...] = KINDS) -> None:
        self.rng = rng
        self.kinds = kinds
        self._left: list[str] = []

    def next(self) -> str:
        if not self._left:
            self._left = list(self.kinds)
            self.rng.shuffle(self._left)
        return self._left.pop()


class Skipped(Exception):
    """The fault could not be aimed (no leader agreed on): nothing was injected."""


class Nemesis:
    def __init__(
        self,
        cluster: ChaosCluster,
        control: KvClient,
        rng: random.Random,
        journal: Journal,
        *,
        on_change: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.cluster = cluster
        self.control = control
        self.rng = rng
        self.journal = journal
        self.on_change = on_change
        self.ids = sorted(cluster.nodes)
        #: Nodes whose disk was wiped and that are not yet removed from the membership.
        self.unremoved: set[int] = set()
        self._methods: dict[str, Callable[[NemesisEvent, float], Awaitable[None]]] = {
            "kill-follower": self._kill_follower,
            "kill-leader": self._kill_leader,
            "kill-all": self._kill_all,
            "pause": self._pause,
            "partition-isolate": self._isolate,
            "partition-one-way": self._one_way,
            "partition-bridge": self._bridge,
            "lose-disk": self._lose_disk,
            "transfer-restart": self._transfer_restart,
        }

    def now(self) -> float:
        return time.monotonic() - self.journal.t0

    async def run(self, kind: str, hold: float) -> NemesisEvent:
        """Inject ``kind``, keep it ``hold`` seconds, heal; the event (``healed`` set)."""
        event = NemesisEvent(kind, self.now())
        try:
            await self._methods[kind](event, hold)
        except Skipped as e:
            event.outcome, event.detail = "skipped", str(e)
        except (KvError, CheckFailed, RuntimeError, OSError) as e:
            event.outcome, event.detail = "failed", f"{type(e).__name__}: {e}"
        self.heal()  # not when cancelled: then the run is ending and stops every node
        event.healed = self.now()
        self.journal.write({"t": round(event.healed, 4), "event": "healed", **event.to_json()})
        return event

    def heal(self) -> None:
        """Undo whatever may be left: no blocks, nothing paused, every node running,
        except a node that lost its disk and is still a member: it must not
        rejoin on an empty store before it is removed (``restore_membership``)."""
        self.cluster.blocks.heal()
        started = self.cluster.heal_processes(skip=self.unremoved)
        if started:
            self.journal.event("restarted", nodes=started)

    # -- aiming ---------------------------------------------------------------------

    async def leader(self) -> int:
        try:
            status = await wait_for_leader(self.control, timeout=10.0)
        except KvError as e:
            raise Skipped(f"no leader to aim at: {e}") from None
        leader: int = status["node_id"]
        return leader

    async def leader_or_follower(self) -> tuple[int, str]:
        leader = await self.leader()
        if self.rng.random() < 0.5:
            return leader, f"leader {leader}"
        follower = self.rng.choice([i for i in self.ids if i != leader])
        return follower, f"follower {follower}"

    def _inject(self, event: NemesisEvent, target: str, **fields: object) -> None:
        event.target = target
        self.journal.event("inject", kind=event.kind, target=target, **fields)
        self.on_change(f"{event.kind}: {target}")

    # -- process faults -------------------------------------------------------------

    async def _kill_leader(self, event: NemesisEvent, hold: float) -> None:
        victim = await self.leader()
        await self._kill_one(event, victim, f"leader {victim}", hold)

    async def _kill_follower(self, event: NemesisEvent, hold: float) -> None:
        leader = await self.leader()
        victim = self.rng.choice([i for i in self.ids if i != leader])
        await self._kill_one(event, victim, f"follower {victim}", hold)

    async def _kill_one(self, event: NemesisEvent, victim: int, what: str, hold: float) -> None:
        await self.cluster.kill9(victim)
        self._inject(event, f"SIGKILL {what}")
        await asyncio.sleep(hold)
        self.cluster.start(victim)

    async def _kill_all(self, event: NemesisEvent, hold: float) -> None:
        await asyncio.gather(*(self.cluster.kill9(i) for i in self.ids))
        self._inject(event, "SIGKILL every node, then restart all")
        await asyncio.sleep(min(hold, 2.0))
        for i in self.ids:
            self.cluster.start(i)

    async def _transfer_restart(self, event: NemesisEvent, hold: float) -> None:
        """A rolling restart's step: hand leadership to another voter, stop the
        old leader gracefully (SIGTERM), start it again after ``hold``."""
        leader = await self.leader()
        target = self.rng.choice([i for i in self.ids if i != leader])
        answer = await self.control.transfer_leader(target, deadline=10.0)
        if answer.get("leader_id") != target:
            raise RuntimeError(f"transfer to {target} answered {answer}")
        await self.cluster.terminate(leader)
        self._inject(event, f"leadership {leader} -> {target}, then SIGTERM {leader}")
        await asyncio.sleep(hold)
        self.cluster.start(leader)

    async def _pause(self, event: NemesisEvent, hold: float) -> None:
        victim, what = await self.leader_or_follower()
        # Longer than the longest election timeout (twice the minimum) several times over.
        hold = max(hold, 5 * self.cluster.election_timeout)
        self.cluster.pause(victim)
        self._inject(event, f"SIGSTOP {what} for {hold:.1f}s")
        await asyncio.sleep(hold)
        self.cluster.resume(victim)

    # -- network faults -------------------------------------------------------------

    async def _isolate(self, event: NemesisEvent, hold: float) -> None:
        victim, what = await self.leader_or_follower()
        self.cluster.blocks.set(isolate(victim, self.ids))
        self._inject(event, f"isolate {what}")
        await asyncio.sleep(hold)

    async def _one_way(self, event: NemesisEvent, hold: float) -> None:
        victim, what = await self.leader_or_follower()
        others = [i for i in self.ids if i != victim]
        if self.rng.random() < 0.5:
            pairs, how = one_way([victim], others), f"{what} cannot send (it still hears)"
        else:
            pairs, how = one_way(others, [victim]), f"{what} cannot hear (it still sends)"
        self.cluster.blocks.set(pairs)
        self._inject(event, how, blocked=sorted(pairs))
        await asyncio.sleep(hold)

    async def _bridge(self, event: NemesisEvent, hold: float) -> None:
        end, what = await self.leader_or_follower()
        bridge = self.rng.choice([i for i in self.ids if i != end])
        rest = [i for i in self.ids if i not in (end, bridge)]
        pairs = split([end], rest)
        self.cluster.blocks.set(pairs)
        self._inject(event, f"{what} reaches only node {bridge} (the bridge to {rest})")
        await asyncio.sleep(hold)

    # -- a voter loses its disk -----------------------------------------------------

    async def _lose_disk(self, event: NemesisEvent, hold: float) -> None:
        """SIGKILL a voter and delete its data directory, then recover it as
        docs/kv-service.md says: remove it, add it back as a learner (on its
        empty directory, without --init), promote it. Half the time the node
        is restarted on the empty directory at once and runs through the fault
        (its peers must refuse it until it is removed: the handshake's identity
        check); otherwise it is restarted only once it is removed."""
        victim, what = await self.leader_or_follower()
        early = self.rng.random() < 0.5
        node = self.cluster.nodes[victim]
        await self.cluster.kill9(victim)
        self.cluster.wipe(victim)
        self.unremoved.add(victim)
        if early:
            self.cluster.start(victim)
        self._inject(
            event, f"{what} lost its disk" + (" (restarted empty at once)" if early else "")
        )
        await asyncio.sleep(hold)
        step = "a leader among the others"
        try:
            await wait_for_leader(self.control, timeout=15.0, exclude=[victim])
            step = f"remove node {victim}"
            await self.control.remove_node(victim, deadline=20.0)
            self.unremoved.discard(victim)
            step = f"node {victim} on an empty data directory waits to be added"
            if not node.running:
                self.cluster.start(victim)
            await wait_status(
                self.control,
                node.address.http,
                lambda s: s["membership"] is None,
                timeout=20.0,
                check=step,
            )
            step = f"add node {victim} as a learner"
            answer = await self.control.add_learner(
                victim, node.address.raft, node.address.http, timeout=30.0
            )
            if not answer.get("caught_up"):
                raise CheckFailed(step, f"answer {answer}")
            step = f"promote node {victim}"
            answer = await self.control.promote([victim], deadline=20.0)
            if victim not in answer["membership"]["voter_ids"]:
                raise CheckFailed(step, f"membership {answer['membership']}")
        except (KvError, CheckFailed) as e:
            raise CheckFailed(f"disk-loss recovery: {step}", str(e)) from None
        event.detail = f"node {victim} removed, re-added on an empty store and promoted"

    async def restore_membership(self) -> list[int]:
        """Make every node a voter again (after a disk-loss recovery that failed
        half way): add missing ones as learners, promote learners; the ids fixed."""
        for i in sorted(self.unremoved):
            await self.control.remove_node(i, deadline=20.0)
            self.unremoved.discard(i)
            self.cluster.heal_processes()
        info = await self.control.cluster(deadline=15.0)
        m = info["membership"]
        fixed = []
        for i in self.ids:
            if i in m["voter_ids"]:
                continue
            node = self.cluster.nodes[i].address
            if str(i) not in m["nodes"]:
                await self.control.add_learner(i, node.raft, node.http, timeout=30.0)
            m = (await self.control.promote([i], deadline=20.0))["membership"]
            fixed.append(i)
        if fixed:
            self.journal.event("restored-membership", nodes=fixed)
        return fixed
