"""TCP transport for asyncio: length-prefixed frames, Hello handshake, optional mutual TLS.

    transport = AsyncioTcpTransport(1, "cluster-a", "127.0.0.1:0", {2: "10.0.0.2:7000"})
    await transport.start(deliver)      # listening once this returns
    transport.send(2, message)          # synchronous, never blocks
    await transport.aclose()

One outbound connection per peer, dialled on the first send and kept; each
node dials its own outbound connections, and inbound connections only
receive. See ``docs/transport.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Unpack

from raftcore.adapters.transport.frames import (
    HELLO_MAX_FRAME,
    FrameDecoder,
    describe_error,
    format_address,
    parse_address,
)
from raftcore.adapters.transport.identity import HandshakeError, check_certificate
from raftcore.adapters.transport.peers import (
    PeerLink,
    PeerQueue,
    TcpOptions,
    TransportCore,
    WriteTimeout,
)
from raftcore.adapters.transport.sockets import (
    bind_listen_socket,
    set_socket_options,
)
from raftcore.codec import Hello
from raftcore.errors import LocalProtocolError, RemoteProtocolError
from raftcore.ids import NodeId
from raftcore.messages import Message

__all__ = ["AsyncioTcpTransport"]

Deliver = Callable[[NodeId, Message], None]

_READ_SIZE = 256 * 1024
#: Errors that mean "this connection is broken", as opposed to a bug.
_NET_ERRORS = (OSError, EOFError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError)


class _Inbound:
    __slots__ = ("node_id", "writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        #: Set once its Hello is accepted (``None``: still in the handshake).
        self.node_id: NodeId | None = None


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
    else:  # pragma: no cover - already closing: make sure it finishes
        with contextlib.suppress(Exception):
            transport.abort()


async def _read_frame(reader: asyncio.StreamReader, decoder: FrameDecoder) -> bytes:
    """The Hello: the only frame a peer may send before the handshake completes."""
    while True:
        data = await reader.read(_READ_SIZE)
        if not data:
            raise EOFError("connection closed during the handshake")
        frames = decoder.feed(data)
        if frames:
            if len(frames) > 1 or decoder.buffered:
                raise HandshakeError("data after the Hello before the handshake completed")
            return frames[0]


class AsyncioTcpTransport(TransportCore):
    """A Raft transport over TCP (optionally mutual TLS) for asyncio.

    ``send`` must be called from the event loop's thread; ``deliver`` is
    called there too and must only enqueue.
    """

    def __init__(
        self,
        node_id: NodeId,
        cluster_id: str,
        listen: str,
        peers: Mapping[NodeId, str],
        *,
        ssl_server: ssl.SSLContext | None = None,
        ssl_client: ssl.SSLContext | None = None,
        **options: Unpack[TcpOptions],
    ) -> None:
        super().__init__(node_id, cluster_id, peers, tls=ssl_client is not None, **options)
        self.check_address(listen)
        self._listen = parse_address(listen)
        self._ssl_server = ssl_server
        self._ssl_client = ssl_client
        self._state = "new"  # new -> running -> closed (-> running again on start)
        self._deliver: Deliver | None = None
        self._server: asyncio.Server | None = None
        self._inbound: dict[asyncio.Task[None], _Inbound] = {}
        self._peer_tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The bound ``"host:port"`` once started (the real port when 0 was asked for).
        self.listen_address: str | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, deliver: Deliver) -> None:
        """Listen and start sending; returns once listening."""
        if self._state == "running":
            raise LocalProtocolError("transport already started")
        sock = bind_listen_socket(*self._listen)
        try:
            # TLS is started by the handler (start_tls), so a failed handshake is
            # logged and counted like any other refused connection.
            self._server = await asyncio.start_server(
                self._handle_inbound, sock=sock, limit=_READ_SIZE
            )
        except BaseException:
            sock.close()
            raise
        host, port = sock.getsockname()[:2]
        self.listen_address = format_address(host, port)
        self._deliver = deliver
        self._loop = asyncio.get_running_loop()
        self._state = "running"
        self.log.info("listening on %s", self.listen_address)
        for peer in self.peers.values():
            if peer.frames:
                self._wake(peer)

    async def aclose(self) -> None:
        """Close the listener and every connection; drop what is queued. Idempotent."""
        if self._state != "running":
            return
        self._state = "closed"
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in self._inbound.values():
            _abort(conn.writer)
        tasks = list(self._peer_tasks) + list(self._inbound)
        for task in tasks:
            task.cancel()
        for peer in self.peers.values():
            peer.handle = None
            self._drop(peer.clear(), "dropped_closed")
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._deliver = None
        self.log.info("closed")

    # ------------------------------------------------------------------ TransportCore hooks

    def _accepting(self) -> bool:
        return self._state != "closed"

    def _wake(self, peer: PeerQueue) -> None:
        if self._state != "running" or self._loop is None:
            return
        if peer.handle is None:
            event = asyncio.Event()
            task = self._loop.create_task(self._run_peer(peer, event))
            peer.handle = (task, event)
            self._peer_tasks.add(task)
            task.add_done_callback(self._peer_tasks.discard)
        else:
            peer.handle[1].set()

    def _stop_peer(self, peer: PeerQueue) -> None:
        if peer.handle is not None:
            peer.handle[0].cancel()
            peer.handle = None

    def _close_inbound(self, node_id: NodeId) -> None:
        for task, conn in list(self._inbound.items()):
            if conn.node_id == node_id:
                _abort(conn.writer)
                task.cancel()

    def stats(self) -> dict[str, int]:
        out = super().stats()
        out["connections_in"] = sum(1 for c in self._inbound.values() if c.node_id is not None)
        out["handshakes_pending"] = sum(1 for c in self._inbound.values() if c.node_id is None)
        return out

    # ------------------------------------------------------------------ outbound

    async def _run_peer(self, peer: PeerQueue, event: asyncio.Event) -> None:
        link = PeerLink(self, peer)
        try:
            while True:
                while not peer.frames:
                    event.clear()
                    await event.wait()
                try:
                    reader, writer, _ = await asyncio.wait_for(
                        self._dial(peer), self.connect_timeout + self.handshake_timeout
                    )
                except (*_NET_ERRORS, RemoteProtocolError) as exc:
                    await asyncio.sleep(link.dial_failed(exc))
                    continue
                link.connected()
                try:
                    reason, write_timed_out = await self._pump(peer, event, reader, writer)
                finally:
                    peer.connected = False
                    _abort(writer)
                delay = link.lost(reason, write_timed_out=write_timed_out)
                if delay:
                    await asyncio.sleep(delay)
        except Exception:  # a bug: log it; the next send starts a new sender
            self.log.exception("sender for node %s failed", peer.node_id)
            self._drop(peer.clear(), "dropped_disconnected")
        finally:
            if peer.handle is not None and peer.handle[0] is asyncio.current_task():
                peer.handle = None

    async def _dial(
        self, peer: PeerQueue
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Hello]:
        host, port = parse_address(peer.address)
        kwargs: dict[str, Any] = {}
        if self._ssl_client is not None:
            kwargs = {
                "ssl": self._ssl_client,
                "server_hostname": host,
                "ssl_handshake_timeout": self.handshake_timeout,
            }
        reader, writer = await asyncio.open_connection(host, port, limit=_READ_SIZE, **kwargs)
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                set_socket_options(sock)
            if self._ssl_client is not None:
                # The node we dial, not just any holder of a cluster certificate.
                check_certificate(writer.get_extra_info("peercert"), peer.node_id)
            writer.write(self.hello_frame)
            await writer.drain()
            frame = await _read_frame(reader, FrameDecoder(HELLO_MAX_FRAME))
            try:
                hello = self.check_reply(frame, peer.node_id)
            except HandshakeError as exc:
                await self._send_refusal(writer, exc)
                raise
        except BaseException:
            _abort(writer)
            raise
        return reader, writer, hello

    async def _send_refusal(self, writer: asyncio.StreamWriter, exc: HandshakeError) -> None:
        """Tell the peer why its identity is refused (best effort) before closing."""
        frame = self.refusal_frame(exc)
        if frame is None:
            return
        with contextlib.suppress(*_NET_ERRORS):
            writer.write(frame)
            async with asyncio.timeout(1.0):
                await writer.drain()

    async def probe(self, node_id: NodeId, address: str) -> Hello:
        """Dial ``address``, exchange Hellos, hang up: the Hello of the node
        there (``node_id``). Raises ``OSError``/``TimeoutError`` if it cannot
        be reached, a ``HandshakeError`` if it is not that node or refuses."""
        try:
            async with asyncio.timeout(self.connect_timeout + self.handshake_timeout):
                _, writer, hello = await self._dial(PeerQueue(node_id, address))
        except (EOFError, asyncio.IncompleteReadError) as e:
            # Accepted, then closed before its Hello (e.g. a proxy whose node is down).
            raise ConnectionError(f"{address}: {describe_error(e)}") from None
        _abort(writer)
        return hello

    async def _pump(
        self,
        peer: PeerQueue,
        event: asyncio.Event,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> tuple[str, bool]:
        """Write queued frames until the connection breaks; return why it did, and
        whether it was a write timeout."""
        loop = asyncio.get_running_loop()
        watch = loop.create_task(reader.read(1))
        write = loop.create_task(self._write_loop(peer, event, writer))
        try:
            await asyncio.wait((watch, write), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (watch, write):
                t.cancel()
            await asyncio.gather(watch, write, return_exceptions=True)
        if write.done() and not write.cancelled() and write.exception() is not None:
            exc = write.exception()
            return describe_error(exc), isinstance(exc, WriteTimeout)
        if watch.cancelled():  # pragma: no cover - the writer ended first
            return "closed", False
        exc = watch.exception()
        if exc is not None:
            return describe_error(exc), False
        data = watch.result()
        return ("unexpected data from the acceptor" if data else "closed by the peer"), False

    async def _write_loop(
        self, peer: PeerQueue, event: asyncio.Event, writer: asyncio.StreamWriter
    ) -> None:
        counters = self.counters
        while True:
            if not peer.frames:
                event.clear()
                await event.wait()
                continue
            batch, count = peer.take_batch()
            try:
                writer.write(batch)
                try:
                    async with asyncio.timeout(self.write_timeout):
                        await writer.drain()
                except TimeoutError:
                    raise WriteTimeout(
                        f"no write progress within {self.write_timeout} s (the peer is not reading)"
                    ) from None
            except BaseException:
                self._drop(count, "dropped_disconnected")
                raise
            counters["frames_sent"] += count
            counters["bytes_sent"] += len(batch)

    # ------------------------------------------------------------------ inbound

    async def _handle_inbound(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        peername = writer.get_extra_info("peername")
        waiting = [(t, c) for t, c in self._inbound.items() if c.node_id is None]
        if self._overflow(len(waiting), peername):
            oldest_task, oldest = waiting[0]  # dicts keep arrival order
            del self._inbound[oldest_task]  # no longer waiting: never picked twice
            _abort(oldest.writer)
            oldest_task.cancel()
        conn = _Inbound(writer)
        self._inbound[task] = conn
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                set_socket_options(sock)
            await self._serve_inbound(conn, reader, writer)
        except asyncio.CancelledError:
            pass
        except (RemoteProtocolError, *_NET_ERRORS) as exc:
            timed_out = isinstance(exc, TimeoutError)
            self._inbound_closed(exc, conn.node_id, peername, timed_out=timed_out)
        except Exception:
            self.log.exception("closing connection from %s after an internal error", peername)
        finally:
            self._inbound.pop(task, None)
            _abort(writer)

    async def _serve_inbound(
        self, conn: _Inbound, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        decoder = FrameDecoder(HELLO_MAX_FRAME)
        async with asyncio.timeout(self.handshake_timeout):
            if self._ssl_server is not None:
                await writer.start_tls(self._ssl_server)
            try:
                hello = self.accept_hello(
                    await _read_frame(reader, decoder),
                    writer.get_extra_info("peercert"),
                    tls=self._ssl_server is not None,
                )
            except HandshakeError as exc:
                await self._send_refusal(writer, exc)
                raise
        sender = hello.node_id
        # A dialler keeps one connection: a new one from the same node replaces the old.
        for task, other in list(self._inbound.items()):
            if other.node_id == sender and other is not conn:
                _abort(other.writer)
                task.cancel()
        conn.node_id = sender
        self.counters["accepts"] += 1
        writer.write(self.hello_frame)
        await writer.drain()
        decoder.max_frame = self.max_frame
        self.log.debug("accepted node %s", sender)
        counters = self.counters
        frames: list[bytes] = []
        while True:
            for payload in frames:
                msg = self.decode_inbound(payload)
                if msg is None:
                    return
                counters["frames_received"] += 1
                counters["bytes_received"] += len(payload) + 4
                deliver = self._deliver
                if deliver is None:  # pragma: no cover - closing
                    return
                try:
                    deliver(sender, msg)
                except Exception:
                    self.log.exception("deliver() raised for a message from node %s", sender)
            data = await reader.read(_READ_SIZE)
            if not data:
                self.log.debug("node %s closed its connection", sender)
                return
            frames = decoder.feed(data)
