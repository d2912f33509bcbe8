"""Prometheus metrics for a KV node (``GET /metrics``), in the text format
through ``prometheus-client``, read from the node at scrape time.

Every series is named ``raftcore_...``. Gauges: the role (one series per
role, 1 for the current one), term, leader id, last log / committed / applied
/ purged / snapshot index, keys, a transfer in progress, and per follower
(on the leader) its matched index, its lag in entries and the age of its
last acknowledgement. Counters: leader changes seen and elections won by
this node since it started, snapshots built and installed, and the
transport's frames, bytes, connections, reconnects and refusals.
Histograms: commit latency (an append batch until committed), storage
flush latency, and state machine apply latency.

Why ``prometheus-client`` and not a hand-written exposition: it is the
Prometheus project's own client, keeps the text format's escaping and
types right, and gives scrapers the OpenMetrics variant for free.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import attrs
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from raftcore.state import Metrics, Role

LATENCY_DOCS = {
    "commit": "an append batch, from its append to the commit that covers it",
    "storage_flush": "a storage batch until durable",
    "apply": "a batch of committed entries through the state machine",
}

#: Transport counters exported as ``raftcore_transport_<name>_total``.
TRANSPORT_COUNTERS = (
    "frames_sent",
    "bytes_sent",
    "frames_received",
    "bytes_received",
    "frames_dropped",
    "connects",
    "connect_failures",
    "disconnects",
    "accepts",
    "rejects",
    "write_timeouts",
)
#: Transport gauges exported as ``raftcore_transport_<name>``.
TRANSPORT_GAUGES = ("peers", "queued", "connections_out", "connections_in")


@attrs.define
class LeadershipStats:
    """Kept by the node's leadership watcher (``server.log_leadership``), and
    the leadership transfers this node was asked for, by outcome (``ok`` or
    the error's name)."""

    leader_changes: int = 0
    elections_won: int = 0
    transfers: Counter[str] = attrs.Factory(Counter)

    def observe(self, before: Metrics | None, now: Metrics) -> None:
        if before is None:
            return
        if now.leader_id != before.leader_id and now.leader_id is not None:
            self.leader_changes += 1
        if now.role is Role.LEADER and (before.role is not Role.LEADER or before.vote != now.vote):
            self.elections_won += 1


class NodeCollector(Collector):
    """Reads a node's metrics, replication and transport counters per scrape."""

    def __init__(self, node: Any, keys: Any, stats: LeadershipStats) -> None:
        self.node = node
        self.keys = keys
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        m: Metrics = self.node.metrics()
        role = GaugeMetricFamily("raftcore_role", "1 for this node's current role", labels=["role"])
        for r in Role:
            role.add_metric([r.value], 1.0 if m.role is r else 0.0)
        yield role
        for name, doc, value in (
            ("term", "the current term", m.vote.term),
            ("leader_id", "the leader this node knows (0: none)", m.leader_id or 0),
            ("last_log_index", "the index of the last log entry", m.last_log_id.index),
            ("committed_index", "the commit index", m.committed.index),
            ("applied_index", "the last index the state machine applied", m.applied.index),
            ("last_purged_index", "the log is purged up to here", m.last_purged.index),
            ("snapshot_index", "the latest snapshot's last index (0: none)",
             m.snapshot.index if m.snapshot is not None else 0),
            ("keys", "keys in the map", len(self.keys)),
            ("transfer_in_progress", "1 while this leader hands leadership over",
             1 if m.transfer_to is not None else 0),
            ("stopped", "1 once the engine stopped (storage failure)", 1 if m.stopped else 0),
        ):  # fmt: skip
            yield GaugeMetricFamily(f"raftcore_{name}", doc, value=float(value))
        matched = GaugeMetricFamily(
            "raftcore_follower_matched_index",
            "leader only: each follower's matched log index",
            labels=["follower"],
        )
        lag = GaugeMetricFamily(
            "raftcore_follower_lag_entries",
            "leader only: entries each follower is behind the leader's log",
            labels=["follower"],
        )
        age = GaugeMetricFamily(
            "raftcore_follower_last_ack_age_seconds",
            "leader only: seconds since each follower last acknowledged",
            labels=["follower"],
        )
        for n, r in sorted(self.node.replication().items()):
            matched.add_metric([str(n)], float(r.matched.index))
            lag.add_metric([str(n)], float(max(0, m.last_log_id.index - r.matched.index)))
            age.add_metric([str(n)], float(r.last_ack_age))
        yield from (matched, lag, age)
        for name, doc, value in (
            ("leader_changes", "changes of the known leader since start",
             self.stats.leader_changes),
            ("elections_won", "times this node became leader since start",
             self.stats.elections_won),
            ("snapshots_built", "snapshots this node built since start", m.snapshots_built),
            ("snapshots_installed", "snapshots installed from a leader since start",
             m.snapshots_installed),
        ):  # fmt: skip
            yield CounterMetricFamily(f"raftcore_{name}", doc, value=float(value))
        transfers = CounterMetricFamily(
            "raftcore_transfers",
            "leadership transfers asked of this node, by outcome (ok or the error)",
            labels=["outcome"],
        )
        for outcome, n in sorted(self.stats.transfers.items()):
            transfers.add_metric([outcome], float(n))
        yield transfers
        latency = getattr(self.node, "latency", None)
        for name, h in (latency() if latency is not None else {}).items():
            yield HistogramMetricFamily(
                f"raftcore_{name}_latency_seconds",
                LATENCY_DOCS.get(name, name),
                buckets=h.cumulative(),
                sum_value=h.sum,
            )
        transport = self.node.transport.stats()
        for name in TRANSPORT_COUNTERS:
            if name in transport:
                yield CounterMetricFamily(
                    f"raftcore_transport_{name}", f"transport {name}", value=float(transport[name])
                )
        for name in TRANSPORT_GAUGES:
            if name in transport:
                yield GaugeMetricFamily(
                    f"raftcore_transport_{name}", f"transport {name}", value=float(transport[name])
                )


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The scrape body and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def registry_for(node: Any, keys: Any, stats: LeadershipStats) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node, keys, stats))
    return registry
