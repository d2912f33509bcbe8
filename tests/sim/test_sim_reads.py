"""Linearizable reads in the simulator: the workload sends ``ClientRead``s
(ReadIndex and lease, to leaders and followers) whose values enter the
linearizability check, and a read path that skips the confirmation is
caught."""

from __future__ import annotations

from test_sim_mutants import Wrapped

from raftcore import ClientRead, Respond
from raftcore.commands import Command
from raftcore.events import Event
from raftcore.sim import SimOptions, Simulation


class ReadsWithoutConfirmation(Wrapped):
    """A broken engine: the leader answers a read at once from its commit
    index, with no quorum round (known bug 10)."""

    def handle(self, event: Event, now: float) -> list[Command]:
        e = self.inner
        if type(event) is ClientRead and e.leader is not None:
            return [Respond(event.request_id, e.committed)]
        return e.handle(event, now)


def test_reads_of_both_policies_are_checked_and_hold() -> None:
    result = Simulation(SimOptions(seed=3)).run()
    assert result.ok, result.violations
    assert result.linearizability_checked
    assert result.stats["client_reads_read_index"] > 50
    assert result.stats["client_reads_lease"] > 50


def test_a_read_path_without_confirmation_is_caught() -> None:
    """Under partitions the broken leader serves stale values, and the
    linearizability check says so (seed 0 of this fault mix does)."""
    options = SimOptions(seed=0, faults="partition,net")
    broken = Simulation(options, engine=ReadsWithoutConfirmation).run()
    assert "linearizability" in {v.kind for v in broken.violations}
    assert Simulation(options).run().ok  # the real engine, same schedule
