"""The safety checks on a finished history.

Per key (the model is one register per key, ``raftcore.sim.linearizability``):

- **linearizable**: the writes (puts and deletes) plus the final read of the
  key, taken through the leader after the final heal, form a linearizable
  register history. A delete writes a tombstone unique to it; a final read
  that found no key may be explained by the initial value or by any delete
  that did not fail. The project's ``check_history`` gives the verdict.
- **lost acknowledged writes**: an acknowledged write is lost if the final
  value was written neither by it nor by a write that may have come after it
  (one that did not fail and did not complete before it was invoked).
- **impossible reads** (always a violation): a read of a value nobody wrote,
  of a write that definitely failed, or of a write invoked after the read
  completed.
- **stale reads**: a read that no linearization of the writes (and final
  reads) explains, each read judged on its own. GET is linearizable
  (ReadIndex: docs/reads.md), so a stale read is a violation
  (``STRICT_READS``). The
  writes, final reads and every read that returned a value are also checked
  together (``reads_linearizable``: catches reads that are each possible but
  not together); a not-found read could be any delete's, so it is judged on
  its own only.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator, Sequence

import attrs

from raftcore.adapters.kv.chaos.history import OpRecord, OpType, Outcome
from raftcore.sim.linearizability import Op, OpKind, check_history

#: GET is linearizable (ReadIndex): any stale read fails the run.
STRICT_READS = True
#: The client name of the final reads, one per key after the final heal.
FINAL_CLIENT = "final"
#: How many examples of each kind of problem the result keeps.
EXAMPLES = 5

_INITIAL: Hashable = ("initial",)


def _invoked(op: OpRecord) -> float:
    return op.invoke


def _completed(op: OpRecord) -> float:
    assert op.complete is not None
    return op.complete


def written_value(w: OpRecord) -> Hashable:
    """What a write puts in the register: its value, or a tombstone unique to a delete."""
    return w.value if w.type is OpType.PUT else ("deleted", w.op_id)


@attrs.define
class _Zone:
    """A write and the reads assigned to it: earliest completion, latest invocation."""

    lo: float
    hi: float
    write: OpRecord | None  # None: the initial value


class _ZoneIndex:
    """For a query ``(bound, exclude)``: the largest ``hi`` among zones with ``lo < bound``."""

    def __init__(self, zones: dict[Hashable, _Zone], included: Iterable[Hashable]) -> None:
        keys = sorted(included, key=lambda k: zones[k].lo)
        self.los = [zones[k].lo for k in keys]
        # Prefix maxima of hi: the best two (hi, key), so that one key can be excluded.
        self.top: list[tuple[tuple[float, Hashable], tuple[float, Hashable] | None]] = []
        first: tuple[float, Hashable] | None = None
        second: tuple[float, Hashable] | None = None
        for k in keys:
            hi = zones[k].hi
            if first is None or hi > first[0]:
                first, second = (hi, k), first
            elif second is None or hi > second[0]:
                second = (hi, k)
            self.top.append((first, second))

    def max_hi(self, bound: float, exclude: Hashable | None) -> float:
        n = bisect.bisect_left(self.los, bound)
        if n == 0:
            return -math.inf
        first, second = self.top[n - 1]
        if first[1] != exclude:
            return first[0]
        return second[0] if second is not None else -math.inf


@attrs.define
class KeyResult:
    key: str
    final: Hashable | None = None  # the final value's register value (None: no final read)
    violations: list[str] = attrs.Factory(list)
    lost: list[str] = attrs.Factory(list)
    impossible: list[str] = attrs.Factory(list)
    stale: list[str] = attrs.Factory(list)
    reads: int = 0
    reads_violations: list[str] = attrs.Factory(list)


class _Key:
    """One key's writes as zones, with the final read assigned to one of them."""

    def __init__(self, key: str, ops: Sequence[OpRecord], final: OpRecord | None) -> None:
        self.key = key
        self.writes = [w for w in ops if w.type.is_write and w.outcome is not None]
        self.by_value: dict[Hashable, OpRecord] = {written_value(w): w for w in self.writes}
        self.zones: dict[Hashable, _Zone] = {_INITIAL: _Zone(-math.inf, -math.inf, None)}
        self.included: set[Hashable] = {_INITIAL}
        for w in self.writes:
            if w.outcome is Outcome.FAIL:
                continue
            value = written_value(w)
            done = w.complete if w.outcome is Outcome.OK else None
            self.zones[value] = _Zone(math.inf if done is None else done, w.invoke, w)
            if done is not None:
                self.included.add(value)
        deletes = [w for w in self.writes if w.type is OpType.DELETE]
        self.deletes = sorted((d for d in deletes if d.outcome is not Outcome.FAIL), key=_invoked)
        self._invokes = [d.invoke for d in self.deletes]
        self.done = sorted((d for d in deletes if d.outcome is Outcome.OK), key=_completed)
        self._completes = [_completed(d) for d in self.done]
        self.final = final
        self.index = _ZoneIndex(self.zones, self.included)

    def candidates(self, read: OpRecord) -> Iterator[Hashable]:
        """The register values that may have produced ``read``'s answer, likeliest
        first: for a not-found read, the deletes done before it began (latest
        first), then those concurrent with it, then the initial value."""
        if read.value is not None:
            if read.value in self.zones:
                yield read.value
            return
        assert read.complete is not None
        before = bisect.bisect_left(self._completes, read.invoke)
        for i in range(before - 1, -1, -1):
            yield written_value(self.done[i])
        for i in range(bisect.bisect_right(self._invokes, read.complete) - 1, -1, -1):
            d = self.deletes[i]
            if not (d.outcome is Outcome.OK and _completed(d) < read.invoke):
                yield written_value(d)
        yield _INITIAL

    def explains(self, value: Hashable, read: OpRecord) -> bool:
        """Whether assigning ``read`` to ``value``'s zone keeps the zones conflict-free."""
        zone = self.zones[value]
        assert read.complete is not None
        if zone.write is not None and read.complete < zone.write.invoke:
            return False
        lo, hi = min(zone.lo, read.complete), max(zone.hi, read.invoke)
        exclude = value if value in self.included else None
        return self.index.max_hi(hi, exclude) <= lo

    def assign(self, read: OpRecord) -> Hashable | None:
        """The first candidate that explains ``read``, else ``None``."""
        return next((c for c in self.candidates(read) if self.explains(c, read)), None)

    def adopt(self, value: Hashable, read: OpRecord) -> None:
        """Make ``read`` part of ``value``'s zone (the final read)."""
        zone = self.zones[value]
        assert read.complete is not None
        zone.lo, zone.hi = min(zone.lo, read.complete), max(zone.hi, read.invoke)
        self.included.add(value)
        self.index = _ZoneIndex(self.zones, self.included)

    def impossible(self, read: OpRecord) -> str | None:
        """Why ``read`` could not have happened at all, if so."""
        if read.value is None:
            return None
        w = self.by_value.get(read.value)
        if w is None:
            return f"op {read.op_id} read {read.value!r}, which nobody wrote"
        if w.outcome is Outcome.FAIL:
            return f"op {read.op_id} read {read.value!r}, written by op {w.op_id} which failed"
        assert read.complete is not None
        if read.complete < w.invoke:
            return f"op {read.op_id} read {read.value!r} before op {w.op_id} wrote it"
        return None

    def lost(self) -> list[str]:
        """Acknowledged writes the final value cannot follow."""
        if self.final is None:
            return []
        producers = [self.by_value[c] for c in self.candidates(self.final) if c in self.by_value]

        def may_follow(u: OpRecord, w: OpRecord) -> bool:
            done_before = (
                u.outcome is Outcome.OK and u.complete is not None and u.complete < w.invoke
            )
            return u is w or not done_before

        out = []
        for w in self.writes:
            if w.outcome is Outcome.OK and not any(may_follow(u, w) for u in producers):
                shown = "absent" if self.final.value is None else repr(self.final.value)
                out.append(
                    f"key {self.key!r}: op {w.op_id} ({w.type.value} {w.value!r}, acknowledged "
                    f"at {w.complete:.3f}s) is lost: the final value is {shown}"
                )
        return out


def _checker_ops(ops: Iterable[tuple[OpRecord, Hashable]], clients: dict[str, int]) -> list[Op]:
    """``(record, register value)`` pairs as the project checker's ops."""
    out = []
    for r, value in ops:
        kind = OpKind.GET if r.type is OpType.GET else OpKind.PUT
        assert r.outcome is not None
        client = clients.setdefault(r.client, len(clients))
        v = None if value == _INITIAL else value
        out.append(Op(r.op_id, client, kind, r.key, v, r.invoke, r.complete, r.outcome))
    return out


def check_key(key: str, ops: Sequence[OpRecord], final: OpRecord | None) -> KeyResult:
    """Every check on one key; ``ops`` are its completed ops other than ``final``."""
    result = KeyResult(key)
    k = _Key(key, ops, final)
    clients: dict[str, int] = {}
    base = [(w, written_value(w)) for w in k.writes]
    final_pair: list[tuple[OpRecord, Hashable]] = []
    if final is not None:
        result.final = final.value
        why = k.impossible(final)
        if why is not None:
            result.impossible.append(f"key {key!r}: final read: {why}")
        chosen = k.assign(final)
        if chosen is not None:
            k.adopt(chosen, final)
        pick = chosen if chosen is not None else next(k.candidates(final), final.value)
        final_pair = [(final, pick)]
        for v in check_history(_checker_ops(base + final_pair, clients)):
            result.violations.append(f"key {key!r}: {v.reason}")
        result.lost = k.lost()

    # Every read that returned a value, with the writes: exact (a not-found
    # read could be any delete's, so those are judged on their own only).
    valued: list[tuple[OpRecord, Hashable]] = []
    for r in ops:
        if r.type is not OpType.GET or r.outcome is not Outcome.OK:
            continue
        result.reads += 1
        why = k.impossible(r)
        if why is not None:
            result.impossible.append(f"key {key!r}: {why}")
            continue
        chosen = k.assign(r)
        if chosen is None:
            result.stale.append(
                f"key {key!r}: op {r.op_id} ({r.client}) read "
                f"{'nothing' if r.value is None else repr(r.value)} at {r.invoke:.3f}-"
                f"{r.complete:.3f}s from {r.node}: no linearization of the writes explains it"
            )
        if r.value is not None:
            valued.append((r, r.value))
    if valued:
        for v in check_history(_checker_ops(base + final_pair + valued, clients)):
            result.reads_violations.append(f"key {key!r}: {v.reason}")
    return result


@attrs.define
class CheckResult:
    keys: list[KeyResult]
    acknowledged_writes: int
    missing_final: list[str]

    def _all(self, field: str) -> list[str]:
        return list(itertools.chain.from_iterable(getattr(k, field) for k in self.keys))

    @property
    def violations(self) -> list[str]:
        return self._all("violations")

    @property
    def lost(self) -> list[str]:
        return self._all("lost")

    @property
    def impossible(self) -> list[str]:
        return self._all("impossible")

    @property
    def stale(self) -> list[str]:
        return self._all("stale")

    @property
    def reads_violations(self) -> list[str]:
        return self._all("reads_violations")

    @property
    def linearizable(self) -> bool:
        return not self.violations and not self.missing_final

    @property
    def reads_linearizable(self) -> bool:
        return not self.reads_violations

    def problems(self, strict_reads: bool = STRICT_READS) -> list[str]:
        """Every safety violation, one line each (``[]``: the run is safe)."""
        out = [f"no final read of key {k!r}" for k in self.missing_final]
        out += self.violations + self.lost + self.impossible
        if strict_reads:
            out += self.stale + self.reads_violations
        return out


def check(records: Iterable[OpRecord], keys: Iterable[str]) -> CheckResult:
    """Check a finished history; ``keys`` are the keys that must have a final read."""
    by_key: dict[str, list[OpRecord]] = defaultdict(list)
    finals: dict[str, OpRecord] = {}
    acked = 0
    for r in records:
        if r.outcome is None:
            raise ValueError(f"op {r.op_id} never completed: abandon open ops before checking")
        if r.client == FINAL_CLIENT and r.type is OpType.GET:
            if r.outcome is Outcome.OK:
                finals[r.key] = r
            continue
        by_key[r.key].append(r)
        acked += r.type.is_write and r.outcome is Outcome.OK
    missing = sorted(set(keys) - set(finals))
    results = [
        check_key(key, by_key[key], finals.get(key)) for key in sorted(set(by_key) | set(finals))
    ]
    return CheckResult(results, acked, missing)
