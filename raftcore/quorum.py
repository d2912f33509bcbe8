"""Quorum sets: which groups of voters may elect a leader and commit entries.

Every quorum decision in the engine goes through a ``QuorumSet``. A quorum set
has two predicates, one for elections and one for commits, and a derived
"quorum value": the greatest value ``v`` such that the voters whose value is
at least ``v`` form a commit quorum (the commit index from match indexes, or
the lease time from acknowledgement times).

Kinds (see docs/quorums.md):

- ``Majority``: a majority of one voter set, for elections and commits.
- ``Joint``: every part must agree (joint consensus while membership changes).
- ``Hierarchical``: a majority of groups, each with a majority of its members.
- ``Flexible``: any ``election`` voters elect, any ``commit`` voters commit.

Quorums are monotone: a superset of a quorum is a quorum. ``check_safe``
refuses a quorum set in which an election quorum misses a commit quorum (a new
leader could miss committed entries) and, in standard leader-id mode, in which
two election quorums miss each other (two leaders in one term). Each kind
also has a small, codec-friendly description: ``to_spec()`` and
``quorum_from_spec``.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import combinations, repeat
from typing import Final, Protocol, TypeVar

from raftcore.errors import ConfigError
from raftcore.ids import LeaderIdMode, NodeId, check_node_id

V = TypeVar("V", int, float)

#: The ``ConfigError.field`` of every error raised here.
FIELD: Final = "quorum"
#: ``check_safe`` enumerates the subsets of a quorum set it has no structural
#: rule for (a user-defined kind) only up to this many voters.
EXHAUSTIVE_LIMIT: Final = 16
#: How many joints deep ``quorum_from_spec`` lets specs nest.
MAX_SPEC_DEPTH: Final = 8

#: A quorum set's description: ``(kind, *arguments)`` of tuples and ints.
QuorumSpec = tuple[object, ...]


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

    # ``object``, not ``NodeId``: a compiled build would coerce or refuse the
    # items before check_node_id names the problem (as for Engine's arguments).
    def __init__(self, voters: Iterable[object]) -> None:
        self.voters = frozenset(check_node_id(n, FIELD, "majority: ") for n in voters)
        if not self.voters:
            raise ConfigError(FIELD, "a majority quorum needs at least one voter")
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

    def to_spec(self) -> tuple[str, tuple[NodeId, ...]]:
        """``("majority", voters)``."""
        return ("majority", tuple(self._sorted))

    def check(self, mode: LeaderIdMode) -> None:
        """Always safe: any two majorities of one set intersect."""
        check_safe(self, mode)


class Flexible:
    """Any ``election`` voters elect a leader; any ``commit`` voters commit.

    Every election quorum meets every commit quorum iff
    ``election + commit > len(voters)``; the constructor refuses anything
    else. In standard leader-id mode two election quorums must also meet
    (``2 * election > len(voters)``): pass ``mode`` to have the constructor
    check it too, or call ``check(mode)`` / ``check_safe`` later.
    """

    __slots__ = ("_sorted", "commit", "election", "voters")

    def __init__(
        self,
        voters: Iterable[NodeId],
        *,
        election: object,
        commit: object,
        mode: LeaderIdMode | None = None,
    ) -> None:
        # The sizes are typed ``object`` and narrowed here so that the pure and
        # the mypyc-compiled builds refuse a bad size (a bool, a str) alike.
        vs = frozenset(_valid_ids("flexible voters", voters))
        if not vs:
            raise ConfigError(FIELD, "a flexible quorum needs at least one voter")
        n = len(vs)
        self.voters = vs
        self.election: int = _size("election", election, n)
        self.commit: int = _size("commit", commit, n)
        self._sorted: tuple[NodeId, ...] = tuple(sorted(vs))
        problem = _flexible_problem(self, mode)
        if problem is not None:
            raise ConfigError(FIELD, problem)

    def __repr__(self) -> str:
        return f"Flexible({sorted(self.voters)}, election={self.election}, commit={self.commit})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Flexible)
            and other.voters == self.voters
            and other.election == self.election
            and other.commit == self.commit
        )

    def __hash__(self) -> int:
        return hash(("flexible", self.voters, self.election, self.commit))

    def voter_ids(self) -> frozenset[NodeId]:
        return self.voters

    def is_election_quorum(self, granted: Iterable[NodeId]) -> bool:
        return len(self.voters.intersection(granted)) >= self.election

    def is_commit_quorum(self, acked: Iterable[NodeId]) -> bool:
        return len(self.voters.intersection(acked)) >= self.commit

    def quorum_value(self, values: Mapping[NodeId, V], default: V) -> V:
        got = sorted(map(values.get, self._sorted, repeat(default)), reverse=True)
        return got[self.commit - 1]

    def to_spec(self) -> tuple[str, tuple[NodeId, ...], int, int]:
        """``("flexible", voters, election, commit)``."""
        return ("flexible", self._sorted, self.election, self.commit)

    def check(self, mode: LeaderIdMode) -> None:
        """Raise ``ConfigError`` unless this quorum set is safe in ``mode``."""
        check_safe(self, mode)


class Hierarchical:
    """A majority of groups, each contributing a majority of its members.

    The same predicate serves elections and commits. Groups are disjoint and
    non-empty; their order does not matter (they are kept sorted).
    """

    __slots__ = ("_group_need", "_needs", "_sorted", "groups", "voters")

    def __init__(self, groups: Iterable[Iterable[NodeId]]) -> None:
        gs: list[frozenset[NodeId]] = []
        owner: dict[NodeId, int] = {}
        for i, g in enumerate(groups):
            members = frozenset(_valid_ids(f"hierarchical group {i}", g))
            if not members:
                raise ConfigError(FIELD, f"hierarchical group {i} is empty")
            for n in sorted(members):
                j = owner.get(n)
                if j is not None:
                    raise ConfigError(
                        FIELD,
                        f"node {n} is in hierarchical groups {j} and {i}: groups must be disjoint",
                    )
                owner[n] = i
            gs.append(members)
        if not gs:
            raise ConfigError(FIELD, "a hierarchical quorum needs at least one group")
        gs.sort(key=sorted)
        self.groups: tuple[frozenset[NodeId], ...] = tuple(gs)
        self.voters: frozenset[NodeId] = frozenset(owner)
        self._sorted: tuple[tuple[NodeId, ...], ...] = tuple(tuple(sorted(g)) for g in gs)
        self._needs: tuple[int, ...] = tuple(len(g) // 2 + 1 for g in gs)
        self._group_need: int = len(gs) // 2 + 1

    def __repr__(self) -> str:
        return f"Hierarchical({[list(g) for g in self._sorted]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hierarchical) and other.groups == self.groups

    def __hash__(self) -> int:
        return hash(("hierarchical", self.groups))

    def voter_ids(self) -> frozenset[NodeId]:
        return self.voters

    def _is_quorum(self, ids: Iterable[NodeId]) -> bool:
        s = frozenset(ids)
        got = 0
        for g, need in zip(self.groups, self._needs, strict=True):
            if len(g.intersection(s)) >= need:
                got += 1
        return got >= self._group_need

    def is_election_quorum(self, granted: Iterable[NodeId]) -> bool:
        return self._is_quorum(granted)

    def is_commit_quorum(self, acked: Iterable[NodeId]) -> bool:
        return self._is_quorum(acked)

    def quorum_value(self, values: Mapping[NodeId, V], default: V) -> V:
        # A group has a majority at >= v iff v <= its majority-th largest
        # value; a majority of groups do iff v <= the majority-th largest of
        # those group values.
        tops: list[V] = []
        for members, need in zip(self._sorted, self._needs, strict=True):
            got = sorted(map(values.get, members, repeat(default)), reverse=True)
            tops.append(got[need - 1])
        tops.sort(reverse=True)
        return tops[self._group_need - 1]

    def to_spec(self) -> tuple[str, tuple[tuple[NodeId, ...], ...]]:
        """``("hierarchical", groups)``."""
        return ("hierarchical", self._sorted)

    def check(self, mode: LeaderIdMode) -> None:
        """Always safe: two majorities of groups share a group, in which two
        majorities of members share a member."""
        check_safe(self, mode)


class Joint:
    """Every member quorum set must agree (joint consensus)."""

    __slots__ = ("parts",)

    def __init__(self, parts: Iterable[QuorumSet]) -> None:
        self.parts: tuple[QuorumSet, ...] = tuple(parts)
        if not self.parts:
            raise ConfigError(FIELD, "a joint quorum needs at least one part")

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

    def to_spec(self) -> tuple[str, tuple[QuorumSpec, ...]]:
        """``("joint", (part_spec, ...))``; every part must have a spec."""
        return ("joint", tuple(quorum_to_spec(p) for p in self.parts))

    def check(self, mode: LeaderIdMode) -> None:
        """Raise ``ConfigError`` unless every part is safe in ``mode``."""
        check_safe(self, mode)


# ---------------------------------------------------------------------------
# Safety


def check_safe(q: QuorumSet, mode: LeaderIdMode) -> None:
    """Raise ``ConfigError`` (field ``"quorum"``) unless ``q`` is safe in ``mode``.

    Safe means every election quorum intersects every commit quorum (a new
    leader sees every committed entry) and, in standard leader-id mode, every
    two election quorums intersect (one leader per term). The message names
    two disjoint quorums as a counter-example.

    Known kinds are checked by their structure: majorities and hierarchical
    quorums are always safe, flexible ones by arithmetic, and a joint quorum
    when each of its parts is safe on its own (each part is also used alone,
    before or after the membership change). Any other ``QuorumSet`` is
    checked by enumerating subsets of its voters (monotone quorums assumed),
    up to ``EXHAUSTIVE_LIMIT`` voters; beyond that it is refused as
    unverifiable. Such a set must also let all its voters together elect and
    commit.
    """
    problem = _problem(q, mode)
    if problem is not None:
        raise ConfigError(FIELD, problem)


def _problem(q: QuorumSet, mode: LeaderIdMode) -> str | None:
    if isinstance(q, (Majority, Hierarchical)):
        return None
    if isinstance(q, Flexible):
        return _flexible_problem(q, mode)
    if isinstance(q, Joint):
        for i, p in enumerate(q.parts):
            problem = _problem(p, mode)
            if problem is not None:
                return f"joint part {i} {p!r}: {problem}"
        return None
    return _enumerated_problem(q, mode)


def _fmt(ids: Iterable[NodeId]) -> str:
    return "{" + ", ".join(str(n) for n in sorted(ids)) + "}"


def _election_commit_message(e: Iterable[NodeId], c: Iterable[NodeId]) -> str:
    return (
        f"election quorum {_fmt(e)} and commit quorum {_fmt(c)} do not intersect: "
        f"a leader elected by {_fmt(e)} could miss entries committed by {_fmt(c)}"
    )


def _election_election_message(a: Iterable[NodeId], b: Iterable[NodeId]) -> str:
    return (
        f"election quorums {_fmt(a)} and {_fmt(b)} do not intersect: in standard "
        "leader-id mode both could elect a leader in the same term"
    )


def _flexible_problem(q: Flexible, mode: LeaderIdMode | None) -> str | None:
    n, e, c = len(q._sorted), q.election, q.commit
    if e + c <= n:
        return _election_commit_message(q._sorted[:e], q._sorted[n - c :]) + (
            f" (flexible: election {e} + commit {c} must exceed the {n} voters)"
        )
    if mode is LeaderIdMode.STANDARD and 2 * e <= n:
        return _election_election_message(q._sorted[:e], q._sorted[n - e :]) + (
            f" (flexible: 2 x election {e} must exceed the {n} voters; advanced mode allows it)"
        )
    return None


def _shrink(
    is_quorum: Callable[[Iterable[NodeId]], bool], s: frozenset[NodeId]
) -> frozenset[NodeId]:
    """A minimal quorum inside the quorum ``s``."""
    for n in sorted(s):
        t = s - {n}
        if is_quorum(t):
            s = t
    return s


def _enumerated_problem(q: QuorumSet, mode: LeaderIdMode) -> str | None:
    voters = sorted(q.voter_ids())
    n = len(voters)
    if n > EXHAUSTIVE_LIMIT:
        return (
            f"cannot verify {q!r}: {n} voters is more than the {EXHAUSTIVE_LIMIT} that can be "
            "checked exhaustively, and only majority, flexible, hierarchical and joint "
            "quorums have structural rules"
        )
    full = frozenset(voters)
    if not q.is_election_quorum(full):
        return f"all voters {_fmt(full)} together are not an election quorum of {q!r}"
    if not q.is_commit_quorum(full):
        return f"all voters {_fmt(full)} together are not a commit quorum of {q!r}"
    elect, commit = q.is_election_quorum, q.is_commit_quorum
    standard = mode is LeaderIdMode.STANDARD
    # Quorums are monotone: a commit (election) quorum disjoint from the
    # election quorum s exists iff the rest of the voters form one.
    for k in range(n + 1):
        for chosen in combinations(voters, k):
            s = frozenset(chosen)
            if not elect(s):
                continue
            rest = full - s
            if commit(rest):
                return _election_commit_message(_shrink(elect, s), _shrink(commit, rest))
            if standard and elect(rest):
                return _election_election_message(_shrink(elect, s), _shrink(elect, rest))
    return None


# ---------------------------------------------------------------------------
# Specs


def quorum_to_spec(q: QuorumSet) -> QuorumSpec:
    """The spec of a majority, flexible, hierarchical or joint quorum set."""
    if isinstance(q, (Majority, Flexible, Hierarchical, Joint)):
        return q.to_spec()
    raise ConfigError(
        FIELD,
        f"{q!r} has no spec: only majority, flexible, hierarchical and joint quorums have one",
    )


def quorum_from_spec(spec: object, mode: LeaderIdMode | None = None) -> QuorumSet:
    """Build the quorum set a spec describes; ``ConfigError`` if malformed.

    Specs (lists are accepted wherever tuples are, as a codec may give them):
    ``("majority", voters)``, ``("flexible", voters, election, commit)``,
    ``("hierarchical", (group, ...))``, ``("joint", (spec, ...))``. Voter ids
    are positive ints, each listed once. With ``mode``, the result must also
    pass ``check_safe`` in that mode.
    """
    q = _from_spec(spec, 0)
    if mode is not None:
        check_safe(q, mode)
    return q


def _short(x: object) -> str:
    return reprlib.repr(x)


def _valid_ids(what: str, ids: Iterable[object]) -> list[NodeId]:
    return [check_node_id(n, FIELD, f"{what}: ") for n in ids]


def _size(name: str, size: object, n: int) -> int:
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= n:
        raise ConfigError(
            FIELD,
            f"flexible {name} quorum size {_short(size)} is not in 1..{n} (the number of voters)",
        )
    return size


def _seq(x: object, what: str) -> Sequence[object]:
    if not isinstance(x, (tuple, list)):
        raise ConfigError(FIELD, f"{what} must be a tuple or list, not {_short(x)}")
    return x


def _spec_ids(x: object, what: str) -> list[NodeId]:
    ids = _valid_ids(what, _seq(x, what))
    if len(set(ids)) != len(ids):
        raise ConfigError(FIELD, f"{what} list a node more than once: {_short(x)}")
    return ids


def _from_spec(spec: object, depth: int) -> QuorumSet:
    items = _seq(spec, "a quorum spec")
    if not items:
        raise ConfigError(FIELD, "a quorum spec may not be empty")
    kind, args = items[0], items[1:]
    arity = {"majority": 1, "flexible": 3, "hierarchical": 1, "joint": 1}
    if not isinstance(kind, str) or kind not in arity:
        raise ConfigError(
            FIELD,
            f"unknown quorum kind {_short(kind)} "
            "(expected 'majority', 'flexible', 'hierarchical' or 'joint')",
        )
    if len(args) != arity[kind]:
        raise ConfigError(
            FIELD,
            f"a {kind} spec takes {arity[kind]} argument(s), got {len(args)}: {_short(spec)}",
        )
    if kind == "majority":
        voters = _spec_ids(args[0], "majority voters")
        if not voters:
            raise ConfigError(FIELD, "a majority quorum needs at least one voter")
        return Majority(voters)
    if kind == "flexible":
        return Flexible(
            _spec_ids(args[0], "flexible voters"),
            election=args[1],
            commit=args[2],
        )
    if kind == "hierarchical":
        groups = _seq(args[0], "hierarchical groups")
        return Hierarchical([_spec_ids(g, f"hierarchical group {i}") for i, g in enumerate(groups)])
    if depth >= MAX_SPEC_DEPTH:
        raise ConfigError(FIELD, f"joint specs may nest at most {MAX_SPEC_DEPTH} deep")
    return Joint([_from_spec(p, depth + 1) for p in _seq(args[0], "joint parts")])
