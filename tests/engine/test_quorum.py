"""Quorum sets: majority, joint, hierarchical and flexible (docs/quorums.md).

Predicates on hand-picked cases, ``quorum_value`` against its brute-force
definition, ``check_safe`` against a brute-force search for disjoint quorums,
and the spec round trip.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain, combinations, pairwise, product
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftcore.errors import ConfigError
from raftcore.ids import LeaderIdMode, NodeId
from raftcore.quorum import (
    EXHAUSTIVE_LIMIT,
    MAX_SPEC_DEPTH,
    Flexible,
    Hierarchical,
    Joint,
    Majority,
    QuorumSet,
    check_safe,
    quorum_from_spec,
    quorum_to_spec,
)

ADV = LeaderIdMode.ADVANCED
STD = LeaderIdMode.STANDARD
MODES = list(LeaderIdMode)

V = TypeVar("V", int, float)

# ---------------------------------------------------------------------------
# Brute force


def subsets(voters: Iterable[NodeId]) -> list[frozenset[NodeId]]:
    vs = sorted(voters)
    return [frozenset(c) for k in range(len(vs) + 1) for c in combinations(vs, k)]


def brute_quorum_value(q: QuorumSet, values: Mapping[NodeId, V], default: V) -> V:
    """The definition: the greatest v whose ``{n : value >= v}`` is a commit quorum."""
    voters = q.voter_ids()

    def val(n: NodeId) -> V:
        return values.get(n, default)

    ok = [
        v
        for v in {val(n) for n in voters}
        if q.is_commit_quorum({n for n in voters if val(n) >= v})
    ]
    return max(ok)


Pred = Callable[[Iterable[NodeId]], bool]


def disjoint_pair(voters: Iterable[NodeId], a: Pred, b: Pred) -> bool:
    """Is there an ``a`` quorum disjoint from a ``b`` quorum? (all pairs, no shortcut)"""
    vs = sorted(voters)
    # Each voter is in the first set, the second, or neither.
    for where in product(range(3), repeat=len(vs)):
        x = [n for n, w in zip(vs, where, strict=True) if w == 1]
        y = [n for n, w in zip(vs, where, strict=True) if w == 2]
        if a(x) and b(y):
            return True
    return False


def brute_unsafe(q: QuorumSet, mode: LeaderIdMode) -> bool:
    vs = q.voter_ids()
    if disjoint_pair(vs, q.is_election_quorum, q.is_commit_quorum):
        return True
    return mode is STD and disjoint_pair(vs, q.is_election_quorum, q.is_election_quorum)


SET_RE = re.compile(r"\{([\d, ]*)\}")


def counter_example(message: str) -> tuple[frozenset[NodeId], frozenset[NodeId]]:
    """The first two node sets a ``check_safe`` message names."""
    sets = [frozenset(int(x) for x in m.split(",") if x.strip()) for m in SET_RE.findall(message)]
    assert len(sets) >= 2, message
    return sets[0], sets[1]


class Weighted:
    """A user-defined kind (checked by enumeration): weighted votes, two thresholds."""

    __slots__ = ("commit", "election", "weights")

    def __init__(self, weights: Mapping[NodeId, int], election: int, commit: int) -> None:
        self.weights = dict(weights)
        self.election = election
        self.commit = commit

    def __repr__(self) -> str:
        return f"Weighted(election={self.election}, commit={self.commit})"

    def _weight(self, ids: Iterable[NodeId]) -> int:
        return sum(self.weights.get(n, 0) for n in set(ids))

    def voter_ids(self) -> frozenset[NodeId]:
        return frozenset(self.weights)

    def is_election_quorum(self, granted: Iterable[NodeId]) -> bool:
        return self._weight(granted) >= self.election

    def is_commit_quorum(self, acked: Iterable[NodeId]) -> bool:
        return self._weight(acked) >= self.commit

    def quorum_value(self, values: Mapping[NodeId, V], default: V) -> V:
        return brute_quorum_value(self, values, default)


# ---------------------------------------------------------------------------
# Strategies

POOL = range(1, 10)


@st.composite
def voter_sets(draw: st.DrawFn, max_size: int = 7) -> list[NodeId]:
    return draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=max_size, unique=True))


@st.composite
def majorities(draw: st.DrawFn) -> Majority:
    return Majority(draw(voter_sets()))


@st.composite
def flexibles(draw: st.DrawFn, mode: LeaderIdMode = ADV) -> Flexible:
    vs = draw(voter_sets())
    n = len(vs)
    low = n // 2 + 1 if mode is STD else 1
    election = draw(st.integers(low, n))
    commit = draw(st.integers(n - election + 1, n))
    return Flexible(vs, election=election, commit=commit, mode=mode)


@st.composite
def hierarchicals(draw: st.DrawFn) -> Hierarchical:
    vs = draw(voter_sets(max_size=8))
    cuts = sorted(draw(st.sets(st.integers(1, len(vs) - 1))) if len(vs) > 1 else set())
    bounds = [0, *cuts, len(vs)]
    return Hierarchical(vs[a:b] for a, b in pairwise(bounds))


def simple(mode: LeaderIdMode = ADV) -> st.SearchStrategy[QuorumSet]:
    return st.one_of(majorities(), flexibles(mode), hierarchicals())


def configs(mode: LeaderIdMode = ADV) -> st.SearchStrategy[QuorumSet]:
    """Any kind, including joints of mixed kinds (and a joint inside a joint)."""
    joints = st.lists(simple(mode), min_size=1, max_size=3).map(Joint)
    nested = st.lists(st.one_of(simple(mode), joints), min_size=1, max_size=2).map(Joint)
    return st.one_of(simple(mode), joints, nested)


@st.composite
def values_for(draw: st.DrawFn, q: QuorumSet) -> dict[NodeId, int]:
    vs = sorted(q.voter_ids())
    # Some voters absent (they count as the default); small range for ties;
    # a non-voter or two, which must be ignored.
    keys = draw(st.lists(st.sampled_from([*vs, 50, 51]), unique=True))
    return {k: draw(st.integers(0, 6)) for k in keys}


# ---------------------------------------------------------------------------
# Majority and Joint: unchanged behaviour


def test_majority_predicates_and_value() -> None:
    q = Majority([1, 2, 3])
    assert q.voter_ids() == {1, 2, 3}
    assert q.is_election_quorum([1, 2]) and q.is_commit_quorum({2, 3})
    assert not q.is_election_quorum([1, 4, 5])
    assert q.quorum_value({1: 5, 2: 3, 3: 1}, 0) == 3
    assert q.quorum_value({1: 5}, 0) == 0
    assert q == Majority([3, 2, 1]) and hash(q) == hash(Majority({1, 2, 3}))
    assert repr(q) == "Majority([1, 2, 3])"


def test_empty_majority_and_joint_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="at least one voter"):
        Majority([])
    with pytest.raises(ValueError, match="at least one part"):  # still a ValueError
        Joint([])


# ---------------------------------------------------------------------------
# Flexible


def test_flexible_four_voters_commit_two_election_three() -> None:
    q = Flexible([1, 2, 3, 4], election=3, commit=2)
    assert q.voter_ids() == {1, 2, 3, 4}
    assert q.is_commit_quorum([1, 2]) and q.is_commit_quorum({3, 4})
    assert not q.is_commit_quorum([1]) and not q.is_commit_quorum([1, 5, 6])
    assert q.is_election_quorum([1, 2, 3]) and q.is_election_quorum(iter([2, 3, 4]))
    assert not q.is_election_quorum([1, 2]) and not q.is_election_quorum([1, 2, 7])
    # The second-highest match index commits.
    assert q.quorum_value({1: 10, 2: 7, 3: 5, 4: 1}, 0) == 7
    assert q.quorum_value({1: 10}, 0) == 0
    assert q.quorum_value({1: 10.0, 3: 2.5}, float("-inf")) == 2.5
    q.check(STD)
    q.check(ADV)
    check_safe(q, STD)
    assert repr(q) == "Flexible([1, 2, 3, 4], election=3, commit=2)"
    assert q == Flexible([4, 3, 2, 1], election=3, commit=2, mode=STD)
    assert hash(q) == hash(Flexible({1, 2, 3, 4}, election=3, commit=2))
    assert q != Flexible([1, 2, 3, 4], election=4, commit=2)
    assert q != Flexible([1, 2, 3, 4], election=3, commit=3)
    assert q != Majority([1, 2, 3, 4])


def test_flexible_refuses_disjoint_election_and_commit_quorums() -> None:
    with pytest.raises(ConfigError) as e:
        Flexible([1, 2, 3, 4], election=2, commit=2)
    assert e.value.field == "quorum"
    assert "election quorum {1, 2} and commit quorum {3, 4} do not intersect" in str(e.value)
    assert "election 2 + commit 2 must exceed the 4 voters" in str(e.value)


def test_flexible_standard_mode_needs_intersecting_election_quorums() -> None:
    q = Flexible([1, 2, 3, 4], election=2, commit=3)  # mode-independent rule holds
    q.check(ADV)
    check_safe(q, ADV)
    Flexible([1, 2, 3, 4], election=2, commit=3, mode=ADV)
    for refuse in (
        lambda: q.check(STD),
        lambda: check_safe(q, STD),
        lambda: Flexible([1, 2, 3, 4], election=2, commit=3, mode=STD),
    ):
        with pytest.raises(ConfigError) as e:
            refuse()
        assert "election quorums {1, 2} and {3, 4} do not intersect" in str(e.value)
        assert "standard leader-id mode" in str(e.value)


@pytest.mark.parametrize(
    ("voters", "election", "commit", "problem"),
    [
        ([], 1, 1, "at least one voter"),
        ([1, 2, 3], 0, 3, "election quorum size 0 is not in 1..3"),
        ([1, 2, 3], 4, 3, "election quorum size 4 is not in 1..3"),
        ([1, 2, 3], 2, 0, "commit quorum size 0 is not in 1..3"),
        ([1, 2, 3], 2, -1, "commit quorum size -1 is not in 1..3"),
        ([1, 2, 3], True, 3, "election quorum size True"),
        ([1, 2, 3], 2, "2", "commit quorum size '2'"),
        ([1, 2, 3], 2.0, 2, "election quorum size 2.0"),
        ([0, 1, 2], 2, 2, "node id 0 is not a positive int"),
        ([1, True], 2, 2, "node id True is not a positive int"),
        ([1, "2"], 2, 2, "node id '2' is not a positive int"),
        ([1, 2, 3], 1, 2, "do not intersect"),
    ],
)
def test_flexible_refuses_bad_arguments(
    voters: list[NodeId], election: object, commit: object, problem: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)) as e:
        Flexible(voters, election=election, commit=commit)
    assert e.value.field == "quorum"


@given(voter_sets(), st.data())
def test_flexible_construction_matches_brute_force(vs: list[NodeId], data: st.DataObject) -> None:
    n = len(vs)
    election = data.draw(st.integers(1, n))
    commit = data.draw(st.integers(1, n))
    mode = data.draw(st.sampled_from(MODES))

    def elect(ids: Iterable[NodeId]) -> bool:
        return len(set(ids)) >= election

    def comm(ids: Iterable[NodeId]) -> bool:
        return len(set(ids)) >= commit

    unsafe = disjoint_pair(vs, elect, comm) or (mode is STD and disjoint_pair(vs, elect, elect))
    try:
        Flexible(vs, election=election, commit=commit, mode=mode)
    except ConfigError as e:
        assert unsafe, str(e)
        a, b = counter_example(str(e))
        assert not a & b and a | b <= set(vs)
        assert len(a) == election and len(b) in (commit, election)
    else:
        assert not unsafe


# ---------------------------------------------------------------------------
# Hierarchical

DCS = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_hierarchical_three_data_centres() -> None:
    q = Hierarchical(DCS)
    assert q.voter_ids() == set(range(1, 10))
    for ids in ([1, 2, 4, 5], [1, 2, 3, 4, 5, 6], [2, 3, 7, 9], range(1, 10), [1, 2, 4, 5, 6]):
        assert q.is_election_quorum(ids) and q.is_commit_quorum(ids), ids
    for ids in ([1, 2, 3, 4, 7], [1, 2, 4, 7], [1, 4, 7, 2, 5 + 10], [], [1, 2, 3]):
        assert not q.is_election_quorum(ids) and not q.is_commit_quorum(ids), ids
    # A whole data centre lost: still a quorum; a quorum can be 4 of 9 nodes.
    assert q.is_commit_quorum(iter([4, 5, 6, 7, 8, 9]))
    # Per data centre the 2nd largest: 8, 2, 5; of those the 2nd largest: 5.
    values = {1: 9, 2: 8, 3: 1, 4: 7, 5: 2, 6: 2, 7: 6, 8: 5, 9: 0}
    assert q.quorum_value(values, 0) == 5
    assert brute_quorum_value(q, values, 0) == 5
    assert q.quorum_value({}, -1) == -1
    q.check(STD)
    check_safe(q, ADV)


def test_hierarchical_value_semantics() -> None:
    q = Hierarchical([[6, 5, 4], [3, 1, 2], [9, 8, 7]])
    assert q == Hierarchical(DCS) and hash(q) == hash(Hierarchical(DCS))
    assert repr(q) == "Hierarchical([[1, 2, 3], [4, 5, 6], [7, 8, 9]])"
    assert q.groups == (frozenset({1, 2, 3}), frozenset({4, 5, 6}), frozenset({7, 8, 9}))
    assert q != Hierarchical([[1, 2, 3], [4, 5, 6, 7, 8, 9]])
    assert q != Majority(range(1, 10))


def test_hierarchical_uneven_groups() -> None:
    # Groups of 1, 2 and 5: a majority of groups (2), each with a majority.
    q = Hierarchical([[1], [2, 3], [4, 5, 6, 7, 8]])
    assert q.is_commit_quorum([1, 2, 3])
    assert q.is_commit_quorum([1, 4, 5, 6])
    assert not q.is_commit_quorum([1, 2, 4, 5])  # 2 of 2 needed in the pair
    assert not q.is_commit_quorum([4, 5, 6, 7, 8, 2])


@pytest.mark.parametrize(
    ("groups", "problem"),
    [
        ([], "needs at least one group"),
        ([[1, 2], []], "hierarchical group 1 is empty"),
        ([[1, 2], [2, 3]], "node 2 is in hierarchical groups 0 and 1: groups must be disjoint"),
        ([[1], [2], [3, 1]], "node 1 is in hierarchical groups 0 and 2"),
        ([[1], [0]], "hierarchical group 1: node id 0 is not a positive int"),
        ([[1], [False]], "node id False is not a positive int"),
    ],
)
def test_hierarchical_refuses_bad_groups(groups: list[list[NodeId]], problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)) as e:
        Hierarchical(groups)
    assert e.value.field == "quorum"


@given(hierarchicals(), st.data())
def test_hierarchical_predicate_matches_definition(q: Hierarchical, data: st.DataObject) -> None:
    ids = data.draw(st.sets(st.sampled_from([*POOL, 20])))
    good = [g for g in q.groups if 2 * len(g & ids) > len(g)]
    expected = 2 * len(good) > len(q.groups)
    assert q.is_election_quorum(ids) is expected
    assert q.is_commit_quorum(ids) is expected


# ---------------------------------------------------------------------------
# Joint


def test_joint_of_mixed_kinds() -> None:
    q = Joint(
        [
            Majority([1, 2, 3]),
            Flexible([3, 4, 5, 6], election=3, commit=2),
            Hierarchical([[1, 2, 3], [4, 5, 6], [7, 8, 9]]),
        ]
    )
    assert q.voter_ids() == set(range(1, 10))
    assert q.is_commit_quorum([1, 2, 4, 5])
    assert not q.is_election_quorum([1, 2, 4, 5])  # Flexible needs 3 of 3..6
    assert q.is_election_quorum([1, 2, 4, 5, 6])
    assert not q.is_commit_quorum([1, 4, 5, 7, 8])  # Majority([1, 2, 3]) lacks
    values = {1: 8, 2: 6, 3: 1, 4: 9, 5: 7, 6: 0, 7: 5, 8: 5, 9: 5}
    # Majority: 6; Flexible(commit 2) over 3..6: 7; Hierarchical: 6, 7, 5 -> 6.
    assert q.quorum_value(values, 0) == 6 == brute_quorum_value(q, values, 0)
    q.check(STD)
    assert repr(q).startswith("Joint([Majority([1, 2, 3]), Flexible(")


def test_joint_refuses_an_unsafe_part_naming_it() -> None:
    part = Flexible([3, 4, 5, 6], election=2, commit=3)
    q = Joint([Majority([1, 2, 3]), part])
    q.check(ADV)
    with pytest.raises(ConfigError, match=re.escape("joint part 1 Flexible([3, 4, 5, 6]")) as e:
        q.check(STD)
    assert counter_example(str(e.value)) == (frozenset({3, 4}), frozenset({5, 6}))
    # Each part is used alone before or after the change, so one unsafe part
    # is refused even when the joint as a whole would be safe.
    w = Weighted({1: 1, 2: 1, 3: 1}, election=1, commit=1)
    with pytest.raises(ConfigError, match="joint part 0 Weighted"):
        check_safe(Joint([w, Majority([1, 2, 3])]), ADV)


# ---------------------------------------------------------------------------
# quorum_value against its definition


@settings(max_examples=300)
@given(configs().flatmap(lambda q: st.tuples(st.just(q), values_for(q), st.integers(0, 6))))
def test_quorum_value_matches_brute_force(case: tuple[QuorumSet, dict[NodeId, int], int]) -> None:
    q, values, default = case
    assert q.quorum_value(values, default) == brute_quorum_value(q, values, default)


@given(
    configs().flatmap(
        lambda q: st.tuples(
            st.just(q),
            st.dictionaries(
                st.sampled_from(sorted(q.voter_ids())),
                st.floats(-1e9, 1e9, allow_nan=False),
            ),
        )
    )
)
def test_quorum_value_matches_brute_force_floats(
    case: tuple[QuorumSet, dict[NodeId, float]],
) -> None:
    q, values = case
    never = float("-inf")
    assert q.quorum_value(values, never) == brute_quorum_value(q, values, never)


@given(configs(), st.data())
def test_predicates_of_joints_are_conjunctions(q: QuorumSet, data: st.DataObject) -> None:
    ids = data.draw(st.sets(st.sampled_from(POOL)))
    if isinstance(q, Joint):
        assert q.is_election_quorum(ids) == all(p.is_election_quorum(ids) for p in q.parts)
        assert q.is_commit_quorum(ids) == all(p.is_commit_quorum(ids) for p in q.parts)
    # Monotone, and all voters together always form both kinds of quorum.
    assert q.is_election_quorum(q.voter_ids()) and q.is_commit_quorum(q.voter_ids())
    if q.is_commit_quorum(ids):
        assert q.is_commit_quorum(ids | {data.draw(st.sampled_from(POOL))})


# ---------------------------------------------------------------------------
# check_safe


@settings(max_examples=150)
@given(configs(ADV), st.sampled_from(MODES))
def test_check_safe_structural_rules_match_brute_force(q: QuorumSet, mode: LeaderIdMode) -> None:
    parts: Sequence[QuorumSet] = [q]
    while any(isinstance(p, Joint) for p in parts):
        parts = list(chain.from_iterable(p.parts if isinstance(p, Joint) else [p] for p in parts))
    unsafe = any(brute_unsafe(p, mode) for p in parts)
    try:
        check_safe(q, mode)
    except ConfigError as e:
        assert unsafe, str(e)
    else:
        assert not unsafe


@given(configs(STD))
def test_standard_mode_configs_are_safe_in_both_modes(q: QuorumSet) -> None:
    check_safe(q, STD)
    check_safe(q, ADV)


@st.composite
def weighted(draw: st.DrawFn) -> Weighted:
    vs = draw(voter_sets(max_size=6))
    weights = {n: draw(st.integers(0, 3)) for n in vs}
    weights[vs[0]] = max(weights[vs[0]], 1)
    total = sum(weights.values())
    return Weighted(weights, draw(st.integers(1, total)), draw(st.integers(1, total)))


def _is_minimal(pred: Pred, s: frozenset[NodeId]) -> bool:
    return pred(s) and not any(pred(s - {n}) for n in s)


@settings(max_examples=300)
@given(weighted(), st.sampled_from(MODES))
def test_check_safe_enumerates_other_kinds(q: Weighted, mode: LeaderIdMode) -> None:
    unsafe = brute_unsafe(q, mode)
    try:
        check_safe(q, mode)
    except ConfigError as e:
        assert unsafe, str(e)
        assert e.field == "quorum"
        a, b = counter_example(str(e))
        assert not a & b
        assert _is_minimal(q.is_election_quorum, a)
        if str(e).startswith("quorum: election quorums "):
            assert mode is STD
            assert _is_minimal(q.is_election_quorum, b)
        else:
            assert _is_minimal(q.is_commit_quorum, b)
    else:
        assert not unsafe


def test_check_safe_counter_example_for_another_kind() -> None:
    # Node 1 alone (weight 3) elects; nodes 2..4 (weight 3) commit.
    q = Weighted({1: 3, 2: 1, 3: 1, 4: 1}, election=3, commit=3)
    with pytest.raises(ConfigError) as e:
        check_safe(q, ADV)
    assert "election quorum {1} and commit quorum {2, 3, 4} do not intersect" in str(e.value)
    # Both {1} and {2, 3, 4} elect: only standard mode minds.
    q = Weighted({1: 3, 2: 1, 3: 1, 4: 1}, election=3, commit=4)
    check_safe(q, ADV)
    with pytest.raises(ConfigError, match=re.escape("election quorums {1} and {2, 3, 4}")):
        check_safe(q, STD)


def test_check_safe_refuses_unusable_or_unverifiable_sets() -> None:
    with pytest.raises(ConfigError, match="not an election quorum"):
        check_safe(Weighted({1: 1, 2: 1}, election=3, commit=1), ADV)
    with pytest.raises(ConfigError, match="not a commit quorum"):
        check_safe(Weighted({1: 1, 2: 1}, election=2, commit=3), ADV)
    big = dict.fromkeys(range(1, EXHAUSTIVE_LIMIT + 1), 1)
    check_safe(Weighted(big, election=9, commit=9), STD)  # 16 voters: enumerated
    big[EXHAUSTIVE_LIMIT + 1] = 1
    with pytest.raises(ConfigError, match="cannot verify"):
        check_safe(Weighted(big, election=9, commit=9), STD)
    # Known kinds of any size are checked by their structure.
    check_safe(Majority(range(1, 100)), STD)
    check_safe(Flexible(range(1, 100), election=60, commit=40), STD)
    check_safe(Hierarchical([range(i, i + 5) for i in range(1, 100, 5)]), STD)


# ---------------------------------------------------------------------------
# Specs


def test_spec_examples() -> None:
    assert Majority([3, 1, 2]).to_spec() == ("majority", (1, 2, 3))
    assert Flexible([4, 3, 2, 1], election=3, commit=2).to_spec() == (
        "flexible",
        (1, 2, 3, 4),
        3,
        2,
    )
    assert Hierarchical([[7, 8, 9], [1, 2, 3], [4, 5, 6]]).to_spec() == (
        "hierarchical",
        ((1, 2, 3), (4, 5, 6), (7, 8, 9)),
    )
    j = Joint([Majority([1, 2, 3]), Flexible([1, 2, 3, 4], election=3, commit=2)])
    assert j.to_spec() == (
        "joint",
        (("majority", (1, 2, 3)), ("flexible", (1, 2, 3, 4), 3, 2)),
    )
    assert quorum_from_spec(("flexible", (1, 2, 3, 4), 3, 2)) == Flexible(
        [1, 2, 3, 4], election=3, commit=2
    )


def _listify(x: object) -> object:
    return [_listify(y) for y in x] if isinstance(x, tuple) else x


def _plain(x: object) -> bool:
    """Only str, int and tuples: what any codec can carry."""
    if isinstance(x, tuple):
        return all(_plain(y) for y in x)
    return isinstance(x, (str, int))


@given(configs())
def test_spec_round_trip(q: QuorumSet) -> None:
    spec = quorum_to_spec(q)
    assert _plain(spec)
    assert quorum_from_spec(spec) == q
    assert hash(quorum_from_spec(spec)) == hash(q)
    assert quorum_from_spec(_listify(spec)) == q  # as a codec may decode it
    assert quorum_from_spec(spec, ADV) == q


def test_spec_with_mode_checks_safety() -> None:
    spec = ("flexible", (1, 2, 3, 4), 2, 3)
    assert quorum_from_spec(spec, ADV) == Flexible([1, 2, 3, 4], election=2, commit=3)
    with pytest.raises(ConfigError, match=re.escape("election quorums {1, 2} and {3, 4}")):
        quorum_from_spec(spec, STD)
    with pytest.raises(ConfigError, match="joint part 1"):
        quorum_from_spec(("joint", (("majority", (1, 2)), spec)), STD)


def _nested(depth: int) -> object:
    spec: object = ("majority", (1,))
    for _ in range(depth):
        spec = ("joint", (spec,))
    return spec


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (None, "a quorum spec must be a tuple or list"),
        ("majority", "a quorum spec must be a tuple or list"),
        ((), "may not be empty"),
        (("paxos", (1, 2)), "unknown quorum kind 'paxos'"),
        ((1, (1, 2)), "unknown quorum kind 1"),
        (("majority",), "a majority spec takes 1 argument(s), got 0"),
        (("majority", (1,), 2), "a majority spec takes 1 argument(s), got 2"),
        (("flexible", (1, 2, 3), 2), "a flexible spec takes 3 argument(s), got 2"),
        (("majority", ()), "at least one voter"),
        (("majority", 3), "majority voters must be a tuple or list, not 3"),
        (("majority", "123"), "majority voters must be a tuple or list"),
        (("majority", {1, 2}), "majority voters must be a tuple or list"),
        (("majority", (1, 1, 2)), "list a node more than once"),
        (("majority", (1, 0)), "node id 0 is not a positive int"),
        (("majority", (1, -2)), "node id -2 is not a positive int"),
        (("majority", (True,)), "node id True is not a positive int"),
        (("majority", (1.0,)), "node id 1.0 is not a positive int"),
        (("majority", ("1",)), "node id '1' is not a positive int"),
        (("flexible", (1, 2, 3), "2", 2), "election quorum size '2'"),
        (("flexible", (1, 2, 3), 2, None), "commit quorum size None"),
        (("flexible", (1, 2, 3), False, 3), "election quorum size False"),
        (("flexible", (1, 2, 3), 4, 3), "election quorum size 4 is not in 1..3"),
        (("flexible", (1, 2, 3), 1, 2), "do not intersect"),
        (("flexible", (), 1, 1), "at least one voter"),
        (("hierarchical", ()), "needs at least one group"),
        (("hierarchical", 5), "hierarchical groups must be a tuple or list"),
        (("hierarchical", ((1, 2), ())), "hierarchical group 1 is empty"),
        (("hierarchical", ((1, 2), 3)), "hierarchical group 1 must be a tuple or list"),
        (("hierarchical", ((1, 2), (2, 3))), "node 2 is in hierarchical groups 0 and 1"),
        (("hierarchical", ((1, 2, 2),)), "list a node more than once"),
        (("joint", ()), "at least one part"),
        (("joint", ("majority", (1,))), "a quorum spec must be a tuple or list"),
        (("joint", (("majority", (1,)), ("flexible", (1, 2), 0, 2))), "size 0"),
        (_nested(MAX_SPEC_DEPTH + 1), f"nest at most {MAX_SPEC_DEPTH} deep"),
    ],
)
def test_malformed_specs_are_refused(spec: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)) as e:
        quorum_from_spec(spec)
    assert e.value.field == "quorum"


def test_nesting_up_to_the_limit_is_accepted() -> None:
    q = quorum_from_spec(_nested(MAX_SPEC_DEPTH))
    assert q.is_commit_quorum([1])


def test_a_user_defined_kind_has_no_spec() -> None:
    w = Weighted({1: 1}, election=1, commit=1)
    with pytest.raises(ConfigError, match="has no spec"):
        quorum_to_spec(w)
    with pytest.raises(ConfigError, match="has no spec"):
        Joint([Majority([1]), w]).to_spec()


def test_quorums_satisfy_the_protocol() -> None:
    qs: list[QuorumSet] = [
        Majority([1]),
        Flexible([1, 2], election=2, commit=1),
        Hierarchical([[1]]),
        Joint([Majority([1])]),
        Weighted({1: 1}, election=1, commit=1),
    ]
    for q in qs:
        assert q.quorum_value({1: 3}, 0) == 3
