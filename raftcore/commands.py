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
from typing import Any

import attrs

from raftcore.entries import Entry
from raftcore.errors import ClientError
from raftcore.ids import NodeId, Vote
from raftcore.messages import Message


@attrs.frozen
class SaveVote:
    io_id: int
    vote: Vote


@attrs.frozen
class AppendLog:
    io_id: int
    entries: tuple[Entry, ...]


@attrs.frozen
class TruncateLog:
    """Delete every entry with index >= ``since``."""

    io_id: int
    since: int


@attrs.frozen
class Send:
    to: NodeId
    message: Message


@attrs.frozen
class Apply:
    """Apply these committed entries, in order, to the state machine."""

    entries: tuple[Entry, ...]


@attrs.frozen
class Respond:
    """Answer a client request: ``error`` is ``None`` on success."""

    request_id: Hashable
    result: Any = None
    error: ClientError | None = None


@attrs.frozen
class Stopped:
    reason: str


StorageCommand = SaveVote | AppendLog | TruncateLog
Command = SaveVote | AppendLog | TruncateLog | Send | Apply | Respond | Stopped
