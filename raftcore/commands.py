"""Every output of the engine, in streams an adapter keeps in order.

- storage (``SaveVote``, ``AppendLog``, ``TruncateLog``): execute strictly in
  order; report durability with ``IoFlushed(io_id)``.
- network (``Send``): may be executed at once; the engine never emits a
  message whose safety depends on storage work not yet confirmed.
- state machine (``Apply``): execute in order; report with ``Applied``.
- client (``Respond``): the answer to a client request.
- ``Stopped``: the engine stopped for ``reason`` and will emit nothing more.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, NamedTuple

from raftcore._values import value
from raftcore.entries import Entry
from raftcore.errors import ClientError
from raftcore.ids import NodeId, Vote
from raftcore.messages import Message


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
class Send(NamedTuple):
    to: NodeId
    message: Message


@value
class Apply(NamedTuple):
    """Apply these committed entries, in order, to the state machine."""

    entries: tuple[Entry, ...]


@value
class Respond(NamedTuple):
    """Answer a client request: ``error`` is ``None`` on success."""

    request_id: Hashable
    result: Any = None
    error: ClientError | None = None


@value
class Stopped(NamedTuple):
    reason: str


StorageCommand = SaveVote | AppendLog | TruncateLog
Command = SaveVote | AppendLog | TruncateLog | Send | Apply | Respond | Stopped
