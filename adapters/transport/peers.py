"""Peer connection management, shared by the asyncio and trio TCP transports.

``TransportCore`` holds everything about sending that does not depend on the
framework: the peer table, bounded per-peer queues, drop accounting, the
handshake's checks, counters and logging. ``PeerLink`` is one peer's sender
policy (back-off between dials). The transports add the sockets and tasks.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from raftcore.adapters._log import NodeLogger, node_logger
from raftcore.adapters.transport.frames import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    check_hello,
    describe_error,
    encode_frame,
    is_loopback,
    parse_address,
    read_hello,
    reject_reason,
)
from raftcore.adapters.transport.identity import (
    HandshakeError,
    IdentityMismatchError,
    OtherClusterError,
    PeerIdentities,
    check_certificate,
)
from raftcore.adapters.transport.sockets import describe_peername
from raftcore.codec import (
    EncodeError,
    Hello,
    decode_message,
    encode_message,
)
from raftcore.errors import ConfigError, RemoteProtocolError
from raftcore.ids import NodeId, check_node_id
from raftcore.messages import Message

#: Default bound on the frames waiting for one peer.
DEFAULT_QUEUE_SIZE = 1024
#: Default bound on the bytes waiting for one peer.
DEFAULT_QUEUE_BYTES = 64 * 1024 * 1024
#: Largest write the senders coalesce queued frames into (a single frame may exceed it).
MAX_BATCH_BYTES = 1024 * 1024
#: Default limit on one write's progress: a peer that stops reading is cut off after it.
DEFAULT_WRITE_TIMEOUT = 10.0
#: Default bound on inbound connections still waiting for their Hello.
DEFAULT_MAX_PENDING_HANDSHAKES = 64
#: Default time an outbound connection must stay up to count as established for
#: the back-off (a peer that accepts the Hello and then closes is redialled with back-off).
DEFAULT_STABLE_AFTER = 1.0
#: At most one WARNING per this many seconds for connections refused over the limit.
OVERFLOW_LOG_INTERVAL = 10.0


class WriteTimeout(TimeoutError):
    """A write to a peer made no progress within ``write_timeout``: it stopped reading."""


def transport_logger(node_id: NodeId) -> NodeLogger:
    """The ``raftcore.transport`` logger, tagged with ``node_id``."""
    return node_logger("raftcore.transport", node_id)


class Backoff:
    """Exponential back-off with "equal jitter".

    Attempt k (from 0) waits a uniform time in [d/2, d], d = min(maximum, initial * 2**k).
    """

    __slots__ = ("_attempt", "_rng", "initial", "maximum")

    def __init__(self, initial: float, maximum: float, rng: random.Random) -> None:
        if not initial > 0 or not maximum >= initial:
            raise ConfigError("backoff", f"need 0 < initial <= maximum, got {(initial, maximum)}")
        self.initial = initial
        self.maximum = maximum
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        delay = min(self.maximum, self.initial * (2 ** min(self._attempt, 60)))
        self._attempt += 1
        return self._rng.uniform(delay / 2, delay)

    def reset(self) -> None:
        self._attempt = 0

    @property
    def failures(self) -> int:
        return self._attempt


#: Counter names every transport reports (``stats()`` adds gauges to these).
COUNTERS = (
    "frames_sent",
    "bytes_sent",
    "frames_received",
    "bytes_received",
    "frames_dropped",
    "dropped_queue_full",
    "dropped_unknown_peer",
    "dropped_too_large",
    "dropped_unencodable",
    "dropped_disconnected",
    "dropped_closed",
    "connects",
    "connect_failures",
    "disconnects",
    "write_timeouts",
    "accepts",
    "rejects",
    "handshake_overflow",
)


def new_counters() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


class PeerQueue:
    """The frames waiting for one peer, bounded in count and bytes."""

    __slots__ = ("address", "connected", "frames", "handle", "nbytes", "node_id")

    def __init__(self, node_id: NodeId, address: Any) -> None:
        self.node_id = node_id
        self.address = address
        self.frames: deque[bytes] = deque()
        self.nbytes = 0
        self.connected = False
        #: The framework's task / cancel scope running this peer's connection.
        self.handle: Any = None

    def take_batch(self, max_bytes: int = MAX_BATCH_BYTES) -> tuple[bytes, int]:
        """Pop queued frames (at least one, then up to ``max_bytes``) as one buffer."""
        frames = self.frames
        first = frames.popleft()
        size = len(first)
        if not frames or size >= max_bytes:
            self.nbytes -= size
            return first, 1
        parts = [first]
        while frames and size + len(frames[0]) <= max_bytes:
            f = frames.popleft()
            parts.append(f)
            size += len(f)
        self.nbytes -= size
        return b"".join(parts), len(parts)

    def clear(self) -> int:
        n = len(self.frames)
        self.frames.clear()
        self.nbytes = 0
        return n


class TcpOptions(TypedDict, total=False):
    """The tuning options every TCP transport takes, as keyword arguments
    (``TransportCore`` holds their defaults and checks them)."""

    #: Largest payload accepted and sent (``DEFAULT_MAX_FRAME``).
    max_frame: int
    #: Bound on the frames waiting for one peer, in count and in bytes.
    queue_size: int
    queue_bytes: int
    #: Back-off between dials: (initial, maximum) seconds, equal jitter.
    backoff: tuple[float, float]
    connect_timeout: float
    handshake_timeout: float
    #: A write that makes no progress this long cuts the connection.
    write_timeout: float
    #: Inbound connections still waiting for their Hello, at most.
    max_pending_handshakes: int
    #: How long a connection must stay up to reset the back-off.
    stable_after: float
    #: The back-off's randomness (tests pass a seeded one).
    rng: random.Random | None
    #: Without TLS, refuse every address beyond loopback (listen and peers):
    #: plaintext Raft traffic would let anyone on the network forge messages.
    require_tls: bool


class TransportCore:
    """The framework-neutral half of a TCP transport.

    Holds the peer table and its queues, encodes and frames outgoing messages,
    counts, logs, and performs the handshake checks. The asyncio and trio
    transports add the sockets and tasks (``_wake`` starts or wakes a peer's
    sender; ``_stop_peer`` stops it).
    """

    def __init__(
        self,
        node_id: NodeId,
        cluster_id: str,
        peers: Mapping[NodeId, str],
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        backoff: tuple[float, float] = (0.05, 2.0),
        connect_timeout: float = 5.0,
        handshake_timeout: float = 5.0,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        max_pending_handshakes: int = DEFAULT_MAX_PENDING_HANDSHAKES,
        stable_after: float = DEFAULT_STABLE_AFTER,
        rng: random.Random | None = None,
        require_tls: bool = False,
        tls: bool = False,
    ) -> None:
        self.node_id = check_node_id(node_id, "node_id")
        if not isinstance(cluster_id, str) or not cluster_id:
            raise ConfigError("cluster_id", f"must be a non-empty str, got {cluster_id!r}")
        self.cluster_id = cluster_id
        FrameDecoder(max_frame)  # validates
        self.max_frame = max_frame
        if queue_size < 1:
            raise ConfigError("queue_size", f"must be >= 1, got {queue_size!r}")
        if queue_bytes < 1:
            raise ConfigError("queue_bytes", f"must be >= 1, got {queue_bytes!r}")
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self._rng = rng if rng is not None else random.Random()
        Backoff(backoff[0], backoff[1], self._rng)  # validates
        self.backoff = (float(backoff[0]), float(backoff[1]))
        if not connect_timeout > 0 or not handshake_timeout > 0:
            raise ConfigError("timeout", "connect_timeout and handshake_timeout must be > 0")
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        if not write_timeout > 0:
            raise ConfigError("write_timeout", f"must be > 0, got {write_timeout!r}")
        self.write_timeout = write_timeout
        if (
            not isinstance(max_pending_handshakes, int)
            or isinstance(max_pending_handshakes, bool)
            or max_pending_handshakes < 1
        ):
            raise ConfigError(
                "max_pending_handshakes", f"must be an int >= 1, got {max_pending_handshakes!r}"
            )
        self.max_pending_handshakes = max_pending_handshakes
        if not stable_after >= 0:
            raise ConfigError("stable_after", f"must be >= 0, got {stable_after!r}")
        self.stable_after = stable_after
        #: Plaintext beyond loopback is refused (``require_tls`` without TLS).
        self.loopback_only = require_tls and not tls
        self._overflow_logged = -OVERFLOW_LOG_INTERVAL
        #: Per kind of refused connection: when it was last logged as a
        #: WARNING, and how many were logged at DEBUG only since.
        self._reject_logged: dict[str, float] = {}
        self._reject_quiet: dict[str, int] = {}
        self.log = transport_logger(node_id)
        self.counters = new_counters()
        self.peers: dict[NodeId, PeerQueue] = {}
        self._unknown_logged: set[NodeId] = set()
        #: This node's identity and its peers' expected incarnations.
        self.identities = PeerIdentities(self.node_id, self.log)
        for peer_id, address in peers.items():
            self._add_peer(peer_id, address)

    # -- hooks for the framework halves

    def _wake(self, peer: PeerQueue) -> None:
        raise NotImplementedError

    def _stop_peer(self, peer: PeerQueue) -> None:
        raise NotImplementedError

    def _close_inbound(self, node_id: NodeId) -> None:
        raise NotImplementedError

    def _accepting(self) -> bool:
        """True while ``send`` may queue (not closed)."""
        raise NotImplementedError

    # -- peers

    def _add_peer(self, node_id: NodeId, address: str) -> PeerQueue | None:
        check_node_id(node_id, "peer")
        self.check_address(address)  # validates
        if node_id == self.node_id:
            return None  # a membership lists the node itself: nothing to dial
        peer = PeerQueue(node_id, address)
        self.peers[node_id] = peer
        self._unknown_logged.discard(node_id)
        return peer

    def check_address(self, address: Any) -> None:
        """``ConfigError`` unless ``address`` is a ``"host:port"`` this transport
        can dial (with ``require_tls`` and no TLS: on loopback)."""
        host, _ = parse_address(address)
        if self.loopback_only and not is_loopback(host):
            raise ConfigError(
                "address",
                f"{address}: plaintext Raft traffic beyond loopback is refused; "
                "configure TLS (or allow plaintext explicitly)",
            )

    def set_peer(self, node_id: NodeId, address: str, incarnation: str = "") -> None:
        """Add a peer or change its address (its connection is re-dialled);
        ``incarnation``, if known, is the store the membership records for it."""
        if incarnation:
            self.identities.expected[node_id] = incarnation
        else:
            self.identities.expected.pop(node_id, None)
        old = self.peers.get(node_id)
        if old is not None and old.address == address:
            return
        peer = self._add_peer(node_id, address)
        if peer is None:
            return
        if old is not None:
            self.log.info("peer %s moved from %s to %s", node_id, old.address, address)
            peer.frames, peer.nbytes = old.frames, old.nbytes
            old.frames, old.nbytes = deque(), 0
            self._stop_peer(old)
            if peer.frames:
                self._wake(peer)

    def remove_peer(self, node_id: NodeId) -> None:
        """Forget a peer: drop its queue, close its connections both ways."""
        self.identities.expected.pop(node_id, None)
        self.identities.refusals.pop(node_id, None)
        peer = self.peers.pop(node_id, None)
        if peer is not None:
            self._drop(peer.clear(), "dropped_closed")
            self._stop_peer(peer)
        self._close_inbound(node_id)

    # -- sending

    def _drop(self, n: int, reason: str) -> None:
        if n:
            self.counters[reason] += n
            self.counters["frames_dropped"] += n

    def send(self, to: NodeId, msg: Message) -> None:
        """Queue ``msg`` for ``to``; never blocks, never raises for network trouble.

        Dropped (and counted) when ``to`` is unknown, its queue is full, the
        transport is closed, or the message cannot be encoded or exceeds
        ``max_frame``.
        """
        peer = self.peers.get(to)
        if peer is None:
            self._drop(1, "dropped_unknown_peer")
            if to not in self._unknown_logged:
                self._unknown_logged.add(to)
                self.log.warning("dropping messages to unknown node %r", to)
            return
        if not self._accepting():
            self._drop(1, "dropped_closed")
            return
        if len(peer.frames) >= self.queue_size:
            self._drop(1, "dropped_queue_full")
            return
        try:
            payload = encode_message(msg)
        except EncodeError as exc:  # the caller's bug, but no reason to stop the node
            self._drop(1, "dropped_unencodable")
            self.log.error("dropping a message to node %s: %s", to, exc)
            return
        if len(payload) > self.max_frame:
            self._drop(1, "dropped_too_large")
            self.log.warning(
                "dropping a %s of %d bytes to node %s: above max_frame %d",
                type(msg).__name__,
                len(payload),
                to,
                self.max_frame,
            )
            return
        frame = encode_frame(payload)
        if peer.nbytes + len(frame) > self.queue_bytes:
            self._drop(1, "dropped_queue_full")
            return
        peer.frames.append(frame)
        peer.nbytes += len(frame)
        self._wake(peer)

    # -- handshake

    @property
    def hello_frame(self) -> bytes:
        return encode_frame(self.identities.hello_payload(self.cluster_id))

    def refusal_frame(self, exc: HandshakeError) -> bytes | None:
        """The Hello that tells a peer why its identity was refused (``None``
        for other handshake errors: those peers get the connection closed)."""
        if not isinstance(exc, IdentityMismatchError | OtherClusterError):
            return None
        return encode_frame(self.identities.hello_payload(self.cluster_id, refused=str(exc)))

    def accept_hello(self, payload: bytes, cert: Any = None, *, tls: bool = False) -> Hello:
        """Decode and check a dialler's Hello (raises ``RemoteProtocolError``);
        over TLS its certificate (``cert``) must name the node it claims."""
        hello = read_hello(payload)
        check_hello(hello, self.cluster_id, self.peers)
        if tls:
            check_certificate(cert, hello.node_id)
        self.identities.check(hello)
        return hello

    def check_reply(self, payload: bytes, peer_id: NodeId) -> Hello:
        """Decode and check the acceptor's Hello: it must be the node we dialled."""
        hello = read_hello(payload)
        check_hello(hello, self.cluster_id, (peer_id,))
        self.identities.check(hello, reply=True)
        return hello

    def decode_inbound(self, payload: bytes) -> Message | None:
        """A dialler's message frame; ``None`` (recorded, logged) when it is the
        dialler's refusal of this node's identity: the connection then ends."""
        try:
            return decode_message(payload)
        except RemoteProtocolError:
            try:
                hello = read_hello(payload)
            except RemoteProtocolError:
                hello = None
            if hello is not None and self.identities.refused_by_peer(hello):
                return None
            raise

    def _overflow(self, pending: int, peername: Any) -> bool:
        """True (counted, logged at most every ``OVERFLOW_LOG_INTERVAL`` s) if
        ``pending`` connections already wait for their Hello: the framework
        half then closes the *oldest* of them to make room, so idle
        connections (a slow or hostile client) cannot lock peers out."""
        if pending < self.max_pending_handshakes:
            return False
        self.counters["handshake_overflow"] += 1
        now = time.monotonic()
        if now - self._overflow_logged >= OVERFLOW_LOG_INTERVAL:
            self._overflow_logged = now
            log = self.log.warning
        else:
            log = self.log.debug
        log(
            "closing the oldest connection waiting for its Hello: too-many-handshakes: "
            "%d connections wait (max_pending_handshakes), %s is new; %d closed so far",
            pending,
            describe_peername(peername),
            self.counters["handshake_overflow"],
        )
        return True

    def _inbound_closed(
        self, exc: BaseException, node_id: NodeId | None, peername: Any, *, timed_out: bool
    ) -> None:
        """Log and count why an inbound connection ended (``exc`` is what ended it)."""
        where = describe_peername(peername)
        who = where if node_id is None else f"node {node_id} ({where})"
        if isinstance(exc, RemoteProtocolError):
            self.counters["rejects"] += 1
            reason = reject_reason(exc, node_id is not None)
            self._log_reject(reason, "closing connection from %s: %s: %s", who, reason, exc)
        elif node_id is None:  # the network or TLS failed before a valid Hello
            self.counters["rejects"] += 1
            if timed_out:
                reason, detail = "handshake-timeout", f"no Hello within {self.handshake_timeout} s"
            else:
                reason, detail = "handshake-failed", describe_error(exc)
            self._log_reject(reason, "closing connection from %s: %s: %s", who, reason, detail)
        else:
            self.log.info("connection from %s lost: %s", who, describe_error(exc))

    def _log_reject(self, reason: str, msg: str, *args: Any) -> None:
        """A WARNING per kind of refusal at most every ``OVERFLOW_LOG_INTERVAL``
        seconds (saying how many were only logged at DEBUG since): a flood of
        bad connections cannot flood the log."""
        now = time.monotonic()
        if now - self._reject_logged.get(reason, -OVERFLOW_LOG_INTERVAL) < OVERFLOW_LOG_INTERVAL:
            self._reject_quiet[reason] = self._reject_quiet.get(reason, 0) + 1
            self.log.debug(msg, *args)
            return
        self._reject_logged[reason] = now
        quiet = self._reject_quiet.pop(reason, 0)
        if quiet:
            msg += f" ({quiet} more {reason} since the last warning)"
        self.log.warning(msg, *args)

    # -- stats

    def _gauges(self) -> dict[str, int]:
        return {
            "peers": len(self.peers),
            "queued": sum(len(p.frames) for p in self.peers.values()),
            "connections_out": sum(1 for p in self.peers.values() if p.connected),
        }

    def stats(self) -> dict[str, int]:
        """Counters (see ``COUNTERS``) plus gauges ``peers``, ``queued``, ``connections_*``."""
        out = dict(self.counters)
        out.update(self._gauges())
        return out


class PeerLink:
    """One peer's sender policy, shared by the TCP transports: the back-off
    between dials, counting, and logging that stays quiet while a link flaps.

    A connection counts as established for the back-off only once it stayed
    up for ``stable_after`` seconds: one that ends sooner (say the peer
    accepts the Hello, then closes) is a failure like a refused dial, so the
    next dial waits. A write timeout is a failure too, however long the
    connection was up.
    """

    __slots__ = ("_core", "_peer", "_up_since", "backoff", "flapping")

    def __init__(self, core: TransportCore, peer: PeerQueue) -> None:
        self._core = core
        self._peer = peer
        self.backoff = Backoff(*core.backoff, core._rng)
        #: A connection ended before it was stable, and none stable came since.
        self.flapping = False
        self._up_since = 0.0

    def dial_failed(self, exc: BaseException) -> float:
        """Count and log a failed dial, drop what is queued; the delay before the next."""
        core, peer = self._core, self._peer
        core.counters["connect_failures"] += 1
        core._drop(peer.clear(), "dropped_disconnected")
        delay = self.backoff.next()
        log = core.log.warning if self.backoff.failures == 1 else core.log.debug
        log(
            "cannot connect to node %s at %s (%s); retrying in %.2fs",
            peer.node_id,
            peer.address,
            describe_error(exc),
            delay,
        )
        return delay

    def connected(self) -> None:
        """A dial and its handshake succeeded."""
        core, peer = self._core, self._peer
        if self.backoff.failures:
            log = core.log.debug if self.flapping else core.log.info
            log("connected to node %s at %s", peer.node_id, peer.address)
        core.counters["connects"] += 1
        peer.connected = True
        self._up_since = time.monotonic()

    def lost(self, reason: str, *, write_timed_out: bool = False) -> float:
        """An established connection ended (``reason``); the delay before the next dial."""
        core, peer = self._core, self._peer
        core.counters["disconnects"] += 1
        uptime = time.monotonic() - self._up_since
        if write_timed_out:
            core.counters["write_timeouts"] += 1
            dropped = peer.clear()
            core._drop(dropped, "dropped_disconnected")
            delay = self.backoff.next()
            core.log.warning(
                "closed the connection to node %s at %s: %s; dropped %d queued frames;"
                " redialling in %.2fs",
                peer.node_id,
                peer.address,
                reason,
                dropped,
                delay,
            )
            return delay
        if uptime >= core.stable_after:
            self.backoff.reset()
            self.flapping = False
            core.log.info("connection to node %s lost: %s", peer.node_id, reason)
            return 0.0
        # Up for less than stable_after: treated as a failed dial (queue dropped,
        # back-off), and logged at INFO only once per flapping episode.
        core._drop(peer.clear(), "dropped_disconnected")
        delay = self.backoff.next()
        log = core.log.debug if self.flapping else core.log.info
        self.flapping = True
        log(
            "connection to node %s lost after %.3fs: %s; redialling in %.2fs",
            peer.node_id,
            uptime,
            reason,
            delay,
        )
        return delay


def peers_dict(peers: Mapping[NodeId, Any] | Iterable[NodeId] | None) -> dict[NodeId, Any]:
    if peers is None:
        return {}
    if isinstance(peers, Mapping):
        return dict(peers)
    return dict.fromkeys(peers)
