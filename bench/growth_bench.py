"""Does the engine slow down or grow with its history? ``make bench-growth``.

Three engines in one process (``bench.engine_bench``'s lean driver) take
``--writes`` writes (1,000,000 by default) with ``--clients`` outstanding,
snapshotting every ``--snapshot-every`` entries (10,000) and purging behind
each snapshot, as a node running for a month would. The driver's "disk" is
a list that ``PurgeLog`` really shortens, and the state machine is a
counter, so what grows (or not) is the engine.

Prints one JSON line: ``first_writes_per_s`` and ``last_writes_per_s``
(throughput over the first and the last 10% of the writes), ``peak_rss_mb``,
the resident memory after 10% of the writes and at the end, and how many
entries the engines (and the driver's log) still hold, for the leader: the
snapshots it built and its last purged index. ``--no-snapshots`` runs the
same without snapshots (the log then grows with every write) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import attrs

from bench.engine_bench import BENCH_CONFIG, Cluster


def rss_mb() -> float:
    """Resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    """Peak resident memory of this process (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def run(writes: int, clients: int, snapshot_every: int | None) -> dict[str, object]:
    cluster = Cluster(config=attrs.evolve(BENCH_CONFIG, snapshot_every=snapshot_every))
    cluster.start()
    # No latency samples: the driver must not grow with the run either.
    cluster.recording = False
    cluster.target = clients
    clock = time.perf_counter
    now = clock()
    for _ in range(min(clients, writes)):
        cluster.submit(now)
    tenth = max(1, writes // 10)
    marks = {tenth: 0.0, writes - tenth: 0.0, writes: 0.0}
    rss_at_tenth = 0.0
    t0 = clock()
    pending = sorted(marks)
    while pending:
        # Exactly ``writes`` are issued: a write is answered at the earliest
        # one round after it was issued, so a round issues at most ``target``.
        left = writes - cluster.next_rid
        if left < clients:
            cluster.target = left
        cluster.run_round(clock())
        while pending and cluster.answered >= pending[0]:
            marks[pending.pop(0)] = clock()
            if cluster.answered >= tenth and not rss_at_tenth:
                rss_at_tenth = rss_mb()
    cluster.settle()
    cluster.check()
    first_s = marks[tenth] - t0
    last_s = marks[writes] - marks[writes - tenth]
    leader = cluster.leader
    assert leader is not None
    m = leader.engine.metrics()
    return {
        "bench": "growth",
        "writes": cluster.answered,
        "clients": clients,
        "snapshot_every": snapshot_every,
        "seconds": round(marks[writes] - t0, 2),
        "first_writes_per_s": round(tenth / first_s),
        "last_writes_per_s": round(tenth / last_s),
        "last_over_first": round(first_s / last_s, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_mb_at_10pct": round(rss_at_tenth, 1),
        "rss_mb_at_end": round(rss_mb(), 1),
        "snapshots_built": m.snapshots_built,
        "last_purged": m.last_purged.index,
        "log_entries_in_memory": max(len(n.engine.log) for n in cluster.nodes),
        "driver_log_entries": max(len(n.log) for n in cluster.nodes),
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.growth_bench", description=__doc__)
    p.add_argument("--writes", type=int, default=1_000_000)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--snapshot-every", type=int, default=10_000)
    p.add_argument("--no-snapshots", action="store_true", help="never snapshot nor purge")
    args = p.parse_args()
    if args.writes < 10 or args.clients < 1 or args.snapshot_every < 1:
        p.error("--writes must be >= 10, --clients and --snapshot-every >= 1")
    every = None if args.no_snapshots else args.snapshot_every
    print(json.dumps(run(args.writes, args.clients, every)), flush=True)


if __name__ == "__main__":
    main()
