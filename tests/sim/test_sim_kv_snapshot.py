"""The simulator's KvStateMachine: snapshot, restore, state digest."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from raftcore.ids import LogId
from raftcore.sim.kv import KvStateMachine, SnapshotStateMachine

AT = LogId(2, 1, 7)


def machine(*ops: Any) -> KvStateMachine:
    sm = KvStateMachine()
    for op in ops:
        sm.apply(op)
    return sm


WORKLOAD = [("put", f"k{i % 3}", f"c1.{i}") for i in range(10)] + [("get", "k1"), ("get", "zz")]


def test_it_is_a_snapshot_state_machine() -> None:
    sm: SnapshotStateMachine = KvStateMachine()
    assert sm.apply(("put", "k", "v")) is None


def test_round_trip_restores_the_map_and_the_count() -> None:
    a = machine(*WORKLOAD)
    data = a.snapshot()
    assert isinstance(data, bytes)
    b = KvStateMachine()
    b.restore(data, AT)
    assert b.data == a.data == {"k0": "c1.9", "k1": "c1.7", "k2": "c1.8"}
    assert b.applied == a.applied == len(WORKLOAD)
    assert b.snapshot() == data and b.state_digest() == a.state_digest()
    # It goes on from there like the original.
    for op in [("put", "k1", "x"), ("get", "k1"), ("get", "k0")]:
        assert b.apply(op) == a.apply(op)
    assert b.snapshot() == a.snapshot()


def test_python_values_come_back_as_they_went_in() -> None:
    value = {
        "t": (1, (2, "x")),
        "l": [None, True, False, 0, -3, 10**30, 1.5, -0.0, "s", b"b"],
        (3, ("k",)): {"nested": [(), []]},
        "s": {1, "a"},
        "f": frozenset({(1, 2)}),
        "empty": {},
    }
    a = machine(("put", ("tuple", "key"), value), ("put", 7, "int key"), ("put", None, 1.0))
    b = KvStateMachine()
    b.restore(a.snapshot(), AT)
    assert b.data == a.data
    got = b.data[("tuple", "key")]
    assert type(got["t"]) is tuple and type(got["t"][1]) is tuple
    assert type(got["l"]) is list and type(got["s"]) is set and type(got["f"]) is frozenset
    assert [type(x) for x in got["l"][:3]] == [type(None), bool, bool]
    assert type(b.data[None]) is float
    assert b.apply(("get", ("tuple", "key"))) == a.apply(("get", ("tuple", "key")))


def test_restore_replaces_the_whole_state() -> None:
    source = machine(("put", "only", "this"))
    target = machine(("put", "stale", 1), ("put", "only", "old"), ("put", "x", 2))
    target.restore(source.snapshot(), AT)
    assert target.data == {"only": "this"} and target.applied == 1
    assert target.apply(("get", "stale")) is None
    empty = machine(("put", "a", 1))
    empty.restore(KvStateMachine().snapshot(), LogId(0, 0, 0))
    assert empty.data == {} and empty.applied == 0


def test_bytes_are_deterministic() -> None:
    a = machine(("put", "x", 1), ("put", "y", {"b": 2, "a": 1}), ("put", "s", {3, 1, 2}))
    b = machine(("put", "s", {2, 3, 1}), ("put", "y", {"a": 1, "b": 2}), ("put", "x", 1))
    assert a.data == b.data
    assert a.snapshot() == b.snapshot() and a.state_digest() == b.state_digest()
    assert machine(*WORKLOAD).snapshot() == machine(*WORKLOAD).snapshot()
    # Different states, different bytes: the map or the count of entries.
    c = machine(("put", "x", 2), ("put", "y", {"b": 2, "a": 1}), ("put", "s", {3, 1, 2}))
    assert c.snapshot() != a.snapshot() and c.state_digest() != a.state_digest()
    d = machine(("put", "x", 1), ("put", "y", {"b": 2, "a": 1}), ("put", "s", {3, 1, 2}))
    d.apply(("get", "x"))
    assert d.data == a.data and d.snapshot() != a.snapshot()
    # Values that compare equal but differ in type are told apart.
    assert machine(("put", "k", (1,))).snapshot() != machine(("put", "k", [1])).snapshot()
    assert machine(("put", "k", 1)).snapshot() != machine(("put", "k", True)).snapshot()


def test_a_value_it_cannot_encode_fails_loudly() -> None:
    sm = machine(("put", "k", object()))
    with pytest.raises(TypeError, match="cannot snapshot a object"):
        sm.snapshot()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff garbage",
        cbor2.dumps([1, 0, ["d"]])[:-1],
        cbor2.dumps([2, 0, ["d"]]),
        cbor2.dumps([1, -1, ["d"]]),
        cbor2.dumps([1, 0, ["l"]]),
        cbor2.dumps([1, 0, ["d", ["k"]]]),
        cbor2.dumps([1, 0, ["d", ["k", ["q"]]]]),
        cbor2.dumps({"version": 1}),
    ],
)
def test_restore_of_something_else_raises_and_keeps_the_state(data: bytes) -> None:
    sm = machine(("put", "k", "v"))
    with pytest.raises(ValueError, match="not a KvStateMachine snapshot"):
        sm.restore(data, AT)
    assert sm.data == {"k": "v"} and sm.applied == 1
