"""A node whose disk fails answers every request its engine held.

The engine answers pending writes and membership changes with
``NodeStopped`` as it stops (``tests/engine/test_storage_failure_requests.py``);
the simulator checks it at every injected disk failure, so a change left
waiting is a ``storage-failure`` violation, not a request silently lost.
"""

from __future__ import annotations

from test_sim_mutants import Wrapped

from raftcore.commands import Command
from raftcore.events import Event, StorageFailed
from raftcore.sim import SimOptions, Simulation

#: A churn run in which the leader's disk fails with a change in flight.
SEED = 5


def _options() -> SimOptions:
    return SimOptions(seed=SEED, nodes=5, steps=20000, faults="all")


class ForgetsChangesOnStop(Wrapped):
    """Stops on a disk failure without answering its membership change (the
    engine's old behaviour): the caller would wait forever."""

    def handle(self, event: Event, now: float) -> list[Command]:
        e = self.inner
        if isinstance(event, StorageFailed) and e.leader is not None:
            e.leader.membership_change = None
            e.leader.queued_change = None
        return e.handle(event, now)


def test_a_change_left_unanswered_at_a_disk_failure_is_caught() -> None:
    result = Simulation(_options(), engine=ForgetsChangesOnStop).run()
    assert [v.kind for v in result.violations] == ["storage-failure"], result.violations
    assert "engine stopped without answering request(s)" in result.violations[0].message


def test_the_engine_answers_the_change_node_stopped() -> None:
    result = Simulation(_options()).run()
    assert result.ok, result.violations
    assert result.stats["churn_stopped"] == 1
    stopped = [r for r in result.churn if r.outcome == "stopped"]
    assert len(stopped) == 1
