"""Linearizability checker for key-value client histories.

The model is one register per key, initial value ``None``. Linearizability is
compositional (a history is linearizable iff each per-key sub-history is), so
every key is checked on its own.

Every PUT writes a value that is unique for its key, so every successful read
maps to exactly one write (or to the initial value). That makes the problem
polynomial (Gibbons & Korach, "Testing shared memories", 1997). The check used
here is exact; the argument is:

*Clusters.* Group each write with the reads that returned its value; the
initial value ``None`` is a cluster whose virtual write happens at ``-inf``.
In any legal sequential register history the ops of one cluster form one
contiguous block that starts with its write: once a later write happened the
register never holds the old value again, because values are never rewritten.
So a linearization is exactly (a) an order of the clusters, the initial one
first, and (b) inside each cluster an order with the write first, both
respecting real time (``a`` precedes ``b`` iff ``a.complete < b.invoke``).

*(b) inside a cluster.* Real-time precedence is an interval order, so a linear
extension with the write first exists iff no read of the cluster precedes its
write: no read may complete before its write was invoked ("read from the
future").

*(a) between clusters.* Let ``lo(X)`` be the earliest completion and ``hi(X)``
the latest invocation in cluster ``X``. Cluster ``X`` must come before ``Y``
iff some op of ``X`` precedes some op of ``Y``, i.e. iff ``lo(X) < hi(Y)``.
The clusters can be ordered iff this digraph is acyclic, and a shortest cycle
always has length two: let ``Xj`` have the greatest ``hi`` on a shortest cycle
of length ``k >= 3``; its successor ``Xj+1`` has an edge to ``Xj+2``, so
``lo(Xj+1) < hi(Xj+2) <= hi(Xj)``, which is a chord ``Xj+1 -> Xj`` and gives a
shorter cycle. Hence the history is linearizable iff no read is from the
future and no two clusters ``X != Y`` have ``lo(X) < hi(Y)`` and
``lo(Y) < hi(X)``. In zone terms: a *forward* zone (``lo < hi``) must not
overlap another forward zone, and a *backward* zone must not lie inside a
forward zone; two backward zones never conflict.

UNKNOWN puts that were read are writes that completed at ``+inf``; UNKNOWN
puts that nobody read are dropped (they may simply not have taken effect).
FAIL-ed puts never took effect, so reading one of their values is a
violation, as is reading a value nobody wrote. FAIL-ed and UNKNOWN gets carry
no information and are ignored.

The pairwise check runs in ``O(n log n)`` per key: sort clusters by ``lo`` and
keep prefix maxima of ``hi``.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable

import attrs

__all__ = [
    "HistoryRecorder",
    "Op",
    "OpKind",
    "Outcome",
    "Violation",
    "check_history",
]


class OpKind(enum.Enum):
    PUT = "put"
    GET = "get"


class Outcome(enum.Enum):
    OK = "ok"
    FAIL = "fail"
    UNKNOWN = "unknown"


@attrs.frozen
class Op:
    """One client operation on one key.

    ``value`` is the value written (PUT) or returned (GET with outcome OK).
    Values must be hashable, and every PUT on a key must write a distinct,
    non-``None`` value. ``complete`` is ``None`` iff the outcome is UNKNOWN.
    """

    op_id: int
    client: int
    kind: OpKind
    key: str
    value: object | None
    invoke: float
    complete: float | None
    outcome: Outcome


@attrs.frozen
class Violation:
    key: str
    reason: str
    op_ids: tuple[int, ...]


_INITIAL = "the initial value None"


@attrs.define
class _Cluster:
    """A write and the reads that returned its value."""

    value: Hashable
    write: Op | None  # None for the initial value
    lo: float  # earliest completion
    lo_op: Op | None  # op completing at ``lo``; None for the initial write
    hi: float  # latest invocation
    hi_op: Op | None  # op invoked at ``hi``; None for the initial write

    def describe(self) -> str:
        if self.write is None:
            return _INITIAL
        return f"value {self.value!r} (put op {self.write.op_id})"


def _end(op: Op) -> float:
    """Completion time, ``+inf`` for an UNKNOWN op."""
    if op.outcome is Outcome.UNKNOWN or op.complete is None:
        return math.inf
    return op.complete


def _validate(op: Op) -> None:
    if op.outcome is not Outcome.UNKNOWN:
        if op.complete is None:
            raise ValueError(f"op {op.op_id}: outcome {op.outcome.value} needs a completion time")
        if op.complete < op.invoke:
            raise ValueError(f"op {op.op_id}: completes before it is invoked")
    if op.kind is OpKind.PUT and op.value is None:
        raise ValueError(f"op {op.op_id}: a PUT may not write None (the initial value)")


def check_history(ops: Iterable[Op]) -> list[Violation]:
    """Check a key-value history for linearizability; ``[]`` means linearizable.

    Raises ``ValueError`` for malformed histories (duplicate op ids, duplicate
    PUT values on a key, a PUT of ``None``, a non-UNKNOWN op without a
    completion time, or completion before invocation).
    """
    by_key: dict[str, list[Op]] = defaultdict(list)
    seen: set[int] = set()
    for op in ops:
        if op.op_id in seen:
            raise ValueError(f"duplicate op id {op.op_id}")
        seen.add(op.op_id)
        _validate(op)
        by_key[op.key].append(op)
    violations: list[Violation] = []
    for key in sorted(by_key):
        violations.extend(_check_key(key, by_key[key]))
    return violations


def _check_key(key: str, ops: list[Op]) -> list[Violation]:
    violations: list[Violation] = []
    puts: dict[Hashable, Op] = {}
    reads: dict[Hashable, list[Op]] = defaultdict(list)
    for op in sorted(ops, key=lambda o: o.op_id):
        if op.kind is OpKind.PUT:
            value: Hashable = _hashable(op)
            if value in puts:
                raise ValueError(
                    f"key {key!r}: ops {puts[value].op_id} and {op.op_id} both put {value!r}"
                )
            puts[value] = op
        elif op.outcome is Outcome.OK:
            reads[_hashable(op)].append(op)

    clusters: list[_Cluster] = []
    initial = _Cluster(None, None, -math.inf, None, -math.inf, None)
    clusters.append(initial)
    for value, write in puts.items():
        if write.outcome is Outcome.FAIL:
            continue
        if write.outcome is Outcome.UNKNOWN and value not in reads:
            continue  # may never have taken effect
        clusters.append(_Cluster(value, write, _end(write), write, write.invoke, write))
    by_value = {c.value: c for c in clusters}

    for value, rs in reads.items():
        cluster = by_value.get(value)
        for r in rs:
            assert r.complete is not None  # OK ops are validated
            if cluster is None:
                failed = puts.get(value)
                if failed is not None:
                    violations.append(
                        Violation(
                            key,
                            f"get op {r.op_id} returned {value!r}, written by put op "
                            f"{failed.op_id} which failed",
                            (r.op_id, failed.op_id),
                        )
                    )
                else:
                    violations.append(
                        Violation(
                            key,
                            f"get op {r.op_id} returned {value!r}, which was never written",
                            (r.op_id,),
                        )
                    )
                continue
            w = cluster.write
            if w is not None and r.complete < w.invoke:
                violations.append(
                    Violation(
                        key,
                        f"get op {r.op_id} returned {value!r} and completed at {r.complete}, "
                        f"before put op {w.op_id} writing it was invoked at {w.invoke}",
                        (r.op_id, w.op_id),
                    )
                )
                continue  # reported; keep it out of the zone check to avoid noise
            if r.complete < cluster.lo:
                cluster.lo, cluster.lo_op = r.complete, r
            if r.invoke > cluster.hi:
                cluster.hi, cluster.hi_op = r.invoke, r

    violations.extend(_zone_conflicts(key, clusters))
    return violations


def _hashable(op: Op) -> Hashable:
    value = op.value
    if not isinstance(value, Hashable):
        raise ValueError(f"op {op.op_id}: value {value!r} is not hashable")
    return value


def _zone_conflicts(key: str, clusters: list[_Cluster]) -> list[Violation]:
    """Report pairs ``X != Y`` with ``lo(X) < hi(Y)`` and ``lo(Y) < hi(X)``."""
    order = sorted(range(len(clusters)), key=lambda i: clusters[i].lo)
    los = [clusters[i].lo for i in order]
    # best[j] / second[j]: indices (into clusters) of the two largest ``hi``
    # among the first j + 1 clusters in ``lo`` order.
    best: list[int] = []
    second: list[int | None] = []
    top: int | None = None
    runner: int | None = None
    for i in order:
        hi = clusters[i].hi
        if top is None or hi > clusters[top].hi:
            top, runner = i, top
        elif runner is None or hi > clusters[runner].hi:
            runner = i
        best.append(top)
        second.append(runner)

    violations: list[Violation] = []
    reported: set[tuple[int, int]] = set()
    for y, cy in enumerate(clusters):
        n = bisect.bisect_left(los, cy.hi)  # clusters X with lo(X) < hi(Y)
        if n == 0:
            continue
        x: int | None = best[n - 1]
        if x == y:
            x = second[n - 1]
        if x is None or not clusters[y].lo < clusters[x].hi:
            continue
        pair = (min(x, y), max(x, y))
        if pair in reported:
            continue
        reported.add(pair)
        violations.append(_conflict(key, clusters[x], cy))
    return violations


def _conflict(key: str, cx: _Cluster, cy: _Cluster) -> Violation:
    """Violation for ``lo(X) < hi(Y)`` and ``lo(Y) < hi(X)``."""

    def because(first: _Cluster, then: _Cluster) -> str:
        assert then.hi_op is not None  # the initial cluster's hi is -inf, never > lo
        done = then.hi_op
        if first.lo_op is None:
            return f"{_INITIAL} precedes every write"
        return (
            f"op {first.lo_op.op_id} completed at {first.lo} before "
            f"op {done.op_id} was invoked at {then.hi}"
        )

    reason = (
        f"{cx.describe()} must be ordered before {cy.describe()} because "
        f"{because(cx, cy)}, but also after it because {because(cy, cx)}"
    )
    ids: list[int] = []
    for op in (cx.lo_op, cy.hi_op, cy.lo_op, cx.hi_op, cx.write, cy.write):
        if op is not None and op.op_id not in ids:
            ids.append(op.op_id)
    return Violation(key, reason, tuple(ids))


@attrs.define
class _Pending:
    client: int
    kind: OpKind
    key: str
    value: object | None
    invoke: float


class HistoryRecorder:
    """Collects a history as a simulator runs; op ids are assigned in order from 0."""

    def __init__(self) -> None:
        self._pending: dict[int, _Pending] = {}
        self._done: dict[int, Op] = {}
        self._next_id = 0

    def invoke(self, client: int, kind: OpKind, key: str, value: object | None, now: float) -> int:
        """Record an invocation; ``value`` is the value written (``None`` for a GET)."""
        op_id = self._next_id
        self._next_id += 1
        self._pending[op_id] = _Pending(
            client, kind, key, value if kind is OpKind.PUT else None, now
        )
        return op_id

    def complete(
        self, op_id: int, outcome: Outcome, now: float, value: object | None = None
    ) -> None:
        """Record the response to ``op_id``; for an OK GET ``value`` is the value read.

        Recording UNKNOWN marks that the client gave up without learning the
        outcome; the op is then reported with ``complete=None``.
        """
        p = self._pending.pop(op_id, None)
        if p is None:
            state = "already completed" if op_id in self._done else "unknown"
            raise ValueError(f"op {op_id} is {state}")
        read_ok = p.kind is OpKind.GET and outcome is Outcome.OK
        result = value if read_ok else p.value
        self._done[op_id] = Op(
            op_id=op_id,
            client=p.client,
            kind=p.kind,
            key=p.key,
            value=result,
            invoke=p.invoke,
            complete=None if outcome is Outcome.UNKNOWN else now,
            outcome=outcome,
        )

    def ops(self) -> list[Op]:
        """Every op in op id order; ops never completed are UNKNOWN with ``complete=None``."""
        result = dict(self._done)
        for op_id, p in self._pending.items():
            result[op_id] = Op(
                op_id, p.client, p.kind, p.key, p.value, p.invoke, None, Outcome.UNKNOWN
            )
        return [result[i] for i in sorted(result)]
