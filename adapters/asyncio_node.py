"""The asyncio runtime: a Raft node as a few tasks around ``adapters.driver``.

    async with open_node(1, Config(), SqliteLogStore(path), MyStateMachine(),
                         AsyncioTcpTransport(1, "demo", "127.0.0.1:7001", peers)) as node:
        await node.initialize({1: "127.0.0.1:7001", 2: ..., 3: ...})
        result = await node.write(b"hello", timeout=5.0)

Tasks: the event loop (engine steps, timer at ``next_deadline``), a storage
worker and an apply worker. Blocking calls (a store with ``blocking = True``,
the default, and a state machine with ``blocking = True``) run in one
dedicated thread per node, in order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, TypeVar

from adapters.driver import Driver, as_membership, execute_apply, execute_storage
from adapters.errors import ShuttingDown, Timeout
from adapters.log import node_logger
from raftcore.config import Config
from raftcore.engine import Rng
from raftcore.errors import ClientError, LocalProtocolError
from raftcore.events import Event, Initialize, TriggerElection, TriggerHeartbeat
from raftcore.ids import NodeId
from raftcore.membership import Membership
from raftcore.messages import Message
from raftcore.state import Metrics
from raftcore.storage import LogStore, StateMachine

T = TypeVar("T")


class AsyncioTransport(Protocol):
    def send(self, to: NodeId, msg: Message) -> None: ...
    async def start(self, deliver: Callable[[NodeId, Message], None]) -> None: ...
    async def aclose(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...


class AsyncioNode:
    """One Raft node on asyncio. Use ``async with open_node(...) as node``."""

    def __init__(
        self,
        node_id: NodeId,
        config: Config,
        log_store: LogStore,
        state_machine: StateMachine,
        transport: AsyncioTransport,
        *,
        rng: Rng | None = None,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.log_store = log_store
        self.state_machine = state_machine
        self.transport = transport
        self.log = node_logger("raftcore.node", node_id)
        self._rng = rng if rng is not None else random.Random()
        self._driver: Driver | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._thread = concurrent.futures.ThreadPoolExecutor(1, f"raft-node-{node_id}")
        self._offload_storage = getattr(log_store, "blocking", True)
        self._offload_apply = getattr(state_machine, "blocking", False)
        self._closed = False

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> AsyncioNode:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._wake = asyncio.Event()
        self._storage_wake = asyncio.Event()
        self._apply_wake = asyncio.Event()
        self._storage_busy = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._driver = await self._offload(
            True,
            Driver,
            self.node_id,
            self.config,
            self.log_store,
            self.state_machine,
            self.transport.send,
            self._rng,
            loop.time(),
            self.log,
        )
        await self.transport.start(self._deliver)
        for coro in (self._run(), self._storage_worker(), self._apply_worker()):
            self._tasks.append(asyncio.create_task(coro))
        self.log.info("started")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop: waiting requests fail with ``ShuttingDown``; the store is closed
        after its in-flight write finishes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        d = self._driver
        if d is not None:
            d.closing = True
            d.fail_all(ShuttingDown())
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
        await self.transport.aclose()
        # The worker thread finishes any write it started before the store closes.
        await self._loop.run_in_executor(self._thread, self.log_store.close)
        self._thread.shutdown(wait=True)
        self.log.info("stopped")

    # -- the public API ----------------------------------------------------------

    async def initialize(self, members: Membership | Mapping[NodeId, Any]) -> None:
        """Form a new cluster with this first membership (node id -> address)."""
        self._step_now(Initialize(as_membership(members)))

    async def write(self, data: Any, *, timeout: float | None = None) -> Any:
        """Replicate ``data``; returns the state machine's result once applied."""
        d = self._live()
        fut: asyncio.Future[Any] = self._loop.create_future()
        rid = d.submit(data, _resolver(fut))
        self._wake.set()
        return await self._wait(fut, timeout, lambda: d.forget(rid))

    async def write_batch(self, items: Sequence[Any], *, timeout: float | None = None) -> list[Any]:
        """Several writes in one log append; results in order (first error raised)."""
        d = self._live()
        futs: list[asyncio.Future[Any]] = []
        rids = []
        for data in items:
            fut: asyncio.Future[Any] = self._loop.create_future()
            rids.append(d.submit(data, _resolver(fut)))
            futs.append(fut)
        self._wake.set()

        def forget() -> None:
            for rid in rids:
                d.forget(rid)

        return await self._wait(asyncio.gather(*futs), timeout, forget)

    async def trigger_election(self) -> None:
        self._step_now(TriggerElection())

    async def trigger_heartbeat(self) -> None:
        self._step_now(TriggerHeartbeat())

    def metrics(self) -> Metrics:
        return self._live().metrics(transport=self.transport.stats())

    async def wait_for(self, predicate: Callable[[Metrics], bool], *, timeout: float) -> Metrics:
        """Wait until ``predicate(metrics)`` holds; raises ``Timeout`` after ``timeout`` s."""
        d = self._live()
        fut: asyncio.Future[Metrics] = self._loop.create_future()

        def done(m: Metrics) -> None:
            if not fut.done():
                fut.set_result(m)

        d.watch(predicate, done)
        return await self._wait(fut, timeout, lambda: d.unwatch(done))

    # -- internals ----------------------------------------------------------------

    def _live(self) -> Driver:
        if self._driver is None:
            raise LocalProtocolError("the node is not started: use `async with open_node(...)`")
        if self._closed:
            raise ShuttingDown()
        return self._driver

    def _step_now(self, event: Event) -> None:
        """Feed an event synchronously so a LocalProtocolError reaches the caller."""
        d = self._live()
        d.run(self._loop.time())
        d.handle(event, self._loop.time())
        self._wake.set()

    async def _wait(
        self, fut: asyncio.Future[T], timeout: float | None, give_up: Callable[[], None]
    ) -> T:
        try:
            if timeout is None:
                return await fut
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            give_up()
            raise Timeout(timeout or 0.0) from None

    def _deliver(self, sender: NodeId, message: Message) -> None:
        if self._driver is not None:
            self._driver.deliver(sender, message)
            self._wake.set()

    async def _offload(self, blocking: bool, fn: Callable[..., T], *args: Any) -> T:
        if blocking:
            return await self._loop.run_in_executor(self._thread, fn, *args)
        return fn(*args)

    async def _run(self) -> None:
        d = self._driver
        assert d is not None
        loop = self._loop
        wake = self._wake
        inline_storage, inline_apply = not self._offload_storage, not self._offload_apply
        while True:
            await wake.wait()
            wake.clear()
            d.run_inline(loop.time(), storage=inline_storage, apply=inline_apply)
            if d.storage_queue:
                self._storage_wake.set()
            if d.apply_queue:
                self._apply_wake.set()
            self._arm_timer(d.engine.next_deadline)

    def _arm_timer(self, deadline: float | None) -> None:
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._wake.set)

    async def _storage_worker(self) -> None:
        d = self._driver
        assert d is not None
        while d.stopped is None:
            await self._storage_wake.wait()
            self._storage_wake.clear()
            batch, committed = d.take_storage()
            if not batch:
                continue
            try:
                io_id = await self._offload(
                    self._offload_storage, execute_storage, self.log_store, batch, committed
                )
            except Exception as e:
                d.storage_failed(e)
                self._wake.set()
                return
            d.storage_done(io_id)
            self._wake.set()

    async def _apply_worker(self) -> None:
        d = self._driver
        assert d is not None
        while True:
            await self._apply_wake.wait()
            self._apply_wake.clear()
            entries = d.take_apply()
            if not entries:
                continue
            try:
                applied = await self._offload(
                    self._offload_apply, execute_apply, self.state_machine, entries
                )
            except Exception as e:  # the node must not run on with a state it cannot apply
                d.storage_failed(e)
                self._wake.set()
                return
            d.apply_done(applied)
            self._wake.set()


def _resolver(fut: asyncio.Future[Any]) -> Callable[[Any, ClientError | None], None]:
    def resolve(result: Any, error: ClientError | None) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)

    return resolve


open_node = AsyncioNode
