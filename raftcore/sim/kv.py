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

from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "KvCodec",
    "KvStateMachine",
    "StateMachine",
    "StateMachineFactory",
    "TupleKvCodec",
]


class StateMachine(Protocol):
    """A deterministic state machine: apply one entry's data, return its result."""

    def apply(self, data: Any) -> Any: ...


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


class KvStateMachine:
    """A dict. Reads go through the log too, so they are linearizable."""

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
