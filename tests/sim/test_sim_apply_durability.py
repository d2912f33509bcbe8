"""Apply durability: a node applies only entries durable in its own log.

The engine hands an entry to the state machine only once its own copy is
durable (``docs/engine.md``, Restart): otherwise a crash can take out of
the log an entry a durable state machine already applied. The checker's
``apply-durability`` invariant looks at the node's simulated durable log at
every apply; these tests plant the bug and check that it, and it alone,
reports it.
"""

from __future__ import annotations

from typing import Any

from test_sim_mutants import Wrapped

from raftcore.commands import AppendLog, Apply, Command
from raftcore.engine import Engine
from raftcore.engine._apply import advance_apply
from raftcore.entries import normal
from raftcore.events import Event, IoFlushed
from raftcore.ids import ZERO_LOG_ID, LeaderIdMode, LogId, NodeId, Vote
from raftcore.membership import Membership
from raftcore.sim import SimOptions, Simulation
from raftcore.sim.invariants import InvariantChecker
from raftcore.sim.manual import ManualTiming, SimControl
from raftcore.state import Role

MEMBERS = Membership.of([1, 2, 3])


class EagerApplier(Wrapped):
    """Hands every committed entry to the state machine at once, durable here or not."""

    def handle(self, event: Event, now: float) -> list[Command]:
        e = self.inner
        out = e.handle(event, now)
        c = e.committed.index
        if e.stopped is None and c > e.apply_requested:
            start = max(e.apply_requested + 1, e.log.first_index)
            e.apply_requested = c
            out.append(Apply(tuple(e.log.entries(start, c + 1))))
        return out


class FlushAcrossTruncation(Wrapped):
    """Takes a flush confirmation for what an append wrote, even if a truncation
    has replaced those entries since (the ABA problem): a late ``IoFlushed``
    confirms the entries written later at the same indexes."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        #: io id -> last log id of that append, as written (never clamped).
        self.appends: dict[int, LogId] = {}

    def handle(self, event: Event, now: float) -> list[Command]:
        e = self.inner
        out = e.handle(event, now)
        for cmd in out:
            if isinstance(cmd, AppendLog) and cmd.entries:
                self.appends[cmd.io_id] = cmd.entries[-1].log_id
        if isinstance(event, IoFlushed) and e.stopped is None:
            done = [io for io in self.appends if io <= event.io_id]
            if done:
                written = self.appends[max(done)]
                for io in done:
                    del self.appends[io]
                if written.index > e.io.durable_log_id.index:
                    e.io.durable_log_id = written
                    advance_apply(e)
                    out += e.out
                    e.out = []
        return out


#: A seed whose run exposes ``EagerApplier`` (each of seeds 0-4 does).
EAGER_SEED = 0


def test_applying_before_the_entry_is_durable_is_caught() -> None:
    result = Simulation(
        SimOptions(seed=EAGER_SEED, nodes=3, steps=3000, faults="none"), engine=EagerApplier
    ).run()
    assert not result.ok, "applying entries before they are durable went unnoticed"
    assert {v.kind for v in result.violations} == {"apply-durability"}, result.violations
    v = result.violations[0]
    assert v.node is not None and f"node {v.node} applied " in v.message
    assert "before it was durable in its own log: the durable log " in v.message


def _settle(c: SimControl, skip: NodeId | None, dt: float, step: float = 0.002) -> None:
    """Let ``dt`` pass, flushing every node's writes as they come, but ``skip``'s."""
    t = 0.0
    while t < dt:
        for n in c.node_ids:
            if n != skip:
                c.flush(n)
        c.advance(step)
        t += step


def _truncation_over_an_unflushed_append(engine: Any) -> tuple[SimControl, NodeId, LogId]:
    """Follower ``f`` appends an entry of the old leader and never flushes it;
    a new leader commits another entry at that index, which replaces it in
    ``f``'s log (truncate, append: still unflushed) and commits there too.
    Then ``f``'s first pending write, the old append, becomes durable alone.
    Returns the control, ``f`` and the old entry's log id."""
    c = SimControl(nodes=5, spares=0, seed=1, engine=engine, timing=ManualTiming(flush_delay=None))
    c.start()
    _settle(c, None, 1.0)
    old_leader = c.leader()
    assert old_leader is not None
    f = next(n for n in c.node_ids if n != old_leader)
    c.cut([(old_leader, n) for n in c.node_ids if n not in (old_leader, f)])
    c.write(old_leader, "k", "old")
    _settle(c, f, 0.01)
    storage = c.sim.nodes[f].storage
    old = storage.log[-1].log_id
    assert storage.durable_log[-1].log_id.index == old.index - 1
    _settle(c, f, 2.0)  # the others elect a new leader and commit at old.index
    new_leader = c.leader()
    assert new_leader not in (None, old_leader, f)
    eng = c.engine(f)
    assert eng is not None
    new = eng.committed
    assert new.index == old.index and new != old
    assert [type(w).__name__ for w in storage.pending] == [
        "AppendLog",
        "SaveVote",
        "TruncateLog",
        "AppendLog",
    ]
    assert c.check() == []
    c.flush(f, count=1)
    return c, f, old


def test_a_flush_confirmed_across_a_truncation_is_caught() -> None:
    c, f, old = _truncation_over_an_unflushed_append(FlushAcrossTruncation)
    found = c.check()
    assert [(v.node, v.kind) for v in found] == [(f, "apply-durability")], found
    assert found[0].message.endswith(f"the durable log holds {old} at index {old.index}")


def test_the_engine_waits_for_the_entry_written_after_the_truncation() -> None:
    c, f, old = _truncation_over_an_unflushed_append(Engine)
    assert c.check() == []
    eng = c.engine(f)
    assert eng is not None and eng.metrics().applied.index == old.index - 1
    c.flush(f)  # the rest: the truncation and the new entry are durable
    c.advance(0.01)
    assert eng.metrics().applied.index == old.index
    assert c.check() == []


def test_the_real_engine_passes_the_eager_seed() -> None:
    result = Simulation(SimOptions(seed=EAGER_SEED, nodes=3, steps=3000, faults="none")).run()
    assert result.ok, result.violations


# -- the checker on its own ------------------------------------------------------------


class DurableOnly:
    """A view with one durable log per node (the volatile one is the same)."""

    def __init__(self) -> None:
        self.durable: dict[int, list[LogId]] = {1: [], 2: [], 3: []}

    def log_id_at(self, node: int, index: int) -> LogId | None:
        return self.durable_log_id_at(node, index)

    def durable_log_id_at(self, node: int, index: int) -> LogId | None:
        if index == 0:
            return ZERO_LOG_ID
        log = self.durable[node]
        return log[index - 1] if 1 <= index <= len(log) else None

    def memberships(self, node: int, durable: bool = False) -> list[tuple[LogId, Membership]]:
        return []


def _checker_with_commit(log: list[LogId]) -> tuple[InvariantChecker, DurableOnly]:
    """Every node holds ``log`` durably; node 1 commits it, node 2 knows it committed."""
    view = DurableOnly()
    c = InvariantChecker(LeaderIdMode.ADVANCED, view)
    for n in (1, 2, 3):
        view.durable[n] = list(log)
    c.on_state(1, Role.FOLLOWER, Vote(1, 1, True), log[-1], lambda: MEMBERS)
    c.on_state(2, Role.FOLLOWER, Vote(1, 1, True), log[-1], lambda: MEMBERS)
    return c, view


def test_checker_reports_an_applied_entry_missing_from_the_durable_log() -> None:
    log = [LogId(1, 1, 1), LogId(1, 1, 2), LogId(1, 1, 3)]
    c, view = _checker_with_commit(log)
    c.on_apply(1, tuple(normal(x, "d") for x in log), {})
    assert c.violations == []
    view.durable[2] = log[:1]  # entries 2 and 3 not flushed on node 2 yet
    c.at(7, 0.5, 2)
    c.on_apply(2, tuple(normal(x, "d") for x in log), {})
    assert [str(v) for v in c.violations] == [
        "step 7 t=0.500000 node 2: [apply-durability] node 2 applied 1-1-2 (index 2) before "
        "it was durable in its own log: the durable log ends at index 1 (1-1-1)",
        "step 7 t=0.500000 node 2: [apply-durability] node 2 applied 1-1-3 (index 3) before "
        "it was durable in its own log: the durable log ends at index 1 (1-1-1)",
    ]


def test_checker_reports_an_entry_replaced_at_its_index_in_the_durable_log() -> None:
    # ABA: the durable log still holds the entry a truncation replaced.
    log = [LogId(1, 1, 1), LogId(2, 2, 2)]
    c, view = _checker_with_commit(log)
    view.durable[2] = [LogId(1, 1, 1), LogId(1, 1, 2)]
    c.on_apply(2, tuple(normal(x, "d") for x in log), {})
    assert [(v.node, v.kind) for v in c.violations] == [(2, "apply-durability")]
    assert c.violations[0].message.endswith("the durable log holds 1-1-2 at index 2")
