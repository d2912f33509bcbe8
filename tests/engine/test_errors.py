"""Bad input: misuse by the caller (local) and impossible messages from peers
(remote). A local error names what was wrong; a remote error changes nothing;
a storage failure stops the node for good."""

from __future__ import annotations

import math
from typing import Any

import pytest
from helpers import (
    MEMBERSHIP_ID,
    FixedRng,
    config,
    engine,
    ent,
    flush,
    make_leader,
    membership,
    mentry,
    recv,
    vote_request,
)

from raftcore import (
    ZERO_LOG_ID,
    AppendRequest,
    AppendResponse,
    Applied,
    ChangeMembership,
    ClientWrite,
    ClientWriteBatch,
    Config,
    ConfigError,
    Engine,
    Entry,
    Initialize,
    IoFlushed,
    LeadershipLost,
    LocalProtocolError,
    LogId,
    Membership,
    MessageReceived,
    NodeStopped,
    NotInitialized,
    NotLeader,
    RecoveredState,
    RemoteProtocolError,
    Respond,
    Role,
    Send,
    Stopped,
    StorageFailed,
    TriggerElection,
    TriggerHeartbeat,
    Vote,
    VoteRequest,
    Wakeup,
)
from raftcore.membership import AddLearners

# -- Config -------------------------------------------------------------------

NAN = math.nan


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("election_timeout_min", 0),
        ("election_timeout_min", -1.0),
        ("election_timeout_min", "1"),
        ("election_timeout_min", True),
        ("election_timeout_min", NAN),
        ("election_timeout_max", 0.15),  # not above the minimum
        ("election_timeout_max", 0.1),
        ("election_timeout_max", NAN),
        ("election_timeout_max", math.inf),
        ("heartbeat_interval", 0),
        ("heartbeat_interval", 0.15),  # not below the election timeout
        ("heartbeat_interval", NAN),
        ("leader_lease", 0),
        ("leader_lease", 0.2),  # longer than election_timeout_min
        ("leader_lease", NAN),
        ("leader_id_mode", "advanced"),
        ("pre_vote", 1),
        ("check_quorum", "yes"),
        ("max_entries_per_append", 0),
        ("max_entries_per_append", 1.5),
        ("max_entries_per_append", True),
        ("max_bytes_per_append", 0),
        ("max_inflight_appends", -3),
        ("max_inflight_bytes", 0),
        ("replication_timeout", 0),
        ("replication_timeout", NAN),
        ("greater_log_backoff", -1),
        ("greater_log_backoff", NAN),
    ],
)
def test_bad_config_field_is_named(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as exc:
        Config(**{field: value})
    assert exc.value.field == field
    assert field in str(exc.value)
    assert isinstance(exc.value, LocalProtocolError)


def test_default_config_is_valid() -> None:
    c = Config()
    assert c.lease == c.election_timeout_min
    assert c.append_timeout == c.election_timeout_min
    assert c.backoff == c.election_timeout_max


@pytest.mark.parametrize("node_id", [0, -1, True, "1", 1.0])
def test_bad_node_id(node_id: Any) -> None:
    with pytest.raises(ConfigError) as exc:
        Engine(node_id, config(), RecoveredState(), FixedRng())
    assert exc.value.field == "node_id"


def test_bad_config_object_and_rng() -> None:
    with pytest.raises(ConfigError) as exc:
        Engine(1, {"election_timeout_min": 1}, RecoveredState(), FixedRng())
    assert exc.value.field == "config"
    with pytest.raises(ConfigError) as exc:
        Engine(1, config(), RecoveredState(), None)
    assert exc.value.field == "rng"
    with pytest.raises(ConfigError) as exc:
        Engine(1, config(), RecoveredState(), object())  # type: ignore[arg-type]
    assert exc.value.field == "rng"


@pytest.mark.parametrize(
    ("configs", "nodes"),
    [
        ((), {1: None}),
        ((frozenset(),), {1: None}),
        ((frozenset({0}),), {0: None}),
        ((frozenset({1, 2}),), {1: None}),  # voter 2 has no node info
    ],
)
def test_bad_membership(configs: Any, nodes: Any) -> None:
    with pytest.raises(ConfigError) as exc:
        Membership(configs, nodes)
    assert exc.value.field == "membership"


# -- misuse of the event API ----------------------------------------------------


def test_time_going_backwards_is_refused() -> None:
    e = engine()
    e.handle(Wakeup(), 5.0)
    before = e.metrics()
    with pytest.raises(LocalProtocolError, match="backwards"):
        e.handle(Wakeup(), 4.0)
    assert e.metrics() == before
    # The same instant again is fine.
    assert e.handle(Wakeup(), 5.0) == []


def test_time_before_construction_is_refused() -> None:
    e = engine(now=10.0)
    with pytest.raises(LocalProtocolError):
        e.handle(Wakeup(), 9.0)


def test_nan_time_is_refused() -> None:
    e = engine(now=1.0)
    with pytest.raises(LocalProtocolError):
        e.handle(Wakeup(), NAN)
    # The engine's clock was not poisoned: going backwards is still detected.
    with pytest.raises(LocalProtocolError):
        e.handle(Wakeup(), 0.5)


def test_initialize_twice_is_refused() -> None:
    e = Engine(1, config(), RecoveredState(), FixedRng())
    e.handle(Initialize(membership((1,))), 0.0)
    with pytest.raises(LocalProtocolError):
        e.handle(Initialize(membership((1,))), 0.0)


def test_initialize_on_a_node_with_a_log_or_vote_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        engine().handle(Initialize(membership((1, 2, 3))), 0.0)
    e = Engine(1, config(), RecoveredState(vote=Vote(1, 2, False)), FixedRng())
    before = e.metrics()
    with pytest.raises(LocalProtocolError):
        e.handle(Initialize(membership((1, 2, 3))), 0.0)
    assert e.metrics() == before


def test_unknown_event_or_message_is_refused() -> None:
    e = engine()
    with pytest.raises(LocalProtocolError):
        e.handle("wake up", 0.0)
    with pytest.raises(LocalProtocolError):
        e.handle(MessageReceived(2, "hello"), 0.0)  # type: ignore[arg-type]


def test_flush_of_an_io_never_issued_is_refused() -> None:
    e = engine()
    e.handle(TriggerElection(), 0.0)
    with pytest.raises(LocalProtocolError):
        e.handle(IoFlushed(2), 0.0)
    # A repeated or old flush is harmless.
    flush(e)
    assert e.handle(IoFlushed(1), 0.0) == []
    assert e.handle(IoFlushed(0), 0.0) == []


def test_applied_beyond_what_was_handed_out_is_refused() -> None:
    e = make_leader()
    with pytest.raises(LocalProtocolError):
        e.handle(Applied(LogId(1, 1, 3)), 0.0)


# -- client outcomes ------------------------------------------------------------


def test_client_errors_compare_by_value() -> None:
    """Commands are values (DESIGN 2): a ``Respond`` carrying an error must
    compare equal to an identical one, so tests and adapters can match them."""
    assert NotLeader(1, "a") == NotLeader(1, "a")
    assert NotLeader(1, "a") != NotLeader(2, "a")
    assert hash(NotLeader(1, "a")) == hash(NotLeader(1, "a"))
    assert LeadershipLost(None) == LeadershipLost(None)
    assert NodeStopped("disk") == NodeStopped("disk")
    assert NotInitialized() == NotInitialized()
    assert Respond("r", None, NotLeader(2, None)) == Respond("r", None, NotLeader(2, None))


def test_write_to_a_follower_names_the_leader() -> None:
    e = engine(2, vote=Vote(1, 3, True))
    (r,) = e.handle(ClientWrite("w", "x"), 0.0)
    assert isinstance(r, Respond) and isinstance(r.error, NotLeader)
    assert (r.request_id, r.result, r.error.leader_id, r.error.leader_info) == (
        "w",
        None,
        3,
        "addr-3",
    )


def test_write_without_known_leader() -> None:
    e = engine(2)
    assert e.handle(ClientWriteBatch((("a", 1), ("b", 2))), 0.0) == [
        Respond("a", None, NotLeader(None, None)),
        Respond("b", None, NotLeader(None, None)),
    ]


def test_requests_to_a_node_without_membership_are_not_initialized() -> None:
    """A node that never joined a cluster says so, rather than "no leader known"."""
    e = Engine(1, config(), RecoveredState(), FixedRng())
    assert e.handle(ClientWriteBatch((("a", 1), ("b", 2))), 0.0) == [
        Respond("a", None, NotInitialized()),
        Respond("b", None, NotInitialized()),
    ]
    change = ChangeMembership("c", AddLearners({2: "addr-2"}))
    assert e.handle(change, 0.0) == [Respond("c", None, NotInitialized())]


# -- malformed messages from peers ----------------------------------------------

FL = Vote(2, 3, True)  # the follower's leader
FOLLOWER_LOG = [ent(1, 1, 2, "a"), ent(1, 1, 3, "b")]


def _follower() -> Engine:
    return engine(
        2,
        entries=FOLLOWER_LOG,
        vote=FL,
        committed=LogId(1, 1, 2),
        applied=LogId(1, 1, 2),
    )


def _areq(vote: Vote, prev: LogId, entries: list[Entry], commit: int = 0) -> AppendRequest:
    return AppendRequest(vote, prev, tuple(entries), commit, 1, 0.0)


BAD_MESSAGES: list[tuple[str, int, Any]] = [
    ("vote request: candidate is not the sender", 3, vote_request(5, 4)),
    ("vote request: committed vote", 3, VoteRequest(Vote(5, 3, True), MEMBERSHIP_ID)),
    ("vote request: term 0", 3, VoteRequest(Vote(0, 3, False), MEMBERSHIP_ID)),
    ("append: uncommitted vote", 3, _areq(Vote(3, 3, False), MEMBERSHIP_ID, [])),
    ("append: leader is not the sender", 1, _areq(Vote(3, 3, True), MEMBERSHIP_ID, [])),
    ("append: negative prev", 3, _areq(Vote(3, 3, True), LogId(1, 1, -1), [])),
    (
        "append: negative commit",
        3,
        _areq(Vote(3, 3, True), MEMBERSHIP_ID, [], commit=-1),
    ),
    (
        "append: entries do not follow prev",
        3,
        _areq(Vote(3, 3, True), LogId(1, 1, 3), [ent(3, 3, 5)]),
    ),
    (
        "append: gap between entries",
        3,
        _areq(Vote(3, 3, True), LogId(1, 1, 3), [ent(3, 3, 4), ent(3, 3, 6)]),
    ),
    (
        "append: entry from a future leader",
        3,
        _areq(Vote(3, 3, True), LogId(1, 1, 3), [ent(4, 3, 4)]),
    ),
    (
        "append: entries going back in leader order",
        3,
        _areq(Vote(3, 3, True), LogId(1, 1, 3), [ent(3, 3, 4), ent(2, 3, 5)]),
    ),
    (
        "append: entry older than prev",
        3,
        _areq(Vote(3, 3, True), LogId(2, 3, 3), [ent(1, 1, 4)]),
    ),
    (
        "append: prev newer than its vote",
        3,
        _areq(Vote(3, 3, True), LogId(4, 3, 3), []),
    ),
    (
        "append: prev contradicts a committed entry",
        3,
        _areq(Vote(3, 3, True), LogId(3, 3, 2), []),
    ),
    (
        "append: entry would overwrite a committed entry",
        3,
        _areq(Vote(3, 3, True), MEMBERSHIP_ID, [ent(3, 3, 2)]),
    ),
]


@pytest.mark.parametrize(("what", "sender", "msg"), BAD_MESSAGES, ids=[b[0] for b in BAD_MESSAGES])
def test_malformed_message_raises_and_changes_nothing(what: str, sender: int, msg: Any) -> None:
    e = _follower()
    before = e.metrics()
    deadline = e.next_deadline
    with pytest.raises(RemoteProtocolError):
        recv(e, sender, msg, 0.5)
    assert e.metrics() == before, what
    assert e.next_deadline == deadline
    # Nothing half-done leaks into the next call.
    assert e.handle(Wakeup(), 0.5) == []
    assert e.handle(IoFlushed(0), 0.5) == []


def _leader_for_bad_responses() -> Engine:
    e = make_leader(entries=[ent(1, 2, 2)], vote=Vote(1, 2, True))
    assert e.last_log_id == LogId(2, 1, 3)
    return e


@pytest.mark.parametrize(
    "matching",
    [
        LogId(2, 1, 4),  # beyond the leader's log
        LogId(2, 2, 2),  # not the entry the leader has at that index
        LogId(1, 1, 3),
    ],
)
def test_append_response_claiming_unsent_entries_raises(matching: LogId) -> None:
    e = _leader_for_bad_responses()
    before = e.metrics()
    resp = AppendResponse(e.vote, True, matching, 0, matching, 9, 0.0)
    with pytest.raises(RemoteProtocolError):
        recv(e, 2, resp, 0.5)
    assert e.metrics() == before
    assert e.handle(TriggerHeartbeat(), 0.5) != []  # still a working leader


def test_stale_messages_are_normal() -> None:
    """An old-term message is not an error: it is answered or ignored."""
    e = _follower()
    out = recv(e, 1, _areq(Vote(1, 1, True), MEMBERSHIP_ID, []), 0.5)
    assert out == [
        Send(1, AppendResponse(FL, False, ZERO_LOG_ID, 0, LogId(1, 1, 3), 1, 0.0)),
    ]


# -- storage failure -----------------------------------------------------------


def test_storage_failure_stops_the_leader() -> None:
    e = make_leader()
    e.handle(ClientWriteBatch((("a", 1), ("b", 2))), 0.5)
    assert e.handle(StorageFailed("disk full"), 0.5) == [
        Respond("a", None, NodeStopped("disk full")),
        Respond("b", None, NodeStopped("disk full")),
        Stopped("disk full"),
    ]


def test_stopped_engine_does_nothing() -> None:
    e = make_leader()
    e.handle(ClientWrite("a", 1), 0.5)
    out = e.handle(StorageFailed("io error"), 0.5)
    assert out[-1] == Stopped("io error")
    assert e.metrics().stopped == "io error"
    assert e.next_deadline is None
    assert e.handle(ClientWrite("b", 2), 1.0) == []
    assert e.handle(Wakeup(), 100.0) == []
    assert e.handle(IoFlushed(4), 100.0) == []
    assert e.handle(TriggerElection(), 100.0) == []
    assert e.handle(StorageFailed("again"), 100.0) == []


def test_storage_failure_withholds_votes_waiting_for_the_disk() -> None:
    """A vote grant waiting for its SaveVote must never be sent once the disk failed."""
    e = engine(2)
    recv(e, 1, vote_request(1, 1), 0.0)
    assert e.handle(StorageFailed("fsync"), 0.0) == [Stopped("fsync")]
    assert e.handle(IoFlushed(1), 0.0) == []
    assert e.role is not Role.LEADER


def test_follower_storage_failure_stops_without_answers() -> None:
    e = engine(2)
    assert e.handle(StorageFailed("x"), 0.0) == [Stopped("x")]
    assert e.metrics().stopped == "x"


def test_membership_entry_helper() -> None:
    # The fixtures' membership entry is what the engine treats as membership.
    e = engine(1, (1, 2, 3))
    assert e.metrics().membership == mentry().membership
