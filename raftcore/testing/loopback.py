"""A synchronous, in-process cluster of engines for tests and benchmarks.

Storage is instant and durable on demand, messages are delivered in FIFO
order unless dropped, and time only moves when the caller says so. It is the
simplest correct driver: storage commands in order, ``IoFlushed`` after them,
``Apply`` answered with ``Applied``, snapshots built, sent in chunks and
installed at once (the state machine's snapshot is the pickled list of the
entries it applied). Use ``raftcore.sim`` for faults.
"""

from __future__ import annotations

import pickle
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from raftcore.commands import (
    AppendLog,
    Apply,
    BuildSnapshot,
    Command,
    InstallSnapshot,
    PurgeLog,
    Respond,
    SaveVote,
    Send,
    SendSnapshotChunk,
    TruncateLog,
    WriteSnapshotChunk,
)
from raftcore.config import Config
from raftcore.engine import Engine, Rng
from raftcore.entries import Entry, EntryKind
from raftcore.events import (
    Applied,
    Event,
    Initialize,
    IoFlushed,
    MessageReceived,
    SnapshotBuilt,
    SnapshotInstalled,
    Wakeup,
)
from raftcore.ids import INITIAL_VOTE, ZERO_LOG_ID, LogId, NodeId, Vote
from raftcore.membership import Membership
from raftcore.messages import Message
from raftcore.snapshots import SnapshotMeta
from raftcore.state import RecoveredState, Role


class Rand:
    """A tiny deterministic generator (LCG) satisfying ``Rng``."""

    def __init__(self, seed: int) -> None:
        self._x = (seed * 6364136223846793005 + 1442695040888963407) % (1 << 64)

    def random(self) -> float:
        self._x = (self._x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (self._x >> 11) / float(1 << 53)

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()


class MemNode:
    """One engine plus instant storage and a list-of-results state machine."""

    def __init__(self, node_id: NodeId, config: Config, rng: Rng, now: float) -> None:
        self.node_id = node_id
        self.config = config
        self.rng = rng
        self.vote: Vote = INITIAL_VOTE
        #: The log after ``last_purged``.
        self.log: list[Entry] = []
        self.last_purged: LogId = ZERO_LOG_ID
        #: The membership at ``last_purged`` (what a purge removed).
        self.purged_membership: tuple[LogId, Membership] | None = None
        #: The entries the state machine holds (a snapshot's, then applied ones).
        self.applied: list[Entry] = []
        #: The latest snapshot and its bytes; a snapshot being received.
        self.snapshot: tuple[SnapshotMeta, bytes] | None = None
        self.receiving: tuple[SnapshotMeta, bytearray] | None = None
        self.snapshots_made = 0
        self.responses: dict[Hashable, Respond] = {}
        self.engine = Engine(node_id, config, RecoveredState(), rng, now=now)
        self.auto_flush = True
        self.unflushed: int = 0

    def storage(self, cmd: Command) -> None:
        first = self.last_purged.index + 1
        if isinstance(cmd, SaveVote):
            self.vote = cmd.vote
        elif isinstance(cmd, AppendLog):
            self.log.extend(cmd.entries)
        elif isinstance(cmd, TruncateLog):
            del self.log[max(0, cmd.since - first) :]
        elif isinstance(cmd, PurgeLog):
            n = cmd.upto.index - first + 1
            for e in self.log[:n]:
                if e.kind is EntryKind.MEMBERSHIP:
                    self.purged_membership = (e.log_id, e.data)
            del self.log[: max(0, n)]
            self.last_purged = cmd.upto
        else:
            return
        self.unflushed = cmd.io_id

    def build_snapshot(self, cmd: BuildSnapshot) -> SnapshotBuilt:
        assert self.applied[-1].log_id == cmd.last_log_id, (self.applied[-1], cmd)
        data = pickle.dumps(self.applied)
        self.snapshots_made += 1
        sid = f"{self.node_id}-{self.snapshots_made}"
        meta = SnapshotMeta(cmd.last_log_id, cmd.membership, sid, len(data))
        self.snapshot = (meta, data)
        return SnapshotBuilt(meta)

    def write_chunk(self, cmd: WriteSnapshotChunk) -> None:
        if cmd.offset == 0:
            self.receiving = (cmd.meta, bytearray())
        assert self.receiving is not None and self.receiving[0] == cmd.meta
        buf = self.receiving[1]
        assert len(buf) == cmd.offset, (len(buf), cmd.offset)
        buf += cmd.data

    def install(self, cmd: InstallSnapshot) -> SnapshotInstalled:
        assert self.receiving is not None and self.receiving[0] == cmd.meta
        data = bytes(self.receiving[1])
        assert len(data) == cmd.meta.size
        self.receiving = None
        self.snapshot = (cmd.meta, data)
        self.applied = pickle.loads(data)
        return SnapshotInstalled(cmd.meta)

    def chunk(self, cmd: SendSnapshotChunk) -> Message | None:
        """The chunk's message with its bytes, or ``None`` if that snapshot is gone."""
        snap = self.snapshot
        m = cmd.message
        if snap is None or snap[0] != m.meta:
            return None
        return m._replace(data=snap[1][m.offset : m.offset + cmd.length])

    def recovered(self) -> RecoveredState:
        snap = self.snapshot
        return RecoveredState(
            vote=self.vote,
            entries=tuple(self.log),
            last_purged=self.last_purged,
            membership=self.purged_membership if self.last_purged.index else None,
            applied=snap[0].last_log_id if snap is not None else ZERO_LOG_ID,
            snapshot=snap[0] if snap is not None else None,
        )

    def restart(self, now: float) -> None:
        """Crash (losing nothing: storage here is always durable) and restart
        from the log and the latest snapshot."""
        snap = self.snapshot
        self.applied = pickle.loads(snap[1]) if snap is not None else []
        self.receiving = None
        self.unflushed = 0
        self.engine = Engine(self.node_id, self.config, self.recovered(), self.rng, now=now)


class LoopbackCluster:
    """Engines wired together synchronously; ``run_until`` drives virtual time."""

    def __init__(
        self,
        ids: Iterable[NodeId],
        config: Config | None = None,
        seed: int = 0,
        apply_fn: Callable[[Any], Any] | None = None,
    ) -> None:
        self.config = config or Config()
        self.now = 0.0
        self.nodes = {
            n: MemNode(n, self.config, Rand(seed * 1000 + n), self.now) for n in sorted(ids)
        }
        self.queue: deque[tuple[NodeId, NodeId, Message]] = deque()
        self.dropped: set[tuple[NodeId, NodeId]] = set()
        self.down: set[NodeId] = set()
        self.apply_fn = apply_fn or (lambda data: data)

    # -- driving -------------------------------------------------------------

    def handle(self, node_id: NodeId, event: Event) -> list[Command]:
        node = self.nodes[node_id]
        cmds = node.engine.handle(event, self.now)
        self.execute(node, cmds)
        return cmds

    def execute(self, node: MemNode, cmds: list[Command]) -> None:
        for c in cmds:
            if isinstance(c, Send):
                if (node.node_id, c.to) not in self.dropped and c.to not in self.down:
                    self.queue.append((node.node_id, c.to, c.message))
            elif isinstance(c, Apply):
                results = []
                for e in c.entries:
                    node.applied.append(e)
                    if e.kind is EntryKind.NORMAL:
                        results.append((e.log_id.index, self.apply_fn(e.data)))
                self._later(node, Applied(c.entries[-1].log_id, tuple(results)))
            elif isinstance(c, Respond):
                node.responses[c.request_id] = c
            elif isinstance(c, BuildSnapshot):
                self._later(node, node.build_snapshot(c))
            elif isinstance(c, WriteSnapshotChunk):
                node.write_chunk(c)
            elif isinstance(c, InstallSnapshot):
                self._later(node, node.install(c))
            elif isinstance(c, SendSnapshotChunk):
                msg = node.chunk(c)
                blocked = (node.node_id, c.to) in self.dropped or c.to in self.down
                if msg is not None and not blocked:
                    self.queue.append((node.node_id, c.to, msg))
            else:
                node.storage(c)
        if node.auto_flush and node.unflushed and node.unflushed > node.engine.io.flushed:
            self._later(node, IoFlushed(node.unflushed))

    def _later(self, node: MemNode, ev: Event) -> None:
        self.execute(node, node.engine.handle(ev, self.now))

    def deliver_all(self, limit: int = 100_000) -> int:
        n = 0
        while self.queue and n < limit:
            src, dst, msg = self.queue.popleft()
            if dst in self.down or (src, dst) in self.dropped:
                continue
            self.handle(dst, MessageReceived(src, msg))
            n += 1
        return n

    def advance(self, dt: float) -> None:
        """Move time forward by ``dt``, waking engines whose deadline passed."""
        end = self.now + dt
        while True:
            self.deliver_all()
            due = [
                (d, n)
                for n, node in self.nodes.items()
                if n not in self.down and (d := node.engine.next_deadline) is not None
            ]
            if not due:
                break
            d, n = min(due)
            if d > end:
                break
            self.now = max(self.now, d)
            self.handle(n, Wakeup())
        self.now = end
        self.deliver_all()

    # -- conveniences ----------------------------------------------------------

    def initialize(self, node_id: NodeId, voters: Iterable[NodeId] | None = None) -> None:
        m = Membership.of(list(voters) if voters is not None else list(self.nodes))
        self.handle(node_id, Initialize(m))
        self.deliver_all()

    def leader(self) -> NodeId | None:
        leaders = [
            n
            for n, node in self.nodes.items()
            if n not in self.down and node.engine.role is Role.LEADER
        ]
        return leaders[0] if len(leaders) == 1 else None

    def elect(self, timeout: float = 10.0) -> NodeId:
        t = 0.0
        while self.leader() is None and t < timeout:
            self.advance(0.01)
            t += 0.01
        lid = self.leader()
        assert lid is not None, "no leader elected"
        return lid
