"""Client traffic: requests on their way to the nodes, answers on their way back.

Both directions take a short random delay on the client network (one random
stream of its own). A node that is down when a request arrives refuses it
(connection refused); write requests reaching a node close together go to
its engine as one batch, as an adapter that coalesces writes would hand them
over. Every answer, refusal and loss goes back to the client that owns the
request: the workload, the liveness probe, the churn client, or whoever
drives the simulation by hand (``on_answer`` / ``on_unanswered``).

A ``ClientRead`` is answered with a read point; the client's read is then
served by the node that answered, from its own state machine, once that
has applied the read point (as a runtime's ``read()`` does), and the value
read goes back to the client. A crash in between loses the read.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from raftcore.commands import Respond
from raftcore.errors import ClientError
from raftcore.events import ChangeMembership, ClientRead, ClientWrite, ClientWriteBatch, ReadPolicy
from raftcore.ids import LogId, NodeId
from raftcore.membership import Change
from raftcore.sim.answers import AnswerRecord
from raftcore.sim.churn import ChurnClient
from raftcore.sim.harness import Harness
from raftcore.sim.node import SimNode
from raftcore.sim.rng import Rng
from raftcore.sim.transfers import TransferClient
from raftcore.sim.workload import LivenessProbe, Workload

__all__ = ["ClientTraffic"]

#: Client requests reaching a node within this window form one batch.
_BATCH_WINDOW = 0.001


class ClientTraffic:
    """Carries requests to the nodes and answers to their clients (see the module docstring)."""

    def __init__(
        self,
        harness: Harness,
        answers: AnswerRecord,
        rng: Rng,
        *,
        workload: Workload,
        probe: LivenessProbe,
        churn: ChurnClient | None,
        transfers: TransferClient | None = None,
    ) -> None:
        self._harness = harness
        self._sched = harness.sched
        self._nodes = harness.nodes
        self._answers = answers
        self._rng = rng
        self._manual = harness.manual is not None
        self._workload = workload
        self._probe = probe
        self._churn = churn
        self._transfers = transfers
        #: Hears every answer instead of the simulator's own clients.
        self.on_answer: Callable[[Hashable, Any, ClientError | None], None] | None = None
        #: Hears every request refused (``"refused"``) or lost (``"lost"``).
        self.on_unanswered: Callable[[Hashable, str], None] | None = None
        #: The key of each ``ClientRead`` in flight, by request id.
        self._read_keys: dict[Hashable, str] = {}
        #: How to read a key from a state machine (the codec's ``read_local``).
        self.read_local: Callable[[Any, str], Any] | None = None

    # -- requests -------------------------------------------------------------------

    def submit(self, node: NodeId, request_id: Hashable, data: Any) -> None:
        """Send a write to ``node``."""
        self._answers.track(request_id, data)
        self._sched.schedule(self._rng.uniform(0.0001, 0.002), self._arrive, node, request_id, data)

    def submit_read(self, node: NodeId, request_id: Hashable, key: str, policy: ReadPolicy) -> None:
        """Send a ``ClientRead`` to ``node``."""
        self._read_keys[request_id] = key
        ev = ClientRead(request_id, policy)
        self._sched.schedule(self._rng.uniform(0.0001, 0.002), self._read_arrive, node, ev)

    def read_now(self, node: NodeId, request_id: Hashable, key: str, policy: ReadPolicy) -> None:
        """Hand ``node`` a ``ClientRead`` at once (the manual control API)."""
        self._read_keys[request_id] = key
        self._read_arrive(node, ClientRead(request_id, policy))

    def _read_arrive(self, nid: NodeId, ev: ClientRead) -> None:
        node = self._nodes[nid]
        if not node.alive:
            self._read_keys.pop(ev.request_id, None)
            self.refused(ev.request_id)
            return
        if self._sched.hold(node.paused_until, self._read_arrive, (nid, ev)):
            return
        self._answers.hold_read(ev.request_id, node)
        self._harness.handle(node, ev)

    def _serve_read(self, node: SimNode, incarnation: int, rid: Hashable, point: LogId) -> None:
        """Read once the node's state machine has applied the read point."""
        key = self._read_keys.get(rid)
        if key is None:
            return
        if not node.alive or node.incarnation != incarnation:
            del self._read_keys[rid]
            self.lost(rid)
            return
        if node.sm_index < point.index:
            self._sched.schedule(0.001, self._serve_read, node, incarnation, rid, point)
            return
        del self._read_keys[rid]
        assert self.read_local is not None
        value = self.read_local(node.sm, key)
        self._sched.schedule(self._rng.uniform(0.0001, 0.002), self._deliver, rid, value, None)

    def submit_change(
        self,
        node: NodeId,
        request_id: Hashable,
        change: Change,
        retain: bool,
        expected: LogId | None,
    ) -> None:
        """Send a membership change request to ``node``."""
        ev = ChangeMembership(request_id, change, retain, expected)
        self._sched.schedule(self._rng.uniform(0.0001, 0.002), self._change_arrive, node, ev)

    def _arrive(self, nid: NodeId, rid: Hashable, data: Any) -> None:
        node = self._nodes[nid]
        if not node.alive:
            self.refused(rid)
            return
        if not node.client_queue:
            self._sched.push(self._sched.now + _BATCH_WINDOW, self._batch, (node, node.incarnation))
        node.client_queue.append((rid, data))

    def _batch(self, node: SimNode, incarnation: int) -> None:
        if incarnation != node.incarnation or not node.alive:
            return
        if self._sched.hold(node.paused_until, self._batch, (node, incarnation)):
            return
        batch, node.client_queue = node.client_queue, []
        for rid, _ in batch:
            self._answers.hold(rid, node)
        if len(batch) == 1:
            self._harness.handle(node, ClientWrite(*batch[0]))
        else:
            self._harness.handle(node, ClientWriteBatch(tuple(batch)))

    def _change_arrive(self, nid: NodeId, ev: ChangeMembership) -> None:
        node = self._nodes[nid]
        rid = ev.request_id
        if not node.alive:
            self.refused(rid)
            return
        if self._sched.hold(node.paused_until, self._change_arrive, (nid, ev)):
            return
        self._answers.hold_change(rid, node, ev.change, ev.retain)
        self._harness.handle(node, ev)

    # -- answers ----------------------------------------------------------------------

    def answer(self, cmd: Respond, node: SimNode) -> None:
        """An engine answered: the answer travels back to its client (a read
        point is served first: ``_serve_read``)."""
        rid = cmd.request_id
        if rid in self._read_keys:
            if cmd.error is None:
                self._serve_read(node, node.incarnation, rid, cmd.result)
                return
            del self._read_keys[rid]
        if self._manual:
            self._deliver(cmd.request_id, cmd.result, cmd.error)
            return
        self._sched.schedule(
            self._rng.uniform(0.0001, 0.002), self._deliver, cmd.request_id, cmd.result, cmd.error
        )

    def _deliver(self, rid: Hashable, result: Any, error: ClientError | None) -> None:
        if self.on_answer is not None:
            self.on_answer(rid, result, error)
        elif self._probe.owns(rid):
            self._probe.on_response(rid, result, error)
        elif self._churn is not None and self._churn.owns(rid):
            self._churn.on_response(rid, result, error)
        elif self._transfers is not None and self._transfers.owns(rid):
            self._transfers.on_response(rid, result, error)
        else:
            self._workload.on_response(rid, result, error)

    def refused(self, rid: Hashable) -> None:
        """The node was down when the request arrived: it was never handed over."""
        self._answers.forget_change(rid)
        self._read_keys.pop(rid, None)
        if self.on_unanswered is not None:
            self.on_unanswered(rid, "refused")
        elif self._probe.owns(rid):
            self._probe.on_refused(rid)
        elif self._churn is not None and self._churn.owns(rid):
            self._churn.on_refused(rid)
        else:
            self._workload.on_refused(rid)

    def lost(self, rid: Hashable) -> None:
        """The node holding the request crashed before answering it."""
        self._answers.forget_change(rid)
        self._read_keys.pop(rid, None)
        if self.on_unanswered is not None:
            self.on_unanswered(rid, "lost")
        elif self._probe.owns(rid):
            self._probe.on_lost(rid)
        elif self._churn is not None and self._churn.owns(rid):
            self._churn.on_lost(rid)
        elif self._transfers is not None and self._transfers.owns(rid):
            self._transfers.on_lost(rid)
        else:
            self._workload.on_lost(rid)
