"""The membership invariants catch deliberately injected violations, and
stay quiet on what a correct engine legitimately does."""

from __future__ import annotations

from collections.abc import Iterable

from raftcore.entries import Entry, EntryKind, blank, membership_entry, normal
from raftcore.ids import ZERO_LOG_ID, LeaderIdMode, LogId, NodeId, Vote
from raftcore.membership import (
    AddVoters,
    Membership,
    RemoveVoters,
    ReplaceVoters,
    SetQuorum,
    UpdateNodes,
)
from raftcore.quorum import Flexible
from raftcore.sim.invariants import InvariantChecker, change_problem, share_config
from raftcore.state import Role

INFO = {n: f"n{n}" for n in range(1, 8)}
V1 = Vote(1, 1, True)


def mem(*configs: Iterable[int], learners: Iterable[int] = ()) -> Membership:
    cs = [frozenset(c) for c in configs]
    ids = set().union(*cs) | set(learners)
    return Membership(cs, {n: INFO[n] for n in ids})


M0 = mem({1, 2, 3})
J = mem({1, 2, 3}, {1, 4, 5})
F = mem({1, 4, 5})


class Logs:
    """Whole entries per node, volatile and durable, set by the tests."""

    def __init__(self, nodes: Iterable[NodeId] = range(1, 6)) -> None:
        self.logs: dict[NodeId, list[Entry]] = {n: [] for n in nodes}
        self.durable: dict[NodeId, list[Entry]] = {n: [] for n in nodes}

    @staticmethod
    def _at(log: list[Entry], index: int) -> LogId | None:
        if index == 0:
            return ZERO_LOG_ID
        return log[index - 1].log_id if 1 <= index <= len(log) else None

    def log_id_at(self, node: NodeId, index: int) -> LogId | None:
        return self._at(self.logs[node], index)

    def durable_log_id_at(self, node: NodeId, index: int) -> LogId | None:
        return self._at(self.durable[node], index)

    def memberships(self, node: NodeId, durable: bool = False) -> list[tuple[LogId, Membership]]:
        log = (self.durable if durable else self.logs)[node]
        return [(e.log_id, e.data) for e in log if e.kind is EntryKind.MEMBERSHIP]


def lid(term: int, node: int, index: int) -> LogId:
    return LogId(term, node, index)


class Cluster:
    def __init__(self, mode: LeaderIdMode = LeaderIdMode.ADVANCED) -> None:
        self.v = Logs()
        self.c = InvariantChecker(mode, self.v)
        #: Each node's membership at the end of its last step.
        self.effective: dict[NodeId, Membership | None] = {}
        for n in self.v.logs:
            self.c.on_restart(n, Vote(0, 0))

    def append(self, node: NodeId, *entries: Entry, durable: bool = True) -> None:
        log = self.v.logs[node]
        prev = log[-1].log_id if log else ZERO_LOG_ID
        self.c.on_append(node, prev, entries)
        log.extend(entries)
        if durable:
            self.v.durable[node] = list(log)

    def step(
        self,
        node: NodeId,
        committed: LogId = ZERO_LOG_ID,
        role: Role = Role.FOLLOWER,
        vote: Vote = V1,
        before: Membership | None = None,
    ) -> None:
        ms = self.v.memberships(node)
        m = ms[-1][1] if ms else None
        # As the simulator does: a commit counts under the membership the
        # node had before the step (its appends come after the commit).
        b = before if before is not None else self.effective.get(node) or m
        self.c.on_state(node, role, vote, committed, lambda: b)
        self.c.after_step(node, role, committed, m)
        self.effective[node] = m

    def kinds(self) -> list[str]:
        return [x.kind for x in self.c.violations]


E1 = membership_entry(lid(0, 0, 1), M0)
B2 = blank(lid(1, 1, 2))


def leader_with_blank(k: Cluster, followers: Iterable[NodeId] = (2, 3)) -> None:
    """Node 1 leads term 1 with ``[M0, blank]`` committed and replicated."""
    for n in (1, *followers):
        k.append(n, E1, B2)
    k.step(1, B2.log_id, Role.LEADER)


def test_a_whole_change_is_quiet() -> None:
    k = Cluster()
    leader_with_blank(k, (2, 3, 4, 5))
    j = membership_entry(lid(1, 1, 3), J)
    f = membership_entry(lid(1, 1, 4), F)
    k.append(1, j)
    k.step(1, B2.log_id, Role.LEADER)
    for n in (2, 4, 5):
        k.append(n, j)
        k.step(n, B2.log_id)
    # J commits and the leader appends F in the same step.
    k.append(1, f)
    k.step(1, j.log_id, Role.LEADER, before=J)
    for n in (4, 5):
        k.append(n, f)
        k.step(n, j.log_id)
    k.step(1, f.log_id, Role.LEADER)
    assert k.c.violations == []
    assert [m for _, m in k.c.committed_memberships] == [M0, J, F]


def test_a_lagging_follower_may_hold_two_changes_above_its_own_commit_index() -> None:
    # Not "at most one membership entry above the node's commit index": node 2
    # learns J and F in one append while its own commit index is still 2.
    k = Cluster()
    leader_with_blank(k, (2, 3, 4, 5))
    j = membership_entry(lid(1, 1, 3), J)
    f = membership_entry(lid(1, 1, 4), F)
    k.append(1, j)
    k.step(1, B2.log_id, Role.LEADER)
    for n in (3, 4, 5):
        k.append(n, j)
    k.append(1, f)
    k.step(1, j.log_id, Role.LEADER, before=J)
    k.append(2, j, f)
    k.step(2, B2.log_id)
    assert k.c.violations == []


def test_a_second_change_while_one_is_uncommitted() -> None:
    k = Cluster()
    leader_with_blank(k)
    k.append(1, membership_entry(lid(1, 1, 3), J))
    k.step(1, B2.log_id, Role.LEADER)
    k.append(1, membership_entry(lid(1, 1, 4), mem({1, 4, 5}, {1, 4, 5, 6})))
    k.step(1, B2.log_id, Role.LEADER)
    assert "single-change" in k.kinds()
    assert "two uncommitted membership changes" in k.c.violations[0].message


def test_voters_switched_without_a_joint_step() -> None:
    k = Cluster()
    leader_with_blank(k)
    k.append(1, membership_entry(lid(1, 1, 3), mem({1, 4, 5})))
    k.step(1, B2.log_id, Role.LEADER)
    assert "config-chain" in k.kinds()


def test_a_quorum_kind_switched_without_a_joint_step() -> None:
    # Same voters, another kind of quorum: a different config.
    flex = Membership.with_quorum(Flexible([1, 2, 3], election=3, commit=1), INFO)
    assert not share_config(M0, flex)
    k = Cluster()
    leader_with_blank(k)
    k.append(1, membership_entry(lid(1, 1, 3), flex))
    k.step(1, B2.log_id, Role.LEADER)
    assert "config-chain" in k.kinds()


def test_effective_memberships_without_a_shared_config() -> None:
    # Committed joint [A, B]; one node goes on with [A], another with [B]:
    # each log alone is a valid chain, but together they could each elect
    # and commit without the other.
    a, b = {1, 2, 3}, {3, 4, 5}
    ab = mem(a, b)
    k = Cluster()
    j = membership_entry(lid(1, 1, 3), ab)
    for n in (1, 2, 3, 4, 5):
        k.append(n, E1, B2, j)
    k.step(1, j.log_id, Role.LEADER)
    assert k.c.violations == []
    k.append(1, membership_entry(lid(1, 1, 4), mem(a)))
    k.step(1, j.log_id, Role.LEADER)
    k.append(4, membership_entry(lid(2, 4, 4), mem(b)))
    k.step(4, j.log_id, Role.LEADER, Vote(2, 4, True))
    assert "config-overlap" in k.kinds()


def test_nodes_lacking_the_committed_membership_are_not_compared() -> None:
    k = Cluster()
    leader_with_blank(k, (2, 3, 4, 5))
    j = membership_entry(lid(1, 1, 3), J)
    f = membership_entry(lid(1, 1, 4), F)
    for n in (1, 3, 4, 5):
        k.append(n, j)
    k.append(1, f)
    k.step(1, j.log_id, Role.LEADER, before=J)
    for n in (4, 5):
        k.append(n, f)
    k.step(1, f.log_id, Role.LEADER)
    # Node 2 still has M0 ({1,2,3}), which shares nothing with F: fine, it
    # lacks the committed F and can never be elected.
    k.step(2)
    assert k.c.violations == []


def test_engine_membership_must_be_its_logs_newest() -> None:
    k = Cluster()
    k.append(1, E1)
    k.c.after_step(1, Role.FOLLOWER, ZERO_LOG_ID, J)
    k.c.after_step(2, Role.FOLLOWER, ZERO_LOG_ID, M0)
    assert k.kinds() == ["membership-effective", "membership-effective"]


def test_membership_change_before_the_leaders_own_entry_commits() -> None:
    k = Cluster()
    for n in (1, 2, 3):
        k.append(n, E1)
    k.step(1, E1.log_id)
    k.append(1, B2)
    k.append(1, membership_entry(lid(1, 1, 3), J))
    k.step(1, E1.log_id, Role.LEADER)
    assert k.kinds() == ["membership-change-rule"]


def test_a_removed_leader_must_step_down_once_its_removal_commits() -> None:
    k = Cluster()
    leader_with_blank(k, (2, 3, 4, 5))
    j = membership_entry(lid(1, 1, 3), mem({1, 2, 3}, {2, 3}))
    f = membership_entry(lid(1, 1, 4), mem({2, 3}))
    k.append(1, j)
    k.step(1, B2.log_id, Role.LEADER)
    for n in (2, 3):
        k.append(n, j, f)
    k.append(1, f)
    k.step(1, j.log_id, Role.LEADER)  # still leading: f is not committed
    assert k.c.violations == []
    k.step(1, f.log_id, Role.LEADER)
    assert k.kinds() == ["removed-leader"]


def test_change_answers() -> None:
    k = Cluster()
    leader_with_blank(k, (2, 3, 4, 5))
    j = membership_entry(lid(1, 1, 3), J)
    f = membership_entry(lid(1, 1, 4), F)
    for n in (1, 2, 4):
        k.append(n, j, f)
    k.step(1, f.log_id, Role.LEADER)
    assert k.c.violations == []
    k.c.on_change_answer(1, AddVoters({4: "n4", 5: "n5"}), False, f.log_id, F)
    assert k.c.violations == []
    k.c.on_change_answer(1, AddVoters({4: "n4"}), False, j.log_id, J)  # joint
    k.c.on_change_answer(1, AddVoters({4: "n4"}), False, f.log_id, M0)  # another membership
    k.c.on_change_answer(1, AddVoters({4: "n4"}), False, lid(1, 1, 9), F)  # not committed
    k.c.on_change_answer(1, AddVoters({6: "n6"}), False, f.log_id, F)  # 6 not added
    assert k.kinds() == ["change-answer"] * 4


def test_change_problem_names_what_is_missing() -> None:
    kept = mem({2, 3}, learners={1})
    assert change_problem(RemoveVoters([1]), True, kept) is None
    assert "not retained" in str(change_problem(RemoveVoters([1]), True, mem({2, 3})))
    assert "still members" in str(change_problem(RemoveVoters([1]), False, kept))
    assert change_problem(ReplaceVoters([2, 3]), False, kept) is None
    assert change_problem(UpdateNodes({2: "x"}), False, kept) is not None
    flex = Flexible([1, 2, 3], election=2, commit=2)
    as_flex = Membership.with_quorum(flex, INFO)
    assert change_problem(SetQuorum(flex), False, as_flex) is None
    assert change_problem(SetQuorum(flex), False, M0) is not None


def test_commit_durability_counts_with_the_membership_before_the_step() -> None:
    # The leader commits its blank under M0 (durable on 1 and 2) and, in the
    # same step, starts a change to {1, 4, 5}: the blank need not be durable
    # on a quorum of the new joint config.
    k = Cluster()
    for n in (1, 2):
        k.append(n, E1, B2)
    k.append(3, E1)
    k.append(1, membership_entry(lid(1, 1, 3), J))
    k.step(1, B2.log_id, Role.LEADER, before=M0)
    assert k.c.violations == []
    # Judged (wrongly) under the joint config it would not hold.
    k2 = Cluster()
    for n in (1, 2):
        k2.append(n, E1, B2)
    k2.step(1, B2.log_id, Role.LEADER, before=J)
    assert k2.kinds() == ["commit-durability"]


def test_full_sweep_covers_durable_logs() -> None:
    k = Cluster()
    leader_with_blank(k)
    bad = [E1, B2, membership_entry(lid(1, 1, 3), J), normal(lid(1, 1, 4), "x")]
    bad.append(membership_entry(lid(1, 1, 5), mem({1, 4, 5}, {4, 5})))
    k.v.durable[3] = bad
    k.c.check_memberships()
    assert k.kinds() == ["single-change"]
