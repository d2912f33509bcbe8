"""What one simulation run returns: ``SimResult``."""

from __future__ import annotations

from typing import Any

import attrs

from raftcore.membership import Membership
from raftcore.sim.churn import ChurnRecord
from raftcore.sim.invariants import InvariantViolation, LeaderTerm
from raftcore.sim.linearizability import Op
from raftcore.sim.options import ResolvedOptions

__all__ = ["SimResult"]


@attrs.frozen
class SimResult:
    """The outcome of one run."""

    options: ResolvedOptions
    violations: tuple[InvariantViolation, ...]
    elections: int
    #: Index of the last entry committed anywhere.
    committed: int
    trace_digest: str
    history: tuple[Op, ...]
    steps: int
    virtual_time: float
    leaders: tuple[LeaderTerm, ...]
    #: ``(virtual time, kind, text)`` for faults, crashes, restarts, heal, liveness.
    log: tuple[tuple[float, str, str], ...]
    stats: dict[str, int]
    #: Virtual seconds from heal to the first answered write (None: never).
    recovery_time: float | None
    linearizability_checked: bool
    #: Every membership change request (with ``churn``) and its outcome.
    churn: tuple[ChurnRecord, ...] = ()
    #: The committed membership at the end of the run.
    final_membership: Membership | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def seed(self) -> int:
        return self.options.seed

    def replay_command(self) -> str:
        return self.options.replay_command()

    def summary(self) -> str:
        status = "ok" if self.ok else f"FAIL ({len(self.violations)} violation(s))"
        rec = f"{self.recovery_time:.3f}s" if self.recovery_time is not None else "-"
        return (
            f"seed {self.seed}: {status} nodes={self.options.nodes} "
            f"mode={self.options.leader_id_mode.value} "
            f"pre_vote={'on' if self.options.pre_vote else 'off'} steps={self.steps} "
            f"vtime={self.virtual_time:.2f}s elections={self.elections} "
            f"committed={self.committed} ops={len(self.history)} recovery={rec} "
            + (
                f"changes={self.stats.get('churn_ok', 0)} voters={self._voters()} "
                if self.churn
                else ""
            )
            + f"digest={self.trace_digest[:16]}"
        )

    def _voters(self) -> str:
        m = self.final_membership
        return ",".join(map(str, sorted(m.voter_ids()))) if m is not None else "-"

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "violations": [str(v) for v in self.violations],
            "elections": self.elections,
            "committed": self.committed,
            "trace_digest": self.trace_digest,
            "steps": self.steps,
            "virtual_time": round(self.virtual_time, 6),
            "ops": len(self.history),
            "recovery_time": (
                round(self.recovery_time, 6) if self.recovery_time is not None else None
            ),
            "linearizability_checked": self.linearizability_checked,
            "nodes": self.options.nodes,
            "mode": self.options.leader_id_mode.value,
            "pre_vote": self.options.pre_vote,
            "options": self.options.as_dict(),
            "stats": self.stats,
            "final_voters": (
                sorted(self.final_membership.voter_ids()) if self.final_membership else None
            ),
            "replay": self.replay_command(),
        }
