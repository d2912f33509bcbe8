"""Everything that does IO: storage, transports, the trio and asyncio runtimes, the KV service.

- ``raftcore.adapters.asyncio_node`` / ``raftcore.adapters.trio_node``: a
  node on asyncio or trio (``open_node``), the same API in both;
- ``raftcore.adapters.storage``: ``SqliteLogStore`` (durable), ``MemoryLogStore``;
- ``raftcore.adapters.transport``: TCP for both frameworks, and in-process;
- ``raftcore.adapters.kv``: the example replicated key-value service.

The runtimes' own outcomes and the leader's view of each follower are here;
modules whose names start with ``_`` are internal.
"""

from raftcore.adapters._node_api import ReplicationStatus
from raftcore.adapters.errors import ClusterExists, ShuttingDown, Timeout, Unreachable

__all__ = ["ClusterExists", "ReplicationStatus", "ShuttingDown", "Timeout", "Unreachable"]
