"""TCP transport for trio: length-prefixed frames, Hello handshake, optional mutual TLS.

    transport = TrioTcpTransport(1, "cluster-a", "127.0.0.1:0", {2: "10.0.0.2:7000"})
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve, deliver)   # listening once this returns
        transport.send(2, message)                      # synchronous, never blocks
        ...
        nursery.cancel_scope.cancel()                   # closes everything

Same behaviour as ``AsyncioTcpTransport``; see ``docs/transport.md``.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Unpack

import trio

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

__all__ = ["TrioTcpTransport"]

Deliver = Callable[[NodeId, Message], None]

_READ_SIZE = 256 * 1024
#: Errors that mean "this connection is broken", as opposed to a bug.
_NET_ERRORS = (
    OSError,
    EOFError,
    ssl.SSLError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
)

Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]


class _PeerTask:
    """A peer's sender: its cancel scope and the event that wakes it."""

    __slots__ = ("event", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.event = trio.Event()


class _Inbound:
    __slots__ = ("node_id", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.node_id: NodeId | None = None


async def _read_frame(stream: Stream, decoder: FrameDecoder) -> bytes:
    """The Hello: the only frame a peer may send before the handshake completes."""
    while True:
        data = await stream.receive_some(_READ_SIZE)
        if not data:
            raise EOFError("connection closed during the handshake")
        frames = decoder.feed(data)
        if frames:
            if len(frames) > 1 or decoder.buffered:
                raise HandshakeError("data after the Hello before the handshake completed")
            return frames[0]


async def _close(stream: Stream) -> None:
    """Close within a second (trio closes a stream even when cancelled)."""
    with (
        trio.move_on_after(1.0),
        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError),
    ):
        await stream.aclose()


class TrioTcpTransport(TransportCore):
    """A Raft transport over TCP (optionally mutual TLS) for trio.

    Run with ``await nursery.start(transport.serve, deliver)``; cancel to close.
    ``send`` must be called from the trio thread; ``deliver`` is called there
    too and must only enqueue.
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
        self._state = "new"  # new -> running -> closed (-> running again on serve)
        self._nursery: trio.Nursery | None = None
        self._deliver: Deliver | None = None
        #: Inbound connections, in arrival order (a dict used as an ordered set).
        self._inbound: dict[_Inbound, None] = {}
        #: The bound ``"host:port"`` once serving (the real port when 0 was asked for).
        self.listen_address: str | None = None

    # ------------------------------------------------------------------ lifecycle

    async def serve(
        self, deliver: Deliver, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, call ``task_status.started()``, and serve until cancelled."""
        if self._state == "running":
            raise LocalProtocolError("transport already serving")
        sock = trio.socket.from_stdlib_socket(bind_listen_socket(*self._listen))
        listener = trio.SocketListener(sock)
        host, port = sock.getsockname()[:2]
        self.listen_address = format_address(host, port)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._deliver = deliver
                self._state = "running"
                nursery.start_soon(self._accept_loop, listener)
                for peer in self.peers.values():
                    if peer.frames:
                        self._wake(peer)
                self.log.info("listening on %s", self.listen_address)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._state = "closed"
            self._nursery = None
            self._deliver = None
            for peer in self.peers.values():
                peer.handle = None
                self._drop(peer.clear(), "dropped_closed")
            with trio.CancelScope(shield=True):
                await listener.aclose()
            self.log.info("closed")

    # ------------------------------------------------------------------ TransportCore hooks

    def _accepting(self) -> bool:
        return self._state != "closed"

    def _wake(self, peer: PeerQueue) -> None:
        if self._state != "running" or self._nursery is None:
            return
        if peer.handle is None:
            peer.handle = _PeerTask()
            self._nursery.start_soon(self._run_peer, peer, peer.handle)
        else:
            peer.handle.event.set()

    def _stop_peer(self, peer: PeerQueue) -> None:
        if peer.handle is not None:
            peer.handle.scope.cancel()
            peer.handle = None

    def _close_inbound(self, node_id: NodeId) -> None:
        for conn in list(self._inbound):
            if conn.node_id == node_id:
                conn.scope.cancel()

    def stats(self) -> dict[str, int]:
        out = super().stats()
        out["connections_in"] = sum(1 for c in self._inbound if c.node_id is not None)
        out["handshakes_pending"] = sum(1 for c in self._inbound if c.node_id is None)
        return out

    # ------------------------------------------------------------------ outbound

    async def _wait_frames(self, peer: PeerQueue, task: _PeerTask) -> None:
        while not peer.frames:
            task.event = trio.Event()
            await task.event.wait()

    async def _run_peer(self, peer: PeerQueue, task: _PeerTask) -> None:
        link = PeerLink(self, peer)
        try:
            with task.scope:
                while True:
                    await self._wait_frames(peer, task)
                    try:
                        with trio.fail_after(self.connect_timeout + self.handshake_timeout):
                            stream, _ = await self._dial(peer)
                    except (*_NET_ERRORS, RemoteProtocolError) as exc:
                        await trio.sleep(link.dial_failed(exc))
                        continue
                    link.connected()
                    try:
                        reason, write_timed_out = await self._pump(peer, task, stream)
                    finally:
                        peer.connected = False
                        await _close(stream)
                    delay = link.lost(reason, write_timed_out=write_timed_out)
                    if delay:
                        await trio.sleep(delay)
        except Exception:  # a bug: log it; the next send starts a new sender
            self.log.exception("sender for node %s failed", peer.node_id)
            self._drop(peer.clear(), "dropped_disconnected")
        finally:
            if peer.handle is task:
                peer.handle = None

    async def _dial(self, peer: PeerQueue) -> tuple[Stream, Hello]:
        host, port = parse_address(peer.address)
        tcp = await trio.open_tcp_stream(host, port)
        stream: Stream = tcp
        try:
            set_socket_options(tcp.socket)
            if self._ssl_client is not None:
                stream = trio.SSLStream(tcp, self._ssl_client, server_hostname=host)
                await stream.do_handshake()
                # The node we dial, not just any holder of a cluster certificate.
                check_certificate(stream.getpeercert(), peer.node_id)
            await stream.send_all(self.hello_frame)
            frame = await _read_frame(stream, FrameDecoder(HELLO_MAX_FRAME))
            try:
                hello = self.check_reply(frame, peer.node_id)
            except HandshakeError as exc:
                await self._send_refusal(stream, exc)
                raise
        except BaseException:
            await _close(stream)
            raise
        return stream, hello

    async def _send_refusal(self, stream: Stream, exc: HandshakeError) -> None:
        """Tell the peer why its identity is refused (best effort) before closing."""
        frame = self.refusal_frame(exc)
        if frame is None:
            return
        with trio.move_on_after(1.0), contextlib.suppress(*_NET_ERRORS):
            await stream.send_all(frame)

    async def probe(self, node_id: NodeId, address: str) -> Hello:
        """Dial ``address``, exchange Hellos, hang up: the Hello of the node
        there (``node_id``). Raises ``OSError``/``TimeoutError`` if it
        cannot be reached, a ``HandshakeError`` if it is not that node or refuses."""
        try:
            with trio.fail_after(self.connect_timeout + self.handshake_timeout):
                stream, hello = await self._dial(PeerQueue(node_id, address))
        except trio.TooSlowError:
            raise TimeoutError(f"no answer from {address} in time") from None
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            # Accepted, then closed before its Hello (e.g. a proxy whose node is down).
            raise ConnectionError(f"{address}: {describe_error(e)}") from None
        await _close(stream)
        return hello

    async def _pump(self, peer: PeerQueue, task: _PeerTask, stream: Stream) -> tuple[str, bool]:
        """Write queued frames until the connection breaks; return why it did, and
        whether it was a write timeout."""
        reason = "closed"
        write_timed_out = False

        async def watch(scope: trio.CancelScope) -> None:
            nonlocal reason
            try:
                data = await stream.receive_some(1)
                reason = "unexpected data from the acceptor" if data else "closed by the peer"
            except _NET_ERRORS as exc:
                reason = describe_error(exc)
            scope.cancel()

        async def write(scope: trio.CancelScope) -> None:
            nonlocal reason, write_timed_out
            counters = self.counters
            try:
                while True:
                    await self._wait_frames(peer, task)
                    batch, count = peer.take_batch()
                    try:
                        try:
                            with trio.fail_after(self.write_timeout):
                                await stream.send_all(batch)
                        except trio.TooSlowError:
                            raise WriteTimeout(
                                f"no write progress within {self.write_timeout} s"
                                " (the peer is not reading)"
                            ) from None
                    except BaseException:
                        self._drop(count, "dropped_disconnected")
                        raise
                    counters["frames_sent"] += count
                    counters["bytes_sent"] += len(batch)
            except WriteTimeout as exc:
                reason, write_timed_out = describe_error(exc), True
            except _NET_ERRORS as exc:
                reason = describe_error(exc)
            scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            nursery.start_soon(write, nursery.cancel_scope)
        return reason, write_timed_out

    # ------------------------------------------------------------------ inbound

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    tcp = await listener.accept()
                except OSError as exc:  # e.g. EMFILE: back off instead of spinning
                    self.log.warning("accept failed: %s", describe_error(exc))
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(self._handle_inbound, tcp)

    async def _handle_inbound(self, tcp: trio.SocketStream) -> None:
        try:
            peername: Any = tcp.socket.getpeername()
        except OSError:  # pragma: no cover - already gone
            peername = "?"
        waiting = [c for c in self._inbound if c.node_id is None]
        if self._overflow(len(waiting), peername):
            oldest = waiting[0]  # the registry keeps arrival order
            del self._inbound[oldest]  # no longer waiting: never picked twice
            oldest.scope.cancel()
        conn = _Inbound()
        self._inbound[conn] = None
        stream: Stream = tcp
        try:
            with conn.scope:
                set_socket_options(tcp.socket)
                if self._ssl_server is not None:
                    stream = trio.SSLStream(tcp, self._ssl_server, server_side=True)
                await self._serve_inbound(conn, stream)
        except (RemoteProtocolError, *_NET_ERRORS) as exc:
            timed_out = isinstance(exc, trio.TooSlowError)
            self._inbound_closed(exc, conn.node_id, peername, timed_out=timed_out)
        except Exception:
            self.log.exception("closing connection from %s after an internal error", peername)
        finally:
            self._inbound.pop(conn, None)
            await _close(stream)

    async def _serve_inbound(self, conn: _Inbound, stream: Stream) -> None:
        decoder = FrameDecoder(HELLO_MAX_FRAME)
        with trio.fail_after(self.handshake_timeout):
            if isinstance(stream, trio.SSLStream):
                await stream.do_handshake()
            tls = isinstance(stream, trio.SSLStream)
            try:
                hello = self.accept_hello(
                    await _read_frame(stream, decoder),
                    stream.getpeercert() if isinstance(stream, trio.SSLStream) else None,
                    tls=tls,
                )
            except HandshakeError as exc:
                await self._send_refusal(stream, exc)
                raise
        sender = hello.node_id
        # A dialler keeps one connection: a new one from the same node replaces the old.
        for other in list(self._inbound):
            if other.node_id == sender and other is not conn:
                other.scope.cancel()
        conn.node_id = sender
        self.counters["accepts"] += 1
        await stream.send_all(self.hello_frame)
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
            data = await stream.receive_some(_READ_SIZE)
            if not data:
                self.log.debug("node %s closed its connection", sender)
                return
            frames = decoder.feed(data)
