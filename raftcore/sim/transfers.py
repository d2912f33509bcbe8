"""Leadership transfers as a fault class (``transfer``).

Now and then the chaos schedule asks the current leader to hand over: to a
random other voter most of the time, to "the most up-to-date voter"
(``to=None``) sometimes, and now and then to a node that cannot lead (a
learner, a spare outside the cluster, itself) to exercise the refusals.
Transfers land wherever the schedule puts them: during partitions, crashes
and membership changes. What matters is checked elsewhere: every election,
transfer or not, goes through the invariants, and the harness reports any
election that bypasses a live lease (``lease-bypassed``). This module only
sends the requests and counts how they ended.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from raftcore.errors import (
    ClientError,
    InvalidTransfer,
    LeadershipLost,
    NodeStopped,
    NotInitialized,
    NotLeader,
    TransferInProgress,
    TransferTimeout,
)
from raftcore.events import TransferLeader
from raftcore.ids import NodeId
from raftcore.sim.answers import AnswerRecord
from raftcore.sim.harness import Harness
from raftcore.sim.rng import Rng

__all__ = ["TRANSFER_OUTCOMES", "TransferClient"]

#: How a transfer request ended, as counted in the run's stats.
TRANSFER_OUTCOMES = ("handed_over", "refused", "busy", "timed_out", "overtaken", "lost")


def transfer_outcome(error: ClientError | None) -> str:
    if error is None:
        return "handed_over"
    if isinstance(error, InvalidTransfer | NotLeader | NotInitialized):
        return "refused"
    if isinstance(error, TransferInProgress):
        return "busy"
    if isinstance(error, TransferTimeout):
        return "timed_out"
    if isinstance(error, LeadershipLost | NodeStopped):
        return "overtaken"
    raise AssertionError(f"unexpected answer to a transfer: {error!r}")


class TransferClient:
    """Sends ``TransferLeader`` requests and counts their outcomes."""

    def __init__(self, harness: Harness, answers: AnswerRecord, node_ids: tuple[NodeId, ...]):
        self._harness = harness
        self._answers = answers
        self._node_ids = node_ids
        self.requested = 0
        self.outcomes = dict.fromkeys(TRANSFER_OUTCOMES, 0)
        self._inflight: dict[Hashable, NodeId | None] = {}

    def request(self, r: Rng) -> None:
        """Ask the current leader (if any) to hand over."""
        h = self._harness
        leader = h.find_leader()
        if leader is None:
            return
        node = h.nodes[leader]
        eng = node.engine
        assert eng is not None
        m = eng.membership
        voters = sorted(m.voter_ids() - {leader}) if m is not None else []
        roll = r.random()
        to: NodeId | None
        if voters and roll < 0.75:
            to = r.choice(voters)
        elif roll < 0.9:
            to = None
        else:
            to = r.choice(self._node_ids)  # a learner, a spare, itself or a voter
        rid = ("transfer", self._answers.new_request_id())
        self.requested += 1
        self._inflight[rid] = to
        h.trace.note("fault", f"leader {leader} asked to transfer leadership to {to or 'any'}")
        self._answers.hold_transfer(rid, node)
        h.handle(node, TransferLeader(rid, to))

    def owns(self, rid: Hashable) -> bool:
        return rid in self._inflight

    def on_response(self, rid: Hashable, result: Any, error: ClientError | None) -> None:
        to = self._inflight.pop(rid)
        if error is None and to is not None and result != to:
            self._harness.violation(
                "transfer-answer", f"transfer {rid} to {to} answered as handed to {result}"
            )
        self.outcomes[transfer_outcome(error)] += 1

    def on_lost(self, rid: Hashable) -> None:
        self._inflight.pop(rid)
        self.outcomes["lost"] += 1

    def stats(self) -> dict[str, int]:
        return {
            "transfers_requested": self.requested,
            **{f"transfers_{k}": n for k, n in self.outcomes.items()},
        }
