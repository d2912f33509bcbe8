"""The framework-neutral half of a node runtime.

``Driver`` owns the engine and everything the trio and asyncio runtimes
share; a runtime supplies only tasks, a wake-up signal, a timer at
``engine.next_deadline``, worker threads and futures. All ``Driver`` methods
run on the event loop's thread except ``execute_storage`` and
``execute_apply``, which a runtime may run in a worker thread.

Command streams, as the engine contract requires:

- storage (``SaveVote``/``AppendLog``/``TruncateLog``) queue up in order; one
  worker takes the whole queue as a batch, runs it with consecutive appends
  coalesced into one ``append`` call and one ``flush``, then reports
  ``IoFlushed`` for the batch's last io id (group commit);
- ``Send`` goes to the transport at once (the engine holds back any message
  that depends on an unflushed write);
- ``Apply`` entries queue up in order for one apply worker, which reports
  ``Applied``;
- ``Respond`` resolves the waiter registered for the request id.

Client writes that arrive together are fed to the engine as one
``ClientWriteBatch``: one log append and one replication round.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from adapters.errors import ShuttingDown
from adapters.log import NodeLogger
from raftcore.commands import AppendLog, Apply, Respond, SaveVote, Send, Stopped, TruncateLog
from raftcore.config import Config
from raftcore.engine import Engine, Rng
from raftcore.entries import Entry
from raftcore.errors import ClientError, NodeStopped, RemoteProtocolError
from raftcore.events import (
    Applied,
    ClientWrite,
    ClientWriteBatch,
    Event,
    IoFlushed,
    MessageReceived,
    StorageFailed,
    Wakeup,
)
from raftcore.ids import LogId, NodeId
from raftcore.membership import Membership
from raftcore.messages import Message
from raftcore.state import Metrics
from raftcore.storage import LogStore, StateMachine

#: Called with ``(result, None)`` or ``(None, error)`` once a request is answered.
Resolve = Callable[[Any, ClientError | None], None]
StorageCommand = SaveVote | AppendLog | TruncateLog


def as_membership(members: Membership | Mapping[NodeId, Any]) -> Membership:
    """A membership, or one made of ``{node_id: address}`` (all voters)."""
    return members if isinstance(members, Membership) else Membership.of(members)


def execute_storage(
    store: LogStore, batch: Sequence[StorageCommand], committed: LogId | None
) -> int:
    """Run a batch of storage commands in order with one flush; returns its last io id.

    Runs in a worker thread: it touches only ``store`` and its arguments.
    """
    pending: list[Entry] = []
    for cmd in batch:
        if isinstance(cmd, AppendLog):
            pending.extend(cmd.entries)
            continue
        if pending:
            store.append(pending)
            pending = []
        if isinstance(cmd, SaveVote):
            store.save_vote(cmd.vote)
        else:
            store.truncate(cmd.since)
    if pending:
        store.append(pending)
    if committed is not None:
        store.save_committed(committed)
    store.flush()
    return batch[-1].io_id


def execute_apply(state_machine: StateMachine, entries: Sequence[Entry]) -> Applied:
    """Apply entries in order; runs wherever the state machine may run."""
    results = state_machine.apply(entries)
    return Applied(entries[-1].log_id, tuple(results))


@attrs.define
class DriverStats:
    storage_batches: int = 0
    storage_commands: int = 0
    apply_batches: int = 0
    entries_applied: int = 0
    write_batches: int = 0
    rejected_messages: int = 0


class Driver:
    """One node's engine plus the queues between it and its IO."""

    def __init__(
        self,
        node_id: NodeId,
        config: Config,
        log_store: LogStore,
        state_machine: StateMachine,
        send: Callable[[NodeId, Message], None],
        rng: Rng,
        now: float,
        log: NodeLogger,
    ) -> None:
        recovered = attrs.evolve(log_store.load(), applied=state_machine.applied())
        self.engine = Engine(node_id, config, recovered, rng, now=now)
        self.node_id = node_id
        self.log_store = log_store
        self.state_machine = state_machine
        self._send = send
        self.log = log
        self.inbox: deque[Event] = deque()
        self.storage_queue: list[StorageCommand] = []
        self.apply_queue: list[Entry] = []
        self.waiters: dict[int, Resolve] = {}
        self.watchers: list[tuple[Callable[[Metrics], bool], Callable[[Metrics], None]]] = []
        self.stats = DriverStats()
        #: Why the engine stopped (storage failure), or ``None``.
        self.stopped: str | None = None
        self.closing = False
        self._next_request = 0
        self._saved_committed = self.engine.committed

    # -- requests ----------------------------------------------------------------

    def submit(self, data: Any, resolve: Resolve) -> int:
        """Queue a client write; ``resolve`` is called with its outcome."""
        error = self.refusal()
        if error is not None:
            resolve(None, error)
            return -1
        self._next_request += 1
        rid = self._next_request
        self.waiters[rid] = resolve
        self.inbox.append(ClientWrite(rid, data))
        return rid

    def forget(self, request_id: int) -> None:
        """The caller gave up waiting (timeout); a later answer is dropped."""
        self.waiters.pop(request_id, None)

    def refusal(self) -> ClientError | None:
        if self.closing:
            return ShuttingDown()
        if self.stopped is not None:
            return NodeStopped(self.stopped)
        return None

    def deliver(self, sender: NodeId, message: Message) -> None:
        """A transport hands over a peer's message (only enqueues)."""
        if not self.closing:
            self.inbox.append(MessageReceived(sender, message))

    # -- the step ------------------------------------------------------------------

    def run(self, now: float) -> None:
        """Feed every queued event, then a ``Wakeup`` if a deadline passed."""
        inbox = self.inbox
        while inbox:
            event = inbox.popleft()
            if type(event) is ClientWrite and inbox and type(inbox[0]) is ClientWrite:
                requests = [(event.request_id, event.data)]
                while inbox and type(inbox[0]) is ClientWrite:
                    w = inbox.popleft()
                    requests.append((w.request_id, w.data))  # type: ignore[union-attr]
                self.stats.write_batches += 1
                event = ClientWriteBatch(tuple(requests))
            self.handle(event, now)
        deadline = self.engine.next_deadline
        if deadline is not None and deadline <= now:
            self.handle(Wakeup(), now)
        if self.watchers:
            self._check_watchers()

    def handle(self, event: Event, now: float) -> None:
        """Feed one event now; a peer's bad message is logged and dropped."""
        try:
            commands = self.engine.handle(event, now)
        except RemoteProtocolError as e:
            self.stats.rejected_messages += 1
            self.log.warning("rejected %r: %s", event, e)
            return
        for cmd in commands:
            if isinstance(cmd, Send):
                self._send(cmd.to, cmd.message)
            elif isinstance(cmd, StorageCommand):
                self.storage_queue.append(cmd)
            elif isinstance(cmd, Apply):
                self.apply_queue.extend(cmd.entries)
            elif isinstance(cmd, Respond):
                resolve = self.waiters.pop(cmd.request_id, None)  # type: ignore[call-overload]
                if resolve is not None:
                    resolve(cmd.result, cmd.error)
            elif isinstance(cmd, Stopped):
                self.stopped = cmd.reason
                self.log.error("engine stopped: %s", cmd.reason)
                self.fail_all(NodeStopped(cmd.reason))

    def run_inline(self, now: float, *, storage: bool, apply: bool) -> None:
        """``run``, executing queued storage and apply work right here for a
        store / state machine that never blocks, until nothing is left to do.

        Saves the hops through the worker tasks (and their event loop
        iterations) on the write path of an in-memory node.
        """
        self.run(now)
        while (storage and self.storage_queue) or (apply and self.apply_queue):
            if storage and self.storage_queue:
                batch, committed = self.take_storage()
                try:
                    io_id = execute_storage(self.log_store, batch, committed)
                except Exception as e:
                    self.storage_failed(e)
                else:
                    self.storage_done(io_id)
            if apply and self.apply_queue:
                try:
                    self.apply_done(execute_apply(self.state_machine, self.take_apply()))
                except Exception as e:
                    self.storage_failed(e)
            self.run(now)

    # -- IO hand-off ---------------------------------------------------------------

    def take_storage(self) -> tuple[list[StorageCommand], LogId | None]:
        """The queued storage commands, and a commit hint to save with them."""
        batch, self.storage_queue = self.storage_queue, []
        committed = self.engine.committed
        hint = None
        if committed != self._saved_committed:
            hint = self._saved_committed = committed
        if batch:
            self.stats.storage_batches += 1
            self.stats.storage_commands += len(batch)
        return batch, hint

    def storage_done(self, io_id: int) -> None:
        self.inbox.append(IoFlushed(io_id))

    def storage_failed(self, error: BaseException) -> None:
        self.log.error("storage failed: %r", error)
        self.inbox.append(StorageFailed(f"{type(error).__name__}: {error}"))

    def take_apply(self) -> list[Entry]:
        entries, self.apply_queue = self.apply_queue, []
        if entries:
            self.stats.apply_batches += 1
            self.stats.entries_applied += len(entries)
        return entries

    def apply_done(self, applied: Applied) -> None:
        self.inbox.append(applied)

    # -- observation -----------------------------------------------------------------

    def metrics(self, **extra: Any) -> Metrics:
        m = self.engine.metrics()
        return attrs.evolve(m, extra={**attrs.asdict(self.stats), **extra})

    def watch(self, predicate: Callable[[Metrics], bool], done: Callable[[Metrics], None]) -> bool:
        """Call ``done`` once ``predicate(metrics)`` holds; ``True`` if it already does."""
        m = self.metrics()
        if predicate(m):
            done(m)
            return True
        self.watchers.append((predicate, done))
        return False

    def unwatch(self, done: Callable[[Metrics], None]) -> None:
        self.watchers = [w for w in self.watchers if w[1] is not done]

    def _check_watchers(self) -> None:
        m = self.metrics()
        keep = []
        for predicate, done in self.watchers:
            if predicate(m):
                done(m)
            else:
                keep.append((predicate, done))
        self.watchers = keep

    def fail_all(self, error: ClientError) -> None:
        """Answer every waiting request with ``error``."""
        waiters, self.waiters = self.waiters, {}
        for resolve in waiters.values():
            resolve(None, error)
