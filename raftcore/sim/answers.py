"""The client answer record: which request each engine holds, how it was
answered, and the checks on the answers.

The client protocol the simulator holds every engine to:

- every request is answered at most once, by the node incarnation that
  holds it (it was handed to that incarnation and has not been lost in a
  crash since);
- an OK answer to a write comes only after that node applied its entry;
- a request refused with ``NotLeader`` (or ``NotInitialized``) is never
  applied anywhere (checked for payloads sent exactly once, which every put
  is: a payload sent once identifies its entry);
- a membership change answered OK names its committed final membership
  (checked once the step that answered has been observed, by
  ``InvariantChecker.on_change_answer``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable
from typing import Any

from raftcore.commands import Respond
from raftcore.errors import NotInitialized, NotLeader
from raftcore.ids import LogId, NodeId
from raftcore.membership import Change
from raftcore.sim.invariants import InvariantChecker
from raftcore.sim.node import SimNode

__all__ = ["AnswerRecord"]


class AnswerRecord:
    """Requests handed to engines, their answers, and the checks on them."""

    def __init__(self, checker: InvariantChecker, nodes: dict[NodeId, SimNode]) -> None:
        self._checker = checker
        self._nodes = nodes
        self._request_ids = 0
        #: request id -> (node, incarnation) for requests an engine holds.
        self.inflight: dict[Hashable, tuple[NodeId, int]] = {}
        self._answered: set[Hashable] = set()
        #: What each request asked for, and how often each payload was sent:
        #: a payload sent once identifies its entry.
        self._request_data: dict[Hashable, Any] = {}
        self._data_count: dict[Any, int] = {}
        #: Payloads of requests refused with NotLeader: they must never commit.
        self._refused_data: set[Any] = set()
        #: Change requests an engine may answer: request id -> (change, retain).
        self._change_requests: dict[Hashable, tuple[Change, bool]] = {}
        #: Requests answered with no payload to check: ``ClientRead`` (a read
        #: point) and ``TransferLeader`` (the new leader's id).
        self._no_payload: set[Hashable] = set()
        #: OK change answers of the current step, checked once it is observed.
        self.change_answers: list[tuple[NodeId, Change, bool, Any]] = []

    def new_request_id(self) -> int:
        self._request_ids += 1
        return self._request_ids

    # -- requests ---------------------------------------------------------------------

    def track(self, request_id: Hashable, data: Any) -> None:
        """A write request was sent with payload ``data``."""
        self._request_data[request_id] = data
        with contextlib.suppress(TypeError):  # unhashable payloads are not tracked
            self._data_count[data] = self._data_count.get(data, 0) + 1

    def hold(self, request_id: Hashable, node: SimNode) -> None:
        """``node``'s current incarnation now holds the request."""
        self.inflight[request_id] = (node.id, node.incarnation)

    def hold_read(self, request_id: Hashable, node: SimNode) -> None:
        """``node`` now holds a ``ClientRead`` (answered with a read point)."""
        self.inflight[request_id] = (node.id, node.incarnation)
        self._no_payload.add(request_id)

    #: ``node`` now holds a ``TransferLeader`` (answered with a node id).
    hold_transfer = hold_read

    def hold_change(
        self, request_id: Hashable, node: SimNode, change: Change, retain: bool
    ) -> None:
        """``node`` now holds a membership change request."""
        self.inflight[request_id] = (node.id, node.incarnation)
        self._change_requests[request_id] = (change, retain)

    def forget_change(self, request_id: Hashable) -> None:
        """The request will never be answered (refused, or lost in a crash)."""
        self._change_requests.pop(request_id, None)

    def held_by(self, node: SimNode) -> list[Hashable]:
        """The requests ``node``'s current incarnation holds."""
        me = (node.id, node.incarnation)
        return [rid for rid, at in self.inflight.items() if at == me]

    def held_on(self, node: NodeId) -> list[Hashable]:
        """The requests any incarnation of ``node`` holds."""
        return [rid for rid, (n, _) in self.inflight.items() if n == node]

    def release(self, request_id: Hashable) -> None:
        """The node holding the request crashed: it will never be answered."""
        del self.inflight[request_id]
        self._no_payload.discard(request_id)

    # -- answers and what the state machines did ------------------------------------------

    def answered(self, node: SimNode, cmd: Respond) -> bool:
        """``node`` answered ``cmd.request_id``: check the answer; True if it
        goes back to the client (False: a protocol violation, reported)."""
        rid = cmd.request_id
        held = self.inflight.pop(rid, None)
        if held is None:
            what = "again" if rid in self._answered else "to an unknown request"
            self._checker.violation("client-protocol", f"answered {what}: {cmd!r}")
            return False
        if held != (node.id, node.incarnation):
            self._checker.violation(
                "client-protocol", f"answered a request held by {held}: {cmd!r}"
            )
            return False
        self._answered.add(rid)
        change = self._change_requests.pop(rid, None)
        if change is not None:
            if cmd.error is None:
                self.change_answers.append((node.id, change[0], change[1], cmd.result))
        elif rid in self._no_payload:
            self._no_payload.discard(rid)
        else:
            self._check_answer(node, cmd)
        return True

    def _check_answer(self, node: SimNode, cmd: Respond) -> None:
        """An OK answer follows the apply; a refusal means never appended."""
        data = self._request_data.pop(cmd.request_id, None)
        with contextlib.suppress(TypeError):
            unique = self._data_count.get(data, 0) == 1
            if cmd.error is None:
                if data not in node.applied_data:
                    self._checker.violation(
                        "client-protocol", f"answered {cmd!r} before applying {data!r}"
                    )
            elif isinstance(cmd.error, NotLeader | NotInitialized) and unique:
                self._refused_data.add(data)
                if any(data in n.applied_data for n in self._nodes.values()):
                    self._checker.violation(
                        "client-protocol", f"refused {cmd!r} but {data!r} was applied"
                    )

    def applied(self, node: SimNode, data: Any, log_id: LogId) -> None:
        """``node``'s state machine applied payload ``data`` (entry ``log_id``)."""
        with contextlib.suppress(TypeError):  # unhashable payloads are not tracked
            node.applied_data.add(data)
            if data in self._refused_data and self._data_count.get(data) == 1:
                self._checker.violation(
                    "client-protocol",
                    f"applied {log_id} whose request was refused with NotLeader",
                )

    def check_change_answers(self) -> None:
        """Check the OK change answers of the step just observed."""
        checker = self._checker
        for nid, change, retain, result in self.change_answers:
            try:
                lid, m = result
            except (TypeError, ValueError):
                checker.violation(
                    "change-answer", f"change {change!r} answered OK with {result!r}", nid
                )
                continue
            checker.on_change_answer(nid, change, retain, lid, m)
        self.change_answers.clear()
