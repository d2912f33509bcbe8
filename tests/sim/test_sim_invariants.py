"""The invariant checker catches deliberately injected violations."""

from __future__ import annotations

from raftcore.entries import Entry, blank, normal
from raftcore.ids import ZERO_LOG_ID, LeaderIdMode, LogId, NodeId, Vote
from raftcore.membership import Membership
from raftcore.messages import AppendResponse, VoteResponse
from raftcore.sim.invariants import InvariantChecker, InvariantViolation
from raftcore.state import Role

MEMBERS = Membership.of([1, 2, 3])


class FakeView:
    """Logs per node, set directly by the tests."""

    def __init__(self) -> None:
        self.logs: dict[NodeId, list[LogId]] = {1: [], 2: [], 3: []}
        self.durable: dict[NodeId, list[LogId]] = {1: [], 2: [], 3: []}

    @staticmethod
    def _at(log: list[LogId], index: int) -> LogId | None:
        if index == 0:
            return ZERO_LOG_ID
        return log[index - 1] if 1 <= index <= len(log) else None

    def log_id_at(self, node: NodeId, index: int) -> LogId | None:
        return self._at(self.logs[node], index)

    def durable_log_id_at(self, node: NodeId, index: int) -> LogId | None:
        return self._at(self.durable[node], index)

    def memberships(self, node: NodeId, durable: bool = False) -> list[tuple[LogId, Membership]]:
        return []  # see test_sim_membership_invariants.py


def lid(term: int, node: int, index: int) -> LogId:
    return LogId(term, node, index)


def make(mode: LeaderIdMode = LeaderIdMode.ADVANCED) -> tuple[InvariantChecker, FakeView]:
    view = FakeView()
    return InvariantChecker(mode, view), view


def kinds(c: InvariantChecker) -> list[str]:
    return [v.kind for v in c.violations]


def become_leader(c: InvariantChecker, node: NodeId, term: int) -> None:
    c.on_state(node, Role.LEADER, Vote(term, node, True), ZERO_LOG_ID, lambda: MEMBERS)


def commit(c: InvariantChecker, v: FakeView, node: NodeId, log: list[LogId]) -> None:
    """``node`` has ``log`` (durable on every node) and commits all of it."""
    for n in (1, 2, 3):
        v.durable[n] = list(log)
    v.logs[node] = list(log)
    c.on_state(node, Role.FOLLOWER, Vote(1, 1, True), log[-1], lambda: MEMBERS)


def test_clean_history_has_no_violations() -> None:
    c, v = make()
    become_leader(c, 1, 1)
    entries = (blank(lid(1, 1, 1)), normal(lid(1, 1, 2), "x"))
    c.on_append(1, ZERO_LOG_ID, entries)
    c.on_append(2, ZERO_LOG_ID, entries)
    log = [e.log_id for e in entries]
    for n in (1, 2, 3):
        v.logs[n] = list(log)
        v.durable[n] = list(log)
    c.on_state(1, Role.LEADER, Vote(1, 1, True), log[-1], lambda: MEMBERS)
    c.on_apply(1, entries, {2: None})
    c.on_state(2, Role.FOLLOWER, Vote(1, 1, True), log[-1], lambda: MEMBERS)
    c.on_apply(2, entries, {2: None})
    c.on_send(2, AppendResponse(Vote(1, 1, True), True, log[-1], 0, log[-1], 1, 0.0), Vote(1, 1))
    assert c.violations == []
    assert c.committed_index == 2 and c.elections == 1 and c.checks > 0


def test_two_leaders_in_one_term_standard_mode() -> None:
    c, _ = make(LeaderIdMode.STANDARD)
    become_leader(c, 1, 3)
    become_leader(c, 2, 3)
    assert kinds(c) == ["election-safety"]
    assert "both leaders in term 3" in c.violations[0].message


def test_two_leaders_in_one_term_are_fine_in_advanced_mode() -> None:
    c, _ = make(LeaderIdMode.ADVANCED)
    become_leader(c, 1, 3)
    become_leader(c, 2, 3)
    assert c.violations == []


def test_leader_with_foreign_or_uncommitted_vote() -> None:
    c, _ = make()
    c.on_state(1, Role.LEADER, Vote(2, 2, True), ZERO_LOG_ID, lambda: MEMBERS)
    c.on_state(3, Role.LEADER, Vote(2, 3, False), ZERO_LOG_ID, lambda: MEMBERS)
    assert kinds(c) == ["election-safety", "election-safety"]


def test_same_log_id_two_entries() -> None:
    c, _ = make()
    c.on_append(1, ZERO_LOG_ID, (normal(lid(1, 1, 1), "a"),))
    c.on_append(2, ZERO_LOG_ID, (normal(lid(1, 1, 1), "b"),))
    assert kinds(c) == ["log-matching"]


def test_same_log_id_two_predecessors() -> None:
    c, _ = make()
    c.on_append(1, lid(1, 1, 1), (blank(lid(2, 1, 2)),))
    c.on_append(2, lid(1, 2, 1), (blank(lid(2, 1, 2)),))
    assert kinds(c) == ["log-matching"]
    assert "two predecessors" in c.violations[0].message


def test_log_ids_must_increase_along_a_log() -> None:
    c, _ = make()
    c.on_append(1, lid(3, 1, 4), (blank(lid(2, 1, 5)),))
    assert kinds(c) == ["log-matching"]


def test_diverging_committed_entry() -> None:
    c, v = make()
    commit(c, v, 1, [lid(1, 1, 1), lid(1, 1, 2)])
    v.logs[2] = [lid(1, 1, 1), lid(2, 2, 2)]
    c.on_state(2, Role.FOLLOWER, Vote(2, 2, True), lid(2, 2, 2), lambda: MEMBERS)
    assert kinds(c) == ["commit-agreement"]


def test_commit_not_in_own_log() -> None:
    c, v = make()
    v.logs[1] = [lid(1, 1, 1)]
    c.on_state(1, Role.LEADER, Vote(1, 1, True), lid(1, 1, 2), lambda: MEMBERS)
    assert "commit-agreement" in kinds(c)


def test_commit_going_backward() -> None:
    c, v = make()
    commit(c, v, 1, [lid(1, 1, 1), lid(1, 1, 2)])
    c.on_state(1, Role.FOLLOWER, Vote(1, 1, True), lid(1, 1, 1), lambda: MEMBERS)
    assert kinds(c) == ["commit-monotonic"]


def test_commit_without_durable_quorum() -> None:
    c, v = make()
    log = [lid(1, 1, 1)]
    v.logs[1] = log
    v.durable[1] = log  # only the leader has it on disk
    c.on_state(1, Role.LEADER, Vote(1, 1, True), log[-1], lambda: MEMBERS)
    assert kinds(c) == ["commit-durability"]


def test_committed_entry_lost_from_quorum_after_crash() -> None:
    c, v = make()
    commit(c, v, 1, [lid(1, 1, 1)])
    v.durable[2] = []
    v.durable[3] = []
    c.on_crash(3)
    assert kinds(c) == ["commit-durability"]


def test_truncating_a_committed_entry() -> None:
    c, v = make()
    commit(c, v, 1, [lid(1, 1, 1), lid(1, 1, 2)])
    c.on_truncate(2, 2, lid(1, 1, 2))  # deleting the committed entry itself
    c.on_truncate(3, 2, lid(1, 3, 2))  # a stale uncommitted entry: fine
    c.on_truncate(3, 3, None)
    assert kinds(c) == ["commit-durability"]


def test_leader_missing_a_committed_entry() -> None:
    c, v = make()
    commit(c, v, 1, [lid(1, 1, 1), lid(1, 1, 2)])
    v.logs[3] = [lid(1, 1, 1)]
    become_leader(c, 3, 2)
    assert kinds(c) == ["leader-completeness"]


def test_stale_leader_need_not_hold_later_commits() -> None:
    # Term 5 committed index 1, term 9 committed index 2; a candidate of term
    # 7 that collects a delayed vote becomes leader without index 2.
    c, v = make(LeaderIdMode.STANDARD)
    v.logs[1] = [lid(5, 1, 1)]
    for n in (1, 2, 3):
        v.durable[n] = [lid(5, 1, 1), lid(9, 1, 2)]
    c.on_state(1, Role.LEADER, Vote(5, 1, True), lid(5, 1, 1), lambda: MEMBERS)
    c.on_restart(1, Vote(9, 1, True))
    v.logs[1] = [lid(5, 1, 1), lid(9, 1, 2)]
    c.on_state(1, Role.LEADER, Vote(9, 1, True), lid(9, 1, 2), lambda: MEMBERS)
    assert c.violations == [] and c.committed_index == 2
    v.logs[3] = [lid(5, 1, 1), lid(7, 3, 2)]
    become_leader(c, 3, 7)
    assert c.violations == []
    v.logs[2] = [lid(5, 1, 1)]
    become_leader(c, 2, 10)
    assert kinds(c) == ["leader-completeness"]


def test_vote_going_backward() -> None:
    c, _ = make()
    c.on_state(1, Role.FOLLOWER, Vote(3, 2, False), ZERO_LOG_ID, lambda: MEMBERS)
    c.on_state(1, Role.FOLLOWER, Vote(2, 3, False), ZERO_LOG_ID, lambda: MEMBERS)
    assert kinds(c) == ["vote-monotonic"]


def test_double_vote_in_standard_mode() -> None:
    c, _ = make(LeaderIdMode.STANDARD)
    c.on_state(1, Role.FOLLOWER, Vote(3, 2, False), ZERO_LOG_ID, lambda: MEMBERS)
    c.on_state(1, Role.FOLLOWER, Vote(3, 3, False), ZERO_LOG_ID, lambda: MEMBERS)
    assert kinds(c) == ["vote-monotonic"]
    c, _ = make(LeaderIdMode.STANDARD)
    c.on_state(1, Role.FOLLOWER, Vote(3, 2, False), ZERO_LOG_ID, lambda: MEMBERS)
    c.on_state(1, Role.FOLLOWER, Vote(3, 3, True), ZERO_LOG_ID, lambda: MEMBERS)
    assert c.violations == []  # an established leader supersedes a candidate


def test_durable_vote_going_backward_across_restart() -> None:
    c, _ = make()
    c.on_durable(1, [Vote(4, 1, True)])
    c.on_restart(1, Vote(3, 1, True))
    c.on_durable(1, [Vote(2, 2, False)])
    assert kinds(c) == ["vote-monotonic", "vote-monotonic"]


def test_grant_persisted_then_superseded_in_one_flush() -> None:
    # Standard mode: grant candidate 5 in term 112, then accept leader 2
    # established in term 112; one flush covers both and releases the grant.
    c, _ = make(LeaderIdMode.STANDARD)
    c.on_durable(3, [Vote(112, 5, False), Vote(112, 2, True)])
    grant = VoteResponse(Vote(112, 5), True, Vote(112, 5), ZERO_LOG_ID)
    c.on_send(3, grant, Vote(112, 2, True))
    assert c.violations == []
    # A grant for a candidate never saved is still caught.
    other = VoteResponse(Vote(112, 4), True, Vote(112, 4), ZERO_LOG_ID)
    c.on_send(3, other, Vote(112, 2, True))
    assert kinds(c) == ["persist-before-send"]


def test_applied_entry_diverges_or_uncommitted() -> None:
    c, v = make()
    commit(c, v, 1, [lid(1, 1, 1)])
    c.on_state(2, Role.FOLLOWER, Vote(1, 1, True), ZERO_LOG_ID, lambda: MEMBERS)
    v.logs[2] = [lid(1, 1, 1)]
    c.on_state(2, Role.FOLLOWER, Vote(1, 1, True), lid(1, 1, 1), lambda: MEMBERS)
    c.on_apply(2, (normal(lid(1, 2, 1), "x"),), {})
    c.on_apply(2, (normal(lid(1, 1, 2), "y"),), {})
    assert kinds(c) == ["state-machine-safety", "state-machine-safety"]


def test_apply_out_of_order_and_nondeterministic_results() -> None:
    c, v = make()
    log = [lid(1, 1, 1), lid(1, 1, 2), lid(1, 1, 3)]
    commit(c, v, 1, log)
    v.logs[2] = list(log)
    c.on_state(2, Role.FOLLOWER, Vote(1, 1, True), log[-1], lambda: MEMBERS)
    entries: list[Entry] = [normal(x, "d") for x in log]
    c.on_apply(1, (entries[0],), {1: "r1"})
    c.on_apply(1, (entries[2],), {3: "r3"})
    c.on_apply(2, (entries[0],), {1: "other"})
    assert kinds(c) == ["apply-order", "state-machine-determinism"]


def test_persist_before_send() -> None:
    c, v = make()
    c.on_send(2, VoteResponse(Vote(5, 1), True, Vote(5, 1), ZERO_LOG_ID), Vote(4, 1, True))
    c.on_send(2, VoteResponse(Vote(5, 1), True, Vote(5, 1), ZERO_LOG_ID, True), Vote(4, 1))
    v.durable[2] = [lid(1, 1, 1)]
    ok = AppendResponse(Vote(1, 1, True), True, lid(1, 1, 1), 0, lid(1, 1, 2), 1, 0.0)
    bad = AppendResponse(Vote(1, 1, True), True, lid(1, 1, 2), 0, lid(1, 1, 2), 1, 0.0)
    c.on_send(2, ok, Vote(1, 1, False))
    c.on_send(2, bad, Vote(1, 1, False))
    assert kinds(c) == ["persist-before-send", "persist-before-send"]


def test_violation_records_step_time_and_node() -> None:
    c, _ = make(LeaderIdMode.STANDARD)
    seen: list[InvariantViolation] = []
    c.on_violation = seen.append
    c.at(17, 1.25, 2)
    become_leader(c, 1, 1)
    become_leader(c, 2, 1)
    (v,) = c.violations
    assert (v.step, v.time, v.node) == (17, 1.25, 2) and seen == [v]
    assert str(v).startswith("step 17 t=1.250000 node 2: [election-safety]")


def test_leader_commits_only_its_own_entries() -> None:
    c, v = make()
    become_leader(c, 1, 2)
    log = [lid(1, 2, 1), lid(2, 1, 2)]
    for n in (1, 2, 3):
        v.logs[n] = list(log)
        v.durable[n] = list(log)
    c.on_state(1, Role.LEADER, Vote(2, 1, True), log[0], lambda: MEMBERS)
    assert kinds(c) == ["leader-commit-rule"]
    c.on_state(1, Role.LEADER, Vote(2, 1, True), log[1], lambda: MEMBERS)
    assert kinds(c) == ["leader-commit-rule"]
