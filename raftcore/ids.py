"""Identifiers: node ids, leader ids, votes and log ids.

Hot-path value types are ``NamedTuple`` s: they are created for every entry
and message, compare in C, and are immutable and printable. Node id ``0``
means "nobody"; real node ids are positive integers.
"""

from __future__ import annotations

import enum
import reprlib
from typing import NamedTuple

from raftcore._values import value
from raftcore.errors import ConfigError

NodeId = int
NO_NODE: NodeId = 0


def check_node_id(value: object, field: str, context: str = "") -> NodeId:
    """``value`` if it is a node id (a positive int, not a bool); else
    ``ConfigError(field, ...)``. The one check every local API uses."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(field, f"{context}node id {reprlib.repr(value)} is not a positive int")
    return value


class LeaderIdMode(enum.Enum):
    """How leader ids compare (see docs/vote.md).

    ``ADVANCED``: a leader id is ``(term, node_id)``, totally ordered; several
    candidates may be granted in one term and the greater one wins.
    ``STANDARD``: classic Raft, at most one leader per term; two different
    candidates of the same term are incomparable, so a voter grants only one.
    """

    ADVANCED = "advanced"
    STANDARD = "standard"


@value
class LogId(NamedTuple):
    """Identifies a log entry: the leader that proposed it and its index.

    Ordered as a tuple ``(term, node_id, index)``. In standard mode there is at
    most one leader per term, so the node id never breaks a tie there and the
    order equals Raft's ``(term, index)`` order.
    """

    term: int
    node_id: NodeId
    # Shadows tuple.index(): the field is what every Raft text calls it.
    index: int  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{self.term}-{self.node_id}-{self.index}"


#: The log id "before the first entry": every log starts after it.
ZERO_LOG_ID = LogId(0, NO_NODE, 0)


@value
class Vote(NamedTuple):
    """The vote a node has granted (or, as leader, holds).

    ``committed`` is true once the leader id has been granted by a quorum, i.e.
    the node accepted it as an established leader.
    """

    term: int
    node_id: NodeId
    committed: bool = False

    def __repr__(self) -> str:
        flag = "C" if self.committed else "U"
        return f"<T{self.term}-N{self.node_id}:{flag}>"

    @property
    def leader_id(self) -> tuple[int, NodeId]:
        return (self.term, self.node_id)


INITIAL_VOTE = Vote(0, NO_NODE, False)


def compare_leader(
    a_term: int, a_node: NodeId, b_term: int, b_node: NodeId, mode: LeaderIdMode
) -> int | None:
    """Compare two leader ids; ``None`` when they are incomparable."""
    if a_term != b_term:
        return 1 if a_term > b_term else -1
    if a_node == b_node:
        return 0
    if a_node == NO_NODE:
        return -1
    if b_node == NO_NODE:
        return 1
    if mode is LeaderIdMode.ADVANCED:
        return 1 if a_node > b_node else -1
    return None


def compare_votes(a: Vote, b: Vote, mode: LeaderIdMode) -> int | None:
    """Partial order of votes: by leader id, then committed over uncommitted.

    Two incomparable leader ids (standard mode, same term, different nodes)
    can never both be committed; a committed one is then the greater, which
    keeps a follower of an established leader from granting a rival.
    """
    if a == b:
        return 0
    c = compare_leader(a.term, a.node_id, b.term, b.node_id, mode)
    if c == 0:
        if a.committed == b.committed:
            return 0
        return 1 if a.committed else -1
    if c is None:
        if a.committed == b.committed:
            return None
        return 1 if a.committed else -1
    return c


def vote_ge(a: Vote, b: Vote, mode: LeaderIdMode) -> bool:
    """``a >= b`` in the vote order (false when incomparable)."""
    c = compare_votes(a, b, mode)
    return c is not None and c >= 0


def vote_gt(a: Vote, b: Vote, mode: LeaderIdMode) -> bool:
    """``a > b`` in the vote order (false when incomparable)."""
    c = compare_votes(a, b, mode)
    return c is not None and c > 0
