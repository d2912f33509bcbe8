"""Node identity in the handshake: who a peer is, beyond the id it claims.

Every transport holds one ``PeerIdentities``: this node's own identity (its
store's incarnation and cluster, ``raftcore.storage.StoreIdentity``) for the
Hello it sends, and the incarnation the membership records for each peer.
A peer whose Hello presents another incarnation is not the node the
membership knew (it lost or replaced its store: its old votes and log are
gone) and is refused on both sides until it is removed from the cluster and
added back. See ``docs/design/identity.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs

from raftcore.adapters._log import NodeLogger
from raftcore.codec import Hello, encode_hello
from raftcore.errors import RemoteProtocolError
from raftcore.ids import ZERO_LOG_ID, LogId, NodeId
from raftcore.storage import StoreIdentity

#: Where the operator's fix is described (quoted in refusals).
RECOVERY_DOC = "docs/kv-service.md#a-node-that-lost-its-disk"


class HandshakeError(RemoteProtocolError):
    """A Hello was refused; ``reason`` is one of the ``REASON`` of the subclasses."""

    REASON = "bad-handshake"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reason = self.REASON


class OtherClusterError(HandshakeError):
    """The Hello names another cluster."""

    REASON = "other-cluster"


class IdentityMismatchError(HandshakeError):
    """The peer's store is not the one the membership records for its node id."""

    REASON = "identity-mismatch"


class CertificateMismatchError(HandshakeError):
    """The peer's TLS certificate does not name the node it claims to be."""

    REASON = "certificate-mismatch"


def certificate_name(node_id: NodeId) -> str:
    """The name a node's TLS certificate carries as a ``subjectAltName``
    (``DNS:node-<id>``), next to the addresses it is reached at."""
    return f"node-{node_id}"


def check_certificate(cert: Any, node_id: NodeId) -> None:
    """Raise ``CertificateMismatchError`` unless ``cert`` (``getpeercert()``
    of a verified TLS peer) names ``node_id``: a valid certificate of one
    node cannot pass for another."""
    names = [v for k, v in (cert or {}).get("subjectAltName", ()) if k == "DNS"]
    if certificate_name(node_id) not in names:
        shown = ", ".join(names) if names else "no node name"
        raise CertificateMismatchError(
            f"node {node_id}'s TLS certificate must name DNS:{certificate_name(node_id)}; "
            f"it names {shown}"
        )


class PeerRefusedError(HandshakeError):
    """The peer refused this node's Hello (its reason is in the message)."""

    REASON = "refused-by-peer"


@attrs.frozen
class Refusal:
    """Why the handshake with a peer last failed on identity, and when."""

    reason: str
    detail: str
    at: float
    #: True if the peer refused this node; False if this node refused the peer.
    by_peer: bool


class PeerIdentities:
    """This node's identity and the incarnations the membership records for its peers."""

    def __init__(self, node_id: NodeId, log: NodeLogger) -> None:
        self.node_id = node_id
        self.log = log
        #: ``None`` for a store that keeps no identity: no incarnation checks.
        self.own: StoreIdentity | None = None
        #: node id -> the incarnation the membership records (absent: unknown).
        self.expected: dict[NodeId, str] = {}
        #: node id -> the last identity refusal, either way (cleared on success).
        self.refusals: dict[NodeId, Refusal] = {}
        #: Called with a cluster id this node adopted from a peer (to persist it).
        self.on_adopt: Callable[[str], None] | None = None
        #: The log id of this node's effective membership (where ``expected``
        #: comes from): a peer that knows a newer one is not judged by it.
        self.membership_id: LogId = ZERO_LOG_ID

    def forget(self, node_id: NodeId) -> None:
        """``node_id`` left the membership: no incarnation is expected of it."""
        self.expected.pop(node_id, None)
        self.refusals.pop(node_id, None)

    # -- our side

    def hello(self, cluster_name: str, refused: str = "") -> Hello:
        own = self.own
        if own is None:
            return Hello(cluster_name, self.node_id, refused=refused)
        return Hello(
            cluster_name,
            self.node_id,
            store_cluster=own.cluster_id,
            incarnation=own.incarnation,
            refused=refused,
            membership=self.membership_id,
        )

    def hello_payload(self, cluster_name: str, refused: str = "") -> bytes:
        return encode_hello(self.hello(cluster_name, refused))

    def set_cluster(self, cluster_id: str) -> None:
        if self.own is not None:
            self.own = attrs.evolve(self.own, cluster_id=cluster_id)

    # -- their side

    def check(self, hello: Hello, *, reply: bool = False) -> None:
        """Check a peer's identity (after its version, cluster name and id were
        checked); raise a ``HandshakeError`` subclass, recorded and logged.

        ``reply``: ``hello`` answers this node's own, so the peer accepted
        this node too (an earlier refusal by the peer is over).
        """
        n = hello.node_id
        try:
            self._check(hello)
        except HandshakeError as e:
            self._record(n, e, by_peer=isinstance(e, PeerRefusedError))
            raise
        old = self.refusals.get(n)
        if old is not None and (reply or not old.by_peer):
            del self.refusals[n]
            self.log.warning("node %s passed the identity check again", n)
        own = self.own
        if own is not None and not own.cluster_id and hello.store_cluster:
            self.set_cluster(hello.store_cluster)
            self.log.info("joined cluster %s (through node %s)", hello.store_cluster, n)
            if self.on_adopt is not None:
                self.on_adopt(hello.store_cluster)

    def _check(self, hello: Hello) -> None:
        n = hello.node_id
        if hello.refused:
            raise PeerRefusedError(f"node {n} refused this node: {hello.refused}")
        own = self.own
        if own is None:
            return
        if own.cluster_id and hello.store_cluster and hello.store_cluster != own.cluster_id:
            raise OtherClusterError(
                f"node {n}'s store belongs to cluster {hello.store_cluster}, "
                f"this node's to cluster {own.cluster_id}"
            )
        expected = self.expected.get(n, "")
        # Judge the peer only by a membership at least as new as the one it
        # knows: a node catching up holds old records of the others (a node
        # that has since been wiped and added back has a new incarnation) and
        # must not refuse today's leader for them. A wiped node knows no
        # membership at all, so it is always judged.
        if expected and hello.incarnation != expected and hello.membership <= self.membership_id:
            raise IdentityMismatchError(
                f"node {n} presents store incarnation {hello.incarnation or '(none)'} but the "
                f"membership records {expected}: it lost or replaced its store, so it may "
                "not vote or count as a replica under its old identity; remove it from the "
                f"cluster and add it back ({RECOVERY_DOC})"
            )

    def refused_by_peer(self, hello: Hello) -> bool:
        """A Hello with ``refused`` received where a message was due: record it."""
        if not hello.refused:
            return False
        self._record(
            hello.node_id,
            PeerRefusedError(f"node {hello.node_id} refused this node: {hello.refused}"),
            by_peer=True,
        )
        return True

    def _record(self, n: NodeId, e: HandshakeError, *, by_peer: bool) -> None:
        old = self.refusals.get(n)
        self.refusals[n] = Refusal(e.reason, str(e), time.monotonic(), by_peer)
        # Loud once per peer and reason; the dialler retries every few seconds.
        if old is None or old.detail != str(e):
            self.log.error("identity check: %s", e)

    def status(self) -> dict[int, dict[str, Any]]:
        """Per peer: the last refusal, for metrics."""
        return {
            n: {"refused": r.reason, "by_peer": r.by_peer, "detail": r.detail}
            for n, r in self.refusals.items()
        }


# -- node info: what the membership records of a member ------------------------------


def node_info(address: Any, incarnation: str) -> Any:
    """The node info the runtimes record for a member whose incarnation they know."""
    return {"address": address, "incarnation": incarnation}


def address_of(info: Any) -> Any:
    """A member's transport address, from its node info (an address, or ``node_info``)."""
    if isinstance(info, dict) and "address" in info:
        return info["address"]
    return info


def incarnation_of(info: Any) -> str:
    """The incarnation a member's node info records (``""``: none)."""
    if isinstance(info, dict):
        value = info.get("incarnation")
        if isinstance(value, str):
            return value
    return ""
