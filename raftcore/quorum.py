"""Quorum sets: which groups of voters may elect a leader and commit entries.

Every quorum decision in the engine goes through a ``QuorumSet``. A quorum set
has two predicates, one for elections and one for commits, and a derived
"quorum value": the greatest value ``v`` such that the voters whose value is
at least ``v`` form a commit quorum (the commit index from match indexes, or
the lease time from acknowledgement times).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import Protocol, TypeVar

from raftcore.ids import NodeId

V = TypeVar("V", int, float)


class QuorumSet(Protocol):
    """What the engine asks of a quorum set."""

    def voter_ids(self) -> frozenset[NodeId]:
        """Every node that takes part in any quorum."""
        ...

    def is_election_quorum(self, granted: Iterable[NodeId]) -> bool:
        """Do these voters' grants elect a leader?"""
        ...

    def is_commit_quorum(self, acked: Iterable[NodeId]) -> bool:
        """Do these voters' acknowledgements commit an entry?"""
        ...

    def quorum_value(self, values: Mapping[NodeId, V], default: V) -> V:
        """The greatest ``v`` such that ``{n : values[n] >= v}`` is a commit quorum.

        Voters absent from ``values`` count as ``default``.
        """
        ...


class Majority:
    """A simple majority of one voter set."""

    __slots__ = ("_need", "_sorted", "voters")

    def __init__(self, voters: Iterable[NodeId]) -> None:
        self.voters = frozenset(voters)
        if not self.voters:
            raise ValueError("a majority quorum needs at least one voter")
        self._need = len(self.voters) // 2 + 1
        self._sorted: Sequence[NodeId] = tuple(sorted(self.voters))

    def __repr__(self) -> str:
        return f"Majority({sorted(self.voters)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Majority) and other.voters == self.voters

    def __hash__(self) -> int:
        return hash(("majority", self.voters))

    def voter_ids(self) -> frozenset[NodeId]:
        return self.voters

    def is_election_quorum(self, granted: Iterable[NodeId]) -> bool:
        return len(self.voters.intersection(granted)) >= self._need

    def is_commit_quorum(self, acked: Iterable[NodeId]) -> bool:
        return len(self.voters.intersection(acked)) >= self._need

    def quorum_value(self, values: Mapping[NodeId, V], default: V) -> V:
        got = sorted(map(values.get, self._sorted, repeat(default)), reverse=True)
        return got[self._need - 1]


class Joint:
    """Every member quorum set must agree (joint consensus)."""

    __slots__ = ("parts",)

    def __init__(self, parts: Iterable[QuorumSet]) -> None:
        self.parts: tuple[QuorumSet, ...] = tuple(parts)
        if not self.parts:
            raise ValueError("a joint quorum needs at least one part")

    def __repr__(self) -> str:
        return f"Joint({list(self.parts)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Joint) and other.parts == self.parts

    def __hash__(self) -> int:
        return hash(("joint", self.parts))

    def voter_ids(self) -> frozenset[NodeId]:
        out: frozenset[NodeId] = frozenset()
        for p in self.parts:
            out |= p.voter_ids()
        return out

    def is_election_quorum(self, granted: Iterable[NodeId]) -> bool:
        g = frozenset(granted)
        return all(p.is_election_quorum(g) for p in self.parts)

    def is_commit_quorum(self, acked: Iterable[NodeId]) -> bool:
        a = frozenset(acked)
        return all(p.is_commit_quorum(a) for p in self.parts)

    def quorum_value(self, values: Mapping[NodeId, V], default: V) -> V:
        return min(p.quorum_value(values, default) for p in self.parts)
