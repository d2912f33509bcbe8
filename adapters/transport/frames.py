"""The wire format, with no IO: frames and the handshake's checks.

Every frame is a 4-byte big-endian length followed by that many bytes of
payload (a CBOR document from ``raftcore.codec``). The first frame in each
direction of a TCP connection is a ``Hello``; after that only message frames
flow, from the dialler to the acceptor. See ``docs/transport.md``.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Container

from raftcore.adapters.transport.identity import (
    HandshakeError,
    OtherClusterError,
)
from raftcore.codec import (
    FORMAT_VERSION,
    Hello,
    UnsupportedVersion,
    decode_hello,
)
from raftcore.errors import ConfigError, RemoteProtocolError
from raftcore.ids import NodeId

#: The largest payload a transport accepts (and sends) by default.
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
#: Limit on a Hello frame: a connection is not trusted with more before its handshake.
HELLO_MAX_FRAME = 4096


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


def is_loopback(host: str) -> bool:
    """Is ``host`` this machine only (``localhost``, ``127.0.0.0/8``, ``::1``)?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


#: What a TLS failure on an inbound connection usually means, by OpenSSL reason.
TLS_HINTS = {
    "WRONG_VERSION_NUMBER": "the peer does not speak TLS (plaintext, or another protocol)",
    "HTTP_REQUEST": "the peer does not speak TLS (plaintext, or another protocol)",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the peer showed no certificate",
    "CERTIFICATE_VERIFY_FAILED": "the certificate is not signed by the cluster CA",
    "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust this node's CA",
}


def _tls_hint(exc: BaseException) -> str | None:
    return TLS_HINTS.get(getattr(exc, "reason", None) or "")


def describe_error(exc: BaseException | None) -> str:
    """``"Type: message"``, following an empty wrapper to its cause (trio's SSL
    errors); a TLS failure says first what it usually means."""
    if exc is None:
        return "closed"
    text = str(exc)
    if not text and exc.__cause__ is not None:
        inner = describe_error(exc.__cause__)
        return inner if _tls_hint(exc.__cause__) else f"{type(exc).__name__} ({inner})"
    hint = _tls_hint(exc)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"{hint} ({described})" if hint else described


def reject_reason(exc: RemoteProtocolError, handshaken: bool) -> str:
    """The short reason logged when a peer's bytes close its connection."""
    if isinstance(exc, HandshakeError):
        return exc.reason
    if isinstance(exc, FrameError):
        return "frame-too-large"
    return "bad-message" if handshaken else "bad-hello"
