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
- ``PurgeLog`` goes with the storage commands, in order;
- ``Apply`` entries and the snapshot commands (``BuildSnapshot``,
  ``WriteSnapshotChunk``, ``InstallSnapshot``) queue up in order for one
  state-machine worker, which reports ``Applied``, ``SnapshotBuilt`` and
  ``SnapshotInstalled`` (``execute_state_machine``);
- ``SendSnapshotChunk`` reads the chunk from the snapshot store and sends it;
- ``Respond`` resolves the waiter registered for the request id.

Client writes that arrive together are fed to the engine as one
``ClientWriteBatch``: one log append and one replication round.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from time import perf_counter
from typing import Any

import attrs

from raftcore.adapters._latency import new_latencies
from raftcore.adapters._log import NodeLogger
from raftcore.adapters.errors import ShuttingDown
from raftcore.adapters.transport.identity import address_of
from raftcore.commands import (
    AppendLog,
    Apply,
    BuildSnapshot,
    InstallSnapshot,
    PurgeLog,
    Respond,
    SaveVote,
    Send,
    SendSnapshotChunk,
    Stopped,
    TruncateLog,
    WriteSnapshotChunk,
)
from raftcore.config import Config
from raftcore.engine import Engine, Rng
from raftcore.entries import Entry
from raftcore.errors import (
    ClientError,
    ConfigError,
    LocalProtocolError,
    NodeStopped,
    NotLeader,
    RemoteProtocolError,
)
from raftcore.events import (
    Applied,
    ChangeMembership,
    ClientRead,
    ClientWrite,
    ClientWriteBatch,
    Event,
    IoFlushed,
    MessageReceived,
    ReadPolicy,
    SnapshotBuilt,
    SnapshotInstalled,
    StorageFailed,
    TransferLeader,
    Wakeup,
)
from raftcore.ids import LogId, NodeId
from raftcore.membership import Change, Membership
from raftcore.messages import Message
from raftcore.snapshots import SnapshotMeta
from raftcore.state import Metrics
from raftcore.storage import LogStore, SnapshotStore, StateMachine, StoreIdentity

#: Called with ``(result, None)`` or ``(None, error)`` once a request is answered.
Resolve = Callable[[Any, ClientError | None], None]
StorageCommand = SaveVote | AppendLog | TruncateLog | PurgeLog
#: What the state-machine worker runs, in order.
StateMachineWork = Entry | BuildSnapshot | WriteSnapshotChunk | InstallSnapshot


def peers_of(m: Membership, me: NodeId) -> dict[NodeId, Any]:
    """The other members and their node info (the transport's addresses)."""
    return {n: info for n, info in m.nodes_items if n != me}


def as_membership(members: Membership | Mapping[NodeId, Any]) -> Membership:
    """A membership, or one made of ``{node_id: address}`` (all voters)."""
    return members if isinstance(members, Membership) else Membership.of(members)


def execute_storage(
    store: LogStore,
    batch: Sequence[StorageCommand],
    committed: LogId | None,
    cluster_id: str | None = None,
) -> int:
    """Run a batch of storage commands in order with one flush; returns its last io id.

    Runs in a worker thread: it touches only ``store`` and its arguments.
    ``cluster_id``: one this node adopted, to record (``IdentityStore``).
    """
    if cluster_id is not None:
        store.save_cluster_id(cluster_id)  # type: ignore[attr-defined]
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
        elif isinstance(cmd, TruncateLog):
            store.truncate(cmd.since)
        else:
            store.purge(cmd.upto)
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


def execute_state_machine(
    state_machine: StateMachine,
    snapshots: SnapshotStore | None,
    work: Sequence[StateMachineWork],
    chunk_size: int,
    receiving: list[str] | None = None,
) -> list[Event]:
    """Run the state-machine stream in order; returns the events to report.

    Consecutive entries go to one ``apply`` call. Runs wherever the state
    machine may run (a worker thread when it, or the snapshot store, blocks).
    ``receiving`` holds the id of the leader's snapshot being received, kept
    between calls: a transfer the leader abandoned for another is discarded
    when the other begins (no unfinished file is left open for good).
    """
    events: list[Event] = []
    entries: list[Entry] = []
    for item in work:
        if isinstance(item, Entry):
            entries.append(item)
            continue
        if entries:
            events.append(execute_apply(state_machine, entries))
            entries = []
        if snapshots is None:
            raise ConfigError(
                "snapshot_store",
                "this node has none, so it cannot take the leader's snapshot: "
                "give every node a snapshot store",
            )
        if isinstance(item, BuildSnapshot):
            data = state_machine.snapshot()
            meta = SnapshotMeta(item.last_log_id, item.membership, uuid.uuid4().hex, len(data))
            snapshots.begin(meta)
            for offset in range(0, len(data), chunk_size):
                snapshots.write_chunk(meta.snapshot_id, offset, data[offset : offset + chunk_size])
            events.append(SnapshotBuilt(snapshots.finish(meta.snapshot_id)))
        elif isinstance(item, WriteSnapshotChunk):
            sid = item.meta.snapshot_id
            if item.offset == 0:
                if receiving:
                    if receiving[0] != sid:
                        snapshots.discard(receiving[0])
                    receiving.clear()
                snapshots.begin(item.meta)
                if receiving is not None:
                    receiving.append(sid)
            snapshots.write_chunk(sid, item.offset, item.data)
        else:
            if receiving:
                receiving.clear()
            meta = snapshots.finish(item.meta.snapshot_id)
            state_machine.restore(read_snapshot(snapshots, meta, chunk_size), meta.last_log_id)
            events.append(SnapshotInstalled(item.meta))
    if entries:
        events.append(execute_apply(state_machine, entries))
    return events


def read_snapshot(snapshots: SnapshotStore, meta: SnapshotMeta, chunk_size: int) -> bytes:
    """The whole of a finished snapshot."""
    parts = []
    offset = 0
    while offset < meta.size:
        chunk = snapshots.read_chunk(meta.snapshot_id, offset, chunk_size)
        if not chunk:
            raise ValueError(f"snapshot {meta.snapshot_id} ends at {offset} of {meta.size} bytes")
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


@attrs.define
class DriverStats:
    storage_batches: int = 0
    storage_commands: int = 0
    apply_batches: int = 0
    entries_applied: int = 0
    write_batches: int = 0
    rejected_messages: int = 0


@attrs.define(eq=False)
class Watcher:
    """A ``wait_for`` in progress: the runtime's callbacks for its outcome."""

    predicate: Callable[[Metrics], bool]
    done: Callable[[Metrics], None]
    fail: Callable[[BaseException], None]


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
        on_membership: Callable[[LogId, Membership], None] | None = None,
        snapshot_store: SnapshotStore | None = None,
    ) -> None:
        if snapshot_store is None:
            # No snapshot store: no snapshots, and the log is never purged.
            config = attrs.evolve(config, snapshot_every=None)
        elif not (
            callable(getattr(state_machine, "snapshot", None))
            and callable(getattr(state_machine, "restore", None))
        ):
            raise ConfigError(
                "state_machine",
                f"{type(state_machine).__name__} has no snapshot() and restore(): "
                "it cannot be used with a snapshot store",
            )
        self.snapshot_store = snapshot_store
        #: The leader's snapshot being received (touched by the apply worker only).
        self._receiving: list[str] = []
        self.config = config
        recovered = attrs.evolve(
            log_store.load(), **self._recover_snapshot(state_machine, snapshot_store, log)
        )
        if recovered.applied.index < recovered.last_purged.index:
            raise ConfigError(
                "snapshot_store",
                f"the log is purged up to {recovered.last_purged} but no snapshot covers it "
                f"(latest: {recovered.snapshot.last_log_id if recovered.snapshot else 'none'}): "
                "the state before it is gone. Was the snapshot directory deleted? Recover "
                "this node as one that lost its disk (docs/kv-service.md)",
            )
        self.engine = Engine(node_id, config, recovered, rng, now=now)
        self.node_id = node_id
        self.log_store = log_store
        self.state_machine = state_machine
        self._send = send
        self.log = log
        self.inbox: deque[Event] = deque()
        self.storage_queue: list[StorageCommand] = []
        self.apply_queue: list[StateMachineWork] = []
        self.waiters: dict[int, Resolve] = {}
        self.watchers: list[Watcher] = []
        self.stats = DriverStats()
        #: Latency histograms (``raftcore.adapters._latency``).
        self.latency = new_latencies()
        #: Append batches waiting for their commit: (last index, when appended).
        self._appended: deque[tuple[int, float]] = deque()
        #: Run the store's / state machine's calls in a worker thread?
        self.offload_storage: bool = getattr(log_store, "blocking", True)
        self.offload_apply: bool = getattr(state_machine, "blocking", False) or (
            snapshot_store is not None and getattr(snapshot_store, "blocking", True)
        )
        #: The runtime's own figures for ``metrics().extra`` (the transport's).
        self.metrics_extra: Callable[[], dict[str, Any]] = dict
        #: Called with the effective membership and its log id when it changes
        #: (the runtimes keep the transport's peers in step with it).
        self.on_membership = on_membership
        #: Why the engine stopped (storage failure, internal error), or ``None``.
        self.stopped: str | None = None
        self.closing = False
        self._next_request = 0
        self._saved_committed = self.engine.committed
        #: The store's identity (``None``: the store keeps none, no checks).
        self.identity: StoreIdentity | None = (
            log_store.identity() if callable(getattr(log_store, "identity", None)) else None  # type: ignore[attr-defined]
        )
        #: A cluster id adopted from a peer, saved with the next storage batch.
        self.adopted_cluster: str | None = None
        self._membership_seen: Membership | None = None
        # The first step runs the engine at once, before any message or timer:
        # it hands over recovered committed entries to apply and the runtime
        # arms the election timer from its ``next_deadline``. (A runtime that
        # waited for a first wake-up never elected after a whole-cluster restart.)
        self.inbox.append(Wakeup())

    @staticmethod
    def _recover_snapshot(
        state_machine: StateMachine, snapshots: SnapshotStore | None, log: NodeLogger
    ) -> dict[str, Any]:
        """Start the state machine from the latest snapshot if it is behind it."""
        applied = state_machine.applied()
        latest = snapshots.latest() if snapshots is not None else None
        if latest is None:
            return {"applied": applied}
        assert snapshots is not None
        if applied.index < latest.last_log_id.index:
            data = read_snapshot(snapshots, latest, 1 << 20)
            state_machine.restore(data, latest.last_log_id)
            applied = latest.last_log_id
            log.info("state machine restored from snapshot %s", latest.last_log_id)
        return {"applied": applied, "snapshot": latest}

    # -- requests ----------------------------------------------------------------

    def submit(self, data: Any, resolve: Resolve) -> int:
        """Queue a client write; ``resolve`` is called with its outcome."""
        return self._request(lambda rid: ClientWrite(rid, data), resolve)

    def submit_change(
        self, change: Change, retain: bool, expected: LogId | None, resolve: Resolve
    ) -> int:
        """Queue a membership change; resolved with ``(log_id, membership)``."""
        return self._request(lambda rid: ChangeMembership(rid, change, retain, expected), resolve)

    def submit_transfer(self, to: NodeId | None, resolve: Resolve) -> int:
        """Queue a leadership transfer; resolved with the target once handed over."""
        return self._request(lambda rid: TransferLeader(rid, to), resolve)

    def submit_read(self, policy: ReadPolicy, resolve: Resolve) -> int:
        """Queue a read; resolved with its read point (a ``LogId``)."""
        return self._request(lambda rid: ClientRead(rid, policy), resolve)

    def _request(self, make: Callable[[int], Event], resolve: Resolve) -> int:
        error = self.refusal()
        if error is not None:
            resolve(None, error)
            return -1
        self._next_request += 1
        rid = self._next_request
        self.waiters[rid] = resolve
        self.inbox.append(make(rid))
        return rid

    def forget(self, request_id: int) -> None:
        """The caller gave up waiting (timeout, cancellation); a later answer is dropped."""
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

    def run_inline(self, now: float) -> None:
        """``run``, then storage and apply work right here for a store / state
        machine that never blocks (``blocking = False``), until none is left.

        Saves the hops through the worker tasks (and their event loop
        iterations) on the write path of an in-memory node.
        """
        self.run(now)
        storage, apply = not self.offload_storage, not self.offload_apply
        while (storage and self.storage_queue) or (apply and self.apply_queue):
            if storage and self.storage_queue:
                batch, committed, cluster = self.take_storage()
                try:
                    io_id = execute_storage(self.log_store, batch, committed, cluster)
                except Exception as e:
                    self.storage_failed(e)
                else:
                    self.storage_done(io_id)
            if apply and self.apply_queue:
                try:
                    self.apply_done(self.execute_apply(self.take_apply()))
                except Exception as e:
                    self.apply_failed(e)
            self.run(now)

    def handle(self, event: Event, now: float) -> None:
        """Feed one event now; a peer's bad message is logged and dropped.

        Anything else going wrong here (an engine bug, a transport refusing a
        message) stops the node cleanly rather than leaving it half-running.
        """
        try:
            self._handle(event, now)
        except RemoteProtocolError as e:
            self.stats.rejected_messages += 1
            self.log.warning("rejected %r: %s", event, e)
        except LocalProtocolError:
            raise  # the caller's misuse (e.g. initializing twice): theirs to see
        except Exception as e:
            self.fatal(e, now)

    def fatal(self, error: BaseException, now: float) -> None:
        """Stop after an unexpected error: log it, stop the engine, fail every waiter."""
        if self.stopped is not None:
            return
        reason = f"internal error: {type(error).__name__}: {error}"
        self.log.error("stopping: %s", reason, exc_info=error)
        with contextlib.suppress(Exception):
            self.engine.handle(StorageFailed(reason), now)
        self.stopped = reason
        self.fail_all(NodeStopped(reason))

    def _handle(self, event: Event, now: float) -> None:
        commands = self.engine.handle(event, now)
        m = self.engine.membership
        if m is not self._membership_seen:
            # Before the sends: the first message to a new member needs its address.
            self._membership_seen = m
            if m is not None and self.on_membership is not None:
                self.on_membership(self.engine.memberships[-1][0], m)
        for cmd in commands:
            if isinstance(cmd, Send):
                self._send(cmd.to, cmd.message)
            elif isinstance(cmd, StorageCommand):
                self.storage_queue.append(cmd)
                self._track_commit(cmd)
            elif isinstance(cmd, Apply):
                self.apply_queue.extend(cmd.entries)
                self._committed_through(cmd.entries[-1].log_id.index)
            elif isinstance(cmd, BuildSnapshot | WriteSnapshotChunk | InstallSnapshot):
                self.apply_queue.append(cmd)
            elif isinstance(cmd, SendSnapshotChunk):
                self._send_chunk(cmd)
            elif isinstance(cmd, Respond):
                resolve = self.waiters.pop(cmd.request_id, None)  # type: ignore[call-overload]
                if resolve is not None:
                    error = cmd.error
                    if type(error) is NotLeader and error.leader_info is not None:
                        # The caller dials an address, not the runtime's node info.
                        error = attrs.evolve(error, leader_info=address_of(error.leader_info))
                    resolve(cmd.result, error)
            elif isinstance(cmd, Stopped):
                self.stopped = cmd.reason
                self.log.error("engine stopped: %s", cmd.reason)
                self.fail_all(NodeStopped(cmd.reason))

    def _track_commit(self, cmd: StorageCommand) -> None:
        """Commit latency, per append batch: from its ``AppendLog`` to the
        ``Apply`` that covers its last entry (dropped if truncated)."""
        appended = self._appended
        if type(cmd) is AppendLog:
            appended.append((cmd.entries[-1].log_id.index, perf_counter()))
        elif type(cmd) is TruncateLog:
            while appended and appended[-1][0] >= cmd.since:
                appended.pop()
        elif type(cmd) is PurgeLog:  # an installed snapshot replaced them
            while appended and appended[0][0] <= cmd.upto.index:
                appended.popleft()

    def _committed_through(self, index: int) -> None:
        appended = self._appended
        if appended and appended[0][0] <= index:
            now, commit = perf_counter(), self.latency["commit"]
            while appended and appended[0][0] <= index:
                commit.observe(now - appended.popleft()[1])

    def _send_chunk(self, cmd: SendSnapshotChunk) -> None:
        """Read a snapshot chunk (small, from one file) and send it."""
        store = self.snapshot_store
        m = cmd.message
        assert store is not None
        try:
            data = store.read_chunk(m.meta.snapshot_id, m.offset, cmd.length)
        except (OSError, KeyError, ValueError) as e:
            # A newer snapshot replaced it: the engine sends that one instead.
            self.log.debug("snapshot chunk not sent: %r", e)
            return
        self._send(cmd.to, m._replace(data=data))

    # -- IO hand-off ---------------------------------------------------------------

    def adopt_cluster(self, cluster_id: str) -> None:
        """The transport joined this fresh node to ``cluster_id``: record it."""
        if self.identity is not None:
            self.identity = attrs.evolve(self.identity, cluster_id=cluster_id)
            self.adopted_cluster = cluster_id

    def take_storage(self) -> tuple[list[StorageCommand], LogId | None, str | None]:
        """The queued storage commands, a commit hint and an adopted cluster id
        to save with them."""
        batch, self.storage_queue = self.storage_queue, []
        if not batch:
            return batch, None, None
        self.stats.storage_batches += 1
        self.stats.storage_commands += len(batch)
        committed = self.engine.committed
        hint = None
        if committed != self._saved_committed:
            hint = self._saved_committed = committed
        cluster, self.adopted_cluster = self.adopted_cluster, None
        return batch, hint, cluster

    def storage_done(self, io_id: int) -> None:
        self.inbox.append(IoFlushed(io_id))

    def storage_failed(self, error: BaseException) -> None:
        self.log.error("storage failed: %r", error)
        self.inbox.append(StorageFailed(f"{type(error).__name__}: {error}"))

    def apply_failed(self, error: BaseException) -> None:
        # Every replica applies the same entries, so a deterministic state
        # machine bug stops them all; but no node may run on past an entry it
        # could not apply.
        self.log.error("state machine failed: %r", error)
        self.inbox.append(StorageFailed(f"state machine: {type(error).__name__}: {error}"))

    def close_store(self) -> None:
        """Save the latest commit hint, then close the store (a worker-thread call).

        A node stopped cleanly then restarts knowing everything it had seen
        committed and applies it at once, before any peer is up. (After a
        crash the hint may lag: those entries wait for the next leader.)
        """
        try:
            committed = self.engine.committed
            if self.stopped is None and committed != self._saved_committed:
                self.log_store.save_committed(committed)
                self.log_store.flush()
                self._saved_committed = committed
        except Exception as e:
            self.log.warning("could not save the commit hint on close: %r", e)
        finally:
            self.log_store.close()
            if self.snapshot_store is not None:
                self.snapshot_store.close()

    def take_apply(self) -> list[StateMachineWork]:
        work, self.apply_queue = self.apply_queue, []
        if work:
            self.stats.apply_batches += 1
            self.stats.entries_applied += len(work)
        return work

    def execute_apply(self, work: Sequence[StateMachineWork]) -> list[Event]:
        """``execute_state_machine`` for this node (a worker-thread call)."""
        chunk = self.config.snapshot_chunk_size
        return execute_state_machine(
            self.state_machine, self.snapshot_store, work, chunk, self._receiving
        )

    def apply_done(self, events: list[Event]) -> None:
        for ev in events:
            if type(ev) is SnapshotInstalled:
                lid, size = ev.meta.last_log_id, ev.meta.size
                self.log.info("installed the leader's snapshot %s (%d bytes)", lid, size)
        self.inbox.extend(events)

    # -- observation -----------------------------------------------------------------

    def metrics(self) -> Metrics:
        m = self.engine.metrics()
        return attrs.evolve(m, extra={**attrs.asdict(self.stats), **self.metrics_extra()})

    def watch(self, w: Watcher) -> None:
        """Resolve ``w`` once its predicate holds (checked after every step)."""
        self.watchers.append(w)
        self._check_watchers()

    def unwatch(self, w: Watcher) -> None:
        self.watchers = [x for x in self.watchers if x is not w]

    def _check_watchers(self) -> None:
        m = self.metrics()
        keep = []
        for w in self.watchers:
            try:
                held = w.predicate(m)
            except Exception as e:  # the caller's predicate: its error is the caller's
                w.fail(e)
                continue
            if held:
                w.done(m)
            else:
                keep.append(w)
        self.watchers = keep

    def fail_all(self, error: ClientError) -> None:
        """Answer every waiting request and ``wait_for`` with ``error``."""
        waiters, self.waiters = self.waiters, {}
        for resolve in waiters.values():
            resolve(None, error)
        watchers, self.watchers = self.watchers, []
        for w in watchers:
            w.fail(error)


# -- the two IO workers, written once for both runtimes ------------------------------


async def storage_worker(
    d: Driver,
    wait: Callable[[], Awaitable[None]],
    offload: Callable[..., Awaitable[Any]],
    wake: Callable[[], None],
) -> None:
    """Run queued storage batches one at a time until storage fails.

    ``wait`` returns once there may be work; ``offload(fn, *args)`` runs ``fn``
    in the node's worker thread; ``wake`` wakes the event loop task.
    """
    while d.stopped is None:
        await wait()
        batch, committed, cluster = d.take_storage()
        if not batch:
            continue
        start = perf_counter()
        try:
            if d.offload_storage:
                io_id = await offload(execute_storage, d.log_store, batch, committed, cluster)
            else:
                io_id = execute_storage(d.log_store, batch, committed, cluster)
        except Exception as e:
            d.storage_failed(e)
            wake()
            return
        d.latency["storage_flush"].observe(perf_counter() - start)
        d.storage_done(io_id)
        wake()


async def apply_worker(
    d: Driver,
    wait: Callable[[], Awaitable[None]],
    offload: Callable[..., Awaitable[Any]],
    wake: Callable[[], None],
) -> None:
    """Hand committed entries to the state machine in order (see ``storage_worker``)."""
    while d.stopped is None:
        await wait()
        work = d.take_apply()
        if not work:
            continue
        start = perf_counter()
        try:
            if d.offload_apply:
                applied = await offload(d.execute_apply, work)
            else:
                applied = d.execute_apply(work)
        except Exception as e:
            d.apply_failed(e)
            wake()
            return
        d.latency["apply"].observe(perf_counter() - start)
        d.apply_done(applied)
        wake()
