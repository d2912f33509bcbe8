"""The KV state machine: apply semantics, results, non-normal entries skipped."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from raftcore.adapters.kv.state_machine import (
    SNAPSHOT_VERSION,
    KVStateMachine,
    Rejected,
    check_command,
    delete,
    forget_node_address,
    put,
    set_node_address,
)
from raftcore.entries import Entry, blank, membership_entry, normal
from raftcore.ids import ZERO_LOG_ID, LogId
from raftcore.membership import Membership


def lid(index: int, term: int = 1) -> LogId:
    return LogId(term, 1, index)


def test_put_returns_previous_value() -> None:
    sm = KVStateMachine()
    results = sm.apply(
        [
            normal(lid(1), put("a", "1")),
            normal(lid(2), put("a", "2")),
            normal(lid(3), put("b", "x")),
        ]
    )
    assert results == [(1, None), (2, "1"), (3, None)]
    assert sm.data == {"a": "2", "b": "x"}
    assert sm.get("a") == "2" and sm.get("zz") is None
    assert len(sm) == 2


def test_delete_returns_removed_value() -> None:
    sm = KVStateMachine()
    results = sm.apply(
        [normal(lid(1), put("a", "1")), normal(lid(2), delete("a")), normal(lid(3), delete("a"))]
    )
    assert results == [(1, None), (2, "1"), (3, None)]
    assert sm.data == {}


def test_blank_and_membership_entries_are_skipped_but_counted_as_applied() -> None:
    sm = KVStateMachine()
    entries = [
        blank(lid(1)),
        membership_entry(lid(2), Membership.of({1: "a:1", 2: "b:2"})),
        normal(lid(3), put("k", "v")),
        blank(lid(4, term=2)),
    ]
    assert sm.apply(entries) == [(3, None)]
    assert sm.data == {"k": "v"}
    assert sm.last_applied == lid(4, term=2)


def test_commands_decoded_as_tuples_work_too() -> None:
    sm = KVStateMachine()
    assert sm.apply([normal(lid(1), ("put", "k", "v"))]) == [(1, None)]
    assert sm.data == {"k": "v"}


def test_malformed_commands_are_deterministic_noops() -> None:
    bad = [None, [], ["put", "k"], ["put", "k", 1], ["frobnicate", "k"], b"raw", ["delete", 3]]
    sm = KVStateMachine()
    entries = [normal(lid(i + 1), c) for i, c in enumerate(bad)]
    results = sm.apply(entries)
    assert [i for i, _ in results] == list(range(1, len(bad) + 1))
    assert all(isinstance(r, Rejected) for _, r in results)
    assert sm.data == {} and sm.rejected == len(bad)
    # Two replicas applying the same log agree on every result.
    assert KVStateMachine().apply(entries) == results


def test_check_command() -> None:
    assert check_command(put("k", "v")) is None
    assert check_command(delete("k")) is None
    assert check_command(["put", "k", "v", "extra"]) == "put takes a key and a value"
    assert check_command(["delete"]) == "delete takes a key"
    assert check_command("put") == "a command is a non-empty list"
    assert "unknown operation" in str(check_command(["get", "k"]))


def test_applied_is_zero_until_something_is_applied_then_the_last_entry() -> None:
    sm = KVStateMachine()
    assert sm.applied() == ZERO_LOG_ID  # a fresh map: the engine re-applies the log
    sm.apply([normal(lid(1), put("k", "v")), blank(lid(2, term=2))])
    assert sm.applied() == lid(2, term=2)
    assert KVStateMachine.blocking is False


def test_replaying_the_log_rebuilds_the_same_map() -> None:
    log = [normal(lid(i), put(f"k{i % 7}", str(i))) for i in range(1, 50)]
    log += [normal(lid(50), delete("k3"))]
    a, b = KVStateMachine(), KVStateMachine()
    a.apply(log)
    for e in log:  # one at a time, as after a restart with small apply batches
        b.apply([e])
    assert a.data == b.data


def test_the_address_book_is_kept_apart_from_the_map() -> None:
    sm = KVStateMachine()
    results = sm.apply(
        [
            normal(lid(1), set_node_address(4, "10.0.0.4:7001", "10.0.0.4:8001")),
            normal(lid(2), put("k", "v")),
            normal(lid(3), set_node_address(4, "10.0.0.4:7001", "10.0.0.4:9001")),
            normal(lid(4), forget_node_address(4)),
            normal(lid(5), forget_node_address(4)),
            normal(lid(6), set_node_address(5, "e:1", "e:2")),
        ]
    )
    assert results == [
        (1, None),
        (2, None),
        (3, ["10.0.0.4:7001", "10.0.0.4:8001"]),
        (4, ["10.0.0.4:7001", "10.0.0.4:9001"]),
        (5, None),
        (6, None),
    ]
    assert sm.data == {"k": "v"} and len(sm) == 1
    assert sm.address(4) is None and sm.address(5) == ("e:1", "e:2")


def test_malformed_address_book_commands_are_rejected() -> None:
    assert check_command(set_node_address(4, "a:1", "a:2")) is None
    assert check_command(forget_node_address(4)) is None
    for bad in (
        ["node", 4, "a:1"],
        ["node", 0, "a:1", "a:2"],
        ["node", True, "a:1", "a:2"],
        ["node", "4", "a:1", "a:2"],
        ["node", 4, "a:1", 2],
        ["forget"],
        ["forget", -1],
    ):
        assert check_command(bad) is not None, bad
    sm = KVStateMachine()
    [(_, result)] = sm.apply([normal(lid(1), ["node", 4, "a:1", None])])
    assert isinstance(result, Rejected) and sm.addresses == {}


# -- snapshots ---------------------------------------------------------------------------


def busy_log() -> list[Entry]:
    """Puts, deletes, address-book changes, a rejected command, a blank, a membership."""
    return [
        blank(lid(1)),
        normal(lid(2), put("a", "1")),
        normal(lid(3), put("b", "2")),
        normal(lid(4), set_node_address(4, "10.0.0.4:7001", "10.0.0.4:8001")),
        normal(lid(5), ["frobnicate"]),
        normal(lid(6), delete("a")),
        normal(lid(7), put("ключ", "значение")),
        membership_entry(lid(8), Membership.of({1: "a:1", 4: "10.0.0.4:7001"})),
        normal(lid(9, term=2), set_node_address(5, "e:1", "e:2")),
        normal(lid(10, term=2), forget_node_address(4)),
        normal(lid(11, term=2), put("c", "")),
    ]


def state(sm: KVStateMachine) -> tuple[Any, ...]:
    return (sm.data, sm.addresses, sm.rejected, sm.last_applied, sm.applied())


def test_snapshot_round_trip_restores_everything_apply_maintains() -> None:
    a = KVStateMachine()
    a.apply(busy_log())
    data = a.snapshot()
    assert isinstance(data, bytes)
    b = KVStateMachine()
    b.restore(data, lid(11, term=2))
    assert state(b) == state(a)
    assert b.data == {"b": "2", "ключ": "значение", "c": ""}
    assert b.addresses == {5: ("e:1", "e:2")} and b.address(5) == ("e:1", "e:2")
    assert b.rejected == 1 and b.applied() == lid(11, term=2)
    assert b.snapshot() == data


def test_an_empty_state_machine_round_trips() -> None:
    b = KVStateMachine()
    b.restore(KVStateMachine().snapshot(), ZERO_LOG_ID)
    assert state(b) == state(KVStateMachine())


def test_identical_states_give_identical_bytes() -> None:
    log = busy_log()
    a, b = KVStateMachine(), KVStateMachine()
    a.apply(log)
    for e in log:
        b.apply([e])
    assert a.snapshot() == b.snapshot()
    # Insertion order does not matter: the encoding is canonical.
    c, d = KVStateMachine(), KVStateMachine()
    c.apply([normal(lid(1), put("x", "1")), normal(lid(2), put("y", "2"))])
    d.apply([normal(lid(1), put("y", "2")), normal(lid(2), put("x", "1"))])
    assert c.data == d.data and c.snapshot() == d.snapshot()
    # A different state gives different bytes.
    d.apply([normal(lid(3), put("x", "3"))])
    assert c.snapshot() != d.snapshot()


def test_the_snapshot_is_a_versioned_cbor_record() -> None:
    sm = KVStateMachine()
    sm.apply(busy_log())
    record = cbor2.loads(sm.snapshot())
    assert record == {
        "version": SNAPSHOT_VERSION,
        "map": {"b": "2", "ключ": "значение", "c": ""},
        "addresses": {5: ["e:1", "e:2"]},
        "rejected": 1,
        "last_applied": [2, 1, 11],
    }


def test_restore_replaces_a_non_empty_state_entirely() -> None:
    source = KVStateMachine()
    source.apply([normal(lid(1), put("only", "this"))])
    target = KVStateMachine()
    target.apply(
        [
            normal(lid(1), put("stale", "x")),
            normal(lid(2), put("only", "old")),
            normal(lid(3), set_node_address(9, "n:1", "n:2")),
            normal(lid(4), None),
        ]
    )
    target.restore(source.snapshot(), lid(1))
    assert target.data == {"only": "this"} and target.get("stale") is None
    assert target.addresses == {} and target.address(9) is None
    assert target.rejected == 0 and target.applied() == lid(1)
    assert len(target) == 1


def test_applying_after_a_restore_continues_where_the_snapshot_ends() -> None:
    log = busy_log()
    more = [
        normal(lid(12, term=2), put("b", "20")),
        normal(lid(13, term=3), forget_node_address(5)),
        normal(lid(14, term=3), ["put", "k"]),
        blank(lid(15, term=3)),
    ]
    whole = KVStateMachine()
    whole.apply(log)
    whole_results = whole.apply(more)
    restored = KVStateMachine()
    restored.restore(_snapshot_of(log), lid(11, term=2))
    assert restored.apply(more) == whole_results
    assert whole_results[:2] == [(12, "2"), (13, ["e:1", "e:2"])]
    assert state(restored) == state(whole)
    assert restored.applied() == lid(15, term=3)
    assert restored.snapshot() == whole.snapshot()


def _snapshot_of(log: list[Entry]) -> bytes:
    sm = KVStateMachine()
    sm.apply(log)
    return sm.snapshot()


def _record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "version": SNAPSHOT_VERSION,
        "map": {"k": "v"},
        "addresses": {4: ["a:1", "a:2"]},
        "rejected": 0,
        "last_applied": [1, 1, 3],
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not _DROP}


_DROP = object()


def _cbor(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


GOOD = _cbor(_record())

MALFORMED: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("garbage", b"\xff\x00 definitely not cbor"),
    ("truncated", GOOD[:-1]),
    ("half", GOOD[: len(GOOD) // 2]),
    ("trailing bytes", GOOD + b"\x00"),
    ("not a map", _cbor([1, {}, {}, 0, [1, 1, 3]])),
    ("wrong version", _cbor(_record(version=2))),
    ("no version", _cbor(_record(version=_DROP))),
    ("string version", _cbor(_record(version="1"))),
    ("missing map", _cbor(_record(map=_DROP))),
    ("extra field", _cbor({**_record(), "extra": 1})),
    ("map is a list", _cbor(_record(map=[["k", "v"]]))),
    ("int key", _cbor(_record(map={1: "v"}))),
    ("bytes value", _cbor(_record(map={"k": b"v"}))),
    ("null value", _cbor(_record(map={"k": None}))),
    ("address book is a list", _cbor(_record(addresses=[[4, "a:1", "a:2"]]))),
    ("node id is a string", _cbor(_record(addresses={"4": ["a:1", "a:2"]}))),
    ("node id zero", _cbor(_record(addresses={0: ["a:1", "a:2"]}))),
    ("one address", _cbor(_record(addresses={4: ["a:1"]}))),
    ("address not a string", _cbor(_record(addresses={4: ["a:1", 2]}))),
    ("rejected negative", _cbor(_record(rejected=-1))),
    ("rejected bool", _cbor(_record(rejected=True))),
    ("rejected float", _cbor(_record(rejected=1.0))),
    ("last applied short", _cbor(_record(last_applied=[1, 3]))),
    ("last applied strings", _cbor(_record(last_applied=["1", "1", "3"]))),
    ("last applied negative", _cbor(_record(last_applied=[1, -1, 3]))),
    ("last applied a map", _cbor(_record(last_applied={"term": 1}))),
]


def test_the_good_record_restores() -> None:
    sm = KVStateMachine()
    sm.restore(GOOD, lid(3))
    assert sm.data == {"k": "v"} and sm.address(4) == ("a:1", "a:2")
    assert sm.snapshot() == GOOD


@pytest.mark.parametrize(("name", "data"), MALFORMED, ids=[n for n, _ in MALFORMED])
def test_malformed_snapshots_raise_and_keep_the_state(name: str, data: bytes) -> None:
    sm = KVStateMachine()
    sm.apply(busy_log())
    before = state(sm)
    with pytest.raises(ValueError, match=r"^malformed KV snapshot: ") as e:
        sm.restore(data, lid(3))
    assert "\n" not in str(e.value)
    assert state(sm) == before


def test_a_snapshot_restored_at_another_entry_is_refused() -> None:
    sm = KVStateMachine()
    sm.apply([normal(lid(1), put("x", "y"))])
    before = state(sm)
    with pytest.raises(ValueError, match="covers entries up to"):
        sm.restore(GOOD, lid(4))
    with pytest.raises(ValueError, match="covers entries up to"):
        sm.restore(GOOD, lid(3, term=2))
    assert state(sm) == before
