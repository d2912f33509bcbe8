"""The end of a run: the tables, the problems, and the one-line JSON verdict."""

from __future__ import annotations

import bisect
import itertools
import statistics
from collections import Counter
from typing import Any

from raftcore.adapters.kv.chaos.checker import STRICT_READS
from raftcore.adapters.kv.chaos.history import History, Outcome
from raftcore.adapters.kv.chaos.nemesis import KINDS, NemesisEvent
from raftcore.adapters.kv.chaos.runner import Options, Outcomes
from raftcore.adapters.kv.chaos.workload import WRITE_ONCE_PREFIX

#: Problems listed in full; the rest are counted.
SHOWN = 10


def outages(events: list[NemesisEvent], history: History) -> None:
    """Set each event's ``outage``: the longest stretch from its start to its
    recovery (or heal) in which no client write was acknowledged."""
    acks = sorted(
        r.complete
        for r in history.records
        if r.type.is_write and r.outcome is Outcome.OK and r.complete is not None
    )
    for e in events:
        end = e.recovered if e.recovered is not None else e.healed
        if end is None or e.outcome == "skipped":
            continue
        lo, hi = bisect.bisect_right(acks, e.start), bisect.bisect_left(acks, end)
        times = [e.start, *acks[lo:hi], end]
        e.outage = max(b - a for a, b in itertools.pairwise(times))


def _stats(values: list[float]) -> tuple[str, str]:
    if not values:
        return "-", "-"
    return f"{statistics.mean(values):.2f}s", f"{max(values):.2f}s"


def nemesis_table(events: list[NemesisEvent]) -> str:
    """Per kind: how many ran, and how long writes stopped (the longest stretch
    without an acknowledged write) and took to resume after the heal."""
    head = ("nemesis", "count", "skipped", "failed", "outage mean", "max", "recovery mean", "max")
    fmt = "{:<18} {:>5} {:>7} {:>6} {:>11} {:>7} {:>13} {:>7}"
    lines = [fmt.format(*head)]
    for kind in KINDS:
        mine = [e for e in events if e.kind == kind]
        if not mine:
            continue
        skipped = sum(e.outcome == "skipped" for e in mine)
        failed = sum(e.outcome == "failed" for e in mine)
        outage = _stats([e.outage for e in mine if e.outage is not None])
        recovery = _stats([e.recovery for e in mine if e.recovery is not None])
        lines.append(fmt.format(kind, len(mine), skipped, failed, *outage, *recovery))
    return "\n".join(lines)


def ops_table(counts: dict[str, dict[str, int]]) -> str:
    lines = [f"{'op':<7} {'ok':>7} {'fail':>7} {'unknown':>7}"]
    for op, c in counts.items():
        lines.append(f"{op:<7} {c['ok']:>7} {c['fail']:>7} {c['unknown']:>7}")
    return "\n".join(lines)


def problems(out: Outcomes, history: History) -> list[str]:
    found: list[str] = []
    if out.harness_error:
        found.append(f"harness error: {out.harness_error}")
    found += [f"liveness: {f}" for f in out.liveness_failures]
    found += [f"replicas diverge: {d}" for d in out.divergence]
    found += [f"nemesis {e.kind} failed: {e.detail}" for e in out.events if e.outcome == "failed"]
    if history.unexpected:
        found.append(f"{history.unexpected} unexpected answers from the service (see the history)")
    if out.check is not None:
        found += out.check.problems(STRICT_READS)
    return found


def verdict(opts: Options, out: Outcomes, history: History, root: str) -> dict[str, Any]:
    """The JSON object printed as the last line."""
    c = out.check
    counts = history.counts()
    found = problems(out, history)
    recoveries = [e.recovery for e in out.events if e.recovery is not None]
    outages(out.events, history)
    gaps = [e.outage for e in out.events if e.outage is not None]
    return {
        "ok": not found,
        "seed": opts.seed,
        "seconds": opts.seconds,
        "runtime": opts.runtime,
        "nodes": opts.nodes,
        "clients": opts.clients,
        "keys": opts.keys,
        "ops": sum(sum(v.values()) for v in counts.values()),
        "ops_by_type": counts,
        "acknowledged_writes": c.acknowledged_writes if c else 0,
        "write_once_keys": sum(k.key.startswith(WRITE_ONCE_PREFIX) for k in c.keys) if c else 0,
        "lost_acknowledged": len(c.lost) if c else None,
        "linearizable": c.linearizable if c else None,
        "impossible_reads": len(c.impossible) if c else None,
        "stale_reads": len(c.stale) if c else None,
        "reads_checked": sum(k.reads for k in c.keys) if c else 0,
        "reads_linearizable": c.reads_linearizable if c else None,
        "strict_reads": STRICT_READS,
        "nemesis_events": dict(Counter(e.kind for e in out.events if e.outcome != "skipped")),
        "nemesis_skipped": sum(e.outcome == "skipped" for e in out.events),
        "nemesis_failures": sum(e.outcome == "failed" for e in out.events),
        "liveness_failures": len(out.liveness_failures),
        "max_recovery": round(max(recoveries), 3) if recoveries else None,
        "max_outage": round(max(gaps), 3) if gaps else None,
        "unexpected_responses": history.unexpected,
        "harness_error": out.harness_error,
        "problems": len(found),
        "elapsed": round(out.elapsed, 1),
        "dir": root,
    }


def summary(opts: Options, out: Outcomes, history: History, root: str) -> list[str]:
    """The lines printed before the verdict."""
    outages(out.events, history)
    lines = ["", nemesis_table(out.events), "", ops_table(history.counts()), ""]
    c = out.check
    if c is not None:
        lines.append(
            f"checked {len(c.keys)} keys: {c.acknowledged_writes} acknowledged writes, "
            f"{len(c.lost)} lost; final state linearizable: {c.linearizable}; "
            f"{len(c.stale)} stale reads of {sum(k.reads for k in c.keys)} "
            f"({'a violation' if STRICT_READS else 'reported, not a violation'}); "
            f"all reads linearizable: {c.reads_linearizable}"
        )
        for line in c.stale[:3]:
            lines.append(f"  stale: {line}")
    found = problems(out, history)
    if found:
        lines.append(f"FAILED: {len(found)} problems")
        lines += [f"  {p}" for p in found[:SHOWN]]
        if len(found) > SHOWN:
            lines.append(f"  ... and {len(found) - SHOWN} more")
        lines.append(f"seed {opts.seed}; rerun with: {opts.command()}")
        lines.append(f"node logs, history.jsonl, proxy.jsonl, nemesis.jsonl kept in {root}")
    else:
        lines.append(f"OK: every check held; node logs and histories are in {root}")
    return lines
