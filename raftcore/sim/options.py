"""Simulation options, and how a seed fills in the ones left open.

Every option left as ``None`` is drawn from the seed (from its own random
stream, so fixing one option never changes the others), which lets a
campaign over many seeds cover both leader-id modes, pre-vote on and off,
3- and 5-node clusters and a range of fault rates, while any single seed
replays exactly: ``ResolvedOptions.cli_args()`` spells out the command.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from raftcore.config import Config
from raftcore.ids import LeaderIdMode
from raftcore.sim.rng import Rng

__all__ = ["FAULT_KINDS", "ResolvedOptions", "SimOptions", "parse_faults"]

_FLAG_ATTRS = {
    "--max-entries": "max_entries_per_append",
    "--fault-interval": "fault_interval",
    "--loss": "loss",
    "--dup": "dup",
    "--clock-drift": "clock_drift",
    "--clients": "clients",
    "--keys": "keys",
    "--client-timeout": "client_timeout",
    "--liveness-timeouts": "liveness_timeouts",
    "--spares": "spares",
    "--snapshot-every": "snapshot_every",
    "--purge-keep": "purge_keep",
    "--snapshot-lag": "snapshot_lag_threshold",
    "--snapshot-chunk": "snapshot_chunk_size",
    "--snapshot-window": "snapshot_window",
}


#: ``net``: loss, duplication, delay and reordering bursts on top of a low
#: base rate, and rare stragglers seconds late. ``partition``: symmetric,
#: one-way, partial and bridge partitions. ``crash``: crash-restart
#: (unflushed writes lost), disk failures (``StorageFailed``) and process
#: pauses. ``drift``: per-node clock rate
#: drift and offset. ``election``: forced elections (``TriggerElection``,
#: which skips pre-vote and the leader lease) and forced heartbeats.
#: ``churn``: membership changes of every kind sent to the leader, over the
#: initial voters and ``spares`` extra nodes (see ``raftcore.sim.churn``).
#: ``transfer``: the leader is asked to hand leadership over, to a random
#: target (see ``raftcore.sim.transfers``).
FAULT_KINDS: tuple[str, ...] = (
    "net",
    "partition",
    "crash",
    "drift",
    "election",
    "churn",
    "transfer",
)

#: Spare nodes a run gets by default when ``churn`` is on (none otherwise).
DEFAULT_SPARES = 2


def default_churn_interval(fault_interval: float) -> float:
    """Membership changes come twice as often as other faults, by default."""
    return round(fault_interval / 2, 4)


def parse_faults(spec: str | Iterable[str]) -> frozenset[str]:
    """``"all"``, ``"none"``, ``"net,crash"`` or an iterable of kinds."""
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s in ("all", "*"):
            return frozenset(FAULT_KINDS)
        if s in ("none", ""):
            return frozenset()
        items: Iterable[str] = (p.strip() for p in s.split(","))
    else:
        items = spec
    out = frozenset(p for p in items if p)
    bad = sorted(out - set(FAULT_KINDS))
    if bad:
        raise ValueError(f"unknown fault kind(s) {bad}; choose from {', '.join(FAULT_KINDS)}")
    return out


def _faults_converter(spec: str | Iterable[str]) -> frozenset[str]:
    return parse_faults(spec)


@attrs.frozen(kw_only=True)
class SimOptions:
    """What to simulate. ``None`` means: let the seed choose."""

    seed: int = 0
    nodes: int | None = None
    #: Engine steps (``handle`` calls) in the faults phase; healing follows.
    steps: int = 20000
    faults: frozenset[str] = attrs.field(default="all", converter=_faults_converter)
    leader_id_mode: LeaderIdMode | None = None
    pre_vote: bool | None = None
    check_quorum: bool | None = None
    max_entries_per_append: int | None = None
    #: Mean virtual seconds between injected faults.
    fault_interval: float | None = None
    #: Base per-message loss and duplication rates (with ``net`` faults).
    loss: float | None = None
    dup: float | None = None
    #: Bound on each node's clock rate error (with ``drift`` faults).
    clock_drift: float = 0.01
    clients: int = 3
    keys: int = 3
    client_timeout: float = 1.0
    election_timeout_min: float = 0.150
    election_timeout_max: float = 0.300
    heartbeat_interval: float = 0.050
    #: After healing, a leader must be elected and a write answered within
    #: this many ``election_timeout_max``; every node must then catch up
    #: within as long again.
    liveness_timeouts: float = 10.0
    check_linearizability: bool = True
    #: Stop the run at the first safety violation.
    stop_on_violation: bool = True
    #: Nodes beyond the initial voters, started uninitialized, for membership
    #: churn to add (``None``: ``DEFAULT_SPARES`` with ``churn``, else 0).
    spares: int | None = None
    #: Mean virtual seconds between membership change requests (with ``churn``;
    #: ``None``: half the fault interval).
    churn_interval: float | None = None
    #: Snapshots: build every N applied entries (``0``: never), entries kept
    #: after a purge, the lag beyond which a follower gets a snapshot, chunk
    #: size and chunks in flight. ``None``: the seed chooses.
    snapshot_every: int | None = None
    purge_keep: int | None = None
    snapshot_lag_threshold: int | None = None
    snapshot_chunk_size: int | None = None
    snapshot_window: int | None = None

    def resolve(self) -> ResolvedOptions:
        """Fill the open options from the seed."""
        r = Rng(self.seed).fork("options")
        # Draw everything, always, in a fixed order, so that fixing one option
        # leaves the others (and so the whole run) unchanged.
        d_nodes = r.choice((3, 5))
        d_mode = r.choice((LeaderIdMode.ADVANCED, LeaderIdMode.STANDARD))
        d_pre_vote = r.chance(0.5)
        d_check_quorum = r.chance(0.75)
        d_max_entries = r.choice((3, 32, 256))
        d_interval = round(r.uniform(0.15, 0.8), 3)
        d_loss = r.choice((0.0, 0.005, 0.02))
        d_dup = r.choice((0.0, 0.005, 0.02))
        d_snapshot_every = r.choice((3, 10, 30, 100, 300))
        d_purge_keep = r.choice((0, 1, 5, 20, 100))
        d_snapshot_lag = r.choice((0, 5, 50, 1000))
        d_chunk = r.choice((3, 16, 100, 4096))
        d_window = r.choice((1, 2, 4))
        nodes = self.nodes if self.nodes is not None else d_nodes
        if nodes < 1:
            raise ValueError(f"nodes must be >= 1, got {nodes}")
        spares = self.spares
        if spares is None:
            spares = DEFAULT_SPARES if "churn" in self.faults else 0
        if spares < 0:
            raise ValueError(f"spares must be >= 0, got {spares}")
        interval = self.fault_interval or d_interval
        return ResolvedOptions(
            seed=self.seed,
            nodes=nodes,
            steps=self.steps,
            faults=self.faults,
            leader_id_mode=self.leader_id_mode or d_mode,
            pre_vote=self.pre_vote if self.pre_vote is not None else d_pre_vote,
            check_quorum=self.check_quorum if self.check_quorum is not None else d_check_quorum,
            max_entries_per_append=self.max_entries_per_append or d_max_entries,
            fault_interval=interval,
            loss=self.loss if self.loss is not None else d_loss,
            dup=self.dup if self.dup is not None else d_dup,
            clock_drift=self.clock_drift,
            clients=self.clients,
            keys=self.keys,
            client_timeout=self.client_timeout,
            election_timeout_min=self.election_timeout_min,
            election_timeout_max=self.election_timeout_max,
            heartbeat_interval=self.heartbeat_interval,
            liveness_timeouts=self.liveness_timeouts,
            check_linearizability=self.check_linearizability,
            stop_on_violation=self.stop_on_violation,
            spares=spares,
            churn_interval=self.churn_interval or default_churn_interval(interval),
            snapshot_every=_pick(self.snapshot_every, d_snapshot_every),
            purge_keep=_pick(self.purge_keep, d_purge_keep),
            snapshot_lag_threshold=_pick(self.snapshot_lag_threshold, d_snapshot_lag),
            snapshot_chunk_size=_pick(self.snapshot_chunk_size, d_chunk),
            snapshot_window=_pick(self.snapshot_window, d_window),
        )


def _pick(given: int | None, drawn: int) -> int:
    return given if given is not None else drawn


@attrs.frozen(kw_only=True)
class ResolvedOptions:
    """Every option fixed; what a run actually used."""

    seed: int
    nodes: int
    steps: int
    faults: frozenset[str]
    leader_id_mode: LeaderIdMode
    pre_vote: bool
    check_quorum: bool
    max_entries_per_append: int
    fault_interval: float
    loss: float
    dup: float
    clock_drift: float
    clients: int
    keys: int
    client_timeout: float
    election_timeout_min: float
    election_timeout_max: float
    heartbeat_interval: float
    liveness_timeouts: float
    check_linearizability: bool
    stop_on_violation: bool
    spares: int = 0
    churn_interval: float = 0.5
    #: ``0``: no snapshots.
    snapshot_every: int = 0
    purge_keep: int = 0
    snapshot_lag_threshold: int = 0
    snapshot_chunk_size: int = 1 << 20
    snapshot_window: int = 4

    @property
    def churn(self) -> bool:
        return "churn" in self.faults

    def config(self) -> Config:
        return Config(
            election_timeout_min=self.election_timeout_min,
            election_timeout_max=self.election_timeout_max,
            heartbeat_interval=self.heartbeat_interval,
            leader_id_mode=self.leader_id_mode,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            max_entries_per_append=self.max_entries_per_append,
            snapshot_every=self.snapshot_every or None,
            purge_keep=self.purge_keep,
            snapshot_lag_threshold=self.snapshot_lag_threshold,
            snapshot_chunk_size=self.snapshot_chunk_size,
            snapshot_window=self.snapshot_window,
            # Each clock runs within ``clock_drift`` of true time, so two
            # run up to this far apart: what lease reads must allow for.
            max_clock_drift=(1 + self.clock_drift) / (1 - self.clock_drift) - 1,
        )

    def faults_spec(self) -> str:
        if not self.faults:
            return "none"
        if self.faults == frozenset(FAULT_KINDS):
            return "all"
        return ",".join(k for k in FAULT_KINDS if k in self.faults)

    def as_dict(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "nodes": self.nodes,
            "steps": self.steps,
            "faults": self.faults_spec(),
            "mode": self.leader_id_mode.value,
            "pre_vote": self.pre_vote,
            "check_quorum": self.check_quorum,
            "max_entries_per_append": self.max_entries_per_append,
            "fault_interval": self.fault_interval,
            "loss": self.loss,
            "dup": self.dup,
            "clock_drift": self.clock_drift,
            "clients": self.clients,
            "keys": self.keys,
            "spares": self.spares,
            "snapshot_every": self.snapshot_every,
            "purge_keep": self.purge_keep,
            "snapshot_lag": self.snapshot_lag_threshold,
            "snapshot_chunk": self.snapshot_chunk_size,
            "snapshot_window": self.snapshot_window,
        }

    def describe(self) -> str:
        return (
            f"seed={self.seed} nodes={self.nodes} mode={self.leader_id_mode.value} "
            f"pre_vote={'on' if self.pre_vote else 'off'} "
            f"check_quorum={'on' if self.check_quorum else 'off'} "
            f"faults={self.faults_spec()} steps={self.steps} "
            f"max_entries={self.max_entries_per_append} fault_interval={self.fault_interval} "
            f"loss={self.loss} dup={self.dup}"
            + (f" spares={self.spares}" if self.spares else "")
            + (f" churn_interval={self.churn_interval}" if self.churn else "")
            + (
                f" snapshot_every={self.snapshot_every} purge_keep={self.purge_keep} "
                f"snapshot_lag={self.snapshot_lag_threshold} "
                f"chunk={self.snapshot_chunk_size} window={self.snapshot_window}"
                if self.snapshot_every
                else " snapshots=off"
            )
        )

    def cli_args(self) -> list[str]:
        """Arguments to ``python -m raftcore.sim`` that replay this run exactly."""
        args = [
            "--seed",
            str(self.seed),
            "--nodes",
            str(self.nodes),
            "--steps",
            str(self.steps),
            "--faults",
            self.faults_spec(),
            "--mode",
            self.leader_id_mode.value,
            "--pre-vote",
            "on" if self.pre_vote else "off",
            "--check-quorum",
            "on" if self.check_quorum else "off",
        ]
        # Options the seed would choose anyway need no flag.
        derived = SimOptions(seed=self.seed, faults=self.faults).resolve()
        extra: list[tuple[str, object]] = [
            ("--max-entries", self.max_entries_per_append),
            ("--fault-interval", self.fault_interval),
            ("--loss", self.loss),
            ("--dup", self.dup),
            ("--clock-drift", self.clock_drift),
            ("--clients", self.clients),
            ("--keys", self.keys),
            ("--client-timeout", self.client_timeout),
            ("--liveness-timeouts", self.liveness_timeouts),
            ("--spares", self.spares),
            ("--snapshot-every", self.snapshot_every),
            ("--purge-keep", self.purge_keep),
            ("--snapshot-lag", self.snapshot_lag_threshold),
            ("--snapshot-chunk", self.snapshot_chunk_size),
            ("--snapshot-window", self.snapshot_window),
        ]
        for flag, value in extra:
            attr = _FLAG_ATTRS[flag]
            if getattr(derived, attr) != value:
                args += [flag, repr(value) if isinstance(value, float) else str(value)]
        if self.churn and self.churn_interval != default_churn_interval(self.fault_interval):
            args += ["--churn-interval", repr(self.churn_interval)]
        if not self.check_linearizability:
            args.append("--no-linearizability")
        if (
            self.election_timeout_min,
            self.election_timeout_max,
            self.heartbeat_interval,
        ) != (
            derived.election_timeout_min,
            derived.election_timeout_max,
            derived.heartbeat_interval,
        ):
            args += [
                "--timeouts",
                f"{self.election_timeout_min!r}:{self.election_timeout_max!r}:"
                f"{self.heartbeat_interval!r}",
            ]
        return args

    def replay_command(self) -> str:
        return "python -m raftcore.sim " + " ".join(self.cli_args())
