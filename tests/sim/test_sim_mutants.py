"""The simulator catches deliberately broken engines and drivers.

Each test plants one classic Raft bug and checks that a handful of seeds
expose it as a violation.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from raftcore.commands import Command, Respond, Send
from raftcore.config import Config
from raftcore.engine import Engine
from raftcore.events import ClientWrite, Event, StorageFailed
from raftcore.ids import INITIAL_VOTE, LeaderIdMode
from raftcore.messages import VoteResponse
from raftcore.sim import SimOptions, SimResult, Simulation
from raftcore.sim.storage import SimStorage
from raftcore.state import RecoveredState


def run_until_failure(seeds: range, sim_kw: dict[str, Any], **opts: Any) -> SimResult | None:
    for seed in seeds:
        result = Simulation(SimOptions(seed=seed, steps=3000, **opts), **sim_kw).run()
        if not result.ok:
            return result
    return None


class Wrapped:
    """An ``Engine`` with ``handle`` open to change.

    Wrapping, not subclassing: a compiled (mypyc) ``Engine`` is final.
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.inner = Engine(*args, **kw)

    def handle(self, event: Event, now: float) -> list[Command]:
        return self.inner.handle(event, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class LyingVoter(Wrapped):
    """Grants every vote it is asked for (a voter that double-votes)."""

    def handle(self, event: Event, now: float) -> list[Command]:
        out = super().handle(event, now)
        for i, cmd in enumerate(out):
            if (
                isinstance(cmd, Send)
                and isinstance(cmd.message, VoteResponse)
                and not cmd.message.granted
            ):
                m = cmd.message
                out[i] = Send(cmd.to, m._replace(granted=True, vote=m.for_vote))
        return out


class Amnesiac(Wrapped):
    """Forgets its vote on restart."""

    def __init__(
        self, node_id: int, config: Config, recovered: RecoveredState, rng: Any, **kw: Any
    ) -> None:
        super().__init__(node_id, config, attrs.evolve(recovered, vote=INITIAL_VOTE), rng, **kw)


def test_double_voting_is_caught() -> None:
    result = run_until_failure(
        range(10), {"engine": LyingVoter}, leader_id_mode=LeaderIdMode.STANDARD
    )
    assert result is not None, "a double-voting engine went unnoticed"
    assert all(v.kind != "engine-exception" for v in result.violations), result.violations


def test_forgetting_the_vote_is_caught() -> None:
    result = run_until_failure(range(10), {"engine": Amnesiac}, faults="crash")
    assert result is not None
    assert any(v.kind == "vote-monotonic" for v in result.violations), result.violations


def test_acknowledging_unflushed_writes_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # A driver bug: report IoFlushed while nothing reached the disk.
    def lying_flush(self: SimStorage) -> list[Any]:
        done = list(self.pending)
        self.pending.clear()
        self.flushes += 1
        return done

    monkeypatch.setattr(SimStorage, "flush", lying_flush)
    result = run_until_failure(range(5), {}, faults="none")
    assert result is not None
    kinds = {v.kind for v in result.violations}
    assert kinds & {"persist-before-send", "commit-durability"}, kinds


class EagerResponder(Wrapped):
    """Acknowledges writes as soon as a leader appends them, before commit."""

    def handle(self, event: Event, now: float) -> list[Command]:
        out = super().handle(event, now)
        if isinstance(event, ClientWrite) and not any(isinstance(c, Respond) for c in out):
            out.append(Respond(event.request_id, None))
        return out


def test_answering_before_commit_is_caught() -> None:
    result = run_until_failure(range(3), {"engine": EagerResponder}, faults="none")
    assert result is not None
    assert any(v.kind == "client-protocol" for v in result.violations), result.violations


class IgnoresDiskFailure(Wrapped):
    """Keeps running on a disk it cannot write."""

    def handle(self, event: Event, now: float) -> list[Command]:
        if isinstance(event, StorageFailed):
            return []
        return super().handle(event, now)


def test_running_on_after_storage_failure_is_caught() -> None:
    result = run_until_failure(range(10), {"engine": IgnoresDiskFailure}, faults="crash")
    assert result is not None
    assert any(v.kind == "storage-failure" for v in result.violations), result.violations


class LeaseForgetter(Wrapped):
    """Honours no lease: forgets when it last heard from its leader."""

    def handle(self, event: Event, now: float) -> list[Command]:
        self.inner.leader_heard_at = float("-inf")
        return super().handle(event, now)


def test_an_election_inside_a_live_lease_is_caught() -> None:
    """The harness's lease check: a voter that waives the lease lets a
    candidate win while the old leader still answers lease reads."""
    result = run_until_failure(
        range(20), {"engine": LeaseForgetter}, faults="partition,election", check_quorum=True
    )
    assert result is not None, "elections inside a live lease went unnoticed"
    assert any(v.kind == "lease-bypassed" for v in result.violations), result.violations
