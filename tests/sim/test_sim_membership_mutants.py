"""The membership invariants catch deliberately broken engines.

Each wrapper plants one classic membership-change bug; a short manual
schedule shows it exactly, and a seeded churn campaign finds it too.
"""

from __future__ import annotations

from typing import Any

from test_sim_mutants import Wrapped

from raftcore.commands import AppendLog, Command, Respond, Send
from raftcore.engine._replication import leader_append
from raftcore.entries import Entry, EntryKind, membership_entry
from raftcore.events import ChangeMembership, Event
from raftcore.ids import LogId
from raftcore.membership import AddVoters, Membership, next_membership
from raftcore.messages import AppendRequest
from raftcore.sim import SimOptions, SimResult, Simulation
from raftcore.sim.manual import SimControl


def kinds(violations: Any) -> set[str]:
    return {v.kind for v in violations}


def churn_until_failure(engine: Any, seeds: range, **opts: Any) -> SimResult | None:
    for seed in seeds:
        result = Simulation(
            SimOptions(seed=seed, nodes=3, steps=4000, faults="churn", **opts), engine=engine
        ).run()
        if not result.ok:
            return result
    return None


def started(engine: Any) -> tuple[SimControl, int]:
    c = SimControl(nodes=3, spares=2, engine=engine)
    c.start()
    leader = c.await_leader()
    assert leader is not None
    c.advance(0.05)
    return c, leader


class SecondChange(Wrapped):
    """Starts a second change while the first is uncommitted (no one at a time)."""

    def handle(self, event: Event, now: float) -> list[Command]:
        e = self.inner
        busy = e.leader is not None and (
            e.leader.membership_change is not None
            or (e.memberships and e.memberships[-1][0].index > e.committed.index)
        )
        out = e.handle(event, now)
        ld = e.leader
        if isinstance(event, ChangeMembership) and busy and ld and e.membership is not None:
            try:
                nxt = next_membership(e.membership, event.change, retain=event.retain)
            except ValueError:
                return out
            lid = LogId(e.vote.term, e.node_id, e.log.last_index + 1)
            leader_append(e, ld, [membership_entry(lid, nxt)], now)
            out += e.out
            e.out = []
        return out


class NoJointStep(Wrapped):
    """Writes the goal config straight away instead of the joint one (what
    the engine believes and what goes to disk and to followers differ)."""

    @staticmethod
    def _fix(e: Entry) -> Entry:
        m = e.data
        if e.kind is EntryKind.MEMBERSHIP and isinstance(m, Membership) and m.is_joint:
            goal = Membership((m.configs[-1],), m.nodes, (m.config_spec(len(m.configs) - 1),))
            return membership_entry(e.log_id, goal)
        return e

    def handle(self, event: Event, now: float) -> list[Command]:
        out = self.inner.handle(event, now)
        for i, cmd in enumerate(out):
            if isinstance(cmd, AppendLog):
                out[i] = AppendLog(cmd.io_id, tuple(map(self._fix, cmd.entries)))
            elif isinstance(cmd, Send) and isinstance(cmd.message, AppendRequest):
                msg = cmd.message
                out[i] = Send(cmd.to, msg._replace(entries=tuple(map(self._fix, msg.entries))))
        return out


class EarlyChanger(Wrapped):
    """Starts a change before an entry of its own term is committed (bug 2)."""

    def handle(self, event: Event, now: float) -> list[Command]:
        e = self.inner
        ld = e.leader
        if isinstance(event, ChangeMembership) and ld is not None:
            first = ld.first_index
            ld.first_index = 0
            try:
                return e.handle(event, now)
            finally:
                ld.first_index = first
        return e.handle(event, now)


class EagerChangeAnswer(Wrapped):
    """Answers a change as soon as it appends the joint entry."""

    def handle(self, event: Event, now: float) -> list[Command]:
        out = self.inner.handle(event, now)
        if isinstance(event, ChangeMembership):
            for cmd in list(out):
                if isinstance(cmd, AppendLog):
                    e = cmd.entries[-1]
                    if e.kind is EntryKind.MEMBERSHIP:
                        out.append(Respond(event.request_id, (e.log_id, e.data)))
        return out


def test_a_second_uncommitted_change_is_caught() -> None:
    c, leader = started(SecondChange)
    c.cut([(leader, n) for n in c.node_ids if n != leader])  # nothing commits
    c.change(leader, AddVoters({4: "n4"}))
    c.change(leader, AddVoters({5: "n5"}))
    assert "single-change" in kinds(c.check())


def test_a_second_uncommitted_change_is_caught_by_churn() -> None:
    result = churn_until_failure(SecondChange, range(10))
    assert result is not None, "starting a second change went unnoticed"
    assert "single-change" in kinds(result.violations), result.violations


def test_switching_voters_without_a_joint_step_is_caught() -> None:
    c, leader = started(NoJointStep)
    c.change(leader, AddVoters({4: "n4", 5: "n5"}))
    c.advance(0.1)
    found = kinds(c.check())
    assert "config-chain" in found, found
    assert "membership-effective" in found, found


def test_switching_voters_without_a_joint_step_is_caught_by_churn() -> None:
    result = churn_until_failure(NoJointStep, range(5))
    assert result is not None
    assert "config-chain" in kinds(result.violations), result.violations


def test_changing_before_the_own_entry_commits_is_caught() -> None:
    c, first = started(EarlyChanger)
    # A new leader that knows the membership is committed, cut off as soon as
    # it is elected: its blank cannot commit, the change starts anyway.
    new = 2 if first != 2 else 3
    c.trigger_election(new)
    for _ in range(200):
        if c.leader() == new:
            break
        c.advance(0.0005)
    assert c.leader() == new
    c.cut([(new, n) for n in c.node_ids if n != new])
    eng = c.engine(new)
    assert eng is not None and eng.committed.index < eng.metrics().last_log_id.index
    c.change(new, AddVoters({4: "n4"}))
    assert "membership-change-rule" in kinds(c.check())


def test_answering_a_change_before_it_commits_is_caught() -> None:
    c, leader = started(EagerChangeAnswer)
    c.change(leader, AddVoters({4: "n4"}))
    assert "change-answer" in kinds(c.check())


def test_the_real_engine_passes_the_same_schedules() -> None:
    c, leader = started(Wrapped)
    c.change(leader, AddVoters({4: "n4"}))
    refused = c.change(leader, AddVoters({5: "n5"}))
    c.advance(0.2)
    assert c.check() == []
    answer = c.answer(refused)
    assert answer is not None and type(answer.error).__name__ == "MembershipChangeInProgress"
