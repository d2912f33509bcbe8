"""The replicated state machine the simulator drives, and how to plug in yours.

The simulator applies every committed ``NORMAL`` entry's ``data`` to one
state machine per node (``BLANK`` and ``MEMBERSHIP`` entries are no-ops). A
state machine is anything with ``apply(data) -> result``; the simulator
builds one per node incarnation with a factory (a restarted node gets a fresh
one and re-applies the log from the start):

    class Counter:
        def __init__(self) -> None:
            self.n = 0
        def apply(self, data: object) -> object:
            self.n += data  # type: ignore[operator]
            return self.n

    Simulation(SimOptions(seed=1), state_machine=Counter)

``apply`` must be deterministic: the simulator checks that every node gets
the same result for the entry at a given index.

With snapshots on, a state machine also needs what ``SnapshotStateMachine``
adds: ``snapshot() -> bytes``, its whole state (equal states must give equal
bytes: the simulator compares them across nodes at the same index), and
``restore(data, last_log_id)``, which replaces the whole state with a
snapshot's. ``KvStateMachine`` writes canonical CBOR; ``state_digest()``
names its state in a few characters.

The workload clients issue key-value puts and gets and check the history for
linearizability. They talk to the state machine through a ``KvCodec``, which
turns a put or get into entry data and a get's result back into the value
read. The default codec speaks the tuples ``("put", key, value)`` (result
``None``) and ``("get", key)`` (result: the current value or ``None``) that
``KvStateMachine`` understands. To check your own state machine for
linearizability give the simulator a codec for it; if it cannot express a
register per key, pass ``SimOptions(check_linearizability=False)`` and the
other safety checks still run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import cbor2

from raftcore.ids import LogId

__all__ = [
    "KvCodec",
    "KvStateMachine",
    "SnapshotStateMachine",
    "StateMachine",
    "StateMachineFactory",
    "TupleKvCodec",
]


class StateMachine(Protocol):
    """A deterministic state machine: apply one entry's data, return its result."""

    def apply(self, data: Any) -> Any: ...


class SnapshotStateMachine(StateMachine, Protocol):
    """A state machine the simulator can snapshot and restore."""

    def snapshot(self) -> bytes:
        """The whole state: equal states give equal bytes."""
        ...

    def restore(self, data: bytes, last_log_id: LogId) -> None:
        """Replace the whole state with ``snapshot()`` bytes (from any node)
        covering every entry up to ``last_log_id``."""
        ...


StateMachineFactory = Callable[[], StateMachine]


class KvCodec(Protocol):
    """How workload clients express key-value operations as entry data."""

    def encode_put(self, key: str, value: Any) -> Any: ...

    def encode_get(self, key: str) -> Any: ...

    def decode_get(self, result: Any) -> Any: ...


class TupleKvCodec:
    """The codec of ``KvStateMachine``: plain tuples."""

    def encode_put(self, key: str, value: Any) -> Any:
        return ("put", key, value)

    def encode_get(self, key: str) -> Any:
        return ("get", key)

    def decode_get(self, result: Any) -> Any:
        return result

    def read_local(self, sm: Any, key: str) -> Any:
        """Read ``key`` straight from a ``KvStateMachine`` (a linearizable read
        through ``ClientRead``, served once the node applied the read point)."""
        return sm.data.get(key)


_SNAPSHOT_VERSION = 1
_SCALARS = (type(None), bool, int, float, str, bytes)


def _tree(value: Any) -> Any:
    """``value`` as scalars and arrays, which CBOR keeps exactly: every
    container is an array led by its kind (``"l"`` list, ``"t"`` tuple, ``"d"``
    dict of ``[key, value]`` pairs, ``"s"`` set, ``"f"`` frozenset), the items
    of dicts and sets sorted by their encoding, so equal values give equal bytes."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list):
        return ["l", *map(_tree, value)]
    if isinstance(value, tuple):
        return ["t", *map(_tree, value)]
    if isinstance(value, dict):
        return ["d", *_sorted([_tree(k), _tree(v)] for k, v in value.items())]
    if isinstance(value, set | frozenset):
        return ["s" if isinstance(value, set) else "f", *_sorted(map(_tree, value))]
    raise TypeError(f"KvStateMachine cannot snapshot a {type(value).__name__}")


def _sorted(trees: Iterable[Any]) -> list[Any]:
    return sorted(trees, key=lambda t: cbor2.dumps(t, canonical=True))


def _untree(tree: Any) -> Any:
    """The value ``_tree`` made ``tree`` of; ``ValueError`` if it made none."""
    if isinstance(tree, _SCALARS):
        return tree
    if not isinstance(tree, list) or not tree:
        raise ValueError(f"unexpected {type(tree).__name__} in the state")
    kind, items = tree[0], tree[1:]
    if kind == "l":
        return [_untree(t) for t in items]
    if kind == "t":
        return tuple(_untree(t) for t in items)
    if kind == "d":
        out = {}
        for pair in items:
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError("a dict item is not a [key, value] pair")
            out[_untree(pair[0])] = _untree(pair[1])
        return out
    if kind == "s":
        return {_untree(t) for t in items}
    if kind == "f":
        return frozenset(_untree(t) for t in items)
    raise ValueError(f"unknown container kind {kind!r}")


class KvStateMachine:
    """A dict. Reads go through the log too, so they are linearizable.

    For ``snapshot``, keys and values are made of ``None``, booleans, numbers,
    strings, bytes, lists, tuples, dicts, sets and frozensets.
    """

    __slots__ = ("applied", "data")

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}
        self.applied = 0

    def apply(self, data: Any) -> Any:
        self.applied += 1
        if isinstance(data, tuple) and data:
            op = data[0]
            if op == "put" and len(data) == 3:
                self.data[data[1]] = data[2]
                return None
            if op == "get" and len(data) == 2:
                return self.data.get(data[1])
        raise ValueError(f"KvStateMachine cannot apply {data!r}")

    def snapshot(self) -> bytes:
        """The map and the count of entries applied, as canonical CBOR."""
        return cbor2.dumps([_SNAPSHOT_VERSION, self.applied, _tree(self.data)], canonical=True)

    def restore(self, data: bytes, last_log_id: LogId) -> None:
        """Replace the state with a ``snapshot()``'s; ``ValueError`` (state
        untouched) if ``data`` is not one."""
        try:
            version, applied, tree = cbor2.loads(data)
            if version != _SNAPSHOT_VERSION:
                raise ValueError(f"version {version!r}, expected {_SNAPSHOT_VERSION}")
            if not isinstance(applied, int) or isinstance(applied, bool) or applied < 0:
                raise ValueError(f"applied count {applied!r}")
            state = _untree(tree)
            if not isinstance(state, dict):
                raise ValueError(f"the state is a {type(state).__name__}, not a dict")
        except Exception as e:
            detail = " ".join(f"{type(e).__name__}: {e}".split())[:200]
            raise ValueError(
                f"not a KvStateMachine snapshot (at {last_log_id}): {detail}"
            ) from None
        self.applied = applied
        self.data = state

    def state_digest(self) -> str:
        """A short name of the whole state: equal states, equal digests."""
        return hashlib.sha256(self.snapshot()).hexdigest()[:16]
