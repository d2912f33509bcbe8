"""Engine configuration, validated at construction."""

from __future__ import annotations

import math

import attrs

from raftcore.errors import ConfigError
from raftcore.ids import LeaderIdMode


def _positive(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(name, f"must be a positive finite number, got {value!r}")


@attrs.frozen(kw_only=True)
class Config:
    """Tunables of one engine. Times are in the caller's units (seconds).

    Every field is checked when the object is built; a bad value raises
    ``ConfigError`` naming the field.
    """

    #: A follower starts an election after hearing nothing for a random time
    #: in ``[election_timeout_min, election_timeout_max)``.
    election_timeout_min: float = 0.150
    election_timeout_max: float = 0.300
    #: The leader sends a heartbeat to a follower it has sent nothing to for
    #: this long.
    heartbeat_interval: float = 0.050
    #: How long after hearing from a leader a follower refuses to vote for
    #: another candidate, and how long a leader may go without a quorum's
    #: acknowledgement before it steps down (check-quorum). ``None``: equal to
    #: ``election_timeout_min``.
    leader_lease: float | None = None
    leader_id_mode: LeaderIdMode = LeaderIdMode.ADVANCED
    #: Ask for a pre-vote round (no term change) before a real election.
    pre_vote: bool = True
    #: Step down when a quorum has not acknowledged within the lease.
    check_quorum: bool = True
    #: Bounds on one append message.
    max_entries_per_append: int = 256
    max_bytes_per_append: int = 1 << 20
    #: Bounds on unacknowledged append messages per follower.
    max_inflight_appends: int = 8
    max_inflight_bytes: int = 8 << 20
    #: An append unanswered for this long is presumed lost and replication
    #: to that follower restarts from its last known match. ``None``: equal
    #: to ``election_timeout_min``.
    replication_timeout: float | None = None
    #: Extra election back-off after a voter reported a greater log than ours.
    greater_log_backoff: float | None = None
    #: Build a snapshot every this many applied entries; ``None``: only on
    #: ``TriggerSnapshot`` (docs/snapshots.md).
    snapshot_every: int | None = 10_000
    #: After a snapshot, keep this many of the entries it covers, so a
    #: follower a little behind still gets entries rather than a snapshot.
    purge_keep: int = 1_000
    #: The leader never purges an entry a follower at most this many entries
    #: behind still needs; one further behind gets the snapshot instead.
    snapshot_lag_threshold: int = 5_000
    #: Bytes per snapshot chunk (keep it below the transport's frame limit).
    snapshot_chunk_size: int = 1 << 20
    #: Snapshot chunks in flight per follower.
    snapshot_window: int = 4
    #: A read a leader cannot confirm within this long is answered
    #: ``ReadTimeout``. ``None``: equal to ``election_timeout_max``.
    read_timeout: float | None = None
    #: How far apart (as a fraction) two nodes' clock rates may be; lease
    #: reads shorten the lease by it (docs/reads.md).
    max_clock_drift: float = 0.01
    #: A leadership transfer whose target has not taken over within this
    #: long is abandoned and the leader serves writes again. ``None``:
    #: equal to ``election_timeout_max``.
    transfer_timeout: float | None = None

    def __attrs_post_init__(self) -> None:
        _positive("election_timeout_min", self.election_timeout_min)
        _positive("election_timeout_max", self.election_timeout_max)
        _positive("heartbeat_interval", self.heartbeat_interval)
        if self.election_timeout_max <= self.election_timeout_min:
            raise ConfigError(
                "election_timeout_max",
                f"must be greater than election_timeout_min ({self.election_timeout_min})",
            )
        if self.heartbeat_interval >= self.election_timeout_min:
            raise ConfigError(
                "heartbeat_interval",
                f"must be less than election_timeout_min ({self.election_timeout_min})",
            )
        if self.leader_lease is not None:
            _positive("leader_lease", self.leader_lease)
            if self.leader_lease > self.election_timeout_min:
                raise ConfigError(
                    "leader_lease",
                    "may not exceed election_timeout_min, or a dead leader's lease "
                    "would outlast the followers' election timeout",
                )
        if not isinstance(self.leader_id_mode, LeaderIdMode):
            raise ConfigError(
                "leader_id_mode", f"must be a LeaderIdMode, got {self.leader_id_mode!r}"
            )
        for name in (
            "max_entries_per_append",
            "max_bytes_per_append",
            "max_inflight_appends",
            "max_inflight_bytes",
            "snapshot_chunk_size",
            "snapshot_window",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(name, f"must be an int >= 1, got {v!r}")
        for name in ("purge_keep", "snapshot_lag_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(name, f"must be an int >= 0, got {v!r}")
        v = self.snapshot_every
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError("snapshot_every", f"must be None or an int >= 1, got {v!r}")
        d = self.max_clock_drift
        if isinstance(d, bool) or not isinstance(d, int | float) or not 0 <= d < 1:
            raise ConfigError("max_clock_drift", f"must be a number in [0, 1), got {d!r}")
        for name in (
            "replication_timeout",
            "greater_log_backoff",
            "read_timeout",
            "transfer_timeout",
        ):
            v = getattr(self, name)
            if v is not None:
                _positive(name, v)
        for name in ("pre_vote", "check_quorum"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, "must be a bool")

    @property
    def lease(self) -> float:
        return self.leader_lease if self.leader_lease is not None else self.election_timeout_min

    @property
    def append_timeout(self) -> float:
        if self.replication_timeout is not None:
            return self.replication_timeout
        return self.election_timeout_min

    @property
    def read_deadline(self) -> float:
        """How long a read may wait for its confirmation."""
        return self.read_timeout if self.read_timeout is not None else self.election_timeout_max

    @property
    def transfer_deadline(self) -> float:
        """How long a leadership transfer may take before it is abandoned."""
        t = self.transfer_timeout
        return t if t is not None else self.election_timeout_max

    @property
    def backoff(self) -> float:
        if self.greater_log_backoff is not None:
            return self.greater_log_backoff
        return self.election_timeout_max
