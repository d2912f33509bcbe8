"""The liveness checks, once the faults heal.

With ``window = liveness_timeouts * election_timeout_max``:

1. within ``window`` of healing a leader must be elected and a write
   answered (``LivenessProbe`` writes to the leader until one is);
2. within ``window`` of that answer every node that must catch up (with
   churn: the members of the final committed membership) must apply the
   entries committed by then.

A missed first deadline is reported only after ``_OVERTIME`` windows in
all, saying whether the cluster recovered late (and when) or not at all,
and, with no leader, what the nodes' logs and memberships say about why.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from raftcore.ids import LogId, NodeId
from raftcore.membership import Membership
from raftcore.sim.harness import Harness
from raftcore.sim.kv import KvCodec
from raftcore.sim.linearizability import HistoryRecorder
from raftcore.sim.node import SimNode
from raftcore.sim.options import ResolvedOptions
from raftcore.sim.workload import Driver, LivenessProbe, Workload
from raftcore.state import Role

__all__ = ["LivenessCheck"]

#: A missed liveness deadline is reported after this many windows in all,
#: saying whether the cluster recovered late (and when) or not at all.
_OVERTIME = 10


class LivenessCheck:
    """Recovery and catch-up after healing (see the module docstring)."""

    def __init__(
        self,
        options: ResolvedOptions,
        harness: Harness,
        driver: Driver,
        recorder: HistoryRecorder,
        codec: KvCodec,
        workload: Workload,
        *,
        churn: bool,
        on_done: Callable[[], None],
    ) -> None:
        self._harness = harness
        self._sched = harness.sched
        self._trace = harness.trace
        self._checker = harness.checker
        self._nodes = harness.nodes
        self._workload = workload
        self._churn = churn
        self._on_done = on_done
        self._window = options.liveness_timeouts * options.election_timeout_max
        self._interval = options.heartbeat_interval
        self.probe = LivenessProbe(
            driver,
            recorder,
            codec,
            harness.find_leader,
            self._on_probe_ok,
            interval=options.heartbeat_interval,
            timeout=options.client_timeout / 2,
        )
        self.heal_time: float | None = None
        #: Virtual seconds from heal to the first answered write.
        self.recovery_time: float | None = None
        #: ``(step, time, text)`` of a missed liveness deadline, reported once
        #: the run knows whether the cluster recovers late or never.
        self._overdue: tuple[int, float, str] | None = None
        self._catchup_target = 0
        self._catchup_deadline = math.inf
        self._catchup_window = 0.0
        #: Every check passed or failed: the run is over.
        self.done = False

    def start(self) -> None:
        """The faults healed just now: the probe starts, the clock runs."""
        self.heal_time = self._sched.now
        self._sched.schedule(0.0, self.probe.tick)
        self._sched.schedule(self._window, self._deadline)

    def members(self) -> list[SimNode]:
        """The nodes that must catch up: with churn, the members of the newest
        committed membership (removed nodes receive nothing more)."""
        mc = self._checker.committed_membership
        if not self._churn or mc is None:
            return list(self._nodes.values())
        ids = mc[1].node_ids()
        return [n for n in self._nodes.values() if n.id in ids]

    def _finish(self) -> None:
        self.done = True
        self._on_done()

    # -- the first write ------------------------------------------------------------------

    def _deadline(self) -> None:
        if self.recovery_time is not None or self.done:
            return
        now = self._sched.now
        leader = self._harness.find_leader()
        what = "no leader" if leader is None else f"leader {leader} but no write answered"
        self._overdue = (
            self._harness.steps,
            now,
            f"{what} within {now - (self.heal_time or 0.0):.3f}s after healing "
            f"({self.probe.attempts} attempt(s))",
        )
        # Run on a while, to tell a slow recovery from none at all.
        self._sched.schedule(self._window * (_OVERTIME - 1), self._final)

    def _report_overdue(self, outcome: str) -> None:
        assert self._overdue is not None
        step, t, text = self._overdue
        self._checker.at(step, t, None)
        self._checker.violation("liveness", f"{text}; {outcome}")
        self._sched.stop()

    def _final(self) -> None:
        if self.recovery_time is not None or self.done:
            return
        leader = self._harness.find_leader()
        since = self._sched.now - (self.heal_time or 0.0)
        if leader is None:
            self._report_overdue(f"still no leader after {since:.3f}s" + self.diagnose_no_leader())
        else:
            self._report_overdue(f"leader {leader} but still no write answered after {since:.3f}s")

    def diagnose_no_leader(self) -> str:
        """What the cluster's state says about a missing leader.

        A candidate (a live node the engine lets campaign: a voter of its own
        membership, or one whose removal is not yet committed) needs an
        election quorum of its membership; Raft lets a voter refuse it only
        when the voter's own log is newer. Two shapes are named:

        - *the newest log is on nodes that never campaign*: they are not
          voters of their own membership and no candidate's log is as new,
          so every candidate is refused on log grounds;
        - *candidate c could win on logs alone*: an election quorum of its
          membership has logs no newer than its own, so something else keeps
          refusing it (its membership, a lease, term races between
          candidates).
        """
        live: dict[NodeId, tuple[Membership | None, LogId, Role]] = {}
        for node in self._nodes.values():
            eng = node.engine
            if node.alive and eng is not None:
                live[node.id] = (eng.membership, node.storage.last_log_id(), eng.role)
        campaigning = (Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE)
        candidates: list[tuple[NodeId, LogId]] = []
        could_win: list[str] = []
        for c, (m, last, role) in sorted(live.items()):
            if m is None or role not in campaigning:
                continue
            candidates.append((c, last))
            voters = m.voter_ids()
            log_ok = {c} | {v for v in voters if v in live and live[v][1] <= last}
            if m.quorum_set().is_election_quorum(log_ok):
                could_win.append(f"{c} (logs allow {','.join(map(str, sorted(log_ok)))})")
        out = ""
        best = max((last for _, last in candidates), default=None)
        ahead = [
            n
            for n, (m, last, role) in sorted(live.items())
            if role not in campaigning and m is not None and (best is None or last > best)
        ]
        if ahead:
            out += (
                "; the newest log is on nodes that never campaign: "
                f"{','.join(map(str, ahead))} (candidates: "
                f"{','.join(str(c) for c, _ in candidates) or 'none'})"
            )
        if could_win:
            out += "; could win on logs alone: " + " ".join(could_win)
        return out

    # -- catching up ----------------------------------------------------------------------

    def _on_probe_ok(self, leader: NodeId) -> None:
        assert self.heal_time is not None
        now = self._sched.now
        self.recovery_time = now - self.heal_time
        self._trace.note(
            "liveness",
            f"write answered by leader {leader} {self.recovery_time:.3f}s after healing",
        )
        if self._overdue is not None:
            self._report_overdue(
                f"recovered late: a write was answered {self.recovery_time:.3f}s after healing"
            )
            return
        self._workload.stop()
        self._catchup_target = self._checker.committed_index
        window = self._window
        self._catchup_window = window
        self._catchup_deadline = now + window
        self._sched.schedule(0.0, self._check_caught_up)

    def _check_caught_up(self) -> None:
        target = self._catchup_target
        checker = self._checker
        behind = {
            n.id: checker.applied_index(n.id)
            for n in self.members()
            if checker.applied_index(n.id) < target
        }
        if not behind and self._workload.outstanding == 0:
            self._trace.note("liveness", f"every node applied index {target}")
            self._finish()
            return
        if self._sched.now >= self._catchup_deadline:
            if behind:
                self._harness.violation(
                    "liveness",
                    f"nodes did not catch up to index {target} within "
                    f"{self._catchup_window:.3f}s of the first answered write: applied {behind}",
                )
            self._finish()
            return
        self._sched.schedule(self._interval, self._check_caught_up)
