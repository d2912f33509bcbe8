"""Log stores: ``MemoryLogStore`` for tests, ``SqliteLogStore`` as the durable default.

Both implement ``raftcore.storage.LogStore`` and pass
``raftcore.testing.storage_suite.LogStoreSuite``; see ``docs/storage.md``.
Snapshot stores (``MemorySnapshotStore``, ``FileSnapshotStore``) implement
``raftcore.storage.SnapshotStore`` for the snapshot feature being built
(docs/design/snapshots.md).
"""

from raftcore.adapters.storage.memory import MemoryBacking, MemoryLogStore
from raftcore.adapters.storage.snapshots import (
    FileSnapshotStore,
    MemorySnapshotStore,
    SnapshotStoreError,
)
from raftcore.adapters.storage.sqlite import (
    FORMAT_VERSION,
    CorruptLogError,
    SqliteLogStore,
    SqliteStoreError,
    StoreFormatError,
    StoreLockedError,
)

__all__ = [
    "FORMAT_VERSION",
    "CorruptLogError",
    "FileSnapshotStore",
    "MemoryBacking",
    "MemoryLogStore",
    "MemorySnapshotStore",
    "SnapshotStoreError",
    "SqliteLogStore",
    "SqliteStoreError",
    "StoreFormatError",
    "StoreLockedError",
]
