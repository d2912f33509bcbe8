"""What a snapshot is, as the engine, the stores and the messages see it.

The engine never holds a snapshot's bytes: it decides when to build, send,
write and install one, and the adapter moves the bytes between the state
machine, a ``SnapshotStore`` and the transport (docs/snapshots.md).
"""

from __future__ import annotations

import attrs

from raftcore.ids import LogId
from raftcore.membership import Membership

__all__ = ["SnapshotMeta"]


@attrs.frozen
class SnapshotMeta:
    """What a snapshot covers: the state machine after applying every entry up
    to ``last_log_id``, with the membership in effect there and its log id.

    ``snapshot_id`` names one snapshot (a rebuilt snapshot of the same log id
    gets a new one); ``size`` is its length in bytes.
    """

    last_log_id: LogId
    membership: tuple[LogId, Membership] | None
    snapshot_id: str
    size: int
