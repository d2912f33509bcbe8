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
- **apply durability**: an entry a node applies is, at that moment, in that
  node's own durable log (a crash must not take out of the log an entry a
  durable state machine applied; a flush confirmed from before a truncation
  must not pass for the entry written since at the same index). Checked for
  entries that pass state machine safety: one finding per applied entry.
- **monotonic vote** per incarnation, and for the durable vote across
  restarts; **monotonic committed** per incarnation.
- **quorum durability**: when the commit point advances, and after a crash or
  a durable truncation, the last committed entry is in the durable log of a
  commit quorum of the membership the committing leader counted with (its
  effective membership before the step that committed).
- **persist before send**: a granted vote is durable before the response is
  sent; an append acknowledged as matching is durable on the responder.

Membership (checked after every step that appends a membership entry or
moves the committed membership; ``C`` is the greatest index committed
anywhere, i.e. the length of the global committed prefix):

- **single change**: in every log, every membership entry but the last lies
  at or below ``C`` — at most one membership change is uncommitted anywhere.
  (Not "below the node's own commit index": a follower may hold a committed
  joint entry and the final entry after it while its own commit index lags.)
- **change rule**: a leader creates a membership entry only once an entry of
  its own leader id is committed (known bug 2, docs/design/known-raft-bugs.md).
- **config chain**: in every log, consecutive membership entries share a
  config — the same voters with the same kind of quorum (extended joint
  consensus); so does the committed membership history.
- **config overlap**: the newest memberships of all nodes whose log holds the
  newest committed membership entry pairwise share a config (and share one
  with it). A shared config is safe on its own (``check_safe``), so every
  election quorum of one membership meets every commit quorum of the other:
  no two of them can elect and commit independently. (Commit quorums need
  not meet each other: with a flexible quorum they may not.) Nodes whose log
  lacks that entry are behind a committed entry: they cannot win an election
  (leader completeness) and are not counted.
- **effective membership**: each engine's membership is the newest membership
  entry of its own log (in effect on append; a truncation falls back).
- **removed leader**: a leader whose membership, committed in its own view,
  does not list it as a voter has stepped down by the end of that step.
- **change answers**: a change answered OK names a committed, uniform
  membership entry, which reflects the change asked for.
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
from raftcore.membership import (
    AddLearners,
    AddVoters,
    Change,
    Membership,
    RemoveNodes,
    RemoveVoters,
    ReplaceVoters,
    SetQuorum,
    UpdateNodes,
)
from raftcore.messages import AppendResponse, Message, VoteResponse
from raftcore.quorum import Majority, quorum_from_spec
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

    def memberships(
        self, node: NodeId, durable: bool = False
    ) -> Sequence[tuple[LogId, Membership]]:
        """The membership entries of the node's (volatile or durable) log, ascending."""
        ...


def config_keys(m: Membership) -> set[tuple[frozenset[NodeId], Any]]:
    """A membership's configs as ``(voters, quorum spec)``; spec ``None``: majority."""
    return {(c, m.config_spec(i)) for i, c in enumerate(m.configs)}


def share_config(a: Membership, b: Membership) -> bool:
    """Do ``a`` and ``b`` have a config in common: the same voters with the
    same kind of quorum? Then every election quorum of one meets every commit
    quorum of the other (each contains a quorum of the shared config, which
    is safe on its own), so they cannot elect and commit independently."""
    return not config_keys(a).isdisjoint(config_keys(b))


def _configs(m: Membership) -> list[str]:
    out = []
    for i, c in enumerate(m.configs):
        ids = ",".join(str(n) for n in sorted(c))
        spec = m.config_spec(i)
        out.append(f"{{{ids}}}" if spec is None else f"{spec[0]}{spec[2:] or ''}{{{ids}}}")
    return out


def change_problem(change: Change, retain: bool, result: Membership) -> str | None:
    """Why ``result`` (a change's final membership) does not reflect ``change``."""
    voters = result.voter_ids()
    members = result.node_ids()
    if isinstance(change, AddVoters):
        missing = {n for n, _ in change.nodes} - voters
        return f"voters {sorted(missing)} were not added" if missing else None
    if isinstance(change, ReplaceVoters):
        want = {n for n, _ in change.nodes}
        return None if voters == want else f"voters are {sorted(voters)}, not {sorted(want)}"
    if isinstance(change, AddLearners):
        missing = {n for n, _ in change.nodes} - members
        return f"members {sorted(missing)} were not added" if missing else None
    if isinstance(change, RemoveVoters):
        left = change.ids & voters
        if left:
            return f"voters {sorted(left)} were not removed"
        if retain and not change.ids <= members:
            return f"removed voters {sorted(change.ids - members)} were not retained"
        if not retain and change.ids & members:
            return f"removed voters {sorted(change.ids & members)} are still members"
        return None
    if isinstance(change, RemoveNodes):
        left = change.ids & members
        return f"nodes {sorted(left)} were not removed" if left else None
    if isinstance(change, UpdateNodes):
        wrong = [n for n, info in change.nodes if result.node_info(n) != info]
        return f"node info of {wrong} was not updated" if wrong else None
    if isinstance(change, SetQuorum):
        q = quorum_from_spec(change.quorum)
        spec = None if isinstance(q, Majority) else change.quorum
        got = (result.configs, result.config_spec(0))
        if got != ((q.voter_ids(),), spec):
            return f"the voters are {_configs(result)}, not {q!r}"
        return None
    return None


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
        #: ``(log id, membership)`` of every membership entry in the committed
        #: prefix, ascending: the committed membership history.
        self.committed_memberships: list[tuple[LogId, Membership]] = []
        #: Leader ids ``(term, node)`` of the entries in the committed prefix.
        self._committed_leaders: set[tuple[int, NodeId]] = set()
        #: Membership entries appended in the current step: node -> how many.
        self._step_memberships: dict[NodeId, int] = {}
        #: Membership entries created (first appended anywhere) in this step.
        self._step_created: list[tuple[NodeId, LogId]] = []
        #: The newest membership entry of each node's log, as last seen.
        self._newest_membership: dict[NodeId, LogId | None] = {}
        self._overlap_dirty = False
        #: Membership findings already reported (the sweeps see them again).
        self._seen: set[tuple[object, ...]] = set()
        self._leader_of_id: dict[tuple[int, NodeId], NodeId] = {}
        self._leader_of_term: dict[int, NodeId] = {}
        self._results: dict[int, Any] = {}
        #: The state machine's bytes at a log index, as the first node seen there had it.
        self._states: dict[int, bytes] = {}
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

    @property
    def committed_membership(self) -> tuple[LogId, Membership] | None:
        """The newest membership entry in the committed prefix."""
        cm = self.committed_memberships
        return cm[-1] if cm else None

    def is_committed(self, lid: LogId) -> bool:
        c = self.committed
        return 1 <= lid.index <= len(c) and c[lid.index - 1] == lid

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
            if e.kind is EntryKind.MEMBERSHIP:
                sm = self._step_memberships
                sm[node] = sm.get(node, 0) + 1
            rec = known.get(lid)
            if rec is None:
                known[lid] = (e, prev)
                if e.kind is EntryKind.MEMBERSHIP:
                    self._step_created.append((node, lid))
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

    def on_restart(self, node: NodeId, vote: Vote, applied: LogId = ZERO_LOG_ID) -> None:
        """A new incarnation of ``node`` started with ``vote``, its state
        machine restored up to ``applied`` (its latest snapshot)."""
        t = self._track(node)
        if not vote_ge(vote, t.durable_vote, self.mode):
            self.violation(
                "vote-monotonic",
                f"restarted with vote {vote!r} below its durable vote {t.durable_vote!r}",
                node,
            )
        t.vote = vote
        t.committed = ZERO_LOG_ID
        t.applied_index = applied.index
        t.is_leader = False
        self._overlap_dirty = True

    def on_crash(self, node: NodeId) -> None:
        t = self._track(node)
        t.is_leader = False
        self._overlap_dirty = True
        self.check_commit_durable()

    def on_state(
        self,
        node: NodeId,
        role: Role,
        vote: Vote,
        committed: LogId,
        membership: Callable[[], Membership | None],
    ) -> None:
        """The engine's role, vote and commit point after a step.

        ``membership`` gives the membership the node counted with if this
        step moves the global commit point: its effective membership before
        the step (a leader appends the next membership entry only after the
        commit that allows it, in the same step).
        """
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
        entries = self._entries
        leaders = self._committed_leaders
        for i in range(known + 1, idx + 1):
            lid = self.view.log_id_at(node, i)
            assert lid is not None
            self.committed.append(lid)
            leaders.add((lid.term, lid.node_id))
            rec = entries.get(lid)
            if rec is not None and rec[0].kind is EntryKind.MEMBERSHIP:
                self._on_membership_committed(lid, rec[0].data)
        self._commit_marks.append((t.vote.leader_id, idx))
        m = membership()
        if m is not None:
            self.commit_membership = m
        self.check_commit_durable()

    def _on_membership_committed(self, lid: LogId, m: Membership) -> None:
        cm = self.committed_memberships
        if cm and not share_config(cm[-1][1], m):
            self.violation(
                "config-chain",
                f"committed membership {lid} {_configs(m)} shares no voter config with the "
                f"committed membership before it, {cm[-1][0]} {_configs(cm[-1][1])}",
            )
        cm.append((lid, m))
        self._overlap_dirty = True

    # -- membership ------------------------------------------------------------

    def after_step(
        self, node: NodeId, role: Role, committed: LogId, membership: Membership | None
    ) -> None:
        """End of one engine step of ``node``: check the membership invariants
        for what the step changed. ``membership`` is the engine's effective one."""
        view = self.view
        ms = view.memberships(node)
        newest = ms[-1] if ms else None
        if newest is None:
            if membership is not None:
                self.violation(
                    "membership-effective",
                    f"engine membership {_configs(membership)} but no membership entry in its log",
                    node,
                )
        elif membership is not newest[1] and membership != newest[1]:
            self.violation(
                "membership-effective",
                f"engine membership {_configs(membership) if membership else None} is not the "
                f"newest membership entry of its log, {newest[0]} {_configs(newest[1])}",
                node,
            )
        appended = self._step_memberships.pop(node, 0)
        if appended:
            self.checks += 1
            self._check_membership_log(node, ms, appended, "log")
        if self._step_memberships:  # appended by another node: not expected
            for other, k in list(self._step_memberships.items()):
                self._check_membership_log(other, view.memberships(other), k, "log")
            self._step_memberships.clear()
        if self._step_created:
            for creator, lid in self._step_created:
                if lid.term > 0 and (lid.term, lid.node_id) not in self._committed_leaders:
                    self.violation(
                        "membership-change-rule",
                        f"leader {(lid.term, lid.node_id)} created membership entry {lid} before "
                        "any entry of its own was committed",
                        creator,
                    )
            self._step_created.clear()
        newest_id = newest[0] if newest is not None else None
        if self._newest_membership.get(node) != newest_id:
            self._newest_membership[node] = newest_id
            self._overlap_dirty = True
        if self._overlap_dirty:
            self._overlap_dirty = False
            self.check_config_overlap()
        if (
            role is Role.LEADER
            and newest is not None
            and not newest[1].is_voter(node)
            and newest[0].index <= committed.index
        ):
            self.violation(
                "removed-leader",
                f"still leader after its membership {newest[0]} {_configs(newest[1])}, "
                "which does not list it as a voter, committed",
                node,
            )

    def _once(self, *key: object) -> bool:
        """True the first time ``key`` is seen."""
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def _check_membership_log(
        self, node: NodeId, ms: Sequence[tuple[LogId, Membership]], tail: int, which: str
    ) -> None:
        """Single change and config chain over the last ``tail`` membership
        entries of a log (and the one before them)."""
        c = len(self.committed)
        n = len(ms)
        start = max(0, n - tail - 1)
        for i in range(start, n - 1):
            lid, m = ms[i]
            if lid.index > c:
                if not self._once("single-change", node, which, lid, ms[n - 1][0]):
                    break
                self.violation(
                    "single-change",
                    f"{which} holds membership entry {lid} {_configs(m)} above the committed "
                    f"index {c} and a later one, {ms[n - 1][0]} {_configs(ms[n - 1][1])}: two "
                    "uncommitted membership changes",
                    node,
                )
                break
        for i in range(max(start, 1), n):
            (a_id, a), (b_id, b) = ms[i - 1], ms[i]
            if not share_config(a, b) and self._once("config-chain", node, which, a_id, b_id):
                self.violation(
                    "config-chain",
                    f"{which} has membership {b_id} {_configs(b)} right after {a_id} "
                    f"{_configs(a)}: no voter config in common (voters switched without a "
                    "joint step)",
                    node,
                )

    def check_config_overlap(self) -> None:
        """The newest memberships of the nodes holding the newest committed
        membership entry pairwise share a voter config (and share one with it)."""
        mc = self.committed_membership
        if mc is None:
            return
        self.checks += 1
        mc_id, mc_m = mc
        view = self.view
        seen: dict[LogId, tuple[NodeId, Membership]] = {mc_id: (0, mc_m)}
        for n in sorted(self._nodes):
            if view.log_id_at(n, mc_id.index) != mc_id:
                continue
            ms = view.memberships(n)
            if not ms:
                continue
            lid, m = ms[-1]
            if lid in seen:
                continue
            for other_id, (holder, other) in seen.items():
                if not share_config(m, other) and self._once("config-overlap", lid, other_id):
                    whose = "the committed membership" if holder == 0 else f"node {holder}'s"
                    self.violation(
                        "config-overlap",
                        f"node {n}'s membership {lid} {_configs(m)} shares no voter config with "
                        f"{whose} {other_id} {_configs(other)}: an election quorum of one may "
                        f"miss a commit quorum of the other (newest committed membership "
                        f"{mc_id})",
                        n,
                    )
            seen[lid] = (n, m)

    def check_memberships(self) -> None:
        """Every node's whole volatile and durable log: single change and config
        chain (the manual driver's full sweep), then config overlap."""
        view = self.view
        for n in sorted(self._nodes):
            for durable in (False, True):
                ms = view.memberships(n, durable)
                self._check_membership_log(n, ms, len(ms), "durable log" if durable else "log")
        self.check_config_overlap()

    def on_change_answer(
        self, node: NodeId, change: Change, retain: bool, lid: LogId, m: Membership
    ) -> None:
        """``node`` answered a membership change OK with ``(lid, m)``."""
        self.checks += 1
        rec = self._entries.get(lid)
        if not self.is_committed(lid):
            self.violation(
                "change-answer", f"change {change!r} answered with {lid}, not committed", node
            )
        elif rec is None or rec[0].kind is not EntryKind.MEMBERSHIP or rec[0].data != m:
            self.violation(
                "change-answer",
                f"change {change!r} answered with {lid} {_configs(m)}, which is not that "
                "membership entry",
                node,
            )
        elif m.is_joint:
            self.violation(
                "change-answer", f"change {change!r} answered with joint {lid} {_configs(m)}", node
            )
        else:
            problem = change_problem(change, retain, m)
            if problem is not None:
                self.violation(
                    "change-answer", f"change {change!r} answered with {lid}: {problem}", node
                )

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

    def _check_apply_durable(self, node: NodeId, lid: LogId) -> None:
        """``node`` applies ``lid``: its own durable log must hold that entry.

        The durable log changes only between steps (flushes, crashes), so
        checking at the end of the applying step is checking at the apply.
        """
        view = self.view
        i = lid.index
        have = view.durable_log_id_at(node, i)
        if have == lid:
            return
        if have is not None:
            holds = f"holds {have} at index {i}"
        else:
            end = i - 1
            while end > 0 and view.durable_log_id_at(node, end) is None:
                end -= 1
            last = view.durable_log_id_at(node, end)
            holds = f"ends at index {end} ({last})" if end else "is empty"
        self.violation(
            "apply-durability",
            f"node {node} applied {lid} (index {i}) before it was durable in its own log: "
            f"the durable log {holds}",
            node,
        )

    # -- snapshots -------------------------------------------------------------------

    def on_snapshot_state(self, node: NodeId, lid: LogId, state: bytes, *, kind: str) -> None:
        """``node``'s state machine at ``lid``, as bytes: ``built`` into a
        snapshot, ``installed`` from a leader's, or ``restored`` on restart.

        Every node's state at one index must be the same (an installed
        snapshot equals what the others had there), and an install never
        moves a state machine backwards.
        """
        self.checks += 1
        t = self._track(node)
        idx = lid.index
        if kind == "installed":
            if idx < t.applied_index:
                self.violation(
                    "apply-monotonic",
                    f"installed a snapshot at {lid} after applying up to {t.applied_index}",
                    node,
                )
            t.applied_index = idx
            committed = self.committed
            if idx > len(committed) or committed[idx - 1] != lid:
                have = committed[idx - 1] if idx <= len(committed) else "nothing committed"
                self.violation(
                    "snapshot", f"installed a snapshot at {lid}; the log has {have} there", node
                )
        first = self._states.setdefault(idx, state)
        if first != state:
            self.violation(
                "snapshot-state",
                f"state machine at {lid} ({kind}) differs from another node's there",
                node,
            )

    def on_purge(self, node: NodeId, upto: LogId, own_committed: LogId) -> None:
        """Only committed entries are ever purged (no quorum can need them):
        ``upto`` is in the committed prefix and within the node's own commit
        index (``own_committed``, after the step that purges)."""
        self.checks += 1
        idx = upto.index
        committed = self.committed
        if idx > len(committed) or committed[idx - 1] != upto or idx > own_committed.index:
            self.violation(
                "purge-uncommitted",
                f"purged up to {upto}; committed here: {own_committed}, "
                f"anywhere: {committed[-1] if committed else 'nothing'}",
                node,
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
            else:
                self._check_apply_durable(node, e.log_id)
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
