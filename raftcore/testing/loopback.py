"""A synchronous, in-process cluster of engines for tests and benchmarks.

Storage is instant and durable on demand, messages are delivered in FIFO
order unless dropped, and time only moves when the caller says so. It is the
simplest correct driver: storage commands in order, ``IoFlushed`` after them,
``Apply`` answered with ``Applied``. Use ``raftcore.sim`` for faults.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from raftcore.commands import AppendLog, Apply, Command, Respond, SaveVote, Send, TruncateLog
from raftcore.config import Config
from raftcore.engine import Engine, Rng
from raftcore.entries import Entry, EntryKind
from raftcore.events import Applied, Event, Initialize, IoFlushed, MessageReceived, Wakeup
from raftcore.ids import INITIAL_VOTE, NodeId, Vote
from raftcore.membership import Membership
from raftcore.messages import Message
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
        self.log: list[Entry] = []
        self.applied: list[Entry] = []
        self.responses: dict[Hashable, Respond] = {}
        self.engine = Engine(node_id, config, RecoveredState(), rng, now=now)
        self.auto_flush = True
        self.unflushed: int = 0

    def storage(self, cmd: Command) -> None:
        if isinstance(cmd, SaveVote):
            self.vote = cmd.vote
        elif isinstance(cmd, AppendLog):
            self.log.extend(cmd.entries)
        elif isinstance(cmd, TruncateLog):
            del self.log[cmd.since - 1 :]
        else:
            return
        self.unflushed = cmd.io_id

    def restart(self, now: float) -> None:
        """Crash (losing nothing: storage here is always durable) and restart."""
        self.applied = []
        self.unflushed = 0
        self.engine = Engine(
            self.node_id,
            self.config,
            RecoveredState(vote=self.vote, entries=tuple(self.log)),
            self.rng,
            now=now,
        )


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
