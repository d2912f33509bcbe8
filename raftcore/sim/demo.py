"""A readable narrative of one simulation run (``python -m raftcore.sim --demo``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from raftcore.sim.cluster import SimResult, Simulation
from raftcore.sim.linearizability import Outcome
from raftcore.sim.options import SimOptions

__all__ = ["DEMO_SEED", "narrate", "run_demo"]

DEMO_SEED = 2025

_PROPERTIES = (
    "election safety",
    "log matching",
    "leader completeness",
    "commit agreement",
    "state machine safety",
    "applied entries durable in their own log",
    "monotonic vote, commit and apply",
    "committed entries durable on a quorum",
    "persist before send",
    "leader commit rule",
    "client protocol",
    "one membership change at a time",
    "memberships share a config",
    "effective membership",
)


def narrate(result: SimResult, *, max_events: int = 80) -> list[str]:
    """The story of ``result`` as lines of text."""
    o = result.options
    lines = [
        f"raftcore simulator: a {o.nodes}-node cluster on virtual time, seed {o.seed}",
        f"  options: {o.describe()}",
        "",
        "What happened (virtual seconds):",
    ]
    spares = f" (spares {o.nodes + 1}..{o.nodes + o.spares})" if o.spares else ""
    events: list[tuple[float, int, str]] = [
        (0.0, 0, f"node 1 initializes the cluster {{1..{o.nodes}}}{spares}")
    ]
    for i, lt in enumerate(result.leaders):
        events.append((lt.time, 1 + i, f"node {lt.node} becomes leader (term {lt.vote.term})"))
    kinds = Counter[str]()
    for i, (t, kind, text) in enumerate(result.log):
        kinds[kind] += 1
        label = {
            "fault": "FAULT ",
            "heal": "heal  ",
            "restart": "up    ",
            "liveness": "LIVE  ",
            "churn": "member",
        }
        events.append((t, 100_000 + i, f"{label.get(kind, kind)} {text}"))
    events.sort()
    shown = events if len(events) <= max_events else events[: max_events - 10] + events[-10:]
    for idx, (t, _, text) in enumerate(shown):
        if len(events) > max_events and idx == max_events - 10:
            lines.append(f"  ... {len(events) - max_events} more events ...")
        lines.append(f"  {t:9.3f}  {text}")

    s = result.stats
    ops = result.history
    by_outcome = Counter(op.outcome for op in ops)
    lines += [
        "",
        "Totals:",
        f"  {result.steps} engine steps over {result.virtual_time:.2f} virtual seconds",
        f"  {result.elections} leader elections; {result.committed} log entries committed",
        f"  {s['faults']} faults injected ({s['crashes']} crashes, "
        f"{s['writes_lost_on_crash']} unflushed writes lost)",
        f"  messages: {s['messages_sent']} sent, {s['messages_lost']} lost, "
        f"{s['messages_duplicated']} duplicated, {s['messages_cut']} cut by partitions",
        f"  client ops: {len(ops)} ({by_outcome[Outcome.OK]} ok, {by_outcome[Outcome.FAIL]} "
        f"failed, {by_outcome[Outcome.UNKNOWN]} outcome unknown)",
    ]
    if "churn_requests" in s:
        final = result.final_membership
        voters = ",".join(map(str, sorted(final.voter_ids()))) if final else "-"
        lines.append(
            f"  membership changes: {s['churn_requests']} requested, {s['churn_ok']} done, "
            f"{s['churn_not_leader']} sent to a non-leader, {s['churn_invalid']} invalid, "
            f"{s['churn_in_progress']} refused while another ran; "
            f"{s['memberships_committed']} membership entries committed, final voters {voters}"
        )
    lines += [
        "",
        "Checks:",
        f"  {s['invariant_checks']} invariant checks after every step: " + ", ".join(_PROPERTIES),
    ]
    safety = [v for v in result.violations if v.kind not in ("linearizability", "liveness")]
    lin = [v for v in result.violations if v.kind == "linearizability"]
    live = [v for v in result.violations if v.kind == "liveness"]
    lines.append("  safety: " + ("all held" if not safety else f"{len(safety)} VIOLATION(S)"))
    lines.extend(f"    {v}" for v in safety[:10])
    if result.linearizability_checked:
        keys = len({op.key for op in ops})
        lines.append(
            f"  linearizability of {len(ops)} ops on {keys} keys: "
            + ("linearizable" if not lin else f"{len(lin)} VIOLATION(S)")
        )
        lines.extend(f"    {v}" for v in lin[:10])
    if result.recovery_time is not None:
        lines.append(
            f"  liveness: after healing, a write was answered in {result.recovery_time:.3f}s"
        )
    lines.extend(f"  liveness: {v}" for v in live)
    lines += [
        "",
        f"trace digest {result.trace_digest}",
        f"replay: {result.replay_command()}",
        "RESULT: " + ("ok" if result.ok else "FAILED"),
    ]
    return lines


def run_demo(
    seed: int = DEMO_SEED, *, steps: int = 6000, out: Callable[[str], None] = print
) -> SimResult:
    opts = SimOptions(seed=seed, nodes=5, steps=steps, faults="all", fault_interval=0.3)
    result = Simulation(opts).run()
    for line in narrate(result):
        out(line)
    return result
