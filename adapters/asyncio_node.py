"""The asyncio runtime: a Raft node as a few tasks around ``raftcore.adapters._driver``.

    async with open_node(1, Config(), SqliteLogStore(path), MyStateMachine(),
                         AsyncioTcpTransport(1, "demo", "127.0.0.1:7001", peers)) as node:
        await node.initialize({1: "127.0.0.1:7001", 2: ..., 3: ...})
        result = await node.write(b"hello", timeout=5.0)

Tasks: the event loop (engine steps, a timer at ``next_deadline``), a
storage worker and an apply worker. Blocking calls (a store with ``blocking =
True``, the default, and a state machine with ``blocking = True``) run in one
dedicated thread per node, in order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, Protocol, TypeVar

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


class AsyncioTransport(Transport, Protocol):
    async def start(self, deliver: Callable[[NodeId, Message], None]) -> None: ...
    async def aclose(self) -> None: ...


class _Signal:
    """A wake-up that resets when waited for."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event.clear()


class AsyncioNode(NodeApi):
    """One Raft node on asyncio. Use ``async with open_node(...) as node``."""

    transport: AsyncioTransport

    def __init__(
        self,
        node_id: NodeId,
        config: Config,
        log_store: LogStore,
        state_machine: StateMachine,
        transport: AsyncioTransport,
        *,
        rng: Rng | None = None,
        snapshot_store: SnapshotStore | None = None,
    ) -> None:
        super().__init__(node_id, config, log_store, state_machine, transport, rng, snapshot_store)
        self._tasks: list[asyncio.Task[None]] = []
        self._thread = concurrent.futures.ThreadPoolExecutor(1, f"raft-node-{node_id}")
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._started = False

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> AsyncioNode:
        self._loop = asyncio.get_running_loop()
        self._wake = _Signal()
        self._storage_wake = _Signal()
        self._apply_wake = _Signal()
        try:
            await self._start()
        except BaseException:
            await self._release()
            raise
        return self

    async def _start(self) -> None:
        d = self._driver = await self._loop.run_in_executor(
            self._thread,
            Driver,
            self.node_id,
            self.config,
            self.log_store,
            self.state_machine,
            self.transport.send,
            self._rng,
            self._loop.time(),
            self.log,
            self._sync_peers,
            self.snapshot_store,
        )
        self._attach(d)
        await self.transport.start(self._deliver)
        self._started = True
        wake = self._wake.set
        for coro in (
            self._run(),
            storage_worker(d, self._storage_wake.wait, self._offload, wake),
            apply_worker(d, self._apply_wake.wait, self._offload, wake),
        ):
            self._spawn(coro)
        self.log.info("started")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A background task must not die silently: stop the node and say why."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        assert error is not None
        if self._driver is not None:
            self._driver.fatal(error, self._loop.time())
        else:
            self.log.error("task failed: %r", error)

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
        await self._release()
        self.log.info("stopped")

    async def _release(self) -> None:
        if self._started:
            await self.transport.aclose()
        # The worker thread finishes any write it started before the store closes.
        close = self.log_store.close if self._driver is None else self._driver.close_store
        await self._loop.run_in_executor(self._thread, close)
        self._thread.shutdown(wait=True)

    # -- the runtime's primitives (see NodeApi) ----------------------------------------

    def _now(self) -> float:
        return self._loop.time()

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def _kick(self) -> None:
        self._wake.set()

    async def _requests(self, submits: Sequence[Submit], timeout: float | None) -> list[Any]:
        d = self._live()
        futs: list[asyncio.Future[Any]] = []
        rids = []
        for submit in submits:
            fut: asyncio.Future[Any] = self._loop.create_future()
            rids.append(submit(_resolver(fut)))
            futs.append(fut)
        self._wake.set()
        one = len(futs) == 1
        waiting: asyncio.Future[Any] = (
            futs[0] if one else asyncio.gather(*futs, return_exceptions=True)
        )
        finished = False
        try:
            done = await (waiting if timeout is None else asyncio.wait_for(waiting, timeout))
            finished = True
        except TimeoutError:
            raise timeout_error(timeout) from None
        finally:
            if not finished:  # timed out or cancelled: answers are no longer wanted
                for rid in rids:
                    d.forget(rid)
        if one:
            return [done]
        for r in done:
            if isinstance(r, BaseException):
                raise r
        return list(done)

    async def wait_for(self, predicate: Callable[[Metrics], bool], *, timeout: float) -> Metrics:
        d = self._live()
        fut: asyncio.Future[Metrics] = self._loop.create_future()
        w = Watcher(predicate, lambda m: _settle(fut, m, None), lambda e: _settle(fut, None, e))
        d.watch(w)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise timeout_error(timeout) from None
        finally:
            d.unwatch(w)

    # -- internals ----------------------------------------------------------------

    async def _offload(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._loop.run_in_executor(self._thread, fn, *args)

    async def _run(self) -> None:
        d = self._driver
        assert d is not None
        loop = self._loop
        while True:  # steps first: the driver's start-up step must not wait for a wake-up
            d.run_inline(loop.time())
            if d.storage_queue:
                self._storage_wake.set()
            if d.apply_queue:
                self._apply_wake.set()
            self._arm_timer(d.engine.next_deadline)
            if d.stopped is not None and self._timer is not None:
                self._timer.cancel()
                self._timer = None
            await self._wake.wait()

    def _arm_timer(self, deadline: float | None) -> None:
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._timer_fired)

    def _timer_fired(self) -> None:
        # Forget the deadline: if the loop woke a hair early and the engine
        # keeps the same deadline, the next _arm_timer must arm it again.
        self._timer_at = None
        self._wake.set()


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


def _resolver(fut: asyncio.Future[Any]) -> Callable[[Any, ClientError | None], None]:
    return lambda result, error: _settle(fut, result, error)


open_node = AsyncioNode

__all__ = ["AsyncioNode", "AsyncioTransport", "open_node"]
