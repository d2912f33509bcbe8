"""An example replicated key-value service on raftcore: state machine, HTTP API, client, demo.

Run a node with ``python -m raftcore.adapters.kv serve ...``, talk to it with
``python -m raftcore.adapters.kv put/get/delete/status ...`` or curl, or watch a whole
cluster survive a crash with ``python -m raftcore.adapters.kv.demo``; see
docs/kv-service.md. The server side (``raftcore.adapters.kv.server``) is imported on
demand: it pulls in the runtimes, storage and transport.
"""

from raftcore.adapters.kv.client import (
    KvClient,
    KvError,
    KvUnavailable,
    NodeAddress,
    format_cluster,
    parse_cluster,
)
from raftcore.adapters.kv.state_machine import KVStateMachine, Rejected, check_command, delete, put

__all__ = [
    "KVStateMachine",
    "KvClient",
    "KvError",
    "KvUnavailable",
    "NodeAddress",
    "Rejected",
    "check_command",
    "delete",
    "format_cluster",
    "parse_cluster",
    "put",
]
