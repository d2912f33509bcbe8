"""The replicated key-value map: a ``raftcore.storage.StateMachine``.

Commands are lists (the codec decodes CBOR arrays as lists) of strings:

- ``["put", key, value]`` sets ``key``; the result is the previous value or ``None``;
- ``["delete", key]`` removes ``key``; the result is the removed value or ``None``.

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


def check_command(command: Any) -> str | None:
    """Why ``command`` is not a valid KV command, or ``None`` if it is."""
    if not isinstance(command, list | tuple) or not command:
        return "a command is a non-empty list"
    op = command[0]
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
            else:
                results.append((entry.index, data.pop(command[1], None)))
        return results

    def applied(self) -> LogId:
        # Nothing is durable here: the engine re-applies the whole log on start.
        return ZERO_LOG_ID

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def __len__(self) -> int:
        return len(self.data)
