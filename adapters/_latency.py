"""Latency histograms the runtimes keep (``node.latency()``), exported by the
KV service's ``/metrics`` as Prometheus histograms.

- ``commit``: an append batch, from the engine's ``AppendLog`` to the
  ``Apply`` that covers it (on the leader: replication to a quorum and the
  commit; on a follower: until it learns of the commit);
- ``storage_flush``: one storage batch (appends, vote, truncation, purge)
  until durable, as the event loop sees it (worker-thread queueing included);
- ``apply``: one batch of committed entries through the state machine.

Observed once per batch (not per write): one ``bisect`` and three
additions each. The cluster benchmark showed no difference with and
without them (writes, asyncio, memory store, three rounds interleaved on
2026-12-05: 1 client 4,169 / 4,058 / 3,914 writes/s before, 4,216 / 3,993 /
3,786 after; 64 clients 63,838 / 61,696 / 57,056 before, 64,064 / 62,466 /
60,192 after). Client-visible write latency is the clients' to measure (the
benchmark reports it).
"""

from __future__ import annotations

from bisect import bisect_left

#: Bucket upper bounds in seconds (Prometheus ``le``), from 0.5 ms to 10 s.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Counts per bucket (the last one past 10 s), their sum and count."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, observations <= le)`` for every bucket, ``+Inf`` last."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, float(total)))
        return out


def new_latencies() -> dict[str, Histogram]:
    return {
        "commit": Histogram(),
        "storage_flush": Histogram(),
        "apply": Histogram(),
    }
