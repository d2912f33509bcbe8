"""The storage protocols an adapter executes the engine's commands against.

They are synchronous on purpose: a runtime calls them from one worker thread
(asyncio) or ``trio.to_thread`` so a blocking ``fsync`` never stalls the event
loop, and a store needs no knowledge of any IO framework. Implementations
in ``raftcore.adapters.storage``: ``MemoryLogStore`` (tests) and
``SqliteLogStore`` (the durable embedded default). ``raftcore.testing.storage_suite`` checks a
store against this contract.

Durability: a write is durable once ``flush()`` returns; a store may make each
call durable by itself (then ``flush`` has nothing to do). The runtimes issue a
batch of writes and one ``flush`` per batch, then report ``IoFlushed``.
``close()`` does not flush: writes not yet flushed may be lost, as in a crash.

Threading: a store or state machine may say ``blocking = False`` (a class
attribute) when its calls never block; the runtimes then call it on the event
loop instead of a worker thread. Without the attribute a log store is assumed
to block and a state machine not to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import attrs

from raftcore.entries import Entry
from raftcore.ids import LogId, Vote
from raftcore.snapshots import SnapshotMeta
from raftcore.state import RecoveredState

__all__ = [
    "IdentityStore",
    "LogStore",
    "SnapshotMeta",
    "SnapshotStore",
    "StateMachine",
    "StoreIdentity",
]


class LogStore(Protocol):
    """The vote and the log of one node."""

    def load(self) -> RecoveredState:
        """Everything durable: vote, the entries after ``last_purged``, the last
        saved commit hint, and the membership in effect at ``last_purged``
        (the last membership entry the purge removed, if any). ``applied`` is
        left at its default: the state machine knows it."""
        ...

    def save_vote(self, vote: Vote) -> None: ...

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries that continue the log (the first one's index is the
        last index + 1); raises ``ValueError`` otherwise and writes nothing."""
        ...

    def truncate(self, since: int) -> None:
        """Delete every entry with index >= ``since`` (nothing if none)."""
        ...

    def purge(self, upto: LogId) -> None:
        """Delete every entry with index <= ``upto.index``; ``load`` then
        reports ``last_purged == upto`` (purging backwards is a no-op)."""
        ...

    def save_committed(self, committed: LogId) -> None:
        """Record a commit hint; optional for correctness (see ``RecoveredState``)."""
        ...

    def flush(self) -> None:
        """Return once every earlier call is durable."""
        ...

    def close(self) -> None:
        """Release the store; unflushed writes may be lost."""
        ...


class StateMachine(Protocol):
    """The application's replicated state.

    The runtimes call it in log order, from one task or worker thread:
    ``apply`` for committed entries, ``snapshot`` when the engine asks for a
    snapshot (it then covers exactly the entries applied so far), ``restore``
    to install a snapshot received from the leader, or on start when the
    latest snapshot is newer than what ``applied()`` reports.
    """

    def apply(self, entries: Sequence[Entry]) -> list[tuple[int, Any]]:
        """Apply committed entries in order; return ``(index, result)`` for each
        normal entry whose result a client may be waiting for."""
        ...

    def applied(self) -> LogId:
        """The last entry applied durably (``ZERO_LOG_ID`` for a state machine
        rebuilt from the log on every start)."""
        ...

    def snapshot(self) -> bytes:
        """The whole state as bytes: everything applied so far, nothing else."""
        ...

    def restore(self, data: bytes, last_log_id: LogId) -> None:
        """Replace the whole state with a snapshot made by ``snapshot`` (on
        any replica), which covers every entry up to ``last_log_id``."""
        ...


@attrs.frozen
class StoreIdentity:
    """Who a store's node is, for the transport's handshake.

    ``incarnation`` is made once, when the store is created, and never
    changes: a node that comes back on a wiped or replaced store presents a
    new one, so its peers can tell it is not the node whose votes and log
    they knew. ``cluster_id`` is the cluster the store belongs to: made by
    ``initialize`` or adopted from the cluster that first reached it; ``""``
    while it belongs to none.
    """

    incarnation: str
    cluster_id: str = ""


class IdentityStore(Protocol):
    """A log store that keeps its node's identity (both bundled stores do).

    With one, the runtimes check identities in the handshake and record each
    member's incarnation in the membership (``docs/design/identity.md``).
    """

    def identity(self) -> StoreIdentity: ...

    def save_cluster_id(self, cluster_id: str) -> None:
        """Record the cluster the store belongs to; durable when it returns."""
        ...


class SnapshotStore(Protocol):
    """Durable snapshots, written and read in chunks (docs/design/snapshots.md).

    A snapshot is written in order: ``begin``, ``write_chunk`` at increasing
    offsets, ``finish``. Only a finished snapshot is ever ``latest``; finishing
    one is atomic (a crash leaves the previous latest, or the new one, never
    neither) and makes the older ones go. Unfinished writes do not survive a
    reopen. Calls block on disk: a runtime runs them in a worker thread.
    """

    def begin(self, meta: SnapshotMeta) -> None:
        """Start writing ``meta.snapshot_id`` (an unfinished one of that id starts over)."""
        ...

    def write_chunk(self, snapshot_id: str, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset``; returns the next offset wanted.

        Idempotent: a chunk already written (a duplicate) changes nothing.
        A chunk beyond the next offset (a gap) raises ``ValueError``.
        """
        ...

    def finish(self, snapshot_id: str) -> SnapshotMeta:
        """Make the snapshot durable and the latest; ``ValueError`` unless all
        ``size`` bytes were written."""
        ...

    def latest(self) -> SnapshotMeta | None: ...

    def read_chunk(self, snapshot_id: str, offset: int, max_len: int) -> bytes:
        """Up to ``max_len`` bytes of a finished snapshot from ``offset``."""
        ...

    def discard(self, snapshot_id: str) -> None:
        """Drop an unfinished snapshot (nothing if none)."""
        ...

    def close(self) -> None: ...
