"""An in-process network for tests and benchmarks, with fault hooks.

    net = InProcNetwork()
    t1, t2 = net.transport(1), net.transport(2)
    await t1.start(deliver1)             # or: await nursery.start(t1.serve, deliver1)
    t1.send(2, message)                  # deliver2(1, message) runs before send returns
    net.partition(1, 2); net.heal()

Framework-neutral: ``send`` calls the receiver's ``deliver`` synchronously
(a deliver callback only enqueues, so this never re-enters the sender). By
default every message is encoded and decoded with ``raftcore.codec`` on the
way, so a test catches data the TCP transports could not carry: an
unencodable message raises from ``send`` (a bug in the caller, not network
trouble).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from raftcore.adapters.transport.frames import (
    DEFAULT_MAX_FRAME,
    UnknownNodeError,
)
from raftcore.adapters.transport.identity import HandshakeError, PeerIdentities
from raftcore.adapters.transport.peers import (
    new_counters,
    peers_dict,
    transport_logger,
)
from raftcore.codec import Hello, decode_message, encode_message
from raftcore.errors import LocalProtocolError
from raftcore.ids import NodeId
from raftcore.messages import Message

__all__ = ["InProcNetwork", "InProcTransport"]

Deliver = Callable[[NodeId, Message], None]
#: The cluster name in in-process Hellos (a network is one cluster).
IN_PROCESS = "in-process"


class InProcNetwork:
    """A hub of ``InProcTransport`` s with symmetric partitions.

    ``encode`` (default true) round-trips every message through the codec;
    ``max_frame`` then bounds an encoded message like the TCP transports do.
    """

    def __init__(self, *, encode: bool = True, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.encode = encode
        self.max_frame = max_frame
        self._nodes: dict[NodeId, InProcTransport] = {}
        self._cut: set[frozenset[NodeId]] = set()
        self._isolated: set[NodeId] = set()

    def transport(
        self, node_id: NodeId, peers: Mapping[NodeId, Any] | Iterable[NodeId] | None = None
    ) -> InProcTransport:
        """The transport of ``node_id`` (created on first call; one per node).

        ``peers=None`` (the default) lets it reach every node of the network
        except those later removed with ``remove_peer``; an explicit ``peers``
        limits it to those (plus ``set_peer``). Like TCP, a message is only
        delivered if the receiver also knows the sender.
        """
        t = self._nodes.get(node_id)
        if t is None:
            t = InProcTransport(self, node_id, peers)
            self._nodes[node_id] = t
        elif peers is not None:
            raise LocalProtocolError(f"node {node_id} already has a transport")
        return t

    @property
    def nodes(self) -> dict[NodeId, InProcTransport]:
        return dict(self._nodes)

    # -- faults

    def partition(self, a: NodeId, b: NodeId) -> None:
        """Cut the link between ``a`` and ``b``, both ways."""
        self._cut.add(frozenset((a, b)))

    def isolate(self, node_id: NodeId) -> None:
        """Cut every link of ``node_id``."""
        self._isolated.add(node_id)

    def heal(self) -> None:
        """Restore every link."""
        self._cut.clear()
        self._isolated.clear()

    def connected(self, a: NodeId, b: NodeId) -> bool:
        return (
            a not in self._isolated
            and b not in self._isolated
            and frozenset((a, b)) not in self._cut
        )

    # -- delivery

    def _route(self, sender: InProcTransport, to: NodeId, msg: Message) -> None:
        if self.encode:
            payload = encode_message(msg)  # raises on unencodable data: a bug to surface
            if len(payload) > self.max_frame:
                sender._drop("dropped_too_large")
                sender.log.warning(
                    "dropping a %s of %d bytes to node %s: above max_frame %d",
                    type(msg).__name__,
                    len(payload),
                    to,
                    self.max_frame,
                )
                return
            msg = decode_message(payload)
        if not self.connected(sender.node_id, to):
            sender._drop("dropped_partitioned")
            return
        receiver = self._nodes.get(to)
        if receiver is None or receiver._deliver is None:
            sender._drop("dropped_unreachable")
            return
        if not receiver._knows(sender.node_id):
            receiver.counters["rejects"] += 1
            sender._drop("dropped_unreachable")
            return
        if not _handshake(sender, receiver):
            receiver.counters["rejects"] += 1
            sender._drop("dropped_refused")
            return
        sender.counters["frames_sent"] += 1
        receiver.counters["frames_received"] += 1
        receiver._deliver(sender.node_id, msg)


def _handshake(dialler: InProcTransport, acceptor: InProcTransport) -> bool:
    """The TCP handshake's identity checks, both ways, for each message."""
    try:
        acceptor.identities.check(dialler.identities.hello(IN_PROCESS))
    except HandshakeError as e:
        dialler.identities.refused_by_peer(acceptor.identities.hello(IN_PROCESS, str(e)))
        return False
    try:
        dialler.identities.check(acceptor.identities.hello(IN_PROCESS), reply=True)
    except HandshakeError as e:
        acceptor.identities.refused_by_peer(dialler.identities.hello(IN_PROCESS, str(e)))
        return False
    return True


class InProcTransport:
    """One node's end of an ``InProcNetwork``: the transport API with no sockets."""

    def __init__(
        self,
        network: InProcNetwork,
        node_id: NodeId,
        peers: Mapping[NodeId, Any] | Iterable[NodeId] | None = None,
    ) -> None:
        self.network = network
        self.node_id = node_id
        self._open = peers is None
        self._peers = peers_dict(peers)
        self._removed: set[NodeId] = set()
        self._deliver: Deliver | None = None
        self._closed = False
        self._unknown_logged: set[NodeId] = set()
        self.counters = new_counters()
        self.counters.update(dropped_partitioned=0, dropped_unreachable=0, dropped_refused=0)
        self.log = transport_logger(node_id)
        self.identities = PeerIdentities(node_id, self.log)
        self.listen_address = f"inproc:{node_id}"

    # -- lifecycle (both styles)

    async def start(self, deliver: Deliver) -> None:
        """Start receiving (asyncio style; returns at once)."""
        if self._deliver is not None:
            raise LocalProtocolError("transport already started")
        self._deliver = deliver
        self._closed = False

    async def aclose(self) -> None:
        """Stop receiving and sending (``start`` again to resume). Idempotent."""
        self._deliver = None
        self._closed = True

    async def serve(self, deliver: Deliver, *, task_status: Any = None) -> None:
        """Receive until cancelled (trio style: ``await nursery.start(t.serve, deliver)``)."""
        import trio  # only trio users call this; trio is not a dependency

        await self.start(deliver)
        try:
            if task_status is not None:
                task_status.started()
            await trio.sleep_forever()
        finally:
            self._deliver = None
            self._closed = True

    @property
    def running(self) -> bool:
        return self._deliver is not None

    # -- peers

    def _knows(self, node_id: NodeId) -> bool:
        if node_id == self.node_id:
            return False
        if node_id in self._peers:
            return True
        return self._open and node_id not in self._removed and node_id in self.network._nodes

    def check_address(self, address: Any) -> None:
        """Any value will do in process: nodes are found by id."""

    def set_peer(self, node_id: NodeId, address: Any = None, incarnation: str = "") -> None:
        """Know ``node_id`` (the address is kept but not used); ``incarnation``,
        if known, is the store the membership records for it."""
        if node_id == self.node_id:
            return
        if incarnation:
            self.identities.expected[node_id] = incarnation
        else:
            self.identities.expected.pop(node_id, None)
        self._peers[node_id] = address
        self._removed.discard(node_id)
        self._unknown_logged.discard(node_id)

    def remove_peer(self, node_id: NodeId) -> None:
        self.identities.expected.pop(node_id, None)
        self.identities.refusals.pop(node_id, None)
        self._peers.pop(node_id, None)
        self._removed.add(node_id)

    async def probe(self, node_id: NodeId, address: Any) -> Hello:
        """The Hello of ``node_id``, as a TCP dial would get it (``ConnectionError``
        if it is not running or cannot be reached)."""
        peer = self.network._nodes.get(node_id)
        if peer is None or not peer.running or not self.network.connected(self.node_id, node_id):
            raise ConnectionRefusedError(f"node {node_id} is not reachable in process")
        if not peer._knows(self.node_id):
            raise UnknownNodeError(f"node {self.node_id} is not a known peer of node {node_id}")
        hello = peer.identities.hello(IN_PROCESS)
        self.identities.check(hello)
        return hello

    # -- sending

    def _drop(self, reason: str) -> None:
        self.counters[reason] += 1
        self.counters["frames_dropped"] += 1

    def send(self, to: NodeId, msg: Message) -> None:
        """Deliver ``msg`` now, or drop and count it (unknown, closed, cut, unreachable)."""
        if not self._knows(to):
            self._drop("dropped_unknown_peer")
            if to not in self._unknown_logged:
                self._unknown_logged.add(to)
                self.log.warning("dropping messages to unknown node %r", to)
            return
        if self._closed:
            self._drop("dropped_closed")
            return
        self.network._route(self, to, msg)

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        out["peers"] = sum(1 for n in {*self._peers, *self.network._nodes} if self._knows(n))
        out["queued"] = 0
        return out
