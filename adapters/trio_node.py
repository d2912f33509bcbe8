"""The trio runtime: a Raft node as tasks in its own nursery around ``adapters.driver``.

    async with open_node(1, Config(), SqliteLogStore(path), MyStateMachine(),
                         TrioTcpTransport(1, "demo", "127.0.0.1:7001", peers)) as node:
        await node.initialize({1: "127.0.0.1:7001", 2: ..., 3: ...})
        result = await node.write(b"hello", timeout=5.0)

The same API as ``adapters.asyncio_node``. Tasks: the event loop (engine
steps, a cancel scope deadline at ``next_deadline``), a storage worker, an
apply worker and the transport. Blocking calls (a store with ``blocking =
True``, the default, and a state machine with ``blocking = True``) run in a
worker thread, one at a time and in order.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import trio

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


class TrioTransport(Protocol):
    def send(self, to: NodeId, msg: Message) -> None: ...
    async def serve(
        self,
        deliver: Callable[[NodeId, Message], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None: ...
    def stats(self) -> dict[str, Any]: ...


class _Signal:
    """A settable, auto-resetting wake-up (trio.Event cannot be cleared)."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


class _Outcome:
    """One request's answer, awaited by its caller."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Any = None
        self.error: ClientError | None = None

    def resolve(self, result: Any, error: ClientError | None) -> None:
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class TrioNode:
    """One Raft node on trio. Use ``async with open_node(...) as node``."""

    def __init__(
        self,
        node_id: NodeId,
        config: Config,
        log_store: LogStore,
        state_machine: StateMachine,
        transport: TrioTransport,
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
        self._limiter = trio.CapacityLimiter(1)
        self._offload_storage = getattr(log_store, "blocking", True)
        self._offload_apply = getattr(state_machine, "blocking", False)
        self._wake = _Signal()
        self._storage_wake = _Signal()
        self._apply_wake = _Signal()
        self._closed = False
        self._scope: trio.CancelScope | None = None

    # -- lifecycle -------------------------------------------------------------

    async def _start(self, nursery: trio.Nursery) -> None:
        self._driver = await self._offload(
            True,
            Driver,
            self.node_id,
            self.config,
            self.log_store,
            self.state_machine,
            self.transport.send,
            self._rng,
            trio.current_time(),
            self.log,
        )
        await nursery.start(self.transport.serve, self._deliver)
        nursery.start_soon(self._run)
        nursery.start_soon(self._storage_worker)
        nursery.start_soon(self._apply_worker)
        self.log.info("started")

    async def shutdown(self) -> None:
        """Stop: waiting requests fail with ``ShuttingDown``; the store is closed
        after its in-flight write finishes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._driver is not None:
            self._driver.closing = True
            self._driver.fail_all(ShuttingDown())
        if self._scope is not None:
            self._scope.cancel()

    async def _close_store(self) -> None:
        with trio.CancelScope(shield=True):
            # Waits for the worker thread's in-flight write, if any.
            await trio.to_thread.run_sync(self.log_store.close, limiter=self._limiter)
        self.log.info("stopped")

    # -- the public API ----------------------------------------------------------

    async def initialize(self, members: Membership | Mapping[NodeId, Any]) -> None:
        """Form a new cluster with this first membership (node id -> address)."""
        self._step_now(Initialize(as_membership(members)))

    async def write(self, data: Any, *, timeout: float | None = None) -> Any:
        """Replicate ``data``; returns the state machine's result once applied."""
        d = self._live()
        out = _Outcome()
        rid = d.submit(data, out.resolve)
        self._wake.set()
        await self._wait(out.done, timeout, lambda: d.forget(rid))
        return out.unwrap()

    async def write_batch(self, items: Sequence[Any], *, timeout: float | None = None) -> list[Any]:
        """Several writes in one log append; results in order (first error raised)."""
        d = self._live()
        outs = [_Outcome() for _ in items]
        rids = [d.submit(data, out.resolve) for data, out in zip(items, outs, strict=True)]
        self._wake.set()
        with trio.move_on_after(math.inf if timeout is None else timeout):
            for out in outs:
                await out.done.wait()
            return [out.unwrap() for out in outs]
        for rid in rids:
            d.forget(rid)
        raise Timeout(timeout or 0.0)

    async def trigger_election(self) -> None:
        self._step_now(TriggerElection())

    async def trigger_heartbeat(self) -> None:
        self._step_now(TriggerHeartbeat())

    def metrics(self) -> Metrics:
        return self._live().metrics(transport=self.transport.stats())

    async def wait_for(self, predicate: Callable[[Metrics], bool], *, timeout: float) -> Metrics:
        """Wait until ``predicate(metrics)`` holds; raises ``Timeout`` after ``timeout`` s."""
        d = self._live()
        seen = trio.Event()
        result: list[Metrics] = []

        def done(m: Metrics) -> None:
            result.append(m)
            seen.set()

        d.watch(predicate, done)
        await self._wait(seen, timeout, lambda: d.unwatch(done))
        return result[0]

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
        d.run(trio.current_time())
        d.handle(event, trio.current_time())
        self._wake.set()

    async def _wait(
        self, done: trio.Event, timeout: float | None, give_up: Callable[[], None]
    ) -> None:
        if timeout is None:
            await done.wait()
            return
        with trio.move_on_after(timeout):
            await done.wait()
            return
        give_up()
        raise Timeout(timeout)

    def _deliver(self, sender: NodeId, message: Message) -> None:
        if self._driver is not None:
            self._driver.deliver(sender, message)
            self._wake.set()

    async def _offload(self, blocking: bool, fn: Callable[..., T], *args: Any) -> T:
        if blocking:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        return fn(*args)

    async def _run(self) -> None:
        d = self._driver
        assert d is not None
        inline_storage, inline_apply = not self._offload_storage, not self._offload_apply
        while True:
            deadline = d.engine.next_deadline
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._wake.wait()
            d.run_inline(trio.current_time(), storage=inline_storage, apply=inline_apply)
            if d.storage_queue:
                self._storage_wake.set()
            if d.apply_queue:
                self._apply_wake.set()

    async def _storage_worker(self) -> None:
        d = self._driver
        assert d is not None
        while d.stopped is None:
            await self._storage_wake.wait()
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


@asynccontextmanager
async def open_node(
    node_id: NodeId,
    config: Config,
    log_store: LogStore,
    state_machine: StateMachine,
    transport: TrioTransport,
    *,
    rng: Rng | None = None,
) -> AsyncIterator[TrioNode]:
    """Run a node in its own nursery for the body of the ``async with``."""
    node = TrioNode(node_id, config, log_store, state_machine, transport, rng=rng)
    try:
        async with trio.open_nursery() as nursery:
            node._scope = nursery.cancel_scope
            await node._start(nursery)
            try:
                yield node
            finally:
                await node.shutdown()
    finally:
        await node._close_store()
