"""Contract details: one node-id check, typed membership errors, joint quorums.

- Every local API validates node ids with ``raftcore.ids.check_node_id`` and
  raises ``ConfigError`` with the same words.
- An invalid membership change raises ``InvalidMembershipChange`` (also a
  ``ValueError``), and the engine answers a ``ChangeMembership`` with it.
- In a joint config ``[{1,2,3},{1,4,5}]``, grants or acknowledgements from
  the new config alone neither elect nor commit: both configs must agree.
"""

from __future__ import annotations

import pytest
from helpers import (
    FixedRng,
    ack,
    config,
    flush,
    grant,
    make_leader,
    recv,
    requests_to,
)

from raftcore import (
    ChangeMembership,
    ConfigError,
    Engine,
    Entry,
    InvalidMembershipChange,
    LogId,
    Membership,
    RecoveredState,
    Respond,
    Role,
    TriggerElection,
    TriggerHeartbeat,
    Wakeup,
)
from raftcore.adapters.transport.peers import (
    TransportCore,
)
from raftcore.entries import EntryKind, membership_entry
from raftcore.membership import AddVoters, RemoveNodes, next_membership
from raftcore.quorum import Majority

JOINT = Membership(
    (frozenset({1, 2, 3}), frozenset({1, 4, 5})), {n: f"addr-{n}" for n in range(1, 6)}
)
JOINT_ID = LogId(0, 0, 1)


@pytest.mark.parametrize("bad", [0, -1, True, "2", 1.0])
def test_every_local_api_refuses_a_bad_node_id_with_the_same_error(bad: object) -> None:
    words = f"node id {bad!r} is not a positive int"
    with pytest.raises(ConfigError, match=words):
        Engine(bad, config(), RecoveredState(), FixedRng())
    with pytest.raises(ConfigError, match=words):
        Majority([bad])
    with pytest.raises(ConfigError, match=words):
        Membership((frozenset([bad]),), {bad: "b"})  # type: ignore[list-item, dict-item]
    with pytest.raises(ConfigError, match=words):
        TransportCore(1, "c", {bad: "127.0.0.1:1"})  # type: ignore[dict-item]


def test_an_invalid_change_is_a_typed_error_and_a_value_error() -> None:
    m = Membership.of({1: "a", 2: "b", 3: "c"})
    with pytest.raises(InvalidMembershipChange) as exc:
        next_membership(m, RemoveNodes([2]), retain=False)
    assert isinstance(exc.value, ValueError)
    assert exc.value.reason == "still voters (remove them as voters first): [2]"
    with pytest.raises(ConfigError, match="node id 0 is not a positive int"):
        AddVoters({0: "x"})  # a change is checked as it is made
    with pytest.raises(ConfigError, match="node id -3 is not a positive int"):
        RemoveNodes([-3])


def test_the_engine_answers_an_invalid_change_with_the_typed_error() -> None:
    e = make_leader()
    assert e.handle(ChangeMembership("c", RemoveNodes([2])), 0.5) == [
        Respond(
            "c", None, InvalidMembershipChange("still voters (remove them as voters first): [2]")
        )
    ]


def joint_engine() -> Engine:
    entry: Entry = membership_entry(JOINT_ID, JOINT)
    assert entry.kind is EntryKind.MEMBERSHIP
    return Engine(1, config(), RecoveredState(entries=(entry,)), FixedRng())


def test_grants_from_the_new_config_alone_do_not_elect() -> None:
    e = joint_engine()
    e.handle(TriggerElection(), 0.0)
    flush(e)
    vote = e.vote
    for n in (4, 5):  # {1, 4, 5}: all of the new config, one of the old
        recv(e, n, grant(vote, JOINT_ID))
        assert e.role is Role.CANDIDATE
    recv(e, 2, grant(vote, JOINT_ID))  # now {1, 2} of the old config too
    assert e.role is Role.LEADER


def test_acknowledgements_from_the_new_config_alone_do_not_commit() -> None:
    e = joint_engine()
    e.handle(TriggerElection(), 0.0)
    flush(e)
    out = []
    for n in (2, 4):  # {1, 2} of the old config, {1, 4} of the new: elected
        out += recv(e, n, grant(e.vote, JOINT_ID))
    assert e.role is Role.LEADER
    out += flush(e)
    blank = e.last_log_id
    for n in (4, 5):
        (req,) = requests_to(out, n)
        recv(e, n, ack(req))
    assert e.committed.index < blank.index, "the old config has not acknowledged"
    (req,) = requests_to(out, 2)
    recv(e, 2, ack(req))
    assert e.committed == blank


def test_a_handler_that_raises_leaves_no_output_for_the_next_call() -> None:
    e = make_leader()

    def emits_then_raises(ev: object, now: float) -> None:
        e.emit(Respond("half-built", None))
        raise RuntimeError("a bug in a handler")

    e._dispatch[TriggerHeartbeat] = emits_then_raises
    with pytest.raises(RuntimeError):
        e.handle(TriggerHeartbeat(), 0.0)
    out = e.handle(Wakeup(), 0.0)  # before the heartbeat deadline: nothing to do
    assert out == []
