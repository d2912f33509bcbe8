"""Raft safety invariants, checked incrementally after every engine step.

The simulator reports what it observes — every storage command, message,
applied entry, and each engine's role, vote and commit point after each
``handle`` call — and the checker keeps just enough global state to check,
in O(1) per observation (amortized):

- **election safety**: a leader's vote names itself and is committed; at most
  one node is ever leader for a given leader id, and in ``STANDARD`` mode at
  most one node is leader in a term.
- **log matching**: every ``AppendLog`` anywhere is recorded as
  ``log_id -> (entry, previous log id)``; the same log id must always denote
  the same entry with the same predecessor, and log ids increase along a log.
  By induction on the predecessor chain, two logs that share a log id share
  the whole prefix, so the checks below look at one index only.
- **leader completeness**: a new leader's log holds every entry committed
  under a leader id not greater than its own (checked at the last such
  entry; log matching covers the prefix). A leader of an older term elected
  late — a delayed vote reaching a stale candidate — need not hold entries
  committed in later terms: it can never gather a quorum for them anyway.
- **leader commit rule**: a leader advances its commit point only to an
  entry it proposed itself (earlier leaders' entries commit with it).
- **commit agreement**: the global committed prefix grows from the greatest
  ``committed`` any engine reports; every report must agree with it and lie
  in the reporter's own log; no node truncates a committed entry.
- **state machine safety**: the entry applied at index ``i`` is the committed
  entry ``i`` on every node, applied in order, with the same result.
- **monotonic vote** per incarnation, and for the durable vote across
  restarts; **monotonic committed** per incarnation.
- **quorum durability**: when the commit point advances, and after a crash or
  a durable truncation, the last committed entry is in the durable log of a
  commit quorum of the membership.
- **persist before send**: a granted vote is durable before the response is
  sent; an append acknowledged as matching is durable on the responder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from raftcore.entries import Entry, EntryKind
from raftcore.ids import (
    INITIAL_VOTE,
    ZERO_LOG_ID,
    LeaderIdMode,
    LogId,
    NodeId,
    Vote,
    compare_leader,
    vote_ge,
)
from raftcore.membership import Membership
from raftcore.messages import AppendResponse, Message, VoteResponse
from raftcore.state import Role

__all__ = ["ClusterView", "InvariantChecker", "InvariantViolation", "LeaderTerm"]


@attrs.frozen
class InvariantViolation:
    """One broken property: where (step, virtual time, node), which, and why."""

    step: int
    time: float
    node: NodeId | None
    kind: str
    message: str

    def __str__(self) -> str:
        where = f"node {self.node}" if self.node is not None else "cluster"
        return f"step {self.step} t={self.time:.6f} {where}: [{self.kind}] {self.message}"


class ClusterView(Protocol):
    """What the checker may look up about a node's storage."""

    def log_id_at(self, node: NodeId, index: int) -> LogId | None:
        """The node's current (volatile) log entry id at ``index``; 0 -> ZERO_LOG_ID."""
        ...

    def durable_log_id_at(self, node: NodeId, index: int) -> LogId | None:
        """The node's durable log entry id at ``index``; 0 -> ZERO_LOG_ID."""
        ...


@attrs.frozen
class LeaderTerm:
    """A node became leader: when, who, and with which vote."""

    step: int
    time: float
    node: NodeId
    vote: Vote


class _NodeTrack:
    __slots__ = (
        "applied_index",
        "committed",
        "durable_leaders",
        "durable_vote",
        "is_leader",
        "vote",
    )

    def __init__(self) -> None:
        self.vote: Vote = INITIAL_VOTE
        self.durable_vote: Vote = INITIAL_VOTE
        #: Every leader id this node ever saved a vote for, durably.
        self.durable_leaders: set[tuple[int, NodeId]] = set()
        self.committed: LogId = ZERO_LOG_ID
        self.applied_index = 0
        self.is_leader = False


class InvariantChecker:
    """Accumulates observations and records every violated property."""

    def __init__(
        self,
        mode: LeaderIdMode,
        view: ClusterView,
        *,
        on_violation: Callable[[InvariantViolation], None] | None = None,
    ) -> None:
        self.mode = mode
        self.view = view
        self.on_violation = on_violation
        self.violations: list[InvariantViolation] = []
        self.step = 0
        self.time = 0.0
        self.node: NodeId | None = None
        self.checks = 0
        self.leaders: list[LeaderTerm] = []
        self._nodes: dict[NodeId, _NodeTrack] = {}
        self._entries: dict[LogId, tuple[Entry, LogId]] = {}
        #: committed[i - 1] is the log id of the committed entry at index i.
        self.committed: list[LogId] = []
        #: The membership the last commit advance was judged under.
        self.commit_membership: Membership | None = None
        self._leader_of_id: dict[tuple[int, NodeId], NodeId] = {}
        self._leader_of_term: dict[int, NodeId] = {}
        self._results: dict[int, Any] = {}
        #: ``(leader id, index)`` per advance of the global commit point: the
        #: leader under which the prefix up to ``index`` became committed.
        self._commit_marks: list[tuple[tuple[int, NodeId], int]] = []

    # -- context --------------------------------------------------------------

    def at(self, step: int, time: float, node: NodeId | None) -> None:
        """Set the step the next observations belong to."""
        self.step = step
        self.time = time
        self.node = node

    def violation(self, kind: str, message: str, node: NodeId | None = None) -> None:
        v = InvariantViolation(
            self.step, self.time, node if node is not None else self.node, kind, message
        )
        self.violations.append(v)
        if self.on_violation is not None:
            self.on_violation(v)

    def _track(self, node: NodeId) -> _NodeTrack:
        t = self._nodes.get(node)
        if t is None:
            t = self._nodes[node] = _NodeTrack()
        return t

    @property
    def committed_index(self) -> int:
        return len(self.committed)

    def applied_index(self, node: NodeId) -> int:
        """The last index ``node``'s current incarnation applied."""
        t = self._nodes.get(node)
        return t.applied_index if t is not None else 0

    @property
    def elections(self) -> int:
        return len(self.leaders)

    # -- storage ----------------------------------------------------------------

    def on_append(self, node: NodeId, prev: LogId, entries: tuple[Entry, ...]) -> None:
        """``node`` appends ``entries`` right after its entry ``prev``."""
        self.checks += 1
        known = self._entries
        for e in entries:
            lid = e.log_id
            if lid.index != prev.index + 1:
                self.violation(
                    "log-matching", f"entry {lid} appended after {prev} (index gap)", node
                )
            elif (lid.term, lid.node_id) < (prev.term, prev.node_id):
                self.violation(
                    "log-matching",
                    f"entry {lid} follows {prev}: leader ids must not decrease along a log",
                    node,
                )
            rec = known.get(lid)
            if rec is None:
                known[lid] = (e, prev)
            else:
                first, first_prev = rec
                if first != e:
                    self.violation(
                        "log-matching",
                        f"log id {lid} denotes two different entries: {first!r} and {e!r}",
                        node,
                    )
                elif first_prev != prev:
                    self.violation(
                        "log-matching",
                        f"log id {lid} has two predecessors: {first_prev} and {prev}",
                        node,
                    )
            prev = lid

    def on_truncate(self, node: NodeId, since: int, existing: LogId | None) -> None:
        """``node`` deletes its entries from ``since``; ``existing`` was its entry there."""
        self.checks += 1
        if existing is None or since > len(self.committed):
            return
        if self.committed[since - 1] == existing:
            self.violation(
                "commit-durability",
                f"truncating from index {since} deletes committed entry {existing} "
                f"(committed up to index {len(self.committed)})",
                node,
            )

    def on_durable(self, node: NodeId, votes: Sequence[Vote] = (), truncated: bool = False) -> None:
        """Part of ``node``'s writes became durable (a flush, or a torn crash):
        ``votes`` are the saved votes among them, in order."""
        t = self._track(node)
        for vote in votes:
            if vote != t.durable_vote and not vote_ge(vote, t.durable_vote, self.mode):
                self.violation(
                    "vote-monotonic",
                    f"durable vote went from {t.durable_vote!r} to {vote!r}",
                    node,
                )
            t.durable_vote = vote
            t.durable_leaders.add(vote.leader_id)
        if truncated:
            self.check_commit_durable()

    # -- network ----------------------------------------------------------------

    def _vote_persisted(self, node: NodeId, vote: Vote, durable_vote: Vote) -> bool:
        """Was ``vote``'s leader id durably saved by ``node`` (or superseded)?

        A grant persisted and then superseded before the flush was reported
        is still a persisted grant: in standard mode a voter may grant
        candidate A and then accept B, established in the same term.
        """
        if vote.leader_id in self._track(node).durable_leaders:
            return True
        c = compare_leader(
            durable_vote.term, durable_vote.node_id, vote.term, vote.node_id, self.mode
        )
        return c is not None and c >= 0

    def on_send(self, node: NodeId, msg: Message, durable_vote: Vote) -> None:
        """Persist before send: what a response promises must already be durable."""
        if isinstance(msg, VoteResponse):
            if msg.granted and not msg.pre_vote:
                self.checks += 1
                if not self._vote_persisted(node, msg.vote, durable_vote):
                    self.violation(
                        "persist-before-send",
                        f"vote for {msg.vote!r} granted while the durable vote is {durable_vote!r}",
                        node,
                    )
        elif isinstance(msg, AppendResponse) and msg.success:
            self.checks += 1
            m = msg.matching
            got = self.view.durable_log_id_at(node, m.index)
            if got != m:
                self.violation(
                    "persist-before-send",
                    f"append acknowledged as matching {m} but the durable log has "
                    f"{got if got is not None else 'nothing'} at index {m.index}",
                    node,
                )
            if not self._vote_persisted(node, msg.vote, durable_vote):
                self.violation(
                    "persist-before-send",
                    f"append from leader {msg.vote!r} acknowledged while the durable vote "
                    f"is {durable_vote!r}",
                    node,
                )

    # -- engine state -------------------------------------------------------------

    def on_restart(self, node: NodeId, vote: Vote) -> None:
        """A new incarnation of ``node`` started with ``vote``."""
        t = self._track(node)
        if not vote_ge(vote, t.durable_vote, self.mode):
            self.violation(
                "vote-monotonic",
                f"restarted with vote {vote!r} below its durable vote {t.durable_vote!r}",
                node,
            )
        t.vote = vote
        t.committed = ZERO_LOG_ID
        t.applied_index = 0
        t.is_leader = False

    def on_crash(self, node: NodeId) -> None:
        t = self._track(node)
        t.is_leader = False
        self.check_commit_durable()

    def on_state(
        self,
        node: NodeId,
        role: Role,
        vote: Vote,
        committed: LogId,
        membership: Callable[[], Membership | None],
    ) -> None:
        """The engine's role, vote and commit point after a step."""
        self.checks += 1
        t = self._track(node)
        if vote != t.vote:
            if not vote_ge(vote, t.vote, self.mode):
                self.violation("vote-monotonic", f"vote went from {t.vote!r} to {vote!r}", node)
            t.vote = vote

        if committed != t.committed:
            if (
                role is Role.LEADER
                and t.is_leader
                and committed.index > t.committed.index
                and (committed.term, committed.node_id) != vote.leader_id
            ):
                self.violation(
                    "leader-commit-rule",
                    f"leader {vote!r} advanced its commit point to {committed}, an entry of "
                    "another leader (only its own entries may be committed by counting)",
                    node,
                )
            self._on_commit(node, t, committed, membership)

        if role is Role.LEADER:
            if not t.is_leader:
                self._on_new_leader(node, vote)
            t.is_leader = True
        else:
            t.is_leader = False

    def _on_new_leader(self, node: NodeId, vote: Vote) -> None:
        self.leaders.append(LeaderTerm(self.step, self.time, node, vote))
        if vote.node_id != node:
            self.violation("election-safety", f"leader holds a vote for another node: {vote!r}")
        if not vote.committed:
            self.violation("election-safety", f"leader's vote {vote!r} is not committed")
        lid = vote.leader_id
        other = self._leader_of_id.setdefault(lid, node)
        if other != node:
            self.violation(
                "election-safety", f"nodes {other} and {node} both leaders for leader id {lid}"
            )
        if self.mode is LeaderIdMode.STANDARD:
            other = self._leader_of_term.setdefault(vote.term, node)
            if other != node:
                self.violation(
                    "election-safety", f"nodes {other} and {node} both leaders in term {vote.term}"
                )
        c = self._committed_before(vote)
        if c:
            have = self.view.log_id_at(node, c)
            if have != self.committed[c - 1]:
                self.violation(
                    "leader-completeness",
                    f"new leader {vote!r} has {have if have is not None else 'no entry'} at "
                    f"index {c}, but {self.committed[c - 1]} was committed there by an "
                    "earlier leader",
                )

    def _committed_before(self, vote: Vote) -> int:
        """The last index committed under a leader id ``<=`` the vote's."""
        for key, index in reversed(self._commit_marks):
            if self.mode is LeaderIdMode.STANDARD:
                if key[0] <= vote.term:
                    return index
            elif key <= vote.leader_id:
                return index
        return 0

    def _on_commit(
        self,
        node: NodeId,
        t: _NodeTrack,
        committed: LogId,
        membership: Callable[[], Membership | None],
    ) -> None:
        old = t.committed
        t.committed = committed
        if committed.index < old.index or (committed.index == old.index and committed != old):
            self.violation("commit-monotonic", f"committed went from {old} to {committed}", node)
            return
        idx = committed.index
        have = self.view.log_id_at(node, idx)
        if have != committed:
            self.violation(
                "commit-agreement",
                f"committed {committed} is not in the node's log (it has {have} there)",
                node,
            )
            return
        known = len(self.committed)
        if idx <= known:
            if self.committed[idx - 1] != committed:
                self.violation(
                    "commit-agreement",
                    f"committed {committed} but {self.committed[idx - 1]} was committed at "
                    f"index {idx}",
                    node,
                )
            return
        # The global committed prefix grows: take the new ids from this log.
        if known and self.view.log_id_at(node, known) != self.committed[known - 1]:
            self.violation(
                "commit-agreement",
                f"commits {committed} on a log that lacks committed entry "
                f"{self.committed[known - 1]}",
                node,
            )
            return
        for i in range(known + 1, idx + 1):
            lid = self.view.log_id_at(node, i)
            assert lid is not None
            self.committed.append(lid)
        self._commit_marks.append((t.vote.leader_id, idx))
        m = membership()
        if m is not None:
            self.commit_membership = m
        self.check_commit_durable()

    def check_commit_durable(self) -> None:
        """The last committed entry is durable on a commit quorum."""
        c = len(self.committed)
        m = self.commit_membership
        if not c or m is None:
            return
        self.checks += 1
        top = self.committed[c - 1]
        view = self.view
        holders = [n for n in sorted(m.voter_ids()) if view.durable_log_id_at(n, c) == top]
        if not m.quorum_set().is_commit_quorum(holders):
            self.violation(
                "commit-durability",
                f"committed entry {top} is durable only on {holders}, not a quorum of "
                f"{[sorted(cfg) for cfg in m.configs]}",
            )

    def on_apply(self, node: NodeId, entries: tuple[Entry, ...], results: dict[int, Any]) -> None:
        """``node`` applied ``entries`` (in order); ``results`` by index for NORMAL ones."""
        self.checks += 1
        t = self._track(node)
        committed = self.committed
        for e in entries:
            i = e.log_id.index
            if i != t.applied_index + 1:
                self.violation(
                    "apply-order",
                    f"applied {e.log_id} after index {t.applied_index}",
                    node,
                )
            t.applied_index = i
            if i > len(committed):
                self.violation(
                    "state-machine-safety",
                    f"applied {e.log_id} beyond the committed index {len(committed)}",
                    node,
                )
            elif committed[i - 1] != e.log_id:
                self.violation(
                    "state-machine-safety",
                    f"applied {e.log_id} at index {i} where {committed[i - 1]} is committed",
                    node,
                )
            elif i > t.committed.index:
                self.violation(
                    "state-machine-safety",
                    f"applied {e.log_id} beyond its own committed {t.committed}",
                    node,
                )
            if e.kind is EntryKind.NORMAL and i in results:
                r = results[i]
                if i in self._results:
                    if self._results[i] != r:
                        self.violation(
                            "state-machine-determinism",
                            f"entry {e.log_id} gave {r!r}; another node got {self._results[i]!r}",
                            node,
                        )
                else:
                    self._results[i] = r
