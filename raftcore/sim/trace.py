"""The record a run leaves: its trace digest, its log of notes, its trace sink.

The digest is a SHA-256 over the options, every engine step (time, node,
the node's clock, the event fed in, the commands returned) and every note
(faults, crashes, restarts, heal, liveness), so two runs of one seed can be
compared byte for byte across runs and machines. The optional sink
receives the same records as dicts (the CLI writes them as NDJSON).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from raftcore.commands import Command
from raftcore.events import Event
from raftcore.ids import NodeId
from raftcore.sim.scheduler import Scheduler

__all__ = ["Trace", "TraceSink"]

#: Receives one dict per trace record (steps, faults, restarts).
TraceSink = Callable[[dict[str, Any]], None]


class Trace:
    """The trace digest, the log and the sink of one run, stamped with virtual time."""

    __slots__ = ("_digest", "_sched", "log", "sink")

    def __init__(self, sched: Scheduler, sink: TraceSink | None = None) -> None:
        self._sched = sched
        self._digest = hashlib.sha256()
        #: ``(virtual time, kind, text)`` of every note.
        self.log: list[tuple[float, str, str]] = []
        self.sink = sink

    def options(self, described: str) -> None:
        """Fold the run's options in (first, before any step)."""
        self._digest.update(f"O|{described}\n".encode())

    def note(self, kind: str, text: str) -> None:
        """Log something that happened to the cluster (a fault, a restart, ...)."""
        now = self._sched.now
        self.log.append((now, kind, text))
        self._digest.update(f"N|{now!r}|{kind}|{text}\n".encode())
        if self.sink is not None:
            self.sink({"t": now, "kind": kind, "text": text})

    def step(
        self, step: int, node: NodeId, local: float, event: Event, cmds: Sequence[Command]
    ) -> None:
        """Fold in engine step number ``step``: ``node``, at its clock reading
        ``local``, handled ``event`` and returned ``cmds``."""
        now = self._sched.now
        self._digest.update(f"S|{step}|{now!r}|{node}|{local!r}|{event!r}|{cmds!r}\n".encode())
        if self.sink is not None:
            self.sink(
                {
                    "step": step,
                    "t": now,
                    "node": node,
                    "now": local,
                    "event": repr(event),
                    "commands": [repr(c) for c in cmds],
                }
            )

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
