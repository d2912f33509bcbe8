"""Framework-neutral pieces of the transports: frames, handshake, queues, stats.

Wire format: every frame is a 4-byte big-endian length followed by that many
bytes of payload (a CBOR document from ``raftcore.codec``). The first frame in
each direction of a TCP connection is a ``Hello``; after that only message
frames flow, from the dialler to the acceptor. See ``docs/transport.md``.

Nothing here does IO: the asyncio and trio transports share this module, and
``TransportCore`` holds everything about sending that does not depend on the
framework (peer table, bounded per-peer queues, drop accounting, logging).
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time
from collections import deque
from collections.abc import Container, Iterable, Mapping
from typing import Any

from raftcore.adapters.log import NodeLogger, node_logger
from raftcore.adapters.transport.identity import (
    HandshakeError,
    IdentityMismatchError,
    OtherClusterError,
    PeerIdentities,
    PeerRefusedError,
)
from raftcore.codec import (
    FORMAT_VERSION,
    EncodeError,
    Hello,
    UnsupportedVersion,
    decode_hello,
    encode_message,
)
from raftcore.errors import ConfigError, RemoteProtocolError
from raftcore.ids import NodeId, check_node_id
from raftcore.messages import Message

__all__ = [
    "DEFAULT_MAX_FRAME",
    "DEFAULT_MAX_PENDING_HANDSHAKES",
    "DEFAULT_QUEUE_BYTES",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_STABLE_AFTER",
    "DEFAULT_WRITE_TIMEOUT",
    "HELLO_MAX_FRAME",
    "Backoff",
    "FrameDecoder",
    "FrameError",
    "HandshakeError",
    "IdentityMismatchError",
    "OtherClusterError",
    "PeerLink",
    "PeerQueue",
    "PeerRefusedError",
    "TransportCore",
    "UnknownNodeError",
    "VersionMismatchError",
    "WriteTimeout",
    "bind_listen_socket",
    "check_hello",
    "describe_error",
    "encode_frame",
    "format_address",
    "parse_address",
    "read_hello",
    "transport_logger",
]

#: The largest payload a transport accepts (and sends) by default.
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
#: Limit on a Hello frame: a connection is not trusted with more before its handshake.
HELLO_MAX_FRAME = 4096
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

_HEADER = struct.Struct(">I")
_HEADER_SIZE = _HEADER.size
_MAX_LENGTH = 0xFFFFFFFF


class FrameError(RemoteProtocolError):
    """The byte stream is not a valid sequence of frames (e.g. a frame is too large)."""


class UnknownNodeError(HandshakeError):
    """The Hello names a node that is not a known peer (or not the one dialled)."""

    REASON = "unknown-node"


class VersionMismatchError(HandshakeError):
    """The Hello announces another wire-format version."""

    REASON = "version-mismatch"


class WriteTimeout(TimeoutError):
    """A write to a peer made no progress within ``write_timeout``: it stopped reading."""


def encode_frame(payload: bytes) -> bytes:
    """``payload`` with its 4-byte big-endian length in front."""
    n = len(payload)
    if n > _MAX_LENGTH:
        raise ValueError(f"a frame payload is at most {_MAX_LENGTH} bytes, got {n}")
    return _HEADER.pack(n) + payload


class FrameDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get whole payloads back.

    A length above ``max_frame`` raises ``FrameError`` as soon as its header is
    read (the payload is never buffered); the decoder is then unusable, and the
    connection must be closed. ``max_frame`` may be changed between feeds (the
    transports read the Hello with a small limit, then raise it).
    """

    __slots__ = ("_buf", "_error", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not isinstance(max_frame, int) or max_frame < 1 or max_frame > _MAX_LENGTH:
            raise ConfigError("max_frame", f"must be an int in 1..{_MAX_LENGTH}, got {max_frame!r}")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned (an incomplete frame)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add ``data``; return every frame payload completed by it, in order."""
        if self._error is not None:
            raise FrameError(f"decoder already failed: {self._error}")
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        end_of_data = len(buf)
        while end_of_data - pos >= _HEADER_SIZE:
            (length,) = _HEADER.unpack_from(buf, pos)
            if length > self.max_frame:
                self._error = FrameError(
                    f"frame of {length} bytes exceeds the limit of {self.max_frame}"
                )
                del buf[:]
                raise self._error
            end = pos + _HEADER_SIZE + length
            if end > end_of_data:
                break
            out.append(bytes(buf[pos + _HEADER_SIZE : end]))
            pos = end
        if pos:
            del buf[:pos]
        return out


def check_hello(hello: Hello, cluster_id: str, known_peers: Container[NodeId]) -> None:
    """Validate a peer's Hello; raise a ``HandshakeError`` subclass naming the reason.

    Checked in this order: the wire-format version (nothing else can be
    trusted under another format), the cluster id, then the node id, which
    must be in ``known_peers`` (the acceptor passes its peer table, the
    dialler only the node it meant to reach).
    """
    if hello.version != FORMAT_VERSION:
        raise VersionMismatchError(
            f"node {hello.node_id!r} speaks format version {hello.version!r}, "
            f"this node speaks {FORMAT_VERSION}"
        )
    if hello.cluster_id != cluster_id:
        raise OtherClusterError(
            f"node {hello.node_id!r} belongs to cluster {hello.cluster_id!r}, not {cluster_id!r}"
        )
    if hello.node_id not in known_peers:
        raise UnknownNodeError(f"node {hello.node_id!r} is not a known peer")


def read_hello(payload: bytes) -> Hello:
    """``decode_hello``, with another format version reported as ``VersionMismatchError``."""
    try:
        return decode_hello(payload)
    except UnsupportedVersion as exc:
        raise VersionMismatchError(
            f"the peer speaks format version {exc.version}, this node speaks {FORMAT_VERSION}"
        ) from exc


# --------------------------------------------------------------------------- addresses


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) to ``(host, port)``; ``ConfigError`` if invalid."""
    if not isinstance(address, str):
        raise ConfigError("address", f"expected 'host:port', got {address!r}")
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError("address", f"expected 'host:port', got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if port > 65535:
        raise ConfigError("address", f"port out of range in {address!r}")
    return host, port


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_listen_socket(host: str, port: int, backlog: int = 128) -> socket.socket:
    """One listening TCP socket for ``host:port`` (the first address it resolves to).

    A single socket keeps ``listen_address`` exact with port 0. Resolution of
    a numeric host never blocks; a name is resolved once, at start.
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def set_socket_options(sock: Any) -> None:
    """TCP_NODELAY and keep-alive on a connected socket (errors ignored: best effort)."""
    for level, option in (
        (socket.IPPROTO_TCP, socket.TCP_NODELAY),
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    ):
        with contextlib.suppress(OSError, AttributeError):  # platform dependent
            sock.setsockopt(level, option, 1)


# --------------------------------------------------------------------------- logging


def describe_error(exc: BaseException | None) -> str:
    """``"Type: message"``, following an empty wrapper to its cause (trio's SSL errors)."""
    if exc is None:
        return "closed"
    text = str(exc)
    if not text and exc.__cause__ is not None:
        return f"{type(exc).__name__} ({describe_error(exc.__cause__)})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe_peername(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return format_address(str(peername[0]), int(peername[1]))
    return str(peername)


def reject_reason(exc: RemoteProtocolError, handshaken: bool) -> str:
    """The short reason logged when a peer's bytes close its connection."""
    if isinstance(exc, HandshakeError):
        return exc.reason
    if isinstance(exc, FrameError):
        return "frame-too-large"
    return "bad-message" if handshaken else "bad-hello"


def transport_logger(node_id: NodeId) -> NodeLogger:
    """The ``raftcore.transport`` logger, tagged with ``node_id``."""
    return node_logger("raftcore.transport", node_id)


# --------------------------------------------------------------------------- back-off


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


# --------------------------------------------------------------------------- stats

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


# --------------------------------------------------------------------------- sending


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
        self._overflow_logged = -OVERFLOW_LOG_INTERVAL
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
        parse_address(address)  # validates
        if node_id == self.node_id:
            return None  # a membership lists the node itself: nothing to dial
        peer = PeerQueue(node_id, address)
        self.peers[node_id] = peer
        self._unknown_logged.discard(node_id)
        return peer

    def check_address(self, address: Any) -> None:
        """``ConfigError`` unless ``address`` is a ``"host:port"`` this transport can dial."""
        parse_address(address)

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

    def accept_hello(self, payload: bytes) -> Hello:
        """Decode and check a dialler's Hello (raises ``RemoteProtocolError``)."""
        hello = read_hello(payload)
        check_hello(hello, self.cluster_id, self.peers)
        self.identities.check(hello)
        return hello

    def check_reply(self, payload: bytes, peer_id: NodeId) -> Hello:
        """Decode and check the acceptor's Hello: it must be the node we dialled."""
        hello = read_hello(payload)
        check_hello(hello, self.cluster_id, (peer_id,))
        self.identities.check(hello, reply=True)
        return hello

    def refused_inbound(self, payload: bytes) -> bool:
        """A frame that is not a message: true (recorded, logged) if it is a
        dialler's refusal of this node's identity."""
        try:
            hello = read_hello(payload)
        except RemoteProtocolError:
            return False
        return self.identities.refused_by_peer(hello)

    def _refuse_overflow(self, pending: int, peername: Any) -> bool:
        """True (counted, logged at most every ``OVERFLOW_LOG_INTERVAL`` s) if a new
        inbound connection must be closed at once: ``pending`` already wait for their Hello."""
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
            "closing connection from %s: too-many-handshakes: %d connections already wait for"
            " their Hello (max_pending_handshakes); %d refused so far",
            describe_peername(peername),
            pending,
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
            self.log.warning("closing connection from %s: %s: %s", who, reason, exc)
        elif node_id is None:  # the network or TLS failed before a valid Hello
            self.counters["rejects"] += 1
            if timed_out:
                reason, detail = "handshake-timeout", f"no Hello within {self.handshake_timeout} s"
            else:
                reason, detail = "handshake-failed", describe_error(exc)
            self.log.warning("closing connection from %s: %s: %s", who, reason, detail)
        else:
            self.log.info("connection from %s lost: %s", who, describe_error(exc))

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
