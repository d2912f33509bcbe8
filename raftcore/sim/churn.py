"""Membership churn: a client that keeps changing the cluster's membership.

With the ``churn`` fault class the simulated cluster has ``spares`` nodes
beyond the initial voters; they start uninitialized (no log, no membership)
and only answer until a change adds them. ``ChurnClient`` sends a random
``ChangeMembership`` every ``interval`` (on average) to the node it believes
leads — the last ``NotLeader`` hint, else the simulator's view of the leader,
sometimes a random node — and records every outcome:

- add learners, promote learners (``AddVoters``), add voters directly;
- remove voters, with and without ``retain``, the leader among them;
- replace every voter: a random set from the node pool, shrinking to one
  voter and growing back again;
- remove nodes that are no longer voters, update node info;
- switch the voters to a flexible or hierarchical quorum and back to a
  majority (``SetQuorum``: the only voter change such a config accepts);
- now and then an impossible change (``InvalidMembershipChange``), a stale
  ``expected`` (``MembershipMismatch``) or a second change while one is
  still running (``MembershipChangeInProgress``).

The node pool is exactly the simulated nodes, so whatever the voters become,
every one of them exists and restarts when the faults heal: the cluster can
always make progress again. Liveness after healing is judged on the final
committed membership (removed nodes need not catch up).

Changes are chosen from the membership the target node has in effect (the
simulator is omniscient), so most are valid for it; the engine decides.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol

import attrs

from raftcore.errors import (
    ClientError,
    InvalidMembershipChange,
    LeadershipLost,
    MembershipChangeInProgress,
    MembershipMismatch,
    NodeStopped,
    NotInitialized,
    NotLeader,
)
from raftcore.ids import LogId, NodeId
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
from raftcore.quorum import Flexible, Hierarchical, Majority, QuorumSet
from raftcore.sim.rng import Rng

__all__ = ["OUTCOMES", "ChurnClient", "ChurnDriver", "ChurnRecord", "classify_change"]

#: Every outcome a change request can have, as counted in ``stats``.
OUTCOMES = (
    "ok",
    "not_leader",
    "in_progress",
    "invalid",
    "mismatch",
    "leadership_lost",
    "stopped",
    "refused",
    "lost",
    "timeout",
    "unknown",
)


def classify_change(error: ClientError | None) -> str:
    """The outcome name of an engine answer to a change request."""
    if error is None:
        return "ok"
    if isinstance(error, NotLeader | NotInitialized):
        return "not_leader"
    if isinstance(error, MembershipChangeInProgress):
        return "in_progress"
    if isinstance(error, InvalidMembershipChange):
        return "invalid"
    if isinstance(error, MembershipMismatch):
        return "mismatch"
    if isinstance(error, LeadershipLost):
        return "leadership_lost"
    if isinstance(error, NodeStopped):
        return "stopped"
    return "unknown"


class ChurnDriver(Protocol):
    """What the churn client needs from the simulation."""

    @property
    def now(self) -> float: ...

    def schedule(self, delay: float, fn: Callable[..., None], *args: Any) -> None: ...

    def new_request_id(self) -> int: ...

    def submit_change(
        self,
        node: NodeId,
        request_id: Hashable,
        change: Change,
        retain: bool,
        expected: LogId | None,
    ) -> None:
        """Send a change request to ``node``; answered through ``on_response``
        (or ``on_refused`` / ``on_lost``)."""
        ...

    def membership_of(self, node: NodeId) -> Membership | None:
        """``node``'s effective membership, if it is up."""
        ...

    def committed_membership(self) -> tuple[LogId, Membership] | None: ...

    def find_leader(self) -> NodeId | None: ...

    def note(self, kind: str, text: str) -> None: ...


@attrs.define
class ChurnRecord:
    """One change request and what became of it."""

    request_id: Hashable
    node: NodeId
    kind: str
    change: Change
    retain: bool
    expected: LogId | None
    start: float
    end: float | None = None
    outcome: str | None = None
    #: The ``(log id, membership)`` of an OK answer.
    result: tuple[LogId, Membership] | None = None


def _ids(ns: Any) -> str:
    return ",".join(str(n) for n in sorted(ns))


def describe_change(change: Change, retain: bool = False) -> str:
    if isinstance(change, RemoveVoters | RemoveNodes):
        body = _ids(change.ids)
    elif isinstance(change, SetQuorum):
        body = repr(change.quorum)
    else:
        body = _ids(n for n, _ in change.nodes)
    return f"{type(change).__name__}({body}){' retain' if retain else ''}"


class ChurnClient:
    """Sends random membership changes; at most a couple outstanding."""

    def __init__(
        self,
        driver: ChurnDriver,
        rng: Rng,
        pool: tuple[NodeId, ...],
        *,
        interval: float,
        timeout: float,
    ) -> None:
        self.driver = driver
        self.rng = rng
        self.pool = tuple(sorted(pool))
        self.interval = interval
        self.timeout = timeout
        self.active = False
        self.hint: NodeId | None = None
        self.records: list[ChurnRecord] = []
        self.outcomes: dict[str, int] = {o: 0 for o in OUTCOMES}
        self.kinds: dict[str, int] = {}
        self._open: dict[Hashable, ChurnRecord] = {}
        self._info_seq = 0
        self._last_ok: LogId | None = None

    @property
    def outstanding(self) -> int:
        return len(self._open)

    def start(self) -> None:
        self.active = True
        self.driver.schedule(self.rng.expovariate(self.interval), self._tick)

    def stop(self) -> None:
        """Send no more changes (outstanding ones still complete)."""
        self.active = False

    def abandon(self) -> None:
        for rid in list(self._open):
            self._finish(rid, "timeout")

    def _tick(self) -> None:
        if not self.active:
            return
        # Usually one change at a time; sometimes a second one on top, which
        # the leader must refuse (or hold, if it has not started the first).
        # With no leader in sight, mostly wait, as an operator would.
        r = self.rng
        if (not self._open or r.chance(0.1)) and (
            self.hint is not None or self.driver.find_leader() is not None or r.chance(0.2)
        ):
            self._issue()
        self.driver.schedule(self.rng.expovariate(self.interval), self._tick)

    # -- choosing ---------------------------------------------------------------

    def _target(self) -> NodeId:
        r = self.rng
        if self.hint is not None and r.chance(0.9):
            return self.hint
        leader = self.driver.find_leader()
        if leader is not None and r.chance(0.85):
            return leader
        return r.choice(self.pool)

    def _info(self, n: NodeId) -> str:
        return f"n{n}"

    def _sample(self, items: Any, lo: int, hi: int) -> list[NodeId]:
        """Between ``lo`` and ``hi`` of ``items`` (as many as there are, at most)."""
        seq = sorted(items)
        lo = min(lo, len(seq))
        k = self.rng.randint(lo, max(lo, min(hi, len(seq))))
        return sorted(self.rng.sample(seq, k))

    def choose(self, m: Membership, target: NodeId) -> tuple[str, Change, bool]:
        """A random change for membership ``m`` sent to ``target``: ``(kind, change, retain)``."""
        r = self.rng
        goal = m.configs[-1]
        plain = m.config_spec(len(m.configs) - 1) is None
        voters = m.voter_ids()
        members = m.node_ids()
        learners = members - voters
        outsiders = [n for n in self.pool if n not in members]
        options: list[tuple[str, int]] = [
            ("replace", 3 if plain else 1),
            ("update", 1),
            ("invalid", 1),
            ("set-quorum", 1 if plain else 8),
        ]
        if outsiders:
            options += [("add-learners", 3), ("add-voters", 1)]
        if learners:
            options += [("promote", 4), ("remove-nodes", 2)]
        if len(goal) > 1:
            options += [("remove-voters", 3), ("shrink-to-one", 1)]
            if target in goal:
                options.append(("remove-leader", 2))
        else:
            options.append(("grow-back", 4))
        total = sum(w for _, w in options)
        x = r.randint(1, total)
        kind = options[-1][0]
        for name, w in options:
            x -= w
            if x <= 0:
                kind = name
                break
        retain = False
        change: Change
        if kind == "add-learners":
            change = AddLearners({n: self._info(n) for n in self._sample(outsiders, 1, 2)})
        elif kind == "add-voters":
            change = AddVoters({n: self._info(n) for n in self._sample(outsiders, 1, 2)})
        elif kind == "promote":
            change = AddVoters({n: self._info(n) for n in self._sample(learners, 1, 3)})
        elif kind == "remove-voters":
            change = RemoveVoters(self._sample(goal, 1, len(goal) - 1))
            retain = r.chance(0.5)
        elif kind == "remove-leader":
            change = RemoveVoters([target])
            retain = r.chance(0.5)
        elif kind == "shrink-to-one":
            change = ReplaceVoters({n: self._info(n) for n in self._sample(goal, 1, 1)})
            retain = r.chance(0.5)
        elif kind == "grow-back":
            others = [n for n in self.pool if n not in goal]
            keep = sorted(goal) if r.chance(0.7) else []
            new = self._sample(others, max(1, 2 - len(keep)), 4) if others else []
            change = ReplaceVoters({n: self._info(n) for n in sorted({*keep, *new})})
            retain = r.chance(0.5)
        elif kind == "replace":
            size = r.choice((1, 2, 3, 3, 3, 4, 5, 5))
            change = ReplaceVoters({n: self._info(n) for n in self._sample(self.pool, size, size)})
            retain = r.chance(0.5)
        elif kind == "remove-nodes":
            change = RemoveNodes(self._sample(learners, 1, len(learners)))
        elif kind == "set-quorum":
            change = self._set_quorum(goal)
        elif kind == "update":
            self._info_seq += 1
            change = UpdateNodes({n: f"n{n}.{self._info_seq}" for n in self._sample(members, 1, 2)})
        else:  # invalid
            what = r.choice(("remove-voter-node", "remove-all-voters", "update-outsider"))
            if what == "update-outsider" and outsiders:
                change = UpdateNodes({outsiders[0]: "nobody"})
            elif what == "remove-all-voters":
                change = RemoveVoters(goal)
            else:
                change = RemoveNodes([r.choice(sorted(voters))])
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        return kind, change, retain

    def _set_quorum(self, goal: frozenset[NodeId]) -> SetQuorum:
        """Voters as a majority, a flexible or a hierarchical quorum."""
        r = self.rng
        ids = sorted(goal) if r.chance(0.5) else self._sample(self.pool, 1, len(self.pool))
        n = len(ids)
        what = r.choice(("majority", "flexible", "hierarchical"))
        q: QuorumSet
        if what == "flexible":
            commit = r.randint(1, n)
            # election + commit > n: safe in advanced mode; standard mode also
            # needs 2 x election > n, else the engine refuses it (invalid).
            election = r.randint(n - commit + 1, n)
            q = Flexible(ids, election=election, commit=commit)
        elif what == "hierarchical":
            order = list(ids)
            r.shuffle(order)
            k = r.randint(1, min(3, n))
            q = Hierarchical([order[i::k] for i in range(k)])
        else:
            q = Majority(ids)
        return SetQuorum(q, {i: self._info(i) for i in ids})

    def _issue(self) -> None:
        d = self.driver
        r = self.rng
        target = self._target()
        committed = d.committed_membership()
        m = d.membership_of(target)
        if m is None and committed is not None:
            m = committed[1]
        if m is None:
            return
        kind, change, retain = self.choose(m, target)
        expected: LogId | None = None
        x = r.random()
        if x < 0.15 and committed is not None:
            expected = committed[0]  # usually right, unless a change is running
        elif x < 0.2:
            expected = self._last_ok if self._last_ok is not None else LogId(0, 0, 1)
        rid = ("churn", d.new_request_id())
        rec = ChurnRecord(rid, target, kind, change, retain, expected, d.now)
        self.records.append(rec)
        self._open[rid] = rec
        d.note(
            "churn",
            f"request {rid[1]} to node {target}: {describe_change(change, retain)}"
            + (f" expected={expected!r}" if expected is not None else ""),
        )
        d.submit_change(target, rid, change, retain, expected)
        d.schedule(self.timeout, self._expire, rid)

    # -- answers ------------------------------------------------------------------

    def owns(self, request_id: Hashable) -> bool:
        return request_id in self._open

    def _finish(self, rid: Hashable, outcome: str, result: Any = None) -> ChurnRecord | None:
        rec = self._open.pop(rid, None)
        if rec is None:
            return None
        rec.end = self.driver.now
        rec.outcome = outcome
        rec.result = result
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        return rec

    def _expire(self, rid: Hashable) -> None:
        if self._finish(rid, "timeout") is not None:
            self.hint = None

    def on_response(self, request_id: Hashable, result: Any, error: ClientError | None) -> None:
        outcome = classify_change(error)
        rec = self._finish(request_id, outcome, result if error is None else None)
        if rec is None:
            return
        if error is None:
            self.hint = rec.node
            lid, m = result
            self._last_ok = lid
            text = f"{lid!r} voters {_ids(m.voter_ids())}"
            learners = m.learner_ids()
            if learners:
                text += f" learners {_ids(learners)}"
        elif isinstance(error, NotLeader):
            lid_ = error.leader_id
            self.hint = lid_ if lid_ and lid_ != rec.node and lid_ in self.pool else None
            text = repr(error)
        else:
            self.hint = None if not isinstance(error, MembershipChangeInProgress) else rec.node
            text = repr(error)
        rid = request_id[1] if isinstance(request_id, tuple) else request_id
        self.driver.note("churn", f"request {rid} {outcome}: {text}")

    def on_refused(self, request_id: Hashable) -> None:
        if self._finish(request_id, "refused") is not None:
            self.hint = None

    def on_lost(self, request_id: Hashable) -> None:
        if self._finish(request_id, "lost") is not None:
            self.hint = None
