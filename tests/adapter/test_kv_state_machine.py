"""The KV state machine: apply semantics, results, non-normal entries skipped."""

from __future__ import annotations

from raftcore.adapters.kv.state_machine import (
    KVStateMachine,
    Rejected,
    check_command,
    delete,
    forget_node_address,
    put,
    set_node_address,
)
from raftcore.entries import blank, membership_entry, normal
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


def test_applied_is_zero_the_map_is_rebuilt_from_the_log() -> None:
    sm = KVStateMachine()
    sm.apply([normal(lid(1), put("k", "v"))])
    assert sm.applied() == ZERO_LOG_ID
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
