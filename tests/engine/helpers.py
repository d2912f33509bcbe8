"""Shared fixtures for the engine unit tests.

Times are chosen as binary fractions (1.0, 0.25, ...) so that deadline
arithmetic is exact and tests can compare deadlines with ``==``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from raftcore import (
    INITIAL_VOTE,
    ZERO_LOG_ID,
    AppendRequest,
    AppendResponse,
    Applied,
    Command,
    Config,
    Engine,
    Entry,
    IoFlushed,
    LeaderIdMode,
    LogId,
    Membership,
    MessageReceived,
    RecoveredState,
    Role,
    Send,
    TriggerElection,
    Vote,
    VoteRequest,
    VoteResponse,
)
from raftcore.entries import blank, membership_entry, normal

#: election timeout in [1, 2), heartbeat every 0.25, lease and replication timeout 1.0
ELECTION_MIN = 1.0
ELECTION_MAX = 2.0
HEARTBEAT = 0.25
LEASE = 1.0

#: The log id of the membership entry every test log starts with.
MEMBERSHIP_ID = LogId(0, 0, 1)


class FixedRng:
    """``uniform(a, b)`` always returns ``a``: election deadlines are exact."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return a


def config(**overrides: Any) -> Config:
    kw: dict[str, Any] = {
        "election_timeout_min": ELECTION_MIN,
        "election_timeout_max": ELECTION_MAX,
        "heartbeat_interval": HEARTBEAT,
    }
    kw.update(overrides)
    return Config(**kw)


def membership(voters: Iterable[int], learners: Iterable[int] = ()) -> Membership:
    vs = frozenset(voters)
    nodes = {n: f"addr-{n}" for n in sorted(vs | frozenset(learners))}
    return Membership((vs,), nodes)


def mentry(voters: Iterable[int] = (1, 2, 3), learners: Iterable[int] = ()) -> Entry:
    return membership_entry(MEMBERSHIP_ID, membership(voters, learners))


def ent(term: int, node: int, index: int, data: Any = None) -> Entry:
    """A normal entry (blank when ``data`` is None)."""
    lid = LogId(term, node, index)
    return blank(lid) if data is None else normal(lid, data)


def engine(
    node_id: int = 1,
    voters: Iterable[int] = (1, 2, 3),
    *,
    learners: Iterable[int] = (),
    entries: Sequence[Entry] = (),
    vote: Vote = INITIAL_VOTE,
    committed: LogId = ZERO_LOG_ID,
    applied: LogId = ZERO_LOG_ID,
    now: float = 0.0,
    mode: LeaderIdMode = LeaderIdMode.ADVANCED,
    cfg: Config | None = None,
    **config_overrides: Any,
) -> Engine:
    """An engine whose log starts with a membership entry at index 1, then ``entries``."""
    c = cfg if cfg is not None else config(leader_id_mode=mode, **config_overrides)
    log = (mentry(voters, learners), *entries)
    rec = RecoveredState(vote=vote, entries=log, committed=committed, applied=applied)
    return Engine(node_id, c, rec, FixedRng(), now=now)


def last_io(e: Engine) -> int:
    """The io id of the last storage command the engine issued."""
    return e.io.issued


def flush(e: Engine, now: float = 0.0) -> list[Command]:
    """Report every issued storage command durable."""
    return e.handle(IoFlushed(last_io(e)), now)


def recv(e: Engine, sender: int, msg: Any, now: float = 0.0) -> list[Command]:
    return e.handle(MessageReceived(sender, msg), now)


def sends(cmds: Iterable[Command]) -> list[Send]:
    return [c for c in cmds if isinstance(c, Send)]


def grant(voter_vote: Vote, last_log_id: LogId = MEMBERSHIP_ID) -> VoteResponse:
    """A voter's grant of ``voter_vote`` (which it now holds)."""
    return VoteResponse(voter_vote, True, voter_vote, last_log_id)


def ack(req: AppendRequest, vote: Vote | None = None) -> AppendResponse:
    """A follower's successful answer to ``req``, for a log that matches it."""
    matching = req.entries[-1].log_id if req.entries else req.prev_log_id
    return AppendResponse(
        vote=req.vote if vote is None else vote,
        success=True,
        matching=matching,
        conflict_hint=0,
        last_log_id=matching,
        seq=req.seq,
        sent_at=req.sent_at,
    )


def requests_to(cmds: Iterable[Command], to: int) -> list[AppendRequest]:
    return [
        c.message
        for c in cmds
        if isinstance(c, Send) and c.to == to and isinstance(c.message, AppendRequest)
    ]


def make_leader(
    node_id: int = 1,
    voters: Iterable[int] = (1, 2, 3),
    *,
    now: float = 0.0,
    commit_blank: bool = True,
    entries: Sequence[Entry] = (),
    vote: Vote = INITIAL_VOTE,
    **kw: Any,
) -> Engine:
    """An engine elected leader at ``now`` (term ``vote.term + 1``).

    The election is forced with ``TriggerElection`` (no pre-vote) and the
    other voters grant, in id order, until it wins. With ``commit_blank`` every
    follower then acknowledges the leader's blank entry, which commits and is
    applied, so the returned leader is idle: nothing in flight, every follower
    matching its log.
    """
    vs = tuple(sorted(voters))
    # Started a lease ago: a lease it honours for an earlier leader (its
    # recovered vote) has run out, so the forced election goes ahead.
    e = engine(node_id, vs, entries=entries, vote=vote, now=now - LEASE, **kw)
    e.handle(TriggerElection(), now)
    flush(e, now)
    my_vote = e.vote
    last = e.last_log_id
    out: list[Command] = []
    for n in vs:
        if n != node_id and e.role is not Role.LEADER:
            out = recv(e, n, grant(my_vote, last), now)
    assert e.role is Role.LEADER, e.metrics()
    out += flush(e, now)
    if commit_blank:
        pending = [(s.to, s.message) for s in sends(out) if isinstance(s.message, AppendRequest)]
        while pending:
            to, req = pending.pop(0)
            more = recv(e, to, ack(req), now)
            pending += [
                (s.to, s.message) for s in sends(more) if isinstance(s.message, AppendRequest)
            ]
        e.handle(Applied(e.committed), now)
        assert e.committed == e.last_log_id, e.metrics()
        assert all(m == e.last_log_id for m in e.metrics().replication.values())
    return e


def vote_request(
    term: int, node: int, last: LogId = MEMBERSHIP_ID, *, pre_vote: bool = False
) -> VoteRequest:
    return VoteRequest(Vote(term, node, False), last, pre_vote=pre_vote)
