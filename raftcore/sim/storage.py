"""Simulated per-node storage with explicit durability.

A node's storage has two views:

- the *volatile* view: every storage command executed so far, in order. It
  is what the engine believes its log and vote are.
- the *durable* view: what survives a crash. Commands become durable in
  order, in batches, when a simulated flush completes a short random virtual
  time after they were issued; one flush may cover several commands (group
  commit) and the driver reports it with a single ``IoFlushed``.

``crash()`` throws away everything not yet durable — except that, like a
real disk, a crash may have persisted a prefix of the pending writes whose
acknowledgement was never delivered. A restarted node recovers from
``recovered_state()``, built from the durable view only.

Storage also checks the storage-command contract (io ids increase, appends
are contiguous with the log) and reports breaches as strings for the
invariant checker, and keeps the membership entries of each view in order
(``memberships``), which the membership invariants read after every step.

Manual driving (``raftcore.sim.manual``) takes the randomness out: ``flush``
and ``crash`` accept an exact count of pending writes to persist.

Snapshots: ``snapshot`` is the latest durable one (it survives crashes);
a purge only moves ``purged`` (and ``durable_purged``), and the entries stay
in the lists so the invariant checker can still see what each index held.
A purge that an install makes past a log that does not continue the
snapshot fills the log with the snapshot's entries (the simulator knows
which entries a snapshot covers), so every view stays indexed from 1.
"""

from __future__ import annotations

from typing import NamedTuple

from raftcore.commands import AppendLog, PurgeLog, SaveVote, StorageCommand, TruncateLog
from raftcore.entries import Entry, EntryKind
from raftcore.ids import INITIAL_VOTE, ZERO_LOG_ID, LogId, NodeId, Vote
from raftcore.membership import Membership
from raftcore.sim.rng import Rng
from raftcore.snapshots import SnapshotMeta
from raftcore.state import RecoveredState

__all__ = ["FlushTiming", "SimSnapshot", "SimStorage"]


class SimSnapshot(NamedTuple):
    """A durable snapshot: its meta, its bytes, and (the simulator being
    omniscient) the entries it covers."""

    meta: SnapshotMeta
    data: bytes
    entries: tuple[Entry, ...]


class FlushTiming:
    """How long simulated flushes take (virtual seconds)."""

    __slots__ = ("max_delay", "min_delay", "partial_prob", "slow_max", "slow_min", "slow_prob")

    def __init__(
        self,
        min_delay: float = 0.0002,
        max_delay: float = 0.003,
        slow_prob: float = 0.02,
        slow_min: float = 0.01,
        slow_max: float = 0.06,
        partial_prob: float = 0.25,
    ) -> None:
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.slow_prob = slow_prob
        self.slow_min = slow_min
        self.slow_max = slow_max
        #: Probability that a flush covers only a prefix of the pending writes.
        self.partial_prob = partial_prob


#: ``(log id, membership)`` of each membership entry of a log, ascending.
MembershipLog = list[tuple[LogId, Membership]]
_MEMBERSHIP = EntryKind.MEMBERSHIP


def _cut_memberships(mems: MembershipLog, since: int) -> None:
    while mems and mems[-1][0].index >= since:
        mems.pop()


def _apply(
    log: list[Entry],
    vote: Vote,
    cmd: StorageCommand,
    mems: MembershipLog,
    fills: dict[int, tuple[Entry, ...]],
) -> Vote:
    """Execute ``cmd`` on ``(log, vote)``; the log and its membership list
    ``mems`` are changed in place. ``fills``: the entries a purge puts under
    its index (by io id; see the module docstring)."""
    if isinstance(cmd, SaveVote):
        return cmd.vote
    if isinstance(cmd, PurgeLog):
        fill = fills.get(cmd.io_id)
        if fill is not None:
            log[: len(fill)] = fill
            mems[:] = [(e.log_id, e.data) for e in log if e.kind is _MEMBERSHIP]
        return vote
    if isinstance(cmd, AppendLog):
        if cmd.entries:
            first = cmd.entries[0].log_id.index
            if first <= len(log):
                del log[max(first - 1, 0) :]
                _cut_memberships(mems, first)
            log.extend(cmd.entries)
            for e in cmd.entries:
                if e.kind is _MEMBERSHIP:
                    mems.append((e.log_id, e.data))
        return vote
    del log[max(cmd.since - 1, 0) :]
    _cut_memberships(mems, cmd.since)
    return vote


class SimStorage:
    """The log store, vote store and snapshot store of one simulated node."""

    def __init__(self, node_id: NodeId, rng: Rng, timing: FlushTiming | None = None) -> None:
        self.node_id = node_id
        self.rng = rng
        self.timing = timing or FlushTiming()
        self.vote: Vote = INITIAL_VOTE
        self.log: list[Entry] = []
        self.durable_vote: Vote = INITIAL_VOTE
        self.durable_log: list[Entry] = []
        self.pending: list[StorageCommand] = []
        #: Membership entries of the volatile and the durable log, ascending.
        self.memberships: MembershipLog = []
        self.durable_memberships: MembershipLog = []
        #: The purge points of the volatile and the durable view.
        self.purged: LogId = ZERO_LOG_ID
        self.durable_purged: LogId = ZERO_LOG_ID
        #: The latest durable snapshot (kept across crashes).
        self.snapshot: SimSnapshot | None = None
        self._fills: dict[int, tuple[Entry, ...]] = {}
        #: Bumped on every crash: flushes scheduled before it must be dropped.
        self.epoch = 0
        self.flush_scheduled = False
        self.last_io_id = 0
        self.flushes = 0
        self.writes = 0
        self.lost_on_crash = 0

    # -- views ---------------------------------------------------------------

    def log_id_at(self, index: int) -> LogId | None:
        """The volatile log's entry id at ``index`` (``ZERO_LOG_ID`` at 0)."""
        if index == 0:
            return ZERO_LOG_ID
        if 1 <= index <= len(self.log):
            return self.log[index - 1].log_id
        return None

    def durable_log_id_at(self, index: int) -> LogId | None:
        if index == 0:
            return ZERO_LOG_ID
        if 1 <= index <= len(self.durable_log):
            return self.durable_log[index - 1].log_id
        return None

    def last_membership(self) -> tuple[LogId, Membership] | None:
        """The newest membership entry of the volatile log (the effective one)."""
        return self.memberships[-1] if self.memberships else None

    def last_log_id(self) -> LogId:
        return self.log[-1].log_id if self.log else ZERO_LOG_ID

    def recovered_state(self) -> RecoveredState:
        """What a restarted node sees: the durable view only (``applied`` is
        the state machine's: the harness fills it in)."""
        p = self.durable_purged
        membership = None
        if p.index:
            membership = next(
                (m for m in reversed(self.durable_memberships) if m[0].index <= p.index), None
            )
        return RecoveredState(
            vote=self.durable_vote,
            entries=tuple(self.durable_log[p.index :]),
            last_purged=p,
            membership=membership,
            snapshot=self.snapshot.meta if self.snapshot is not None else None,
        )

    # -- commands ------------------------------------------------------------

    def execute(self, cmd: StorageCommand) -> str | None:
        """Run ``cmd`` on the volatile view; returns a contract breach or ``None``."""
        problem: str | None = None
        if cmd.io_id <= self.last_io_id:
            problem = f"io_id {cmd.io_id} does not increase (last was {self.last_io_id})"
        self.last_io_id = max(self.last_io_id, cmd.io_id)
        if isinstance(cmd, AppendLog) and cmd.entries and problem is None:
            first = cmd.entries[0].log_id.index
            if first != len(self.log) + 1:
                problem = (
                    f"AppendLog starts at index {first} but the log ends at {len(self.log)} "
                    "(appends must follow the last entry; truncate first)"
                )
            else:
                for a, b in zip(cmd.entries, cmd.entries[1:], strict=False):
                    if b.log_id.index != a.log_id.index + 1:
                        problem = f"AppendLog entries not contiguous: {a.log_id} then {b.log_id}"
                        break
        elif isinstance(cmd, TruncateLog) and problem is None and cmd.since <= self.purged.index:
            problem = f"TruncateLog since={cmd.since} reaches the purged prefix {self.purged}"
        elif isinstance(cmd, PurgeLog) and problem is None:
            problem = self._plan_purge(cmd)
        self.vote = _apply(self.log, self.vote, cmd, self.memberships, self._fills)
        self.pending.append(cmd)
        self.writes += 1
        return problem

    def _plan_purge(self, cmd: PurgeLog) -> str | None:
        upto = cmd.upto
        if upto.index <= self.purged.index:
            return f"PurgeLog({upto}) does not pass the purge point {self.purged}"
        self.purged = upto
        if self.log_id_at(upto.index) == upto:
            return None
        # Past a log that does not hold ``upto``: the snapshot installed must cover it.
        snap = self.snapshot
        if snap is None or snap.meta.last_log_id != upto:
            return f"PurgeLog({upto}) past the log, with no snapshot ending there"
        self._fills[cmd.io_id] = snap.entries
        return None

    def next_flush_delay(self) -> float:
        t = self.timing
        if self.rng.chance(t.slow_prob):
            return self.rng.uniform(t.slow_min, t.slow_max)
        return self.rng.uniform(t.min_delay, t.max_delay)

    def _persist(self, cmds: list[StorageCommand]) -> None:
        for cmd in cmds:
            self.durable_vote = _apply(
                self.durable_log, self.durable_vote, cmd, self.durable_memberships, self._fills
            )
            if isinstance(cmd, PurgeLog) and cmd.upto.index > self.durable_purged.index:
                self.durable_purged = cmd.upto
                self._fills.pop(cmd.io_id, None)

    def flush(self, count: int | None = None) -> list[StorageCommand]:
        """Make a prefix of the pending commands durable (usually all of them).

        ``count`` fixes how many (at most); otherwise the storage's random
        stream decides (sometimes a partial flush). Returns the commands made
        durable, in order; the driver reports ``IoFlushed(last.io_id)``.
        """
        n = len(self.pending)
        if n == 0:
            return []
        if count is not None:
            n = max(0, min(n, count))
            if n == 0:
                return []
        elif n > 1 and self.rng.chance(self.timing.partial_prob):
            n = self.rng.randint(1, n - 1)
        done = self.pending[:n]
        del self.pending[:n]
        self._persist(done)
        self.flushes += 1
        return done

    def crash(self, torn_prob: float = 0.5, *, keep: int | None = None) -> list[StorageCommand]:
        """Lose the unflushed writes; with ``torn_prob`` a random prefix of them
        reached the disk anyway (``keep`` fixes its length instead). Returns the
        commands that were persisted."""
        kept: list[StorageCommand] = []
        if keep is not None:
            kept = self.pending[: max(0, keep)]
        elif self.pending and self.rng.chance(torn_prob):
            k = self.rng.randint(0, len(self.pending))
            kept = self.pending[:k]
        self._persist(kept)
        self.lost_on_crash += len(self.pending) - len(kept)
        self.pending = []
        self.vote = self.durable_vote
        self.log = list(self.durable_log)
        self.memberships = list(self.durable_memberships)
        self.purged = self.durable_purged
        self._fills.clear()
        self.epoch += 1
        self.flush_scheduled = False
        self.last_io_id = 0
        return kept
