"""Every output of the engine, in streams an adapter keeps in order.

- storage (``SaveVote``, ``AppendLog``, ``TruncateLog``, ``PurgeLog``):
  execute strictly in order; report durability with ``IoFlushed(io_id)``.
- network (``Send``, ``SendSnapshotChunk``): may be executed at once; the
  engine never emits a message whose safety depends on storage work not yet
  confirmed.
- state machine (``Apply``, ``BuildSnapshot``, ``WriteSnapshotChunk``,
  ``InstallSnapshot``): execute in order; report with ``Applied``,
  ``SnapshotBuilt`` and ``SnapshotInstalled`` (docs/snapshots.md).
- client (``Respond``): the answer to a client request.
- ``Stopped``: the engine stopped for ``reason`` and will emit nothing more.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, NamedTuple

from raftcore._values import value
from raftcore.entries import Entry
from raftcore.errors import ClientError
from raftcore.ids import LogId, NodeId, Vote
from raftcore.membership import Membership
from raftcore.messages import InstallSnapshotRequest, Message
from raftcore.snapshots import SnapshotMeta


@value
class SaveVote(NamedTuple):
    io_id: int
    vote: Vote


@value
class AppendLog(NamedTuple):
    io_id: int
    entries: tuple[Entry, ...]


@value
class TruncateLog(NamedTuple):
    """Delete every entry with index >= ``since``."""

    io_id: int
    since: int


@value
class PurgeLog(NamedTuple):
    """Delete every entry with index <= ``upto.index`` (a durable snapshot
    covers them); afterwards the store's ``last_purged`` is ``upto``, even
    when ``upto`` is past the last entry (the log is then empty)."""

    io_id: int
    upto: LogId


@value
class Send(NamedTuple):
    to: NodeId
    message: Message


@value
class SendSnapshotChunk(NamedTuple):
    """Read ``length`` bytes of snapshot ``message.meta.snapshot_id`` at
    ``message.offset`` from the snapshot store, put them in ``message.data``
    and send it to ``to``. If that snapshot is gone (a newer one replaced
    it), drop the send: the engine resends from the newer one."""

    to: NodeId
    message: InstallSnapshotRequest
    length: int


@value
class Apply(NamedTuple):
    """Apply these committed entries, in order, to the state machine."""

    entries: tuple[Entry, ...]


@value
class BuildSnapshot(NamedTuple):
    """Snapshot the state machine, which (after the ``Apply`` commands before
    this one) has applied exactly up to ``last_log_id``; store it with
    ``membership``, then report ``SnapshotBuilt(meta)`` once it is durable."""

    last_log_id: LogId
    membership: tuple[LogId, Membership]


@value
class WriteSnapshotChunk(NamedTuple):
    """Write one received chunk of snapshot ``meta`` to the snapshot store
    (offset 0 begins the snapshot, dropping any unfinished one)."""

    meta: SnapshotMeta
    offset: int
    data: bytes


@value
class InstallSnapshot(NamedTuple):
    """Finish snapshot ``meta`` in the store (all its chunks were written),
    replace the state machine with it, then report ``SnapshotInstalled(meta)``."""

    meta: SnapshotMeta


@value
class Respond(NamedTuple):
    """Answer a client request: ``error`` is ``None`` on success."""

    request_id: Hashable
    result: Any = None
    error: ClientError | None = None


@value
class Stopped(NamedTuple):
    reason: str


StorageCommand = SaveVote | AppendLog | TruncateLog | PurgeLog
StateMachineCommand = Apply | BuildSnapshot | WriteSnapshotChunk | InstallSnapshot
Command = (
    SaveVote
    | AppendLog
    | TruncateLog
    | PurgeLog
    | Send
    | SendSnapshotChunk
    | Apply
    | BuildSnapshot
    | WriteSnapshotChunk
    | InstallSnapshot
    | Respond
    | Stopped
)
