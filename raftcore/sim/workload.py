"""Workload clients: key-value puts and gets, recorded for the linearizability check.

Each client has at most one operation outstanding. It sends it to the node it
believes leads (the last ``NotLeader`` hint, else a random node) and records
the outcome the way a real client would know it:

- a result: ``OK`` (a get records the value read);
- ``NotLeader`` or ``NotInitialized``, or the node was down when the request
  arrived (connection refused): ``FAIL`` — the entry was never appended;
- ``LeadershipLost``, any other error, the node crashed while holding the
  request, or no answer within the client timeout: ``UNKNOWN`` — the write
  may or may not take effect. The client then moves on to a *new* operation
  and never retries a put, so every value is written at most once.

``LivenessProbe`` is the client the simulator uses after healing: it writes
to the current leader until one write is answered.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol

from raftcore.errors import ClientError, NotInitialized, NotLeader
from raftcore.events import ReadPolicy
from raftcore.ids import NodeId
from raftcore.sim.kv import KvCodec
from raftcore.sim.linearizability import HistoryRecorder, OpKind, Outcome
from raftcore.sim.rng import Rng

__all__ = ["Driver", "LivenessProbe", "Workload"]


class Driver(Protocol):
    """What clients need from the simulation."""

    @property
    def now(self) -> float: ...

    @property
    def node_ids(self) -> tuple[NodeId, ...]: ...

    def schedule(self, delay: float, fn: Callable[..., None], *args: Any) -> None: ...

    def submit(self, node: NodeId, request_id: Hashable, data: Any) -> None:
        """Send a client write to ``node``; the answer comes back through
        ``Workload.on_response`` (or ``on_refused`` / ``on_lost``)."""
        ...

    def new_request_id(self) -> int: ...

    def submit_read(self, node: NodeId, request_id: Hashable, key: str, policy: ReadPolicy) -> None:
        """A ``ClientRead`` to ``node``; the answer is the value it then reads."""
        ...


class _Op:
    __slots__ = ("client", "direct", "key", "kind", "node", "op_id", "request_id", "value")

    def __init__(
        self,
        client: _Client,
        op_id: int,
        request_id: int,
        kind: OpKind,
        key: str,
        value: Any,
        node: NodeId,
    ) -> None:
        self.client = client
        self.op_id = op_id
        self.request_id = request_id
        self.kind = kind
        self.key = key
        self.value = value
        self.node = node
        #: A get read from the state machine after a ``ClientRead`` (the
        #: answer is the value), not a get through the log.
        self.direct = False


class _Client:
    __slots__ = ("cid", "hint", "op", "seq")

    def __init__(self, cid: int) -> None:
        self.cid = cid
        self.hint: NodeId | None = None
        self.op: _Op | None = None
        self.seq = 0


def classify(error: ClientError | None) -> Outcome:
    """The outcome a client can infer from an engine answer."""
    if error is None:
        return Outcome.OK
    if isinstance(error, NotLeader | NotInitialized):
        return Outcome.FAIL
    return Outcome.UNKNOWN


class Workload:
    """A few clients issuing puts and gets on a few keys."""

    def __init__(
        self,
        driver: Driver,
        rng: Rng,
        recorder: HistoryRecorder,
        codec: KvCodec,
        *,
        clients: int = 3,
        keys: int = 3,
        timeout: float = 1.0,
        think: tuple[float, float] = (0.0, 0.02),
        backoff: tuple[float, float] = (0.02, 0.1),
        put_ratio: float = 0.6,
        read_ratio: float = 0.0,
    ) -> None:
        self.driver = driver
        self.rng = rng
        self.recorder = recorder
        self.codec = codec
        self.clients = [_Client(i + 1) for i in range(clients)]
        self.keys = [f"k{i}" for i in range(keys)]
        self.timeout = timeout
        self.think = think
        self.backoff = backoff
        self.put_ratio = put_ratio
        #: The share of gets sent as ``ClientRead`` (ReadIndex or lease, at
        #: any node) rather than through the log.
        self.read_ratio = read_ratio
        self.reads_by_policy: dict[str, int] = {p.value: 0 for p in ReadPolicy}
        self.active = False
        self._by_request: dict[Hashable, _Op] = {}
        self.invoked = 0
        self.outcomes: dict[Outcome, int] = {o: 0 for o in Outcome}

    @property
    def outstanding(self) -> int:
        return sum(1 for c in self.clients if c.op is not None)

    def start(self) -> None:
        self.active = True
        for c in self.clients:
            self.driver.schedule(self.rng.uniform(*self.think), self._issue, c)

    def stop(self) -> None:
        """Issue no new operations (outstanding ones still complete)."""
        self.active = False

    def abandon(self) -> None:
        """Give up on every outstanding operation (UNKNOWN)."""
        for c in self.clients:
            if c.op is not None:
                self._finish(c.op, Outcome.UNKNOWN)

    # -- issuing ----------------------------------------------------------------

    def _pick_node(self, c: _Client) -> NodeId:
        if c.hint is not None:
            return c.hint
        return self.rng.choice(self.driver.node_ids)

    def _issue(self, c: _Client) -> None:
        if not self.active or c.op is not None:
            return
        c.seq += 1
        key = self.rng.choice(self.keys)
        now = self.driver.now
        if self.rng.chance(self.put_ratio):
            kind = OpKind.PUT
            value: Any = f"c{c.cid}.{c.seq}"
            data = self.codec.encode_put(key, value)
        else:
            kind = OpKind.GET
            value = None
            data = self.codec.encode_get(key)
        direct = kind is OpKind.GET and self.read_ratio > 0 and self.rng.chance(self.read_ratio)
        op_id = self.recorder.invoke(c.cid, kind, key, value, now)
        node = self._pick_node(c)
        rid = self.driver.new_request_id()
        op = _Op(c, op_id, rid, kind, key, value, node)
        c.op = op
        self._by_request[rid] = op
        self.invoked += 1
        if direct:
            op.direct = True
            policy = self.rng.choice((ReadPolicy.READ_INDEX, ReadPolicy.LEASE))
            self.reads_by_policy[policy.value] += 1
            self.driver.submit_read(node, rid, key, policy)
        else:
            self.driver.submit(node, rid, data)
        self.driver.schedule(self.timeout, self._timeout, op)

    def _finish(self, op: _Op, outcome: Outcome, value: Any = None) -> None:
        c = op.client
        if c.op is not op:
            return  # already finished (timed out, then answered)
        c.op = None
        self._by_request.pop(op.request_id, None)
        self.recorder.complete(op.op_id, outcome, self.driver.now, value)
        self.outcomes[outcome] += 1
        if self.active:
            # Back off after a failure, as a real client would, instead of
            # hammering a leaderless cluster.
            think = self.think if outcome is Outcome.OK or c.hint is not None else self.backoff
            self.driver.schedule(self.rng.uniform(*think), self._issue, c)

    def _timeout(self, op: _Op) -> None:
        if op.client.op is op:
            op.client.hint = None
            self._finish(op, Outcome.UNKNOWN)

    # -- answers --------------------------------------------------------------------

    def owns(self, request_id: Hashable) -> bool:
        return request_id in self._by_request

    def on_response(self, request_id: Hashable, result: Any, error: ClientError | None) -> None:
        op = self._by_request.get(request_id)
        if op is None:
            return  # the client already gave up
        outcome = classify(error)
        c = op.client
        if isinstance(error, NotLeader):
            lid = error.leader_id
            c.hint = lid if lid and lid != op.node and lid in self.driver.node_ids else None
        elif error is not None:
            c.hint = None
        else:
            c.hint = op.node
        value = None
        if op.kind is OpKind.GET and error is None:
            value = result if op.direct else self.codec.decode_get(result)
        self._finish(op, outcome, value)

    def on_refused(self, request_id: Hashable) -> None:
        """The node was down when the request arrived: it was never appended."""
        op = self._by_request.get(request_id)
        if op is not None:
            op.client.hint = None
            self._finish(op, Outcome.FAIL)

    def on_lost(self, request_id: Hashable) -> None:
        """The node holding the request crashed before answering."""
        op = self._by_request.get(request_id)
        if op is not None:
            op.client.hint = None
            self._finish(op, Outcome.UNKNOWN)


class LivenessProbe:
    """After healing: write to the leader until one write is answered OK."""

    CLIENT_ID = 0

    def __init__(
        self,
        driver: Driver,
        recorder: HistoryRecorder,
        codec: KvCodec,
        find_leader: Callable[[], NodeId | None],
        on_success: Callable[[NodeId], None],
        *,
        interval: float,
        timeout: float,
        key: str = "__liveness__",
    ) -> None:
        self.driver = driver
        self.recorder = recorder
        self.codec = codec
        self.find_leader = find_leader
        self.on_success = on_success
        self.interval = interval
        self.timeout = timeout
        self.key = key
        self.attempts = 0
        self.done = False
        self._pending: dict[Hashable, tuple[int, NodeId]] = {}

    def owns(self, request_id: Hashable) -> bool:
        return request_id in self._pending

    def tick(self) -> None:
        if self.done:
            return
        if not self._pending:
            leader = self.find_leader()
            if leader is not None:
                self.attempts += 1
                value = f"probe.{self.attempts}"
                op_id = self.recorder.invoke(
                    self.CLIENT_ID, OpKind.PUT, self.key, value, self.driver.now
                )
                rid = self.driver.new_request_id()
                self._pending[rid] = (op_id, leader)
                self.driver.submit(leader, rid, self.codec.encode_put(self.key, value))
                self.driver.schedule(self.timeout, self._expire, rid)
        self.driver.schedule(self.interval, self.tick)

    def _complete(self, request_id: Hashable, outcome: Outcome) -> NodeId | None:
        got = self._pending.pop(request_id, None)
        if got is None:
            return None
        op_id, node = got
        self.recorder.complete(op_id, outcome, self.driver.now)
        return node

    def _expire(self, request_id: int) -> None:
        self._complete(request_id, Outcome.UNKNOWN)

    def on_response(self, request_id: Hashable, result: Any, error: ClientError | None) -> None:
        node = self._complete(request_id, classify(error))
        if node is not None and error is None and not self.done:
            self.done = True
            self.on_success(node)

    def on_refused(self, request_id: Hashable) -> None:
        self._complete(request_id, Outcome.FAIL)

    def on_lost(self, request_id: Hashable) -> None:
        self._complete(request_id, Outcome.UNKNOWN)
