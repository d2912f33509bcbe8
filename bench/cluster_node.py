"""One node of the cluster benchmark (started by ``bench.cluster_bench``).

``python -m bench.cluster_node --id N --addrs 1=host:port,... --runtime asyncio|trio
--storage memory|sqlite --data-dir DIR [--load CLIENTS,... --duration S --warmup S]``

Every node serves until it is terminated. The node given ``--load``
initializes the cluster, makes sure it leads (triggering an election if
another node won), then, for each scenario (``--scenarios``) and client
count, keeps that many operations outstanding for the warm-up plus the
measured time and prints one JSON line with the figures. For the
``follower`` scenario it first hands leadership to another node and reads
as a follower. It exits when done, non-zero if a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from raftcore.adapters.errors import Timeout
from raftcore.adapters.storage import MemoryLogStore, SqliteLogStore
from raftcore.config import Config
from raftcore.entries import Entry, EntryKind
from raftcore.errors import ClientError
from raftcore.events import ReadPolicy
from raftcore.ids import ZERO_LOG_ID, LogId, NodeId
from raftcore.state import Metrics, Role
from raftcore.storage import LogStore

PAYLOAD = b"x" * 16
CONFIG = Config(election_timeout_min=0.3, election_timeout_max=0.6, heartbeat_interval=0.05)


class CountingStateMachine:
    """Counts applied writes; the result of a write is its index."""

    def __init__(self) -> None:
        self.count = 0

    def apply(self, entries: Sequence[Entry]) -> list[tuple[int, Any]]:
        out = [(e.log_id.index, e.log_id.index) for e in entries if e.kind is EntryKind.NORMAL]
        self.count += len(out)
        return out

    def applied(self) -> LogId:
        return ZERO_LOG_ID

    def snapshot(self) -> bytes:
        return self.count.to_bytes(8, "big")

    def restore(self, data: bytes, last_log_id: LogId) -> None:
        self.count = int.from_bytes(data, "big")


def _parse_addrs(text: str) -> dict[NodeId, str]:
    return {int(k): v for k, v in (part.split("=", 1) for part in text.split(","))}


class CheckFailed(Exception):
    """A scenario's correctness check failed (the run exits non-zero)."""


def _percentile(latencies: list[float], p: float) -> float:
    if not latencies:
        return math.nan
    return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 3)


async def _load(
    node: Any,
    sm: CountingStateMachine,
    scenario: str,
    clients: int,
    duration: float,
    warmup: float,
    spawn: Spawn,
) -> dict[str, Any]:
    """Keep ``clients`` operations outstanding; the latency of those that
    finish after warm-up. ``write``: writes; ``read_index`` / ``lease`` /
    ``follower``: linearizable reads (``node.read``, then the count from
    the local state machine; on a follower, a follower read); ``mixed_90_10``:
    90 % ReadIndex reads, 10 % writes.

    Checked: a client's read points never go backwards, and a read started
    after the client's write was acknowledged has a read point at or past it.
    """
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration
    latencies: list[float] = []
    counts = {"reads": 0, "writes": 0}
    errors = 0
    policy = ReadPolicy.LEASE if scenario == "lease" else ReadPolicy.READ_INDEX

    async def client(i: int) -> None:
        nonlocal errors
        rng = random.Random(i)
        last_point = 0  # the greatest read point this client got
        last_write = 0  # the index of its last acknowledged write
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            write = scenario == "write" or (scenario == "mixed_90_10" and rng.random() < 0.1)
            try:
                if write:
                    last_write = await node.write(PAYLOAD, timeout=5.0)
                else:
                    point = await node.read(policy, timeout=5.0)
                    _ = sm.count  # the read itself: the local state machine
                    if point.index < max(last_point, last_write):
                        raise CheckFailed(
                            f"{scenario}: client {i} read at {point} after reading at "
                            f"{last_point} and writing at {last_write}"
                        )
                    last_point = point.index
            except (ClientError, Timeout):
                errors += 1
                continue
            t1 = time.perf_counter()
            if t0 >= measure_from:
                latencies.append(t1 - t0)
                counts["writes" if write else "reads"] += 1

    await spawn([functools.partial(client, i) for i in range(clients)])
    latencies.sort()
    ops = len(latencies)
    out: dict[str, Any] = {
        "scenario": scenario,
        "clients": clients,
        "ops": ops,
        "errors": errors,
        "seconds": duration,
        "ops_per_s": round(ops / duration),
        "p50_ms": _percentile(latencies, 0.50),
        "p99_ms": _percentile(latencies, 0.99),
    }
    if scenario == "write":
        out |= {"writes": ops, "writes_per_s": out["ops_per_s"]}
    elif scenario == "mixed_90_10":
        out |= {
            "reads_per_s": round(counts["reads"] / duration),
            "writes_per_s": round(counts["writes"] / duration),
        }
    return out


Spawn = Callable[[list[Callable[[], Awaitable[None]]]], Awaitable[None]]


async def _lead(node: Any, addrs: dict[NodeId, str]) -> None:
    if node.metrics().last_log_id.index == 0:
        await node.initialize(addrs)

    def settled(m: Metrics) -> bool:
        return m.leader_id is not None and m.vote.committed

    def leading(m: Metrics) -> bool:
        # Leader, and its own blank entry committed: ready to measure.
        return m.role is Role.LEADER and m.committed.index >= m.last_log_id.index

    for _ in range(20):
        m = await node.wait_for(settled, timeout=10.0)
        if m.role is not Role.LEADER:
            await node.trigger_election()
        try:
            await node.wait_for(leading, timeout=2.0)
            return
        except Timeout:
            continue
    raise RuntimeError("could not become leader")


#: The scenarios, in the order they run: ``follower`` last (the load node
#: hands leadership to another node for it, and cannot take it back).
SCENARIOS = ("write", "read_index", "lease", "mixed_90_10", "follower")


async def _node_main(
    args: argparse.Namespace, node: Any, sm: CountingStateMachine, spawn: Spawn
) -> None:
    addrs = _parse_addrs(args.addrs)
    if not args.load:
        await args.forever()
        return
    await _lead(node, addrs)
    scenarios = [s for s in SCENARIOS if s in args.scenarios.split(",")]
    for scenario in scenarios:
        if scenario == "follower":
            # Reads on a follower: hand leadership to the next node first.
            to = min(n for n in addrs if n != args.id)
            await node.transfer_leader(to, timeout=10.0)
        for clients in [int(c) for c in args.load.split(",")]:
            result = await _load(node, sm, scenario, clients, args.duration, args.warmup, spawn)
            print(json.dumps(result), flush=True)


def _store(args: argparse.Namespace) -> LogStore:
    if args.storage == "sqlite":
        return SqliteLogStore(Path(args.data_dir) / f"node{args.id}.sqlite3")
    return MemoryLogStore()


def run_asyncio(args: argparse.Namespace) -> None:
    from raftcore.adapters.asyncio_node import open_node
    from raftcore.adapters.transport.asyncio_tcp import AsyncioTcpTransport

    async def spawn(fns: list[Callable[[], Awaitable[None]]]) -> None:
        await asyncio.gather(*(fn() for fn in fns))

    async def main() -> None:
        addrs = _parse_addrs(args.addrs)
        peers = {n: a for n, a in addrs.items() if n != args.id}
        transport = AsyncioTcpTransport(args.id, "bench", addrs[args.id], peers)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        args.forever = stop.wait
        sm = CountingStateMachine()
        async with open_node(args.id, CONFIG, _store(args), sm, transport) as node:
            await _node_main(args, node, sm, spawn)

    asyncio.run(main())


def run_trio(args: argparse.Namespace) -> None:
    import trio

    from raftcore.adapters.transport.trio_tcp import TrioTcpTransport
    from raftcore.adapters.trio_node import open_node

    async def spawn(fns: list[Callable[[], Awaitable[None]]]) -> None:
        async with trio.open_nursery() as nursery:
            for fn in fns:
                nursery.start_soon(fn)

    async def main() -> None:
        addrs = _parse_addrs(args.addrs)
        peers = {n: a for n, a in addrs.items() if n != args.id}
        transport = TrioTcpTransport(args.id, "bench", addrs[args.id], peers)

        async def forever() -> None:
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    return

        args.forever = forever
        sm = CountingStateMachine()
        async with open_node(args.id, CONFIG, _store(args), sm, transport) as node:
            await _node_main(args, node, sm, spawn)

    trio.run(main)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cluster_node")
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--addrs", required=True)
    p.add_argument("--runtime", choices=["asyncio", "trio"], default="asyncio")
    p.add_argument("--storage", choices=["memory", "sqlite"], default="memory")
    p.add_argument("--data-dir", default=".")
    p.add_argument("--load", default="", help="client counts to measure (this node leads)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"of {', '.join(SCENARIOS)}")
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=0.5)
    args = p.parse_args(argv)
    try:
        (run_trio if args.runtime == "trio" else run_asyncio)(args)
    except CheckFailed as e:
        print(f"bench cluster: check failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
