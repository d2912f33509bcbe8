"""One behavioural suite, two runtimes: what differs between trio and asyncio.

A scenario is an ``async def`` that uses only the node API (identical in both
runtimes) and a ``Kit``; ``kit.run(scenario)`` runs it under its event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import cbor2
import trio

from raftcore.adapters import asyncio_node, trio_node
from raftcore.adapters.kv.testing import free_ports
from raftcore.adapters.storage import MemoryLogStore
from raftcore.adapters.transport.asyncio_tcp import AsyncioTcpTransport
from raftcore.adapters.transport.inproc import InProcNetwork
from raftcore.adapters.transport.trio_tcp import TrioTcpTransport
from raftcore.config import Config
from raftcore.entries import Entry, EntryKind
from raftcore.ids import ZERO_LOG_ID, LogId, NodeId
from raftcore.state import Metrics, Role
from raftcore.storage import LogStore, SnapshotStore

T = TypeVar("T")

#: Fast timers: elections settle in well under a second on loopback.
CONFIG = Config(election_timeout_min=0.15, election_timeout_max=0.3, heartbeat_interval=0.03)
#: A leader cut off from its followers stays leader: for tests that need a
#: write to hang (check-quorum would depose it after the lease, a race).
STAY_LEADER = Config(
    election_timeout_min=0.15, election_timeout_max=0.3, heartbeat_interval=0.03, check_quorum=False
)
#: Generous deadlines for conditions (CI machines stall); never slept on.
WAIT = 10.0


class ListStateMachine:
    """Appends each normal entry's data; the result is (index, data)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.restored: LogId | None = None

    def snapshot(self) -> bytes:
        return cbor2.dumps(self.items)

    def restore(self, data: bytes, last_log_id: LogId) -> None:
        self.items = cbor2.loads(data)
        self.restored = last_log_id

    def apply(self, entries: Sequence[Entry]) -> list[tuple[int, Any]]:
        out = []
        for e in entries:
            if e.kind is EntryKind.NORMAL:
                self.items.append(e.data)
                out.append((e.log_id.index, (e.log_id.index, e.data)))
        return out

    def applied(self) -> LogId:
        return ZERO_LOG_ID


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Kit:
    """How one runtime runs things; subclassed for asyncio and trio."""

    name = ""

    def run(self, scenario: Callable[[Kit], Awaitable[None]]) -> None:
        raise NotImplementedError

    def open_node(
        self,
        node_id: NodeId,
        store: LogStore,
        sm: Any,
        transport: Any,
        config: Config = CONFIG,
        snapshot_store: SnapshotStore | None = None,
    ) -> Any:
        raise NotImplementedError

    def tcp(self, node_id: NodeId, addrs: dict[NodeId, str], **kw: Any) -> Any:
        raise NotImplementedError

    async def gather(self, *aws: Awaitable[Any]) -> list[Any]:
        """Run concurrently; each result or the exception it raised."""
        raise NotImplementedError

    async def enter(self, cm: Any) -> tuple[Any, Callable[[], Awaitable[None]]]:
        """Enter ``open_node(...)``; returns the node and a coroutine function
        that exits it (in any order, unlike an exit stack)."""
        raise NotImplementedError

    def fail_after(self, seconds: float) -> contextlib.AbstractContextManager[Any]:
        raise NotImplementedError

    async def to_thread(self, fn: Callable[[], T]) -> T:
        raise NotImplementedError

    async def checkpoint(self) -> None:
        raise NotImplementedError

    async def cancel_soon(self, aw: Awaitable[Any]) -> None:
        """Start ``aw``, let it run a few scheduling rounds, then cancel it."""
        raise NotImplementedError


class AsyncioKit(Kit):
    name = "asyncio"

    def run(self, scenario: Callable[[Kit], Awaitable[None]]) -> None:
        async def main() -> None:
            await scenario(self)

        asyncio.run(main())

    def open_node(
        self,
        node_id: NodeId,
        store: LogStore,
        sm: Any,
        transport: Any,
        config: Config = CONFIG,
        snapshot_store: SnapshotStore | None = None,
    ) -> Any:
        return asyncio_node.open_node(
            node_id, config, store, sm, transport, snapshot_store=snapshot_store
        )

    def tcp(self, node_id: NodeId, addrs: dict[NodeId, str], **kw: Any) -> Any:
        peers = {n: a for n, a in addrs.items() if n != node_id}
        return AsyncioTcpTransport(node_id, "test", addrs[node_id], peers, **kw)

    async def gather(self, *aws: Awaitable[Any]) -> list[Any]:
        return list(await asyncio.gather(*aws, return_exceptions=True))

    async def enter(self, cm: Any) -> tuple[Any, Callable[[], Awaitable[None]]]:
        stack = contextlib.AsyncExitStack()
        node = await stack.enter_async_context(cm)
        return node, stack.aclose

    def fail_after(self, seconds: float) -> contextlib.AbstractContextManager[Any]:
        return _asyncio_fail_after(seconds)

    async def to_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.to_thread(fn)

    async def checkpoint(self) -> None:
        await asyncio.sleep(0)

    async def cancel_soon(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.contextmanager
def _asyncio_fail_after(seconds: float) -> Any:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    handle = loop.call_later(seconds, task.cancel)
    try:
        yield
    except asyncio.CancelledError:
        raise AssertionError(f"did not finish within {seconds} s") from None
    finally:
        handle.cancel()


class TrioKit(Kit):
    name = "trio"

    def run(self, scenario: Callable[[Kit], Awaitable[None]]) -> None:
        async def main() -> None:
            # Nodes live in tasks of this nursery: trio nurseries must nest, and
            # tests stop nodes in any order.
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                await scenario(self)
                nursery.cancel_scope.cancel()

        trio.run(main)

    async def enter(self, cm: Any) -> tuple[Any, Callable[[], Awaitable[None]]]:
        stop, stopped = trio.Event(), trio.Event()

        async def run_node(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                async with cm as node:
                    task_status.started(node)
                    await stop.wait()
            finally:
                stopped.set()

        node = await self.nursery.start(run_node)

        async def close() -> None:
            stop.set()
            await stopped.wait()

        return node, close

    def open_node(
        self,
        node_id: NodeId,
        store: LogStore,
        sm: Any,
        transport: Any,
        config: Config = CONFIG,
        snapshot_store: SnapshotStore | None = None,
    ) -> Any:
        return trio_node.open_node(
            node_id, config, store, sm, transport, snapshot_store=snapshot_store
        )

    def tcp(self, node_id: NodeId, addrs: dict[NodeId, str], **kw: Any) -> Any:
        peers = {n: a for n, a in addrs.items() if n != node_id}
        return TrioTcpTransport(node_id, "test", addrs[node_id], peers, **kw)

    async def gather(self, *aws: Awaitable[Any]) -> list[Any]:
        results: list[Any] = [None] * len(aws)

        async def one(i: int, aw: Awaitable[Any]) -> None:
            try:
                results[i] = await aw
            except Exception as e:
                results[i] = e

        async with trio.open_nursery() as nursery:
            for i, aw in enumerate(aws):
                nursery.start_soon(one, i, aw)
        return results

    def fail_after(self, seconds: float) -> contextlib.AbstractContextManager[Any]:
        return trio.fail_after(seconds)

    async def to_thread(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn)

    async def checkpoint(self) -> None:
        await trio.lowlevel.checkpoint()

    async def cancel_soon(self, aw: Awaitable[Any]) -> None:
        async def run() -> None:
            await aw

        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                for _ in range(5):
                    await trio.lowlevel.checkpoint()
                scope.cancel()


KITS = [AsyncioKit(), TrioKit()]


class Cluster:
    """N nodes of one runtime, in process, on an in-process or TCP network."""

    def __init__(
        self, kit: Kit, ids: Sequence[NodeId], *, tcp: bool, config: Config = CONFIG
    ) -> None:
        self.kit = kit
        self.config = config
        self.ids = list(ids)
        self.tcp = tcp
        self.net = InProcNetwork()
        # Held open together while chosen, so no two nodes get the same port.
        self.addrs = {n: f"127.0.0.1:{p}" for n, p in zip(ids, free_ports(len(ids)), strict=True)}
        self.stores: dict[NodeId, LogStore] = {n: MemoryLogStore() for n in ids}
        #: Each node's snapshot store (none: the node takes no snapshots).
        self.snapshots: dict[NodeId, SnapshotStore] = {}
        self.sms: dict[NodeId, ListStateMachine] = {}
        self.nodes: dict[NodeId, Any] = {}
        self._closers: dict[NodeId, Callable[[], Awaitable[None]]] = {}

    def transport(self, n: NodeId) -> Any:
        return self.kit.tcp(n, self.addrs) if self.tcp else self.net.transport(n)

    async def start(
        self,
        n: NodeId,
        store: LogStore | None = None,
        sm: ListStateMachine | None = None,
        snapshots: SnapshotStore | None = None,
    ) -> Any:
        if store is not None:
            self.stores[n] = store
        if snapshots is not None:
            self.snapshots[n] = snapshots
        self.sms[n] = sm if sm is not None else ListStateMachine()
        cm = self.kit.open_node(
            n, self.stores[n], self.sms[n], self.transport(n), self.config, self.snapshots.get(n)
        )
        self.nodes[n], self._closers[n] = await self.kit.enter(cm)
        return self.nodes[n]

    async def stop(self, n: NodeId) -> None:
        await self._closers.pop(n)()
        del self.nodes[n]

    async def leader(self, among: Sequence[NodeId] | None = None) -> Any:
        """Wait until the given nodes agree on a leader among them; returns it."""
        ids = list(among) if among is not None else list(self.nodes)

        def agreed(m: Metrics) -> bool:
            return m.leader_id in ids and m.vote.committed

        for n in ids:
            await self.nodes[n].wait_for(agreed, timeout=WAIT)
        leaders = {self.nodes[n].metrics().leader_id for n in ids}
        if len(leaders) != 1:  # a newer election raced the checks: wait again
            return await self.leader(among)
        (lid,) = leaders
        leader = self.nodes[lid]
        await leader.wait_for(lambda m: m.role is Role.LEADER, timeout=WAIT)
        return leader

    async def wait_applied(self, index: int, among: Sequence[NodeId] | None = None) -> None:
        for n in among if among is not None else list(self.nodes):
            await self.nodes[n].wait_for(lambda m: m.applied.index >= index, timeout=WAIT)


@contextlib.asynccontextmanager
async def cluster(
    kit: Kit,
    n: int = 3,
    *,
    tcp: bool = False,
    init: bool = True,
    voters: int | None = None,
    config: Config = CONFIG,
) -> AsyncIterator[Cluster]:
    """``n`` running nodes; with ``init``, nodes 1..``voters`` (default all) form the cluster."""
    c = Cluster(kit, range(1, n + 1), tcp=tcp, config=config)
    try:
        for node_id in c.ids:
            await c.start(node_id)
        if init:
            members = {i: a for i, a in c.addrs.items() if i <= (voters or n)}
            await c.nodes[1].initialize(members)
        yield c
    finally:
        for node_id in list(c.nodes):
            await c.stop(node_id)
