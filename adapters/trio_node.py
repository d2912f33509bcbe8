"""The trio runtime: a Raft node as tasks in its own nursery around ``raftcore.adapters._driver``.

    async with open_node(1, Config(), SqliteLogStore(path), MyStateMachine(),
                         TrioTcpTransport(1, "demo", "127.0.0.1:7001", peers)) as node:
        await node.initialize({1: "127.0.0.1:7001", 2: ..., 3: ...})
        result = await node.write(b"hello", timeout=5.0)

The same API as ``raftcore.adapters.asyncio_node``. The node's tasks (the event loop
with a deadline at ``next_deadline``, a storage worker, an apply worker and
the transport) run in a nursery of their own, inside a cancel scope that
``shutdown`` cancels: the body of the ``async with`` is never cancelled by
it. Blocking calls (a store with ``blocking = True``, the default, and a
state machine with ``blocking = True``) run in a worker thread, one at a
time and in order.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

import trio

from raftcore.adapters._driver import Driver, Watcher, apply_worker, storage_worker
from raftcore.adapters._node_api import NodeApi, Submit, Transport, timeout_error
from raftcore.adapters.errors import ShuttingDown
from raftcore.config import Config
from raftcore.engine import Rng
from raftcore.errors import ClientError
from raftcore.ids import NodeId
from raftcore.messages import Message
from raftcore.state import Metrics
from raftcore.storage import LogStore, SnapshotStore, StateMachine

T = TypeVar("T")


class TrioTransport(Transport, Protocol):
    async def serve(
        self,
        deliver: Callable[[NodeId, Message], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None: ...


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
    """One request's (or one ``wait_for``'s) answer, awaited by its caller."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def resolve(self, result: Any, error: ClientError | BaseException | None) -> None:
        if not self.done.is_set():
            self.result, self.error = result, error
            self.done.set()

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class TrioNode(NodeApi):
    """One Raft node on trio. Use ``async with open_node(...) as node``."""

    transport: TrioTransport

    def __init__(
        self,
        node_id: NodeId,
        config: Config,
        log_store: LogStore,
        state_machine: StateMachine,
        transport: TrioTransport,
        *,
        rng: Rng | None = None,
        snapshot_store: SnapshotStore | None = None,
    ) -> None:
        super().__init__(node_id, config, log_store, state_machine, transport, rng, snapshot_store)
        self._limiter = trio.CapacityLimiter(1)
        self._wake = _Signal()
        self._storage_wake = _Signal()
        self._apply_wake = _Signal()
        self._scope = trio.CancelScope()

    # -- lifecycle -------------------------------------------------------------

    async def _serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the node's tasks until ``shutdown`` cancels them."""
        d = self._driver = await self._offload(
            Driver,
            self.node_id,
            self.config,
            self.log_store,
            self.state_machine,
            self.transport.send,
            self._rng,
            trio.current_time(),
            self.log,
            self._sync_peers,
            self.snapshot_store,
        )
        self._attach(d)
        wake = self._wake.set
        with self._scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.transport.serve, self._deliver)
                nursery.start_soon(self._guarded, self._run)
                nursery.start_soon(
                    self._guarded, storage_worker, d, self._storage_wake.wait, self._offload, wake
                )
                nursery.start_soon(
                    self._guarded, apply_worker, d, self._apply_wake.wait, self._offload, wake
                )
                self.log.info("started")
                task_status.started()

    async def _guarded(self, fn: Callable[..., Any], *args: Any) -> None:
        """A background task must not die silently: stop the node and say why."""
        try:
            await fn(*args)
        except Exception as e:
            assert self._driver is not None
            self._driver.fatal(e, trio.current_time())

    async def shutdown(self) -> None:
        """Stop: waiting requests fail with ``ShuttingDown``; the store is closed
        after its in-flight write finishes. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._driver is not None:
            self._driver.closing = True
            self._driver.fail_all(ShuttingDown())
        self._scope.cancel()

    async def _close_store(self) -> None:
        with trio.CancelScope(shield=True):
            # Waits for the worker thread's in-flight write, if any.
            close = self.log_store.close if self._driver is None else self._driver.close_store
            await trio.to_thread.run_sync(close, limiter=self._limiter)
        self.log.info("stopped")

    # -- the runtime's primitives (see NodeApi) ----------------------------------------

    def _now(self) -> float:
        return trio.current_time()

    async def _sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    def _kick(self) -> None:
        self._wake.set()

    async def _requests(self, submits: Sequence[Submit], timeout: float | None) -> list[Any]:
        d = self._live()
        outs = [_Outcome() for _ in submits]
        rids = [submit(out.resolve) for submit, out in zip(submits, outs, strict=True)]
        self._wake.set()
        finished = False
        try:
            with trio.move_on_after(math.inf if timeout is None else timeout):
                for out in outs:
                    await out.done.wait()
                finished = True
        finally:
            if not finished:  # timed out or cancelled: answers are no longer wanted
                for rid in rids:
                    d.forget(rid)
        if not finished:
            raise timeout_error(timeout)
        return [out.unwrap() for out in outs]

    async def wait_for(self, predicate: Callable[[Metrics], bool], *, timeout: float) -> Metrics:
        d = self._live()
        out = _Outcome()
        w = Watcher(predicate, lambda m: out.resolve(m, None), lambda e: out.resolve(None, e))
        d.watch(w)
        try:
            with trio.move_on_after(timeout):
                await out.done.wait()
        finally:
            d.unwatch(w)
        if not out.done.is_set():
            raise timeout_error(timeout)
        result: Metrics = out.unwrap()
        return result

    # -- internals ----------------------------------------------------------------

    async def _offload(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _run(self) -> None:
        d = self._driver
        assert d is not None
        while True:  # steps first: the driver's start-up step must not wait for a wake-up
            d.run_inline(trio.current_time())
            if d.storage_queue:
                self._storage_wake.set()
            if d.apply_queue:
                self._apply_wake.set()
            deadline = d.engine.next_deadline
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._wake.wait()


@asynccontextmanager
async def open_node(
    node_id: NodeId,
    config: Config,
    log_store: LogStore,
    state_machine: StateMachine,
    transport: TrioTransport,
    *,
    rng: Rng | None = None,
    snapshot_store: SnapshotStore | None = None,
) -> AsyncIterator[TrioNode]:
    """Run a node for the body of the ``async with``.

    An exception from the body (or from starting the node) propagates as
    itself, not wrapped in an exception group.
    """
    node = TrioNode(
        node_id, config, log_store, state_machine, transport, rng=rng, snapshot_store=snapshot_store
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node._serve)
            try:
                yield node
            finally:
                await node.shutdown()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        await node._close_store()
