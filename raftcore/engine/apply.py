"""Handing committed entries to the state machine and answering clients."""

from __future__ import annotations

from typing import Any

from raftcore.commands import Apply, Respond
from raftcore.engine.base import EngineBase
from raftcore.errors import LocalProtocolError
from raftcore.ids import LogId


class ApplyHandler(EngineBase):
    def _advance_apply(self) -> None:
        # Only entries durable here: a durable state machine must never have
        # applied an entry that a crash can take out of this node's log.
        target = min(self.committed.index, self.io.durable_log_id.index)
        start = self.apply_requested + 1
        if target < start:
            return
        start = max(start, self.log.first_index)
        self.apply_requested = target
        if start > target:
            return
        self._emit(Apply(tuple(self.log.entries(start, target + 1))))

    def _on_applied(self, upto: LogId, results: tuple[tuple[int, Any], ...]) -> None:
        if upto.index > self.apply_requested:
            raise LocalProtocolError(
                f"Applied({upto!r}) reports more than was handed out "
                f"(up to index {self.apply_requested})"
            )
        if upto.index <= self.applied.index:
            return
        self.applied = upto
        pw = self.pending_writes
        if not pw:
            return
        get = dict(results).get
        if next(reversed(pw)) <= upto.index:
            # Every waiting write is answered (the usual case): no per-write pops.
            new = tuple.__new__
            self._out.extend([new(Respond, (rid, get(idx), None)) for idx, rid in pw.items()])
            pw.clear()
            return
        while pw:
            idx = next(iter(pw))
            if idx > upto.index:
                break
            rid = pw.pop(idx)
            self._emit(Respond(rid, get(idx)))
