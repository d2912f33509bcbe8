"""Log stores: ``MemoryLogStore`` for tests, ``SqliteLogStore`` as the durable default.

Both implement ``raftcore.storage.LogStore`` and pass
``raftcore.testing.storage_suite.LogStoreSuite``; see ``docs/storage.md``.
"""

from raftcore.adapters.storage.memory import MemoryBacking, MemoryLogStore
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
    "MemoryBacking",
    "MemoryLogStore",
    "SqliteLogStore",
    "SqliteStoreError",
    "StoreFormatError",
    "StoreLockedError",
]
