"""Engine throughput and latency: three engines in one process, no IO.

The driver is deliberately lean so the numbers are the engine's: storage is a
list append, the network is a per-node inbox, the state machine returns the
written data and counts the writes (its snapshot is that count, 8 bytes), and
``PurgeLog`` drops the log's prefix behind a snapshot. It works in rounds; in
each round every node handles everything queued for it (messages, plus one
``ClientWriteBatch`` of every write that arrived since the leader's last turn,
plus a ``Wakeup`` when its deadline passed), then reports one ``IoFlushed``
for all storage commands of the round (group commit) and one ``Applied`` for
all ``Apply`` commands. A ``BuildSnapshot`` is answered with ``SnapshotBuilt``
at the node's next turn, once the ``Apply`` commands before it are applied.

Each scenario keeps ``clients`` writes outstanding: when one is answered the
next is issued. Latency is from submit to the leader's ``Respond``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Hashable, Sequence
from typing import Any

import attrs

from raftcore import (
    AppendLog,
    Applied,
    Apply,
    BuildSnapshot,
    ClientWrite,
    ClientWriteBatch,
    Command,
    Config,
    Engine,
    EntryKind,
    Event,
    Initialize,
    IoFlushed,
    Membership,
    MessageReceived,
    NodeId,
    PurgeLog,
    Respond,
    Role,
    SaveVote,
    Send,
    SnapshotBuilt,
    SnapshotMeta,
    Stopped,
    TriggerHeartbeat,
    TruncateLog,
    Vote,
    Wakeup,
)
from raftcore.engine import _core as _engine_core
from raftcore.entries import Entry

#: "mypyc" when the engine runs compiled (``make compile``), else "pure".
BUILD = "pure" if _engine_core.__file__.endswith(".py") else "mypyc"

#: Payload of every write: "empty-ish", so the numbers are the engine's cost.
DATA = b"x" * 16

#: Generous timeouts: the benchmark measures the write path, and a scheduler
#: hiccup on a busy machine (or cProfile's overhead) must not cost the leader
#: its lease mid-run and turn the run into an election benchmark.
BENCH_CONFIG = Config(
    election_timeout_min=1.0,
    election_timeout_max=2.0,
    heartbeat_interval=0.1,
)

_NORMAL = EntryKind.NORMAL
_WAKEUP = Wakeup()


class BenchFailure(Exception):
    """The cluster did something a correct run never does."""


class _Node:
    __slots__ = (
        "applied_writes",
        "build",
        "engine",
        "first",
        "inbox",
        "log",
        "node_id",
        "snapshot",
        "vote",
    )

    def __init__(self, node_id: NodeId, config: Config, now: float) -> None:
        self.node_id = node_id
        self.engine = Engine(node_id, config, rng=random.Random(node_id), now=now)
        self.inbox: list[Event] = []
        #: The node's "disk": the in-memory log and vote. ``log[0]`` has
        #: index ``first``: a purge drops the list's prefix (and its memory).
        self.log: list[Entry] = []
        self.first = 1
        self.vote: Vote | None = None
        #: The state machine: the number of normal entries it applied.
        self.applied_writes = 0
        #: Its latest snapshot (that number, 8 bytes), and the build asked
        #: for, until the ``Apply`` commands before it are applied.
        self.snapshot = b""
        self.build: BuildSnapshot | None = None


@attrs.define
class Result:
    clients: int
    writes: int
    seconds: float
    latencies_us: list[float]

    def as_json(self) -> str:
        lat = sorted(self.latencies_us)

        def pct(p: float) -> float:
            if not lat:
                return 0.0
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1)

        return json.dumps(
            {
                "bench": "engine",
                "build": BUILD,
                "nodes": 3,
                "clients": self.clients,
                "writes": self.writes,
                "seconds": round(self.seconds, 3),
                "writes_per_s": round(self.writes / self.seconds) if self.seconds else 0,
                "p50_us": pct(0.50),
                "p99_us": pct(0.99),
            }
        )


class Cluster:
    """Three engines and the lean synchronous driver.

    Nothing in it grows with the number of writes: outstanding writes are at
    most ``target``, latency samples are kept only while ``recording``, the
    log is purged behind each snapshot (``config.snapshot_every``).
    """

    def __init__(self, size: int = 3, config: Config = BENCH_CONFIG) -> None:
        now = time.perf_counter()
        self.nodes = [_Node(n, config, now) for n in range(1, size + 1)]
        self.by_id = {n.node_id: n for n in self.nodes}
        #: Writes submitted since the leader's last turn: ``(request_id, data)``.
        self.submitted: list[tuple[Hashable, Any]] = []
        #: Outstanding writes: request id -> submit time.
        self.submit_times: dict[Hashable, float] = {}
        self.next_rid = 0
        self.answered = 0
        self.errors: list[Respond] = []
        #: Keep this many writes outstanding (0: stop issuing new ones).
        self.target = 0
        self.recording = False
        self.latencies: list[float] = []
        self.leader: _Node | None = None

    # -- clients -------------------------------------------------------------

    def submit(self, at: float) -> None:
        rid = self.next_rid
        self.next_rid = rid + 1
        self.submit_times[rid] = at
        self.submitted.append((rid, DATA))

    def _answered(self, cmd: Respond) -> None:
        # The clock is read here, not taken from the round: latency is not
        # rounded to whole rounds.
        at = time.perf_counter()
        t0 = self.submit_times.pop(cmd.request_id)
        if cmd.error is not None or cmd.result is not DATA:
            self.errors.append(cmd)
        self.answered += 1
        if self.recording:
            self.latencies.append((at - t0) * 1e6)
        if len(self.submit_times) < self.target:
            self.submit(at)

    # -- driving ---------------------------------------------------------------

    def _execute(self, node: _Node, cmds: list[Command]) -> tuple[int, list[Entry]]:
        """Run ``cmds``; returns the last storage io id and the entries to apply."""
        last_io = 0
        to_apply: list[Entry] = []
        for c in cmds:
            if isinstance(c, Send):
                self.by_id[c.to].inbox.append(MessageReceived(node.node_id, c.message))
            elif isinstance(c, AppendLog):
                node.log.extend(c.entries)
                last_io = c.io_id
            elif isinstance(c, Respond):
                self._answered(c)
            elif isinstance(c, Apply):
                to_apply.extend(c.entries)
            elif isinstance(c, SaveVote):
                node.vote = c.vote
                last_io = c.io_id
            elif isinstance(c, TruncateLog):
                del node.log[max(0, c.since - node.first) :]
                last_io = c.io_id
            elif isinstance(c, PurgeLog):
                upto = c.upto.index
                if upto >= node.first:
                    del node.log[: upto - node.first + 1]
                    node.first = upto + 1
                last_io = c.io_id
            elif isinstance(c, BuildSnapshot):
                if c.last_log_id.index <= node.engine.applied.index:
                    # Everything handed out is applied (and reported) already.
                    self._snapshot(node, c, ())
                else:
                    node.build = c  # built once the pending Apply reach it
            elif isinstance(c, Stopped):
                raise BenchFailure(f"node {node.node_id} stopped: {c!r}")
            else:
                # Snapshot transfer: a follower fell behind the purge point,
                # which never happens with every node in one loop.
                raise BenchFailure(f"node {node.node_id}: unexpected {c!r}")
        return last_io, to_apply

    def _snapshot(self, node: _Node, build: BuildSnapshot, applied: Sequence[Entry]) -> None:
        """Snapshot the state machine as of ``build.last_log_id``; ``applied``
        was just applied, possibly past that index. ``SnapshotBuilt`` is
        reported at the node's next turn (after this turn's ``Applied``)."""
        lid = build.last_log_id
        idx = lid.index
        count = node.applied_writes
        count -= sum(1 for e in applied if e.log_id.index > idx and e.kind is _NORMAL)
        node.snapshot = count.to_bytes(8, "little")
        node.build = None
        meta = SnapshotMeta(lid, build.membership, f"{node.node_id}-{idx}", len(node.snapshot))
        node.inbox.append(SnapshotBuilt(meta))

    def _turn(self, node: _Node, now: float) -> bool:
        """One node handles everything queued for it. Returns whether it did anything."""
        eng = node.engine
        events = node.inbox
        if self.submitted and node is self.leader:
            reqs = self.submitted
            self.submitted = []
            if len(reqs) == 1:
                events.append(ClientWrite(*reqs[0]))
            else:
                events.append(ClientWriteBatch(tuple(reqs)))
        deadline = eng.next_deadline
        if deadline is not None and now >= deadline:
            events.append(_WAKEUP)
        if not events:
            return False
        node.inbox = []
        handle = eng.handle
        last_io = 0
        to_apply: list[Entry] = []
        for ev in events:
            io, ap = self._execute(node, handle(ev, now))
            if io:
                last_io = io
            if ap:
                to_apply += ap
        # Completions: one IoFlushed for the whole round's storage commands
        # (group commit), one Applied for every Apply; repeat while they
        # produce more local work.
        while last_io or to_apply:
            if last_io:
                io, ap = self._execute(node, handle(IoFlushed(last_io), now))
                last_io = io
                if ap:
                    to_apply += ap
            if to_apply:
                results = []
                n = 0
                for e in to_apply:
                    if e.kind is _NORMAL:
                        results.append((e.log_id.index, e.data))
                        n += 1
                node.applied_writes += n
                upto = to_apply[-1].log_id
                b = node.build
                if b is not None and b.last_log_id.index <= upto.index:
                    self._snapshot(node, b, to_apply)
                ev2 = Applied(upto, tuple(results))
                to_apply = []
                io, ap = self._execute(node, handle(ev2, now))
                if io:
                    last_io = io
                if ap:
                    to_apply = ap
        return True

    def run_round(self, now: float) -> bool:
        busy = False
        for node in self.nodes:
            if self._turn(node, now):
                busy = True
        return busy

    def run_for(self, seconds: float) -> None:
        clock = time.perf_counter
        end = clock() + seconds
        now = clock()
        while now < end:
            self.run_round(now)
            now = clock()

    def settle(self, timeout: float = 5.0) -> None:
        """Run until nothing is queued or outstanding (deadlines aside)."""
        clock = time.perf_counter
        end = clock() + timeout
        while True:
            now = clock()
            if now > end:
                raise BenchFailure(
                    f"cluster did not settle in {timeout}s: "
                    f"{len(self.submit_times)} writes outstanding"
                )
            busy = self.run_round(now)
            if not busy and not self.submit_times and not self.submitted:
                return

    # -- setup -----------------------------------------------------------------

    def start(self) -> None:
        first = self.nodes[0]
        members = Membership.of(n.node_id for n in self.nodes)
        first.inbox.append(Initialize(members))
        self.settle()
        leaders = [n for n in self.nodes if n.engine.role is Role.LEADER]
        if len(leaders) != 1:
            raise BenchFailure(f"expected one leader after start, got {len(leaders)}")
        self.leader = leaders[0]

    def check(self) -> None:
        """Every write answered without error; every node applied all of them."""
        if self.errors:
            raise BenchFailure(f"{len(self.errors)} writes failed, first: {self.errors[0]!r}")
        if self.submit_times or self.answered != self.next_rid:
            raise BenchFailure(f"{self.next_rid - self.answered} writes never answered")
        leader = self.leader
        assert leader is not None
        # Followers learn the final commit index from the next append.
        leader.inbox.append(TriggerHeartbeat())
        self.settle()
        counts = [n.applied_writes for n in self.nodes]
        if any(c != self.answered for c in counts):
            raise BenchFailure(f"applied counts differ: {counts}, answered {self.answered}")
        # (Nodes purge at their own snapshots: compare the logs' ends.)
        logs = {n.log[-1].log_id if n.log else None for n in self.nodes}
        applied = {n.engine.applied for n in self.nodes}
        if len(logs) != 1 or len(applied) != 1:
            raise BenchFailure(f"nodes diverge: last log ids {logs}, applied {applied}")
        for n in self.nodes:
            if n.log and n.log[0].log_id.index != n.first:
                raise BenchFailure(f"node {n.node_id}: log starts at {n.log[0]!r}, not {n.first}")
            if n.engine.snapshot is not None:
                idx = n.engine.snapshot.last_log_id.index
                if n.first > idx + 1:
                    raise BenchFailure(f"node {n.node_id} purged past its snapshot at {idx}")
        if leader.engine.role is not Role.LEADER:
            raise BenchFailure("leadership changed during the run")


def run_scenario(clients: int, duration: float, warmup: float) -> Result:
    """Keep ``clients`` writes outstanding for ``warmup + duration`` seconds."""
    cluster = Cluster()
    cluster.start()
    cluster.target = clients
    now = time.perf_counter()
    for _ in range(clients):
        cluster.submit(now)
    cluster.run_for(warmup)
    cluster.recording = True
    start_answered = cluster.answered
    t0 = time.perf_counter()
    cluster.run_for(duration)
    seconds = time.perf_counter() - t0
    writes = cluster.answered - start_answered
    cluster.recording = False
    cluster.target = 0
    cluster.settle()
    cluster.check()
    return Result(clients, writes, seconds, cluster.latencies)


def profile_scenario(clients: int, duration: float, warmup: float, top: int = 30) -> str:
    """Run one scenario under cProfile; returns the stats sorted by own time.

    cProfile does not see the cyclic garbage collector, so its time is
    measured separately and reported first.
    """
    import cProfile
    import gc
    import io
    import pstats

    gc_time = [0.0, 0.0]
    gc_runs = [0, 0]
    started = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        full = info["generation"] == 2
        gc_time[full] += time.perf_counter() - started[0]
        gc_runs[full] += 1

    prof = cProfile.Profile()
    gc.callbacks.append(on_gc)
    t0 = time.perf_counter()
    try:
        prof.enable()
        run_scenario(clients, duration, warmup)
        prof.disable()
    finally:
        gc.callbacks.remove(on_gc)
    total = time.perf_counter() - t0
    buf = io.StringIO()
    buf.write(
        f"gc: {gc_time[0] + gc_time[1]:.3f} s of {total:.3f} s "
        f"({gc_runs[0]} young collections {gc_time[0]:.3f} s, "
        f"{gc_runs[1]} full collections {gc_time[1]:.3f} s)\n"
    )
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    return buf.getvalue()
