"""Stateful fuzzing of membership changes through the simulator's manual API.

A hypothesis ``RuleBasedStateMachine`` drives a ``SimControl`` cluster of
three voters and two spare nodes (ids 1-5): membership changes of every kind
(ids from that pool), writes and reads (through the log, ReadIndex and
lease reads, follower reads), leadership transfers to any node (refusals
included), snapshots and log purges (by
policy and on demand, so lagging, restarted and newly added nodes catch up
through snapshot transfers), crashes keeping any prefix of the unflushed
writes (in the middle of snapshot builds and installs too), restarts,
partitions, message delivery out of order, loss and duplication, forced
elections and the passing of virtual time. Every choice comes from
hypothesis (the simulator's own randomness is only each engine's election
timeouts, from a seed hypothesis also draws), so a failure shrinks to a
minimal schedule and replays from the example database.

After every step it checks every simulator invariant, including the
membership ones: at most one uncommitted membership change in any log,
consecutive memberships sharing a config, the memberships in effect pairwise
sharing a config with the committed one, and OK answers naming a committed
final membership. At the end it checks the reads and writes for
linearizability.

``HYPOTHESIS_PROFILE=ci`` (the default) keeps this file well under a minute;
``make fuzz`` runs the ``long`` profile. A failure prints the steps as code
and a ``@reproduce_failure`` blob; see docs/simulator.md to replay one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from raftcore.engine import Engine
from raftcore.events import ReadPolicy
from raftcore.ids import LeaderIdMode, LogId, NodeId
from raftcore.membership import (
    AddLearners,
    AddVoters,
    Change,
    RemoveNodes,
    RemoveVoters,
    ReplaceVoters,
    SetQuorum,
    UpdateNodes,
)
from raftcore.quorum import Flexible, Hierarchical, Majority, QuorumSet
from raftcore.sim.manual import SimControl

#: Examples and steps per example, by ``HYPOTHESIS_PROFILE`` (the profile names
#: the other fuzz files register). Set on this test alone, not registered: a
#: second ``register_profile("ci", ...)`` would change the other files' budgets.
PROFILES = {
    "ci": {"max_examples": 400, "stateful_step_count": 60},
    "long": {"max_examples": 3000, "stateful_step_count": 120},
}
PROFILE = PROFILES.get(os.environ.get("HYPOTHESIS_PROFILE", "ci"), PROFILES["ci"])

POOL: tuple[NodeId, ...] = (1, 2, 3, 4, 5)
nodes = st.sampled_from(POOL)
id_sets = st.frozensets(nodes, min_size=1, max_size=len(POOL))
infos = st.sampled_from(["a", "b", "c"])
#: Time a client action lets pass afterwards (0: the next rule comes at once).
then = st.sampled_from([0.0, 0.0, 0.003, 0.02, 0.1, 0.5])
policies = st.sampled_from(list(ReadPolicy))


def _info(ids: frozenset[NodeId]) -> dict[NodeId, str]:
    return {n: f"n{n}" for n in sorted(ids)}


@st.composite
def quorums(draw: st.DrawFn) -> QuorumSet:
    ids = sorted(draw(id_sets))
    n = len(ids)
    kind = draw(st.sampled_from(["majority", "flexible", "hierarchical"]))
    if kind == "flexible":
        commit = draw(st.integers(1, n))
        election = draw(st.integers(n - commit + 1, n))  # safe in advanced mode
        return Flexible(ids, election=election, commit=commit)
    if kind == "hierarchical":
        k = draw(st.integers(1, min(3, n)))
        order = draw(st.permutations(ids))
        return Hierarchical([order[i::k] for i in range(k)])
    return Majority(ids)


changes: st.SearchStrategy[Change] = st.one_of(
    id_sets.map(lambda s: AddVoters(_info(s))),
    id_sets.map(lambda s: RemoveVoters(s)),
    id_sets.map(lambda s: ReplaceVoters(_info(s))),
    id_sets.map(lambda s: AddLearners(_info(s))),
    id_sets.map(lambda s: RemoveNodes(s)),
    st.dictionaries(nodes, infos, min_size=1).map(UpdateNodes),
    quorums().map(lambda q: SetQuorum(q, _info(q.voter_ids()))),
)


class MembershipMachine(RuleBasedStateMachine):
    c: SimControl
    #: The engine under test (a subclass may plant a bug to see it caught).
    engine: Callable[..., Any] = Engine

    @initialize(
        mode=st.sampled_from(list(LeaderIdMode)),
        pre_vote=st.booleans(),
        check_quorum=st.booleans(),
        seed=st.integers(0, 3),
        snapshot_every=st.sampled_from([0, 2, 5, 20]),
        purge_keep=st.sampled_from([0, 1, 4]),
        chunk=st.sampled_from([2, 16, 4096]),
    )
    def start(
        self,
        mode: LeaderIdMode,
        pre_vote: bool,
        check_quorum: bool,
        seed: int,
        snapshot_every: int,
        purge_keep: int,
        chunk: int,
    ) -> None:
        self.c = SimControl(
            nodes=3,
            spares=2,
            seed=seed,
            leader_id_mode=mode,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            max_entries_per_append=3,
            engine=type(self).engine,
            snapshot_every=snapshot_every,
            purge_keep=purge_keep,
            snapshot_chunk_size=chunk,
        )
        self.c.start()
        # Every example starts from a working cluster (a leader, its blank
        # committed); the rules take it from there.
        self.c.await_leader(timeout=3.0)
        self.c.advance(0.05)
        self.last_ok: LogId | None = None

    # -- time and the network ---------------------------------------------------------

    @rule(dt=st.sampled_from([0.0005, 0.002, 0.01, 0.05, 0.2, 0.6, 2.0]))
    def advance(self, dt: float) -> None:
        self.c.advance(dt)

    @rule(i=st.integers(0, 63), what=st.sampled_from(["deliver", "drop", "duplicate"]))
    def message(self, i: int, what: str) -> None:
        msgs = self.c.in_flight()
        if msgs:
            getattr(self.c, what)(msgs[i % len(msgs)].id)

    @rule(side=st.frozensets(nodes, min_size=1, max_size=4))
    def partition(self, side: frozenset[NodeId]) -> None:
        self.c.partition([side, [n for n in POOL if n not in side]])

    @rule(src=nodes, dst=nodes)
    def cut_one_way(self, src: NodeId, dst: NodeId) -> None:
        if src != dst:
            self.c.cut([(src, dst)])

    @rule()
    def heal(self) -> None:
        self.c.heal()

    # -- nodes --------------------------------------------------------------------------

    @rule(node=nodes, count=st.none() | st.integers(1, 3))
    def flush(self, node: NodeId, count: int | None) -> None:
        self.c.flush(node, count)

    @rule(node=nodes, keep=st.integers(0, 4))
    def crash(self, node: NodeId, keep: int) -> None:
        self.c.crash(node, keep)

    @rule(node=nodes)
    def restart(self, node: NodeId) -> None:
        self.c.restart(node)

    @rule(node=nodes)
    def snapshot(self, node: NodeId) -> None:
        self.c.trigger_snapshot(node)

    @rule(node=nodes, back=st.integers(0, 3))
    def purge(self, node: NodeId, back: int) -> None:
        eng = self.c.engine(node)
        if eng is not None:
            self.c.trigger_purge(node, eng.committed.index - back)

    @rule(node=nodes)
    def trigger_election(self, node: NodeId) -> None:
        self.c.trigger_election(node)

    # -- clients --------------------------------------------------------------------------

    def _target(self, node: NodeId | None) -> NodeId:
        """``None``: the node the client believes leads (the simulator's view)."""
        if node is not None:
            return node
        leader = self.c.leader()
        return leader if leader is not None else 1

    @rule(node=st.none() | nodes, key=st.sampled_from(["x", "y"]), read=st.booleans(), dt=then)
    def client(self, node: NodeId | None, key: str, read: bool, dt: float) -> None:
        if read:
            self.c.read(self._target(node), key)
        else:
            self.c.write(self._target(node), key)
        self.c.advance(dt)

    @rule(node=st.none() | nodes, key=st.sampled_from(["x", "y"]), policy=policies, dt=then)
    def linearizable_read(
        self, node: NodeId | None, key: str, policy: ReadPolicy, dt: float
    ) -> None:
        """A ``ClientRead`` (on a follower: a follower read), in the history."""
        self.c.read(self._target(node), key, policy)
        self.c.advance(dt)

    @rule(node=st.none() | nodes, to=st.none() | nodes, dt=then)
    def transfer_leader(self, node: NodeId | None, to: NodeId | None, dt: float) -> None:
        """Hand leadership over (to anyone: refusals are answers too)."""
        rid = self.c.transfer_leader(self._target(node), to)
        self.c.advance(dt)
        ans = self.c.answer(rid)
        outcome = "pending" if ans is None else type(ans.error).__name__ if ans.error else "ok"
        event(f"transfer: {outcome}")

    @rule(
        node=st.none() | nodes,
        change=changes,
        retain=st.booleans(),
        expected=st.sampled_from(["none", "none", "committed", "last-ok"]),
        dt=then,
    )
    def change(
        self, node: NodeId | None, change: Change, retain: bool, expected: str, dt: float
    ) -> None:
        exp: LogId | None = None
        if expected == "committed":
            mc = self.c.committed_membership
            exp = mc[0] if mc is not None else None
        elif expected == "last-ok":
            exp = self.last_ok
        rid = self.c.change(self._target(node), change, retain, exp)
        ans = self.c.answer(rid)
        if ans is not None:
            event(f"change answered at once: {type(ans.error).__name__ if ans.error else 'ok'}")
            if ans.ok:
                self.last_ok = ans.result[0]
        self.c.advance(dt)

    @rule(node=nodes, change=changes, retain=st.booleans())
    def new_leader_changes_at_once(self, node: NodeId, change: Change, retain: bool) -> None:
        """A forced election, and a change sent the moment ``node`` wins: the
        window in which a new leader's own entry is not committed yet."""
        c = self.c
        c.trigger_election(node)
        for _ in range(100):
            if c.leader() == node:
                c.change(node, change, retain)
                return
            c.advance(0.0005)

    @rule(retain=st.booleans(), dt=then)
    def remove_the_leader(self, retain: bool, dt: float) -> None:
        leader = self.c.leader()
        if leader is not None:
            self.c.change(leader, RemoveVoters([leader]), retain)
        self.c.advance(dt)

    # -- checks ---------------------------------------------------------------------------

    @invariant()
    def safe(self) -> None:
        self.c.assert_ok()

    def teardown(self) -> None:
        c: Any = getattr(self, "c", None)
        if c is not None:
            done = len(c.committed_memberships) - 1  # the initial one
            event(f"membership entries committed: {min(done, 5)}{'+' if done >= 5 else ''}")
            installs = c.sim.harness.snapshot_stats["snapshots_installed"]
            event(f"snapshots installed: {min(installs, 3)}{'+' if installs >= 3 else ''}")
            lin = c.check_history()
            assert not lin, "\n".join(str(v) for v in lin)


MembershipMachine.TestCase.settings = settings(
    max_examples=PROFILE["max_examples"],
    stateful_step_count=PROFILE["stateful_step_count"],
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestMembershipFuzz = MembershipMachine.TestCase
