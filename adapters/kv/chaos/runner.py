"""One chaos run: start the cluster, run clients and nemeses, heal, read, check.

Phases, each bounded: start (a leader within 20 s); the fault phase
(``seconds``): clients run throughout while the nemeses follow each other,
each healed and followed by a liveness check (a write must commit within
``liveness_timeout``); the final heal (every node running and a voter, no
blocks), the clients stop, a last write commits, every node catches up, each
key is read once through the leader; then the processes stop and the
history is checked.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
import traceback
from collections.abc import Sequence
from typing import Any

import attrs

from raftcore.adapters.kv.chaos.checker import FINAL_CLIENT, STRICT_READS, CheckResult, check
from raftcore.adapters.kv.chaos.cluster import ChaosCluster
from raftcore.adapters.kv.chaos.history import History, OpType, Outcome
from raftcore.adapters.kv.chaos.journal import Journal
from raftcore.adapters.kv.chaos.nemesis import Deck, Nemesis, NemesisEvent
from raftcore.adapters.kv.chaos.workload import (
    OP_DEADLINE,
    REQUEST_TIMEOUT,
    OpClient,
    client_loop,
    commit_one,
)
from raftcore.adapters.kv.client import KvClient, KvError, wait_for_leader
from raftcore.adapters.kv.testing import CheckFailed

LIVENESS_KEY = "liveness"
#: Concurrent readers for the final reads.
FINAL_READERS = 8
#: Seconds between progress lines.
PROGRESS_EVERY = 5.0
#: Seconds allowed besides the fault phase for the start, the recovery from the
#: last fault, the final heal, reads and convergence (stopping and checking follow).
BUDGET = 50.0


@attrs.frozen
class Options:
    seed: int
    seconds: float = 180.0
    nodes: int = 3
    runtime: str = "asyncio"
    clients: int = 8
    keys: int = 5
    dir: str | None = None
    election_timeout: float = 0.3
    liveness_timeout: float = 15.0
    #: Each fault is held this long (uniformly drawn), then healed.
    hold: tuple[float, float] = (2.0, 5.0)
    #: The quiet time between a recovery and the next fault.
    gap: tuple[float, float] = (0.5, 2.0)

    def command(self) -> str:
        """The command line that reruns this run's schedule."""
        return (
            f"python -m raftcore.adapters.kv.chaos --seconds {self.seconds:g} --seed {self.seed} "
            f"--nodes {self.nodes} --runtime {self.runtime} --clients {self.clients} "
            f"--keys {self.keys}"
        )


@attrs.define
class Outcomes:
    """What the run found, besides the history's check."""

    events: list[NemesisEvent] = attrs.Factory(list)
    liveness_failures: list[str] = attrs.Factory(list)
    #: Replicas that applied the same log but hold different maps.
    divergence: list[str] = attrs.Factory(list)
    harness_error: str | None = None
    check: CheckResult | None = None
    elapsed: float = 0.0


class ChaosRun:
    def __init__(self, opts: Options, say: Any = print) -> None:
        self.opts = opts
        self.say = say
        self.t0 = time.monotonic()
        self.root = opts.dir or tempfile.mkdtemp(prefix="raftcore-chaos-")
        os.makedirs(self.root, exist_ok=True)
        self.history = History(Journal(os.path.join(self.root, "history.jsonl"), self.t0))
        self.proxy_log = Journal(os.path.join(self.root, "proxy.jsonl"), self.t0)
        self.nemesis_log = Journal(os.path.join(self.root, "nemesis.jsonl"), self.t0)
        self.cluster = ChaosCluster(
            opts.nodes,
            runtime=opts.runtime,
            root=self.root,
            journal=self.proxy_log,
            election_timeout=opts.election_timeout,
        )
        self.keys = [f"k{i}" for i in range(opts.keys)]
        self.out = Outcomes()
        self.current = "none (starting)"

    def now(self) -> float:
        return time.monotonic() - self.t0

    def log(self, message: str) -> None:
        self.say(f"[{self.now():7.2f}s] {message}")

    # -- the run ----------------------------------------------------------------------

    async def run(self) -> Outcomes:
        """The whole run; never raises for the system's faults (they are outcomes)."""
        budget = self.opts.seconds + BUDGET
        try:
            async with asyncio.timeout(budget):
                await self._run()
        except TimeoutError:
            self.out.liveness_failures.append(
                f"the run overran its budget ({self.opts.seconds:g}s of faults + {BUDGET:g}s) "
                f"during: {self.current}"
            )
            self.log(f"LIVENESS: out of time during: {self.current}")
        except Exception as e:
            self.out.harness_error = f"{type(e).__name__}: {e}"
            self.log(f"HARNESS ERROR: {traceback.format_exc()}")
        finally:
            self.history.abandon_open("the run ended with it in flight")
            await self.stop()
        try:
            keys = {r.key for r in self.history.records} | {*self.keys, LIVENESS_KEY}
            self.out.check = check(self.history.records, keys)
        except Exception as e:  # the checker's own bug: no verdict on the history
            self.out.harness_error = f"checker: {type(e).__name__}: {e}"
            self.log(f"HARNESS ERROR: {traceback.format_exc()}")
        self.out.elapsed = self.now()
        return self.out

    async def stop(self) -> None:
        codes = await asyncio.to_thread(self.cluster.shutdown)
        await self.cluster.close_proxies()
        for journal in (self.history.journal, self.proxy_log, self.nemesis_log):
            journal.close()
        self.log(f"stopped every node: exit codes {codes}")

    async def _run(self) -> None:
        opts = self.opts
        await self.cluster.start_proxies()
        addrs = self.cluster.http_list
        async with KvClient(addrs, deadline=20.0, request_timeout=3.0) as control:
            try:
                self._start_cluster()
                leader = await wait_for_leader(control, timeout=20.0)
            except (KvError, CheckFailed) as e:
                self.out.liveness_failures.append(f"no leader at the start: {e}")
                return
            self.log(f"leader elected: node {leader['node_id']}")
            stop = asyncio.Event()
            # Half the clients follow the leader; the others are bound to one node each.
            clients = [
                OpClient(
                    f"c{i}", addrs, self.history, home=addrs[i % len(addrs)] if i % 2 else None
                )
                for i in range(opts.clients)
            ]
            tasks = [
                asyncio.create_task(
                    client_loop(c, self.keys, random.Random(f"{opts.seed}/{c.name}"), stop)
                )
                for c in clients
            ]
            progress = asyncio.create_task(self._progress())
            live = OpClient(LIVENESS_KEY, addrs, self.history)
            nemesis = Nemesis(
                self.cluster,
                control,
                random.Random(opts.seed),
                self.nemesis_log,
                on_change=self._set_current,
            )
            try:
                await self._fault_phase(nemesis, live)
                await self._final_heal(nemesis)
                self.current = "stopping the clients"
                await self._stop_clients(stop, tasks)
                self.current = "the final write"
                await self._liveness(live, "the final write")
                self.current = "waiting for every node to catch up"
                await self._converge(control)
                self.current = "the final reads"
                await self._final_reads(addrs)
            finally:
                stop.set()
                for task in [*tasks, progress]:
                    task.cancel()
                await asyncio.gather(*tasks, progress, return_exceptions=True)

    def _start_cluster(self) -> None:
        """Start every node, the first with ``--init``: it probes the others
        through their proxies, retrying until each node is up."""
        self.cluster.start_all()
        self.log(
            f"started {len(self.cluster.nodes)} nodes in {self.root}: {self.cluster.describe()}"
        )

    def _set_current(self, what: str) -> None:
        self.current = what
        self.log(f"inject {what}")

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            c = self.history.counts()
            total = {o: sum(c[t][o] for t in c) for o in ("ok", "fail", "unknown")}
            acked = c["put"]["ok"] + c["delete"]["ok"]
            self.log(
                f"ops {sum(total.values())} (ok {total['ok']}, fail {total['fail']}, "
                f"unknown {total['unknown']}), acknowledged writes {acked}; "
                f"nemesis: {self.current}"
            )

    async def _fault_phase(self, nemesis: Nemesis, live: OpClient) -> None:
        rng = nemesis.rng
        deck = Deck(rng)
        end = time.monotonic() + self.opts.seconds
        while True:
            # A quiet gap first: the clients run on a healthy cluster for a while.
            await asyncio.sleep(min(rng.uniform(*self.opts.gap), max(0.0, end - time.monotonic())))
            if (left := end - time.monotonic()) < 1.0:
                return
            kind = deck.next()
            event = await nemesis.run(kind, min(rng.uniform(*self.opts.hold), left))
            self.out.events.append(event)
            self.current = f"none (recovering from {kind})"
            line = f"healed {kind} -> {event.outcome}"
            if event.detail:
                line += f" ({event.detail})"
            self.log(line)
            if event.outcome != "skipped":
                took = await self._liveness(live, f"after {kind}")
                if took is not None:
                    event.recovered = self.now()
                    self.nemesis_log.event("recovered", kind=kind, seconds=round(took, 3))
                    self.log(f"a write committed {took:.2f}s after the heal")
            self.current = "none"

    async def _liveness(self, live: OpClient, when: str) -> float | None:
        """A write must commit within ``liveness_timeout``: the seconds it took, or ``None``."""
        limit = self.opts.liveness_timeout
        took = await commit_one(live, LIVENESS_KEY, limit)
        if took is None or took > limit:
            shown = "none" if took is None else f"only after {took:.1f}s"
            self.out.liveness_failures.append(
                f"{when}: no write committed within {limit}s ({shown})"
            )
            self.log(f"LIVENESS: {when}: no write committed within {limit}s ({shown})")
            return None
        return took

    async def _final_heal(self, nemesis: Nemesis) -> None:
        self.current = "final heal"
        nemesis.heal()
        try:
            fixed = await nemesis.restore_membership()
        except KvError as e:
            self.out.liveness_failures.append(f"final heal: membership not restored: {e}")
            return
        self.log(
            "final heal: no blocks, every node running" + (f", re-added {fixed}" if fixed else "")
        )

    async def _stop_clients(self, stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
        stop.set()
        _, pending = await asyncio.wait(tasks, timeout=OP_DEADLINE + REQUEST_TIMEOUT + 2.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.log(f"clients stopped ({len(pending)} cancelled in flight)")

    async def _converge(self, control: KvClient, timeout: float = 20.0) -> None:
        """Every node follows one leader, all are voters, each applied the leader's last
        committed entry; then their maps must hold as many keys."""
        end = time.monotonic() + timeout
        last: Any = None
        want = set(self.cluster.nodes)
        while time.monotonic() < end:
            statuses = await control.statuses(timeout=1.0)
            up = [s for s in statuses.values() if isinstance(s, dict)]
            leaders = [s for s in up if s["role"] == "leader"]
            last = {
                a: (s if isinstance(s, str) else (s["role"], s["leader_id"]))
                for a, s in statuses.items()
            }
            if len(up) == len(want) and len(leaders) == 1:
                lead = leaders[0]
                m = lead["membership"]
                if (
                    m is not None
                    and not m["joint"]
                    and set(m["voter_ids"]) == want
                    and all(s["leader_id"] == lead["node_id"] for s in up)
                    and all(s["applied"] == lead["committed"] for s in up)
                ):
                    keys = {s["node_id"]: s["keys"] for s in up}
                    if len(set(keys.values())) > 1:  # same log applied, different maps
                        self.out.divergence.append(
                            f"every node applied {lead['committed']} but their maps differ: "
                            f"keys per node {keys}"
                        )
                    self.log(
                        f"converged: leader {lead['node_id']} (term {lead['term']}), every node "
                        f"applied {lead['committed']['index']}, keys per node {keys}"
                    )
                    return
            await asyncio.sleep(0.1)
        self.out.liveness_failures.append(f"the nodes did not converge within {timeout}s: {last}")

    async def _final_reads(self, addrs: Sequence[str], timeout: float = 15.0) -> None:
        """One acknowledged read of every key ever used, through the leader
        (``FINAL_READERS`` at a time)."""
        keys = sorted({r.key for r in self.history.records} | {*self.keys, LIVENESS_KEY})
        todo = iter(keys)

        async def reader() -> None:
            client = OpClient(FINAL_CLIENT, addrs, self.history)
            for key in todo:
                end = time.monotonic() + timeout
                while (left := end - time.monotonic()) > 0:
                    record = await client.run(OpType.GET, key, deadline=min(left, OP_DEADLINE))
                    if record.outcome is Outcome.OK:
                        break

        await asyncio.gather(*(reader() for _ in range(FINAL_READERS)))
        self.log(f"final reads done: {len(keys)} keys")


__all__ = ["STRICT_READS", "ChaosRun", "Options", "Outcomes"]
