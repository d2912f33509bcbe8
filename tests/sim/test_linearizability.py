from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Sequence
from functools import cache

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from raftcore.sim.linearizability import (
    HistoryRecorder,
    Op,
    OpKind,
    Outcome,
    Violation,
    check_history,
)

PUT, GET = OpKind.PUT, OpKind.GET
OK, FAIL, UNKNOWN = Outcome.OK, Outcome.FAIL, Outcome.UNKNOWN


class _Builder:
    """Terse hand-written histories: ``h.put(...)`` / ``h.get(...)`` return the op id."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def _add(
        self,
        kind: OpKind,
        value: object | None,
        invoke: float,
        complete: float | None,
        outcome: Outcome,
        key: str,
        client: int,
    ) -> int:
        op_id = len(self.ops)
        if outcome is UNKNOWN:
            complete = None
        self.ops.append(Op(op_id, client, kind, key, value, invoke, complete, outcome))
        return op_id

    def put(
        self,
        value: object,
        invoke: float,
        complete: float | None,
        outcome: Outcome = OK,
        key: str = "k",
        client: int = 0,
    ) -> int:
        return self._add(PUT, value, invoke, complete, outcome, key, client)

    def get(
        self,
        value: object | None,
        invoke: float,
        complete: float | None,
        outcome: Outcome = OK,
        key: str = "k",
        client: int = 0,
    ) -> int:
        return self._add(GET, value, invoke, complete, outcome, key, client)

    def check(self) -> list[Violation]:
        return check_history(self.ops)


# ---------------------------------------------------------------------------
# Reference checkers (exponential; for small histories only)
# ---------------------------------------------------------------------------


def _end(op: Op) -> float:
    return math.inf if op.outcome is UNKNOWN or op.complete is None else op.complete


def _relevant(ops: Sequence[Op]) -> tuple[list[Op], list[Op]]:
    """(ops that must be linearized, UNKNOWN puts that may be)."""
    must = [op for op in ops if op.outcome is OK]
    maybe = [op for op in ops if op.kind is PUT and op.outcome is UNKNOWN]
    return must, maybe


def _orders(ops: list[Op], state: object | None) -> bool:
    """True iff some permutation of ``ops`` is a legal register history from ``state``.

    Enumerates permutations by prefix, abandoning a prefix as soon as it is
    illegal (wrong read value, or a placed op that a not-yet-placed op precedes).
    """
    if not ops:
        return True
    for i, op in enumerate(ops):
        rest = ops[:i] + ops[i + 1 :]
        if any(_end(b) < op.invoke for b in rest):
            continue
        if op.kind is PUT:
            if _orders(rest, op.value):
                return True
        elif op.value == state and _orders(rest, state):
            return True
    return False


def brute_force_linearizable(ops: Sequence[Op]) -> bool:
    """Tries every subset of UNKNOWN puts and every permutation, per key."""
    for key in {op.key for op in ops}:
        must, maybe = _relevant([op for op in ops if op.key == key])
        if not any(
            _orders(must + list(chosen), None)
            for r in range(len(maybe) + 1)
            for chosen in itertools.combinations(maybe, r)
        ):
            return False
    return True


def _search_key(cand: tuple[Op, ...], n_must: int) -> bool:
    """``cand[:n_must]`` must be linearized; the rest are UNKNOWN puts that may be."""
    n = len(cand)
    must_mask = (1 << n_must) - 1

    @cache
    def go(done: int, state: object | None) -> bool:
        if done & must_mask == must_mask:
            return True  # remaining UNKNOWN puts simply did not take effect
        pending = [i for i in range(n) if not done >> i & 1]
        for i in pending:
            op = cand[i]
            # Only ops not preceded by a pending op may go next. A pending
            # UNKNOWN put ends at +inf, so it never blocks anything.
            if any(_end(cand[j]) < op.invoke for j in pending if j != i):
                continue
            if op.kind is PUT:
                if go(done | 1 << i, op.value):
                    return True
            elif op.value == state and go(done | 1 << i, state):
                return True
        return False

    return go(0, None)


def search_linearizable(ops: Sequence[Op]) -> bool:
    """Wing & Gong search with memoization on (linearized set, register value), per key."""
    for key in {op.key for op in ops}:
        must, maybe = _relevant([op for op in ops if op.key == key])
        if not _search_key(tuple(must + maybe), len(must)):
            return False
    return True


# ---------------------------------------------------------------------------
# Hand-written histories
# ---------------------------------------------------------------------------


def test_empty_history() -> None:
    assert check_history([]) == []


def test_sequential_history() -> None:
    h = _Builder()
    h.get(None, 0, 1)
    h.put("a", 2, 3)
    h.get("a", 4, 5)
    h.put("b", 6, 7)
    h.get("b", 8, 9)
    h.get("b", 10, 11)
    assert h.check() == []


def test_stale_read_after_completed_write() -> None:
    h = _Builder()
    pa = h.put("a", 0, 1)
    pb = h.put("b", 2, 3)
    g = h.get("a", 4, 5, client=1)
    [v] = h.check()
    assert v.key == "k"
    assert {pa, pb, g} <= set(v.op_ids)
    assert "'a'" in v.reason and "'b'" in v.reason


def test_read_of_failed_put() -> None:
    h = _Builder()
    p = h.put("a", 0, 1, FAIL)
    g = h.get("a", 2, 3)
    [v] = h.check()
    assert set(v.op_ids) == {p, g}
    assert "failed" in v.reason


def test_failed_put_never_read_is_fine() -> None:
    h = _Builder()
    h.put("a", 0, 1)
    h.put("b", 0, 10, FAIL)
    h.get("a", 2, 3)
    h.get("a", 11, 12)
    assert h.check() == []


def test_read_of_value_never_written() -> None:
    h = _Builder()
    h.put("a", 0, 1)
    g = h.get("zzz", 2, 3)
    [v] = h.check()
    assert v.op_ids == (g,)
    assert "never written" in v.reason


def test_read_from_the_future() -> None:
    h = _Builder()
    g = h.get("a", 0, 1)
    p = h.put("a", 2, 3, client=1)
    [v] = h.check()
    assert set(v.op_ids) == {g, p}


def test_read_from_the_future_of_unknown_put() -> None:
    h = _Builder()
    g = h.get("a", 0, 1)
    p = h.put("a", 2, None, UNKNOWN, client=1)
    [v] = h.check()
    assert set(v.op_ids) == {g, p}


def test_two_reads_see_writes_in_opposite_orders() -> None:
    h = _Builder()
    h.put("a", 0, 10, client=0)
    h.put("b", 0, 10, client=1)
    h.get("a", 1, 2, client=2)
    h.get("b", 3, 4, client=2)
    h.get("b", 1, 2, client=3)
    h.get("a", 3, 4, client=3)
    assert len(h.check()) >= 1
    assert not brute_force_linearizable(h.ops)


@pytest.mark.parametrize(("first", "second"), [("a", "a"), ("b", "b"), ("a", "b"), ("b", "a")])
def test_reads_during_concurrent_writes(first: str, second: str) -> None:
    h = _Builder()
    h.put("a", 0, 10, client=0)
    h.put("b", 0, 10, client=1)
    h.get(first, 1, 2, client=2)
    h.get(second, 3, 4, client=2)
    assert h.check() == []


@pytest.mark.parametrize("last", ["a", "b"])
def test_concurrent_writes_fine_in_either_order(last: str) -> None:
    h = _Builder()
    h.put("a", 0, 10, client=0)
    h.put("b", 1, 9, client=1)
    h.get(last, 11, 12, client=2)
    h.get(last, 13, 14, client=3)
    assert h.check() == []


@pytest.mark.parametrize("seen", [None, "a"])
def test_read_concurrent_with_write_sees_old_or_new(seen: str | None) -> None:
    h = _Builder()
    h.put("a", 0, 10)
    h.get(seen, 5, 6, client=1)
    assert h.check() == []


def test_unknown_put_read_long_after() -> None:
    h = _Builder()
    h.put("a", 0, None, UNKNOWN)
    h.get(None, 50, 51, client=1)
    h.get("a", 100, 101, client=1)
    h.get("a", 200, 201, client=2)
    assert h.check() == []


def test_unknown_put_may_take_effect_after_a_later_completed_write() -> None:
    h = _Builder()
    h.put("a", 0, None, UNKNOWN)
    h.put("b", 5, 6, client=1)
    h.get("b", 7, 8, client=2)
    h.get("a", 10, 11, client=2)
    assert h.check() == []


def test_unknown_put_read_then_older_value_read_again() -> None:
    h = _Builder()
    h.put("a", 0, None, UNKNOWN)
    h.put("b", 5, 6, client=1)
    h.get("a", 10, 11, client=2)
    h.get("b", 20, 21, client=2)
    assert len(h.check()) == 1
    assert not brute_force_linearizable(h.ops)


def test_unknown_put_never_read_is_dropped() -> None:
    h = _Builder()
    h.put("a", 0, None, UNKNOWN)
    h.get(None, 10, 11, client=1)
    h.put("b", 12, 13, client=1)
    h.get("b", 20, 21, client=1)
    assert h.check() == []


def test_initial_none_after_completed_write() -> None:
    h = _Builder()
    p = h.put("a", 0, 1)
    g = h.get(None, 2, 3, client=1)
    [v] = h.check()
    assert {p, g} <= set(v.op_ids)
    assert "initial value" in v.reason


def test_initial_none_after_read_of_a_value() -> None:
    h = _Builder()
    h.put("a", 0, 100)
    r = h.get("a", 1, 2, client=1)
    g = h.get(None, 3, 4, client=2)
    [v] = h.check()
    assert {r, g} <= set(v.op_ids)


def test_ties_are_concurrent() -> None:
    # Strict real-time order: a completion at t does not precede an invocation at t.
    h = _Builder()
    h.put("a", 0, 1)
    h.get(None, 1, 2, client=1)
    assert h.check() == []
    h.get(None, 1.5, 2, client=2)
    assert len(h.check()) == 1


def test_tie_between_reads() -> None:
    h = _Builder()
    h.put("a", 0, 10)
    h.get("a", 1, 2, client=1)
    h.get(None, 2, 3, client=2)  # concurrent with the read of "a": still fine
    assert h.check() == []
    h.get(None, 2.5, 3, client=3)
    assert len(h.check()) == 1


def test_failed_and_unknown_gets_are_ignored() -> None:
    h = _Builder()
    h.put("a", 0, 1)
    h.get("garbage", 2, 3, FAIL)
    h.get("other", 2, None, UNKNOWN)
    h.get(None, 4, 5, FAIL)
    assert h.check() == []


def test_keys_are_independent() -> None:
    h = _Builder()
    h.put(1, 0, 1, key="x")
    h.put(1, 0, 1, key="y")  # same value on another key is fine
    h.get(1, 2, 3, key="x")
    h.get(None, 2, 3, key="y")
    h.get(None, 2, 3, key="z")
    [v] = h.check()
    assert v.key == "y"


def test_several_violations_reported() -> None:
    h = _Builder()
    h.put("a", 0, 1, key="x")
    h.get(None, 2, 3, key="x")
    h.get("nope", 2, 3, key="y")
    assert [v.key for v in h.check()] == ["x", "y"]


def test_malformed_histories_rejected() -> None:
    h = _Builder()
    h.put("a", 0, 1)
    h.put("a", 2, 3)
    with pytest.raises(ValueError, match="both put"):
        h.check()
    with pytest.raises(ValueError, match="duplicate op id"):
        check_history([Op(0, 0, GET, "k", None, 0, 1, OK)] * 2)
    with pytest.raises(ValueError, match="completion"):
        check_history([Op(0, 0, GET, "k", None, 0, None, OK)])
    with pytest.raises(ValueError, match="before"):
        check_history([Op(0, 0, GET, "k", None, 2, 1, OK)])
    with pytest.raises(ValueError, match="None"):
        check_history([Op(0, 0, PUT, "k", None, 0, 1, OK)])


# ---------------------------------------------------------------------------
# HistoryRecorder
# ---------------------------------------------------------------------------


def test_recorder() -> None:
    rec = HistoryRecorder()
    p = rec.invoke(1, PUT, "k", "a", 0.0)
    g = rec.invoke(2, GET, "k", None, 0.5)
    lost = rec.invoke(3, PUT, "k", "b", 0.7)
    never = rec.invoke(4, GET, "k", None, 0.8)
    given_up = rec.invoke(5, PUT, "k", "c", 0.9)
    rec.complete(p, OK, 1.0)
    rec.complete(g, OK, 2.0, value="a")
    rec.complete(lost, FAIL, 2.5)
    rec.complete(given_up, UNKNOWN, 3.0)
    assert len({p, g, lost, never, given_up}) == 5
    ops = rec.ops()
    assert [op.op_id for op in ops] == sorted([p, g, lost, never, given_up])
    by_id = {op.op_id: op for op in ops}
    assert by_id[p] == Op(p, 1, PUT, "k", "a", 0.0, 1.0, OK)
    assert by_id[g] == Op(g, 2, GET, "k", "a", 0.5, 2.0, OK)
    assert by_id[lost] == Op(lost, 3, PUT, "k", "b", 0.7, 2.5, FAIL)
    assert by_id[never] == Op(never, 4, GET, "k", None, 0.8, None, UNKNOWN)
    assert by_id[given_up] == Op(given_up, 5, PUT, "k", "c", 0.9, None, UNKNOWN)
    assert check_history(ops) == []
    with pytest.raises(ValueError):
        rec.complete(p, OK, 5.0)
    with pytest.raises(ValueError):
        rec.complete(12345, OK, 5.0)


# ---------------------------------------------------------------------------
# Reference checkers agree with each other on hand-picked cases
# ---------------------------------------------------------------------------


def test_reference_checkers_sanity() -> None:
    good = _Builder()
    good.put("a", 0, 10)
    good.put("b", 1, 9, client=1)
    good.get("b", 11, 12)
    bad = _Builder()
    bad.put("a", 0, 1)
    bad.put("b", 2, 3)
    bad.get("a", 4, 5)
    for h, expected in ((good, True), (bad, False)):
        assert brute_force_linearizable(h.ops) is expected
        assert search_linearizable(h.ops) is expected
        assert (h.check() == []) is expected


# ---------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------

# One planned op: (key, is_put, linearization time, slack before, slack after, fate).
# Fate for puts: 0 ok, 1 unknown-but-applied, 2 unknown-not-applied, 3 failed;
# for gets: 0 ok, 1 failed, 2/3 unknown.
_Plan = tuple[int, bool, int, int, int, int]

_plan = st.tuples(
    st.integers(0, 1),
    st.booleans(),
    st.integers(0, 30),
    st.integers(0, 6),
    st.integers(0, 6),
    st.integers(0, 3),
)


def _linearizable_history(plans: Sequence[_Plan]) -> list[Op]:
    """A history that is linearizable by construction.

    Ops take effect atomically at their linearization points, in order, on a
    register per key; each op's interval contains its linearization point.
    """
    state: dict[str, object | None] = {}
    ops: list[Op] = []
    for op_id, (k, is_put, t, before, after, fate) in enumerate(sorted(plans, key=lambda p: p[2])):
        key = f"k{k}"
        invoke, complete = float(t - before), float(t + after)
        if is_put:
            value: object | None = f"v{op_id}"
            outcome = [OK, UNKNOWN, UNKNOWN, FAIL][fate]
            if fate <= 1:
                state[key] = value
        else:
            outcome = [OK, FAIL, UNKNOWN, UNKNOWN][fate]
            value = state.get(key) if outcome is OK else f"junk{op_id}"
        ops.append(
            Op(
                op_id,
                op_id,
                OpKind.PUT if is_put else OpKind.GET,
                key,
                value,
                invoke,
                None if outcome is UNKNOWN else complete,
                outcome,
            )
        )
    return ops


@settings(max_examples=300, deadline=None)
@given(st.lists(_plan, max_size=40))
def test_linearizable_by_construction(plans: list[_Plan]) -> None:
    ops = _linearizable_history(plans)
    assert check_history(ops) == []


_put_plan = st.tuples(
    st.just(0), st.just(True), st.integers(0, 30), st.integers(0, 6), st.integers(0, 6),
    st.integers(0, 3),
)  # fmt: skip
_ok_get_plan = st.tuples(
    st.just(0), st.just(False), st.integers(0, 30), st.integers(0, 6), st.integers(0, 6),
    st.just(0),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_plan, max_size=5), _put_plan, _ok_get_plan, st.data())
def test_mutated_read_matches_brute_force(
    plans: list[_Plan], put: _Plan, get: _Plan, data: st.DataObject
) -> None:
    """Small linearizable history (<= 7 ops) with one OK read's value changed."""
    ops = _linearizable_history([*plans, put, get])
    reads = [i for i, op in enumerate(ops) if op.kind is GET and op.outcome is OK]
    i = data.draw(st.sampled_from(reads))
    read = ops[i]
    candidates = [None] + [op.value for op in ops if op.kind is PUT and op.key == read.key]
    candidates = [v for v in candidates if v != read.value]
    assume(candidates)
    new_value = data.draw(st.sampled_from(candidates))
    ops[i] = Op(read.op_id, read.client, GET, read.key, new_value, read.invoke, read.complete, OK)
    expected = brute_force_linearizable(ops)
    assert search_linearizable(ops) is expected
    assert (check_history(ops) == []) is expected


@st.composite
def _arbitrary_history(draw: st.DrawFn, max_ops: int) -> list[Op]:
    """Random small history: random intervals, outcomes and read values."""
    n = draw(st.integers(1, max_ops))
    n_keys = draw(st.integers(1, 2))
    ops: list[Op] = []
    put_values: dict[str, list[str]] = {}
    for op_id in range(n):
        key = f"k{draw(st.integers(0, n_keys - 1))}"
        kind = draw(st.sampled_from([PUT, GET]))
        invoke = draw(st.integers(0, 12))
        complete = invoke + draw(st.integers(0, 6))
        outcome = draw(st.sampled_from([OK, OK, OK, FAIL, UNKNOWN]))
        if kind is PUT:
            value: object | None = f"v{op_id}"
            put_values.setdefault(key, []).append(f"v{op_id}")
        else:
            value = None  # filled in below, once all put values are known
        ops.append(
            Op(
                op_id,
                op_id,
                kind,
                key,
                value,
                float(invoke),
                None if outcome is UNKNOWN else float(complete),
                outcome,
            )
        )
    for i, op in enumerate(ops):
        if op.kind is GET:
            choices: list[object | None] = [None, "ghost", *put_values.get(op.key, [])]
            value = draw(st.sampled_from(choices))
            ops[i] = Op(op.op_id, op.client, GET, op.key, value, op.invoke, op.complete, op.outcome)
    return ops


@settings(max_examples=400, deadline=None)
@given(_arbitrary_history(max_ops=7))
def test_arbitrary_small_histories_match_brute_force(ops: list[Op]) -> None:
    expected = brute_force_linearizable(ops)
    assert search_linearizable(ops) is expected
    violations = check_history(ops)
    assert (violations == []) is expected
    known = {op.op_id for op in ops}
    for v in violations:
        assert v.op_ids and set(v.op_ids) <= known


@settings(max_examples=200, deadline=None)
@given(_arbitrary_history(max_ops=13))
def test_arbitrary_medium_histories_match_search(ops: list[Op]) -> None:
    assert (check_history(ops) == []) is search_linearizable(ops)


# ---------------------------------------------------------------------------
# Scale
# ---------------------------------------------------------------------------


def _simulated_history(rng: random.Random, n_ops: int, n_keys: int, n_clients: int) -> list[Op]:
    """Closed-loop clients on registers; linearizable by construction."""
    plans: list[tuple[float, float, float, int, str, bool, int]] = []
    clock = [0.0] * n_clients
    for i in range(n_ops):
        c = i % n_clients
        invoke = clock[c] + rng.random()
        point = invoke + rng.random() * 3
        complete = point + rng.random() * 3
        clock[c] = complete
        plans.append(
            (
                point,
                invoke,
                complete,
                c,
                f"k{rng.randrange(n_keys)}",
                rng.random() < 0.5,
                rng.randrange(20),
            )
        )
    plans.sort()
    state: dict[str, object | None] = {}
    ops: list[Op] = []
    for op_id, (_, invoke, complete, c, key, is_put, fate) in enumerate(plans):
        if is_put:
            value: object | None = op_id
            outcome = UNKNOWN if fate == 0 else FAIL if fate == 1 else OK
            if outcome is not FAIL:
                state[key] = value
        else:
            outcome = UNKNOWN if fate == 0 else OK
            value = state.get(key)
        kind = OpKind.PUT if is_put else OpKind.GET
        end = None if outcome is UNKNOWN else complete
        ops.append(Op(op_id, c, kind, key, value, invoke, end, outcome))
    return ops


def test_large_history_is_fast() -> None:
    ops = _simulated_history(random.Random(7), n_ops=20_000, n_keys=10, n_clients=5)
    start = time.perf_counter()
    assert check_history(ops) == []
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, elapsed

    # A single stale read deep inside the history is found: make a read return
    # the value of a put that was definitely overwritten before the read began.
    reads = [
        i
        for i, op in enumerate(ops)
        if op.kind is GET and op.outcome is OK and op.key == "k3" and op.value is not None
    ]
    i = reads[len(reads) // 2]
    read = ops[i]
    ok_puts = [op for op in ops if op.kind is PUT and op.key == "k3" and op.outcome is OK]
    later = max(
        (op for op in ok_puts if op.complete is not None and op.complete < read.invoke),
        key=lambda op: op.invoke,
    )
    stale = next(op for op in ok_puts if op.complete is not None and op.complete < later.invoke)
    ops[i] = Op(read.op_id, read.client, GET, "k3", stale.value, read.invoke, read.complete, OK)
    violations = check_history(ops)
    assert violations
    assert all(v.key == "k3" for v in violations)
    assert any(read.op_id in v.op_ids for v in violations)
