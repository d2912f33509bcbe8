"""Fault-injecting TCP proxies for the nodes' Raft traffic.

One ``RaftProxy`` per node listens at the node's advertised Raft address (the
one in ``--cluster``, which its peers dial) and forwards to where the node
really listens (``serve --raft-listen``). Every transport connection starts
with the dialler's Hello frame (4-byte big-endian length + CBOR, see
``raftcore.adapters.transport.frames``), which names the dialler; after the Hello
exchange messages flow only from the dialler to the acceptor. So a
connection that node ``i`` dialled to node ``j`` carries everything ``i``
sends ``j``, and blocking the pair ``(i, j)`` cuts exactly the messages from
``i`` to ``j``, and nothing from ``j`` to ``i``.

``Blocks`` holds the blocked ``(src, dst)`` pairs. A blocked dialler's
connection is closed (a reset) right after its Hello, before anything reaches
the node; setting new blocks also resets the live connections they cover.
The dialler sees a peer that refuses it and redials with its own back-off, so
healing needs nothing but clearing the blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Iterable

from raftcore.adapters.kv.chaos.journal import Journal
from raftcore.adapters.kv.http import split_hostport
from raftcore.adapters.transport.frames import (
    HELLO_MAX_FRAME,
)
from raftcore.codec import decode_hello

Pair = tuple[int, int]

#: How long a dialler may take to send its Hello before the proxy gives up on it.
HELLO_TIMEOUT = 5.0
#: How long the proxy waits to connect to the node behind it.
CONNECT_TIMEOUT = 2.0
_READ_SIZE = 64 * 1024


class HelloError(ValueError):
    """The first frame of a connection is not a Hello the proxy can read."""


def hello_source(frame: bytes) -> int:
    """The node id in a whole Hello frame (length prefix included); ``HelloError`` if none."""
    if len(frame) < 4:
        raise HelloError("short frame header")
    (length,) = struct.unpack_from(">I", frame)
    if length > HELLO_MAX_FRAME:
        raise HelloError(f"first frame of {length} bytes is too large for a Hello")
    if len(frame) != 4 + length:
        raise HelloError(f"frame of {len(frame) - 4} bytes, header says {length}")
    try:
        node_id = decode_hello(frame[4:]).node_id
    except Exception as e:  # any codec error: the proxy cannot tell who dials
        raise HelloError(f"not a Hello: {type(e).__name__}: {e}") from e
    return int(node_id)


async def read_hello_frame(reader: asyncio.StreamReader) -> bytes:
    """The first frame off ``reader``, length prefix included (``HelloError`` if too large)."""
    header = await reader.readexactly(4)
    (length,) = struct.unpack(">I", header)
    if length > HELLO_MAX_FRAME:
        raise HelloError(f"first frame of {length} bytes is too large for a Hello")
    return header + await reader.readexactly(length)


# -- which pairs are blocked -----------------------------------------------------------


def isolate(node: int, nodes: Iterable[int]) -> set[Pair]:
    """``node`` neither sends to nor hears from anyone."""
    return {p for n in nodes if n != node for p in ((node, n), (n, node))}


def one_way(srcs: Iterable[int], dsts: Iterable[int]) -> set[Pair]:
    """Every node of ``srcs`` cannot send to any node of ``dsts`` (the reverse flows)."""
    targets = list(dsts)
    return {(s, d) for s in srcs for d in targets if s != d}


def split(side_a: Iterable[int], side_b: Iterable[int]) -> set[Pair]:
    """No traffic between the two sides, either way; nodes in neither reach both (a bridge)."""
    a, b = list(side_a), list(side_b)
    return one_way(a, b) | one_way(b, a)


class Blocks:
    """The blocked ``(src, dst)`` pairs; proxies subscribe to hear of changes."""

    def __init__(self) -> None:
        self.pairs: frozenset[Pair] = frozenset()
        self._listeners: list[Callable[[], None]] = []

    def blocked(self, src: int, dst: int) -> bool:
        return (src, dst) in self.pairs

    def set(self, pairs: Iterable[Pair]) -> None:
        """Replace the blocked pairs; subscribers then cut what is now blocked."""
        self.pairs = frozenset(pairs)
        for listener in self._listeners:
            listener()

    def heal(self) -> None:
        self.set(())

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)


# -- the proxy ------------------------------------------------------------------------


_LINGER_RESET = struct.pack("ii", 1, 0)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (SO_LINGER 0), as a refused or broken connection looks:
    the peer's next read fails with ``ConnectionResetError``, not a clean EOF."""
    if writer.transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


class _Link:
    """One forwarded connection: the dialler's side and the node's side."""

    __slots__ = ("down", "src", "up")

    def __init__(self, src: int, down: asyncio.StreamWriter, up: asyncio.StreamWriter) -> None:
        self.src = src
        self.down = down
        self.up = up

    def abort(self) -> None:
        _abort(self.down)
        _abort(self.up)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF or an error, then close ``writer`` (flushing what is buffered)."""
    try:
        while data := await reader.read(_READ_SIZE):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


class RaftProxy:
    """Listens at ``listen`` for node ``dst``'s peers and forwards to ``target``."""

    def __init__(
        self, dst: int, listen: str, target: str, blocks: Blocks, journal: Journal
    ) -> None:
        self.dst = dst
        self.listen = listen
        self.target = target
        self.blocks = blocks
        self.journal = journal
        self.links: set[_Link] = set()
        self.accepted = 0
        self.refused = 0
        self.cut = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        blocks.subscribe(self.cut_blocked)

    async def start(self) -> None:
        host, port = split_hostport(self.listen)
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self.links):
            link.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def cut_blocked(self) -> None:
        """Reset every live connection whose source may no longer reach ``dst``."""
        for link in list(self.links):
            if self.blocks.blocked(link.src, self.dst):
                self.links.discard(link)
                link.abort()
                self.cut += 1
                self.journal.event("cut", src=link.src, dst=self.dst)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._forward(reader, writer)
        except asyncio.CancelledError:
            _abort(writer)
        finally:
            self._tasks.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            frame = await asyncio.wait_for(read_hello_frame(reader), HELLO_TIMEOUT)
            src = hello_source(frame)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, HelloError) as e:
            self.journal.event("bad-hello", dst=self.dst, error=f"{type(e).__name__}: {e}")
            _abort(writer)
            return
        if self.blocks.blocked(src, self.dst):
            self.refused += 1
            self.journal.event("refused", src=src, dst=self.dst)
            _abort(writer)
            return
        host, port = split_hostport(self.target)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as e:  # the node is down (or stopped with a full backlog)
            self.journal.event("node-unreachable", src=src, dst=self.dst, error=type(e).__name__)
            _abort(writer)
            return
        if self.blocks.blocked(src, self.dst):  # blocked while connecting
            _abort(up_writer)
            _abort(writer)
            return
        up_writer.write(frame)
        link = _Link(src, writer, up_writer)
        self.links.add(link)
        self.accepted += 1
        self.journal.event("forward", src=src, dst=self.dst)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            self.links.discard(link)
            with contextlib.suppress(Exception):
                link.abort()
