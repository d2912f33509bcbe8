"""The replicated key-value map: a ``raftcore.storage.StateMachine``.

Commands are lists (the codec decodes CBOR arrays as lists) of strings:

- ``["put", key, value]`` sets ``key``; the result is the previous value or ``None``;
- ``["delete", key]`` removes ``key``; the result is the removed value or ``None``;
- ``["node", node_id, raft, http]`` records a node's Raft and HTTP addresses in
  the service's address book (``addresses``, not part of the map); the result
  is the previous ``[raft, http]`` or ``None``;
- ``["forget", node_id]`` removes a node from the address book; the result is
  the removed ``[raft, http]`` or ``None``.

The address book exists because a membership's node info is what the
transport dials, the node's Raft address (a ``"host:port"`` string): the
HTTP address of a node added at run time is replicated through the log
instead, written just before the node joins the membership, so every node
(and, through ``/status``, every client) can find it.

The map lives in memory only and is rebuilt from the durable log on every
start (``applied()`` is ``ZERO_LOG_ID``, so the engine re-applies every
committed entry). A malformed command cannot stop the cluster: every node
applies it as a no-op with the same ``Rejected`` result, so all replicas stay
identical. The HTTP API validates commands before proposing them, so
``Rejected`` only appears for entries written by some other client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from raftcore.entries import Entry, EntryKind
from raftcore.ids import ZERO_LOG_ID, LogId

#: The largest key and value the service accepts (UTF-8 bytes).
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 256 * 1024


@attrs.frozen
class Rejected:
    """The result of a command the state machine could not interpret."""

    reason: str


def put(key: str, value: str) -> list[str]:
    """The command that sets ``key`` to ``value``."""
    return ["put", key, value]


def delete(key: str) -> list[str]:
    """The command that removes ``key``."""
    return ["delete", key]


def set_node_address(node_id: int, raft: str, http: str) -> list[Any]:
    """The command that records ``node_id``'s addresses in the address book."""
    return ["node", node_id, raft, http]


def forget_node_address(node_id: int) -> list[Any]:
    """The command that removes ``node_id`` from the address book."""
    return ["forget", node_id]


def _is_node_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_command(command: Any) -> str | None:
    """Why ``command`` is not a valid KV command, or ``None`` if it is."""
    if not isinstance(command, list | tuple) or not command:
        return "a command is a non-empty list"
    op = command[0]
    if op == "node":
        if len(command) != 4 or not _is_node_id(command[1]):
            return "node takes a node id and two addresses"
        if not all(isinstance(arg, str) for arg in command[2:]):
            return "addresses are strings"
        return None
    if op == "forget":
        if len(command) != 2 or not _is_node_id(command[1]):
            return "forget takes a node id"
        return None
    if op == "put":
        if len(command) != 3:
            return "put takes a key and a value"
    elif op == "delete":
        if len(command) != 2:
            return "delete takes a key"
    else:
        return f"unknown operation {op!r}"
    if not all(isinstance(arg, str) for arg in command[1:]):
        return "keys and values are strings"
    return None


class KVStateMachine:
    """An in-memory ``dict[str, str]`` driven by committed log entries."""

    #: Applying is a few dict operations: run it on the event loop, so the
    #: HTTP handlers (same loop) read the map without locks.
    blocking = False

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        #: The last entry applied (of any kind), for status pages.
        self.last_applied: LogId = ZERO_LOG_ID
        self.rejected = 0
        #: The address book: node id -> (raft, http), for nodes added at run time.
        self.addresses: dict[int, tuple[str, str]] = {}

    def apply(self, entries: Sequence[Entry]) -> list[tuple[int, Any]]:
        results: list[tuple[int, Any]] = []
        data = self.data
        for entry in entries:
            self.last_applied = entry.log_id
            if entry.kind is not EntryKind.NORMAL:
                continue
            command = entry.data
            problem = check_command(command)
            if problem is not None:
                self.rejected += 1
                results.append((entry.index, Rejected(problem)))
            elif command[0] == "put":
                previous = data.get(command[1])
                data[command[1]] = command[2]
                results.append((entry.index, previous))
            elif command[0] == "delete":
                results.append((entry.index, data.pop(command[1], None)))
            elif command[0] == "node":
                old = self.addresses.get(command[1])
                self.addresses[command[1]] = (command[2], command[3])
                results.append((entry.index, list(old) if old else None))
            else:  # forget
                old = self.addresses.pop(command[1], None)
                results.append((entry.index, list(old) if old else None))
        return results

    def applied(self) -> LogId:
        # Nothing is durable here: the engine re-applies the whole log on start.
        return ZERO_LOG_ID

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def address(self, node_id: int) -> tuple[str, str] | None:
        """``(raft, http)`` of a node from the address book, if it is there."""
        return self.addresses.get(node_id)

    def __len__(self) -> int:
        return len(self.data)
