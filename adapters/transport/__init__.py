"""Transports: how Raft messages travel between nodes.

- ``frames``: the wire format (length-prefixed frames, the Hello check), no IO.
- ``identity``: node identity in the handshake (``PeerIdentities``).
- ``peers``: the framework-neutral sending core (``TransportCore``: peer
  table, queues, counters) and the dialler's back-off (``PeerLink``).
- ``sockets``: the socket calls both TCP transports share.
- ``inproc``: ``InProcNetwork`` for tests and benchmarks (partitions, codec
  round trip).
- ``asyncio_tcp.AsyncioTcpTransport`` and ``trio_tcp.TrioTcpTransport``: TCP
  with optional mutual TLS (import the trio one from its module: trio is
  optional).

Every transport has ``send(to, msg)`` (synchronous, never blocks, drops and
counts on trouble), ``set_peer``/``remove_peer`` and ``stats()``. See
``docs/transport.md``.
"""

from raftcore.adapters.transport.asyncio_tcp import AsyncioTcpTransport
from raftcore.adapters.transport.frames import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    FrameError,
    UnknownNodeError,
    VersionMismatchError,
    check_hello,
    encode_frame,
)
from raftcore.adapters.transport.identity import (
    HandshakeError,
    OtherClusterError,
)
from raftcore.adapters.transport.inproc import InProcNetwork, InProcTransport

__all__ = [
    "DEFAULT_MAX_FRAME",
    "AsyncioTcpTransport",
    "FrameDecoder",
    "FrameError",
    "HandshakeError",
    "InProcNetwork",
    "InProcTransport",
    "OtherClusterError",
    "UnknownNodeError",
    "VersionMismatchError",
    "check_hello",
    "encode_frame",
]
