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

The map lives in memory only. A fresh instance has applied nothing
(``applied()`` is ``ZERO_LOG_ID``), so on start the runtime restores the
latest snapshot, if there is one, and the engine re-applies every committed
entry after it (all of them without a snapshot). ``applied()`` then reports
the last entry applied or restored.

``snapshot()`` is the canonical CBOR of a versioned record holding everything
``apply`` maintains: the map, the address book, the count of rejected
commands and the last applied log id; replicas in the same state make the
same bytes. ``restore`` checks every field and raises ``ValueError`` on
anything malformed, leaving the current state as it was.

A malformed command cannot stop the cluster: every node
applies it as a no-op with the same ``Rejected`` result, so all replicas stay
identical. The HTTP API validates commands before proposing them, so
``Rejected`` only appears for entries written by some other client.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import attrs
import cbor2

from raftcore.entries import Entry, EntryKind
from raftcore.ids import ZERO_LOG_ID, LogId

#: The largest key and value the service accepts (UTF-8 bytes).
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 256 * 1024

#: The version of the snapshot record ``KVStateMachine.snapshot`` writes.
SNAPSHOT_VERSION = 1
_SNAPSHOT_FIELDS = frozenset({"version", "map", "addresses", "rejected", "last_applied"})


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
        # Nothing is durable here: a fresh instance reports ZERO_LOG_ID, so on
        # start the runtime restores the latest snapshot (if any) and the
        # engine re-applies the log after it.
        return self.last_applied

    def snapshot(self) -> bytes:
        """Everything applied so far, as canonical CBOR (same state, same bytes)."""
        lid = self.last_applied
        record = {
            "version": SNAPSHOT_VERSION,
            "map": self.data,
            "addresses": {n: list(a) for n, a in self.addresses.items()},
            "rejected": self.rejected,
            "last_applied": [lid.term, lid.node_id, lid.index],
        }
        return cbor2.dumps(record, canonical=True)

    def restore(self, data: bytes, last_log_id: LogId) -> None:
        """Replace the whole state with ``data``, a ``snapshot()`` covering
        every entry up to ``last_log_id``; ``ValueError`` (state untouched) if
        it is malformed or was made at another entry."""
        kv, addresses, rejected, applied = _decode_snapshot(data)
        if applied != last_log_id:
            raise ValueError(
                f"KV snapshot covers entries up to {applied}, not {last_log_id} as claimed"
            )
        self.data = kv
        self.addresses = addresses
        self.rejected = rejected
        self.last_applied = applied

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def address(self, node_id: int) -> tuple[str, str] | None:
        """``(raft, http)`` of a node from the address book, if it is there."""
        return self.addresses.get(node_id)

    def __len__(self) -> int:
        return len(self.data)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _decode_snapshot(
    data: bytes,
) -> tuple[dict[str, str], dict[int, tuple[str, str]], int, LogId]:
    """The state in a ``KVStateMachine.snapshot()``; ``ValueError`` if malformed."""

    def bad(why: str) -> ValueError:
        return ValueError(f"malformed KV snapshot: {why}")

    if not isinstance(data, bytes | bytearray):
        raise bad(f"expected bytes, got {type(data).__name__}")
    stream = io.BytesIO(data)
    try:
        record = cbor2.CBORDecoder(stream).decode()
    except Exception as e:  # cbor2 raises several kinds (and RecursionError)
        detail = " ".join(str(e).split())[:100]
        raise bad(f"not CBOR ({type(e).__name__}: {detail})") from None
    if stream.tell() != len(data):
        raise bad(f"{len(data) - stream.tell()} byte(s) after the record")
    if not isinstance(record, dict):
        raise bad(f"the record is a {type(record).__name__}, not a map")
    if record.get("version") != SNAPSHOT_VERSION:
        raise bad(f"version {_short(record.get('version'))}, expected {SNAPSHOT_VERSION}")
    if set(record) != _SNAPSHOT_FIELDS:
        raise bad(f"fields {_short(sorted(map(str, record)))}, expected {sorted(_SNAPSHOT_FIELDS)}")
    kv = record["map"]
    if not isinstance(kv, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in kv.items()
    ):
        raise bad("the map is not a map of strings to strings")
    book = record["addresses"]
    if not isinstance(book, dict):
        raise bad("the address book is not a map")
    addresses: dict[int, tuple[str, str]] = {}
    for node_id, addr in book.items():
        if not _is_node_id(node_id):
            raise bad(f"address book key {_short(node_id)} is not a node id")
        if not (
            isinstance(addr, list) and len(addr) == 2 and all(isinstance(a, str) for a in addr)
        ):
            raise bad(f"node {node_id}'s addresses are not two strings")
        addresses[node_id] = (addr[0], addr[1])
    rejected = record["rejected"]
    if not _is_count(rejected):
        raise bad(f"rejected count {_short(rejected)} is not a non-negative integer")
    lid = record["last_applied"]
    if not (isinstance(lid, list) and len(lid) == 3 and all(_is_count(x) for x in lid)):
        raise bad(f"last applied {_short(lid)} is not [term, node_id, index]")
    return kv, addresses, rejected, LogId(lid[0], lid[1], lid[2])
