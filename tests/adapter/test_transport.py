"""Transports: frames and the Hello check, the in-process network, and both TCP
transports (asyncio and trio run the same scenarios through an ``Env``).

Every wait is a condition with a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from certs import make_certs

from raftcore.adapters._log import NodeLogger
from raftcore.adapters.transport.asyncio_tcp import AsyncioTcpTransport
from raftcore.adapters.transport.frames import (
    DEFAULT_MAX_FRAME,
    HELLO_MAX_FRAME,
    FrameDecoder,
    FrameError,
    UnknownNodeError,
    VersionMismatchError,
    check_hello,
    encode_frame,
    format_address,
    parse_address,
)
from raftcore.adapters.transport.identity import (
    HandshakeError,
    OtherClusterError,
)
from raftcore.adapters.transport.inproc import InProcNetwork
from raftcore.adapters.transport.peers import (
    Backoff,
)
from raftcore.adapters.transport.trio_tcp import TrioTcpTransport
from raftcore.codec import FORMAT_VERSION, EncodeError, Hello, encode_hello, encode_message
from raftcore.entries import normal
from raftcore.errors import ConfigError, RemoteProtocolError
from raftcore.ids import LogId, NodeId, Vote
from raftcore.messages import AppendRequest, AppendResponse, Message, VoteRequest

CLUSTER = "test-cluster"
#: Deadline for any single condition; generous for slow CI machines.
WAIT = 10.0
#: Deadline for a whole TCP scenario.
SCENARIO = 60.0


def append(seq: int, data: Any = b"x") -> AppendRequest:
    entry = normal(LogId(1, 1, seq), data)
    return AppendRequest(Vote(1, 1, True), LogId(1, 1, seq - 1), (entry,), 0, seq, 1.5)


def vote_request(term: int) -> VoteRequest:
    return VoteRequest(Vote(term, 2), LogId(1, 1, 3))


def append_response(seq: int) -> AppendResponse:
    return AppendResponse(Vote(1, 1, True), True, LogId(1, 1, seq), 0, LogId(1, 1, seq), seq, 1.5)


def hello_frame(cluster: str = CLUSTER, node: int = 1, **kw: Any) -> bytes:
    return encode_frame(encode_hello(Hello(cluster, node, **kw)))


class Inbox:
    """A deliver callback that records (sender, message)."""

    def __init__(self) -> None:
        self.got: list[tuple[NodeId, Message]] = []

    def __call__(self, sender: NodeId, msg: Message) -> None:
        self.got.append((sender, msg))

    def seqs(self, sender: NodeId) -> list[int]:
        return [m.seq for s, m in self.got if s == sender and isinstance(m, AppendRequest)]

    def senders(self) -> set[NodeId]:
        return {s for s, _ in self.got}


# =========================================================================== frames


def test_encode_frame_is_length_prefixed() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"


def test_decoder_whole_frames_and_several_per_feed() -> None:
    d = FrameDecoder()
    assert d.feed(encode_frame(b"one") + encode_frame(b"") + encode_frame(b"three")) == [
        b"one",
        b"",
        b"three",
    ]
    assert d.buffered == 0


def test_decoder_split_at_every_byte() -> None:
    payloads = [b"a", b"", b"hello world", bytes(range(256)) * 3]
    stream = b"".join(encode_frame(p) for p in payloads)
    for cut in range(len(stream) + 1):
        d = FrameDecoder()
        assert d.feed(stream[:cut]) + d.feed(stream[cut:]) == payloads
    d = FrameDecoder()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += d.feed(stream[i : i + 1])
    assert out == payloads
    assert d.buffered == 0


def test_decoder_random_chunks() -> None:
    rng = random.Random(7)
    payloads = [rng.randbytes(rng.randrange(0, 3000)) for _ in range(200)]
    stream = b"".join(encode_frame(p) for p in payloads)
    d = FrameDecoder()
    out: list[bytes] = []
    pos = 0
    while pos < len(stream):
        n = rng.randrange(1, 5000)
        out += d.feed(memoryview(stream)[pos : pos + n])
        pos += n
    assert out == payloads


def test_decoder_max_frame_boundary_and_oversized() -> None:
    d = FrameDecoder(max_frame=10)
    assert d.feed(encode_frame(b"x" * 10)) == [b"x" * 10]
    # Refused from the header alone: the payload is never awaited or buffered.
    with pytest.raises(FrameError, match="11 bytes exceeds the limit of 10"):
        d.feed(struct.pack(">I", 11))
    assert d.buffered == 0
    with pytest.raises(FrameError):  # a failed decoder stays failed
        d.feed(encode_frame(b"ok"))
    assert issubclass(FrameError, RemoteProtocolError)


def test_decoder_oversized_after_split_header() -> None:
    d = FrameDecoder(max_frame=100)
    assert d.feed(b"\xff\xff") == []
    with pytest.raises(FrameError):
        d.feed(b"\xff\xff")


def test_decoder_max_frame_can_be_raised() -> None:
    d = FrameDecoder(max_frame=4)
    assert d.feed(encode_frame(b"abcd")) == [b"abcd"]
    d.max_frame = 100
    assert d.feed(encode_frame(b"x" * 50)) == [b"x" * 50]


def test_decoder_rejects_bad_limits() -> None:
    assert FrameDecoder().max_frame == DEFAULT_MAX_FRAME == 16 * 1024 * 1024
    for bad in (0, -1, 2**32):
        with pytest.raises(ConfigError):
            FrameDecoder(bad)


def test_check_hello_accepts_a_known_peer() -> None:
    check_hello(Hello(CLUSTER, 2), CLUSTER, {2, 3})


@pytest.mark.parametrize(
    ("hello", "error", "reason"),
    [
        (Hello("other", 2), OtherClusterError, "other-cluster"),
        (Hello(CLUSTER, 9), UnknownNodeError, "unknown-node"),
        (Hello(CLUSTER, 2, FORMAT_VERSION + 1), VersionMismatchError, "version-mismatch"),
        # The version is checked first: nothing else means anything under another format.
        (Hello("other", 9, FORMAT_VERSION + 1), VersionMismatchError, "version-mismatch"),
    ],
)
def test_check_hello_rejects(hello: Hello, error: type[HandshakeError], reason: str) -> None:
    with pytest.raises(error) as info:
        check_hello(hello, CLUSTER, {2, 3})
    assert info.value.reason == reason
    assert isinstance(info.value, RemoteProtocolError)


def test_addresses() -> None:
    assert parse_address("127.0.0.1:7000") == ("127.0.0.1", 7000)
    assert parse_address("[::1]:80") == ("::1", 80)
    assert parse_address("node-a.local:0") == ("node-a.local", 0)
    assert format_address("::1", 80) == "[::1]:80"
    assert format_address("10.0.0.1", 1) == "10.0.0.1:1"
    for bad in ("nope", "host:", "host:x", "host:70000", 7000):
        with pytest.raises(ConfigError):
            parse_address(bad)  # type: ignore[arg-type]


def test_backoff_grows_caps_jitters_and_resets() -> None:
    b = Backoff(0.1, 1.0, random.Random(3))
    delays = [b.next() for _ in range(8)]
    caps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for d, cap in zip(delays, caps, strict=True):
        assert cap / 2 <= d <= cap
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next() <= 0.1
    with pytest.raises(ConfigError):
        Backoff(0, 1, random.Random())
    with pytest.raises(ConfigError):
        Backoff(2, 1, random.Random())


# =========================================================================== in-process


def run_asyncio(coro: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        await asyncio.wait_for(coro(), SCENARIO)

    asyncio.run(main())


def test_inproc_delivers_synchronously_both_ways() -> None:
    async def scenario() -> None:
        net = InProcNetwork()
        t1, t2 = net.transport(1), net.transport(2)
        in1, in2 = Inbox(), Inbox()
        await t1.start(in1)
        await t2.start(in2)
        t1.send(2, append(1))
        assert in2.got == [(1, append(1))]  # before send returned
        t2.send(1, append_response(1))
        assert in1.got == [(2, append_response(1))]
        assert t1.stats()["frames_sent"] == 1
        assert t1.stats()["frames_received"] == 1
        assert t1.stats()["peers"] == 1
        await t1.aclose()
        await t1.aclose()  # idempotent
        t2.send(1, append(2))
        assert t2.stats()["dropped_unreachable"] == 1
        t1.send(2, append(3))
        assert t1.stats()["dropped_closed"] == 1

    run_asyncio(scenario)


def test_inproc_round_trips_through_the_codec() -> None:
    async def scenario() -> None:
        net = InProcNetwork()
        t1, t2 = net.transport(1), net.transport(2)
        in2 = Inbox()
        await t1.start(Inbox())
        await t2.start(in2)
        msg = append(1, {"key": [1, 2, b"\x00"]})
        t1.send(2, msg)
        ((_, got),) = in2.got
        assert got == msg
        assert got is not msg  # a decoded copy

        class Unencodable:
            pass

        with pytest.raises(EncodeError):
            t1.send(2, append(2, Unencodable()))
        assert len(in2.got) == 1

        raw = InProcNetwork(encode=False)
        r1, r2 = raw.transport(1), raw.transport(2)
        rin = Inbox()
        await r1.start(Inbox())
        await r2.start(rin)
        odd = append(1, Unencodable())
        r1.send(2, odd)
        assert rin.got[0][1] is odd

    run_asyncio(scenario)


def test_inproc_max_frame_drops_large_messages() -> None:
    async def scenario() -> None:
        net = InProcNetwork(max_frame=600)
        t1, t2 = net.transport(1), net.transport(2)
        in2 = Inbox()
        await t1.start(Inbox())
        await t2.start(in2)
        t1.send(2, append(1, b"x" * 1000))
        t1.send(2, append(2, b"small"))
        assert in2.seqs(1) == [2]
        assert t1.stats()["dropped_too_large"] == 1

    run_asyncio(scenario)


def test_inproc_partition_isolate_heal() -> None:
    async def scenario() -> None:
        net = InProcNetwork()
        ts = {n: net.transport(n) for n in (1, 2, 3)}
        inboxes = {n: Inbox() for n in ts}
        for n, t in ts.items():
            await t.start(inboxes[n])
        net.partition(1, 2)
        ts[1].send(2, append(1))
        ts[2].send(1, append(1))
        ts[1].send(3, append(1))
        assert inboxes[2].got == [] and inboxes[1].got == []
        assert inboxes[3].seqs(1) == [1]
        assert ts[1].stats()["dropped_partitioned"] == 1
        net.isolate(3)
        ts[1].send(3, append(2))
        ts[3].send(2, append(2))
        assert inboxes[3].seqs(1) == [1] and inboxes[2].got == []
        assert not net.connected(3, 2) and not net.connected(1, 2) and net.connected(1, 1)
        net.heal()
        ts[1].send(2, append(3))
        ts[3].send(2, append(3))
        assert inboxes[2].seqs(1) == [3] and inboxes[2].seqs(3) == [3]

    run_asyncio(scenario)


def test_inproc_peers_unknown_and_removed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "raftcore.transport")

    async def scenario() -> None:
        net = InProcNetwork()
        t1, t2 = net.transport(1), net.transport(2)
        t3 = net.transport(3, peers=[1])  # explicit: knows only node 1
        inboxes = {1: Inbox(), 2: Inbox(), 3: Inbox()}
        for n, t in ((1, t1), (2, t2), (3, t3)):
            await t.start(inboxes[n])
        t1.send(9, append(1))
        t1.send(9, append(2))
        assert t1.stats()["dropped_unknown_peer"] == 2
        unknown = [r for r in caplog.records if "unknown node 9" in r.getMessage()]
        assert len(unknown) == 1  # logged once
        assert unknown[0].node_id == 1  # type: ignore[attr-defined]
        assert unknown[0].name == "raftcore.transport"
        t3.send(2, append(1))  # node 3 does not know node 2
        assert t3.stats()["dropped_unknown_peer"] == 1
        t2.send(3, append(1))  # node 2 knows 3 (open), 3 refuses 2 like a TCP acceptor
        assert inboxes[3].got == [] and t3.stats()["rejects"] == 1
        t3.set_peer(2, "anything")
        t2.send(3, append(2))
        assert inboxes[3].seqs(2) == [2]
        t1.remove_peer(2)
        t1.send(2, append(1))
        t2.send(1, append(1))
        assert inboxes[2].got == [] and inboxes[1].got == []
        t1.set_peer(2)
        t1.send(2, append(2))
        assert inboxes[2].seqs(1) == [2]

    run_asyncio(scenario)


def test_inproc_serve_under_trio() -> None:
    async def main() -> None:
        net = InProcNetwork()
        t1, t2 = net.transport(1), net.transport(2)
        in2 = Inbox()
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                await nursery.start(t1.serve, Inbox())
                await nursery.start(t2.serve, in2)
                assert t1.running and t2.running
                t1.send(2, vote_request(3))
                assert in2.got == [(1, vote_request(3))]
                nursery.cancel_scope.cancel()
        assert not t1.running
        t1.send(2, vote_request(4))
        assert t1.stats()["dropped_closed"] == 1

    trio.run(main)


# =========================================================================== TCP: environments


class Env:
    """Runs a TCP scenario under one framework; scenarios use only this API."""

    name = ""
    tcp: Callable[..., Any]

    def run(self, scenario: Callable[[Env], Awaitable[None]]) -> None:
        raise NotImplementedError

    def make(self, node_id: NodeId, peers: dict[NodeId, str] | None = None, **kw: Any) -> Any:
        kw.setdefault("listen", "127.0.0.1:0")
        kw.setdefault("backoff", (0.01, 0.1))
        kw.setdefault("rng", random.Random(node_id))
        listen = kw.pop("listen")
        cluster = kw.pop("cluster", CLUSTER)
        return self.tcp(node_id, cluster, listen, peers or {}, **kw)

    async def start(self, t: Any, deliver: Callable[[NodeId, Message], None]) -> None:
        raise NotImplementedError

    async def stop(self, t: Any) -> None:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        raise NotImplementedError

    async def to_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    async def wait_until(self, cond: Callable[[], bool], timeout: float = WAIT) -> None:
        """Poll ``cond`` (cheap) until true; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            await self.sleep(0.002)

    async def send_until(
        self, t: Any, to: NodeId, make: Callable[[int], Message], cond: Callable[[], bool]
    ) -> int:
        """Send fresh messages until ``cond`` holds (each may be lost while reconnecting)."""
        deadline = time.monotonic() + WAIT
        i = 0
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {WAIT} s")
            i += 1
            t.send(to, make(i))
            for _ in range(10):
                if cond():
                    break
                await self.sleep(0.005)
        return i

    async def pair(
        self,
        *,
        tls_a: dict[str, Any] | None = None,
        tls_b: dict[str, Any] | None = None,
        **kw: Any,
    ) -> tuple[Any, Inbox, Any, Inbox]:
        """Nodes 1 and 2, each knowing the other (``tls_a``/``tls_b``: each one's TLS)."""
        a, b = self.make(1, **kw, **(tls_a or {})), self.make(2, **kw, **(tls_b or {}))
        ina, inb = Inbox(), Inbox()
        await self.start(a, ina)
        await self.start(b, inb)
        a.set_peer(2, b.listen_address)
        b.set_peer(1, a.listen_address)
        return a, ina, b, inb


class AsyncioEnv(Env):
    name = "asyncio"
    tcp = AsyncioTcpTransport

    def run(self, scenario: Callable[[Env], Awaitable[None]]) -> None:
        async def main() -> None:
            self._started: list[Any] = []
            try:
                await asyncio.wait_for(scenario(self), SCENARIO)
            finally:
                for t in self._started:
                    await asyncio.wait_for(t.aclose(), 5)

        asyncio.run(main())

    async def start(self, t: Any, deliver: Callable[[NodeId, Message], None]) -> None:
        await t.start(deliver)
        self._started.append(t)

    async def stop(self, t: Any) -> None:
        await asyncio.wait_for(t.aclose(), 5)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def to_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)


class TrioEnv(Env):
    name = "trio"
    tcp = TrioTcpTransport

    def run(self, scenario: Callable[[Env], Awaitable[None]]) -> None:
        async def main() -> None:
            self._running: dict[int, tuple[trio.CancelScope, trio.Event]] = {}
            with trio.fail_after(SCENARIO):
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await scenario(self)
                    nursery.cancel_scope.cancel()

        trio.run(main)

    async def start(self, t: Any, deliver: Callable[[NodeId, Message], None]) -> None:
        scope, done = trio.CancelScope(), trio.Event()

        async def runner(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                with scope:
                    await t.serve(deliver, task_status=task_status)
            finally:
                done.set()

        await self._nursery.start(runner)
        self._running[id(t)] = (scope, done)

    async def stop(self, t: Any) -> None:
        scope, done = self._running.pop(id(t))
        scope.cancel()
        with trio.fail_after(5):
            await done.wait()

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    async def to_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args)


ENVS = [AsyncioEnv(), TrioEnv()]
envs = pytest.mark.parametrize("env", ENVS, ids=lambda e: e.name)


# =========================================================================== raw clients


def raw_client(
    address: str,
    payload: bytes,
    then: bytes = b"",
    *,
    tls: ssl.SSLContext | None = None,
    timeout: float = WAIT,
) -> tuple[str, bytes]:
    """Connect, send ``payload``, read until the server closes; (how it ended, bytes read).

    With ``then``: send it once the server's Hello (one frame) has arrived.
    Runs in a worker thread (plain blocking sockets). "closed" means the
    server closed the connection; anything else is an error name.
    """
    host, port = parse_address(address)
    received = b""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock: socket.socket = raw
        try:
            if tls is not None:
                sock = tls.wrap_socket(raw, server_hostname=host)
            sock.sendall(payload)
            while True:
                if then and len(received) >= 4:
                    (n,) = struct.unpack_from(">I", received)
                    if len(received) >= 4 + n:
                        sock.sendall(then)
                        then = b""
                data = sock.recv(65536)
                if not data:
                    return "closed", received
                received += data
        except TimeoutError:
            return "timeout", received
        except (OSError, ssl.SSLError) as exc:
            return type(exc).__name__, received
        finally:
            sock.close()


# =========================================================================== TCP scenarios


@envs
def test_tcp_exchange_both_ways(env: Env) -> None:
    async def scenario(env: Env) -> None:
        a, ina, b, inb = await env.pair()
        for i in range(1, 201):
            a.send(2, append(i, b"payload-%d" % i))
        b.send(1, vote_request(5))
        for i in range(1, 51):
            b.send(1, append_response(i))
        # A sender counts a frame once its write returns, which can be after
        # the receiver already delivered it: wait for the counters too.
        await env.wait_until(
            lambda: (
                len(inb.got) == 200
                and len(ina.got) == 51
                and a.stats()["frames_sent"] == 200
                and b.stats()["frames_sent"] == 51
            )
        )
        assert inb.seqs(1) == list(range(1, 201))  # in order, from node 1
        assert inb.got[7] == (1, append(8, b"payload-8"))
        assert ina.got[0] == (2, vote_request(5))
        assert [m.seq for _, m in ina.got[1:]] == list(range(1, 51))  # type: ignore[union-attr]
        sa, sb = a.stats(), b.stats()
        assert sa["frames_sent"] == 200 and sb["frames_received"] == 200
        assert sb["frames_sent"] == 51 and sa["frames_received"] == 51
        assert sa["bytes_sent"] == sb["bytes_received"]
        assert sa["connects"] == 1 and sa["accepts"] == 1
        assert sa["connections_out"] == 1 and sa["connections_in"] == 1
        assert sa["frames_dropped"] == 0 and sb["frames_dropped"] == 0
        assert sa["queued"] == 0 and sa["peers"] == 1

    env.run(scenario)


@envs
def test_tcp_send_before_start_is_queued(env: Env) -> None:
    async def scenario(env: Env) -> None:
        b, inb = env.make(2), Inbox()
        await env.start(b, inb)
        a = env.make(1, {2: b.listen_address})
        b.set_peer(1, "127.0.0.1:9")  # b must know a to accept it; never dialled
        a.send(2, append(1))
        assert a.stats()["queued"] == 1
        await env.start(a, Inbox())
        await env.wait_until(lambda: inb.seqs(1) == [1])

    env.run(scenario)


@envs
def test_tcp_reconnects_after_the_peer_restarts(env: Env) -> None:
    async def scenario(env: Env) -> None:
        a, _, b, inb = await env.pair()
        a.send(2, append(1))
        await env.wait_until(lambda: inb.seqs(1) == [1])
        address = b.listen_address
        await env.stop(b)
        await env.wait_until(lambda: a.stats()["connections_out"] == 0)  # noticed at once
        a.send(2, append(2))  # dropped while b is down (counted)
        await env.wait_until(lambda: a.stats()["connect_failures"] >= 1)
        assert a.stats()["dropped_disconnected"] >= 1
        b2, inb2 = env.make(2, {1: a.listen_address}, listen=address), Inbox()
        await env.start(b2, inb2)
        await env.send_until(a, 2, lambda i: append(100 + i), lambda: bool(inb2.got))
        assert a.stats()["connects"] == 2
        assert a.stats()["disconnects"] == 1

    env.run(scenario)


@envs
def test_tcp_peer_moves_to_a_new_address(env: Env) -> None:
    async def scenario(env: Env) -> None:
        a, _, b, inb = await env.pair()
        a.send(2, append(1))
        await env.wait_until(lambda: inb.seqs(1) == [1])
        await env.stop(b)
        b2, inb2 = env.make(2, {1: a.listen_address}), Inbox()
        await env.start(b2, inb2)
        a.set_peer(2, b2.listen_address)
        a.send(2, append(2))
        await env.wait_until(lambda: inb2.seqs(1) == [2])

    env.run(scenario)


@envs
def test_tcp_remove_peer_closes_both_directions(env: Env) -> None:
    async def scenario(env: Env) -> None:
        a, ina, b, inb = await env.pair()
        a.send(2, append(1))
        b.send(1, append(1))
        await env.wait_until(lambda: bool(ina.got) and bool(inb.got))
        a.remove_peer(2)
        await env.wait_until(
            lambda: a.stats()["connections_in"] == 0 and b.stats()["connections_in"] == 0
        )
        a.send(2, append(2))
        assert a.stats()["dropped_unknown_peer"] == 1
        # b redials, and a refuses it now: node 2 is no longer a known peer of a.
        await env.send_until(b, 1, append, lambda: a.stats()["rejects"] >= 1)
        assert ina.seqs(2) == [1]

    env.run(scenario)


@envs
def test_tcp_dialler_checks_it_reached_the_right_node(env: Env) -> None:
    async def scenario(env: Env) -> None:
        c, inc = env.make(3, {1: "127.0.0.1:9"}), Inbox()
        await env.start(c, inc)
        a = env.make(1, {2: c.listen_address})  # wrong address for node 2
        await env.start(a, Inbox())
        a.send(2, append(1))
        await env.wait_until(lambda: a.stats()["connect_failures"] >= 1)
        assert inc.got == []
        assert a.stats()["connects"] == 0

    env.run(scenario)


#: What a raw client sends: (first, then after the server's Hello arrives).
BAD_INPUTS: dict[str, tuple[bytes, bytes]] = {
    "garbage-hello": (encode_frame(b"\xff\x00 not cbor \x13\x37"), b""),
    "message-as-hello": (encode_frame(encode_message(append(1))), b""),
    "oversized-hello": (struct.pack(">I", HELLO_MAX_FRAME + 1) + b"x" * 100, b""),
    "other-cluster": (hello_frame(cluster="someone-else", node=3), b""),
    "unknown-node": (hello_frame(node=99), b""),
    "own-node-id": (hello_frame(node=2), b""),
    "version-mismatch": (hello_frame(node=3, version=FORMAT_VERSION + 1), b""),
    "silent": (b"", b""),
    "garbage-message": (hello_frame(node=3), encode_frame(b"\xff\xfe\xfd garbage")),
    "hello-as-message": (hello_frame(node=3), hello_frame(node=3)),
    "oversized-message": (hello_frame(node=3), struct.pack(">I", 8192 + 1) + b"x" * 100),
}
#: The reason each is logged with (and a detail of the message).
REASONS = {
    "garbage-hello": ("bad-hello", "invalid CBOR"),
    "message-as-hello": ("bad-hello", "expected record tag 9"),
    "oversized-hello": ("frame-too-large", f"exceeds the limit of {HELLO_MAX_FRAME}"),
    "other-cluster": ("other-cluster", "'someone-else'"),
    "unknown-node": ("unknown-node", "node 99 is not a known peer"),
    "own-node-id": ("unknown-node", "node 2 is not a known peer"),
    "version-mismatch": ("version-mismatch", f"version {FORMAT_VERSION + 1}"),
    "silent": ("handshake-timeout", "no Hello within 0.5 s"),
    "garbage-message": ("bad-message", "from node 3"),
    "hello-as-message": ("bad-message", "expected a message record"),
    "oversized-message": ("frame-too-large", "exceeds the limit of 8192"),
}


@envs
@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_tcp_bad_input_closes_only_that_connection(
    env: Env, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "raftcore.transport")

    async def scenario(env: Env) -> None:
        a, _, b, inb = await env.pair(max_frame=8192, handshake_timeout=0.5)
        b.set_peer(3, "127.0.0.1:9")  # the raw client claims to be node 3 (never dialled)
        a.send(2, append(1))
        await env.wait_until(lambda: inb.seqs(1) == [1])
        ended, _ = await env.to_thread(raw_client, b.listen_address, *BAD_INPUTS[kind])
        assert ended in ("closed", "ConnectionResetError")
        assert b.stats()["rejects"] == 1
        # Everything else keeps working: the good peer's connection and new ones.
        a.send(2, append(2))
        await env.wait_until(lambda: inb.seqs(1) == [1, 2])
        assert inb.senders() == {1}
        records = [r for r in caplog.records if "closing connection" in r.getMessage()]
        assert len(records) >= 1
        record = records[0]
        assert record.name == "raftcore.transport"
        assert record.node_id == 2  # type: ignore[attr-defined]
        assert record.levelno == logging.WARNING
        reason, detail = REASONS[kind]
        assert f": {reason}: " in record.getMessage() and detail in record.getMessage()

    env.run(scenario)


@envs
def test_a_flood_of_refused_connections_logs_one_warning_per_kind(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "raftcore.transport")

    async def scenario(env: Env) -> None:
        _, _, b, _ = await env.pair()
        for _ in range(5):
            await env.to_thread(raw_client, b.listen_address, *BAD_INPUTS["other-cluster"])
        await env.to_thread(raw_client, b.listen_address, *BAD_INPUTS["garbage-hello"])
        await env.wait_until(lambda: b.stats()["rejects"] == 6)
        closing = [r for r in caplog.records if "closing connection" in r.getMessage()]
        warned = [r.getMessage() for r in closing if r.levelno == logging.WARNING]
        assert len(closing) == 6 and len(warned) == 2, warned  # one per kind
        assert ": other-cluster: " in warned[0]

    env.run(scenario)


def _connect_and_handshake(address: str, node: int) -> socket.socket:
    sock = socket.create_connection(parse_address(address), timeout=WAIT)
    sock.sendall(hello_frame(node=node))
    header = sock.recv(4, socket.MSG_WAITALL)
    (n,) = struct.unpack(">I", header)
    sock.recv(n, socket.MSG_WAITALL)  # the acceptor's Hello: handshake done
    return sock


def replaced_connection(address: str) -> bytes:
    """Two handshakes as node 3; what the first connection reads next (b"" = closed)."""
    first = _connect_and_handshake(address, 3)
    second = _connect_and_handshake(address, 3)
    try:
        return first.recv(1)
    finally:
        first.close()
        second.close()


@envs
def test_tcp_new_connection_from_a_node_replaces_its_old_one(env: Env) -> None:
    async def scenario(env: Env) -> None:
        b = env.make(2, {3: "127.0.0.1:9"})
        await env.start(b, Inbox())
        assert await env.to_thread(replaced_connection, b.listen_address) == b""
        assert b.stats()["accepts"] == 2 and b.stats()["rejects"] == 0

    env.run(scenario)


@envs
def test_tcp_queue_overflow_drops_and_counts(env: Env) -> None:
    async def scenario(env: Env) -> None:
        b, inb = env.make(2), Inbox()
        await env.start(b, inb)
        a = env.make(1, {2: b.listen_address}, queue_size=4)
        b.set_peer(1, "127.0.0.1:9")
        await env.start(a, Inbox())
        for i in range(1, 11):  # no checkpoint in between: the sender cannot drain yet
            a.send(2, append(i))
        s = a.stats()
        assert s["dropped_queue_full"] == 6 and s["frames_dropped"] == 6 and s["queued"] == 4
        await env.wait_until(lambda: len(inb.got) == 4)
        assert inb.seqs(1) == [1, 2, 3, 4]
        size = len(encode_frame(encode_message(append(1, b"x" * 200))))
        big = env.make(5, {2: "127.0.0.1:9"}, queue_bytes=size + 10)
        big.send(2, append(1, b"x" * 200))
        big.send(2, append(2, b"x" * 200))
        assert big.stats()["dropped_queue_full"] == 1 and big.stats()["queued"] == 1

    env.run(scenario)


@envs
def test_tcp_send_drops_unknown_oversized_and_unencodable(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "raftcore.transport")
    t = env.make(1, {2: "127.0.0.1:9"}, max_frame=1024)
    t.send(7, append(1))
    t.send(7, append(2))
    assert t.stats()["dropped_unknown_peer"] == 2
    assert sum("unknown node 7" in r.getMessage() for r in caplog.records) == 1
    t.send(2, append(3, b"x" * 2000))
    assert t.stats()["dropped_too_large"] == 1
    t.send(2, append(4, object()))
    assert t.stats()["dropped_unencodable"] == 1
    assert t.stats()["frames_dropped"] == 4 and t.stats()["queued"] == 0
    t.send(2, append(5))
    assert t.stats()["queued"] == 1
    t.set_peer(1, "127.0.0.1:1")  # itself: ignored
    assert t.stats()["peers"] == 1
    with pytest.raises(ConfigError):
        t.set_peer(3, "no port")
    with pytest.raises(ConfigError):
        env.make(0)
    with pytest.raises(ConfigError):
        env.make(1, cluster="")


@envs
def test_tcp_close_with_dead_peers_does_not_hang(env: Env) -> None:
    async def scenario(env: Env) -> None:
        # Node 2 accepts the TCP connection and never answers the Hello;
        # node 3 refuses connections (the sender sleeps in back-off).
        silent = socket.create_server(("127.0.0.1", 0))
        accepted: list[socket.socket] = []
        got_one = threading.Event()

        def accept() -> None:
            conn, _ = silent.accept()
            accepted.append(conn)
            got_one.set()

        refused = socket.create_server(("127.0.0.1", 0))
        refused_address = format_address(*refused.getsockname()[:2])
        refused.close()
        try:
            peers = {2: format_address(*silent.getsockname()[:2]), 3: refused_address}
            a = env.make(1, peers, backoff=(30.0, 60.0), handshake_timeout=60.0)
            await env.start(a, Inbox())
            acceptor = env.to_thread(accept)
            a.send(2, append(1))
            a.send(3, append(1))
            await acceptor
            await env.wait_until(lambda: a.stats()["connect_failures"] >= 1)  # node 3
            started = time.monotonic()
            await env.stop(a)
            assert time.monotonic() - started < 2.0
            assert a.stats()["connections_out"] == 0
            a.send(2, append(2))
            assert a.stats()["dropped_closed"] >= 1
        finally:
            silent.close()
            for conn in accepted:
                conn.close()

    env.run(scenario)


@envs
def test_tcp_restart_same_object(env: Env) -> None:
    async def scenario(env: Env) -> None:
        a, _, _, inb = await env.pair()
        a.send(2, append(1))
        await env.wait_until(lambda: inb.seqs(1) == [1])
        await env.stop(a)
        if isinstance(a, AsyncioTcpTransport):
            await a.aclose()  # idempotent
        await env.start(a, Inbox())
        await env.send_until(a, 2, lambda i: append(10 + i), lambda: len(inb.got) >= 2)

    env.run(scenario)


# =========================================================================== misbehaving peers


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data


class FakePeer:
    """A listener in a thread that plays node 2: it reads each dialler's Hello and
    answers it, then either closes at once (``close_after_hello``) or keeps the
    connection open and never reads again. Counts the dials."""

    def __init__(self, *, close_after_hello: bool, rcvbuf: int | None = None) -> None:
        self.close_after_hello = close_after_hello
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # inherited by accepted sockets: a small window
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.02)
        self.address = format_address(*self.sock.getsockname()[:2])
        self.dials = 0
        self.handshakes = 0
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.dials += 1
            conn.settimeout(WAIT)
            try:
                (n,) = struct.unpack(">I", _recv_exact(conn, 4))
                _recv_exact(conn, n)  # the dialler's Hello
                conn.sendall(hello_frame(node=2))
                self.handshakes += 1
            except (OSError, EOFError):
                conn.close()
                continue
            if self.close_after_hello:
                conn.close()
            else:
                self.held.append(conn)  # open, and never read again

    def close(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        self.sock.close()
        for conn in self.held:
            conn.close()


@envs
def test_tcp_peer_that_closes_after_the_handshake_is_redialled_with_backoff(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "raftcore.transport")

    async def scenario(env: Env) -> None:
        fake = FakePeer(close_after_hello=True)
        try:
            a = env.make(1, {2: fake.address}, backoff=(0.05, 0.5))
            await env.start(a, Inbox())
            # Raft sends all the time; each send used to trigger a new dial.
            until = time.monotonic() + 1.0
            sends = 0
            while time.monotonic() < until:
                a.send(2, append(1))
                sends += 1
                await env.sleep(0.005)
            dials = fake.dials
            assert a.stats()["connects"] >= 2  # the handshakes did succeed
            # Back-off 25-50 ms, doubling to 0.5 s: at most ~7 dials in the second.
            assert 2 <= dials <= 12, (dials, sends)
            assert a.stats()["disconnects"] >= 1
        finally:
            fake.close()
        loud = [
            r for r in caplog.records if r.levelno >= logging.INFO and "node 2" in r.getMessage()
        ]
        assert len(loud) <= 3, [r.getMessage() for r in loud]  # one per episode, not per dial

    env.run(scenario)


@envs
def test_tcp_stable_connection_resets_the_backoff(env: Env) -> None:
    async def scenario(env: Env) -> None:
        a, _, b, inb = await env.pair(backoff=(5.0, 10.0), stable_after=0.0)
        a.send(2, append(1))
        await env.wait_until(lambda: inb.seqs(1) == [1])
        address = b.listen_address
        await env.stop(b)
        await env.wait_until(lambda: a.stats()["disconnects"] == 1)
        b2, inb2 = env.make(2, {1: a.listen_address}, listen=address), Inbox()
        await env.start(b2, inb2)
        # Up long enough (stable_after=0): redialled at once, not after 5 s of back-off.
        await env.send_until(a, 2, lambda i: append(100 + i), lambda: bool(inb2.got))
        assert a.stats()["connects"] == 2 and a.stats()["connect_failures"] == 0

    env.run(scenario)


@envs
def test_tcp_write_timeout_cuts_off_a_peer_that_stops_reading(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "raftcore.transport")

    async def scenario(env: Env) -> None:
        deaf = FakePeer(close_after_hello=False, rcvbuf=4096)
        try:
            a = env.make(1, {2: deaf.address}, write_timeout=0.3, backoff=(0.05, 0.1))
            await env.start(a, Inbox())
            big = b"x" * (1024 * 1024)
            # Far more than the socket buffers hold: the sender blocks in its write.
            for i in range(1, 25):
                a.send(2, append(i, big))
            await env.wait_until(lambda: a.stats()["write_timeouts"] == 1)
            s = a.stats()
            assert deaf.handshakes == 1
            assert s["dropped_disconnected"] >= 1 and s["frames_dropped"] >= 1
            assert s["frames_sent"] + s["frames_dropped"] == 24 and s["queued"] == 0
            records = [r for r in caplog.records if "no write progress" in r.getMessage()]
            assert records and records[0].levelno == logging.WARNING
            assert "dropped" in records[0].getMessage()
            # The connection was closed, and the next message dials again (after back-off).
            a.send(2, append(25))
            await env.wait_until(lambda: deaf.handshakes == 2 and a.stats()["connects"] == 2)
        finally:
            deaf.close()

    env.run(scenario)


@envs
def test_tcp_idle_handshakes_cannot_lock_peers_out(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "raftcore.transport")

    async def scenario(env: Env) -> None:
        b = env.make(2, {1: "127.0.0.1:9"}, max_pending_handshakes=2, handshake_timeout=WAIT)
        inb = Inbox()
        await env.start(b, inb)
        silent = [socket.create_connection(parse_address(b.listen_address)) for _ in range(2)]
        try:
            await env.wait_until(lambda: b.stats()["handshakes_pending"] == 2)
            # A real peer while idle connections fill the slots: the oldest
            # idle one is closed to make room, and the peer gets through at
            # once (not after handshake_timeout).
            a = env.make(1, {2: b.listen_address})
            await env.start(a, Inbox())
            a.send(2, append(1))
            await env.wait_until(lambda: inb.seqs(1) == [1])
            assert b.stats()["handshake_overflow"] == 1
            silent[0].settimeout(WAIT)
            assert silent[0].recv(1) == b""  # the oldest idle connection: closed
            more = [socket.create_connection(parse_address(b.listen_address)) for _ in range(3)]
            silent += more
            await env.wait_until(lambda: b.stats()["handshake_overflow"] == 3)
            await env.wait_until(lambda: b.stats()["handshakes_pending"] == 2)
            warnings = [r for r in caplog.records if "too-many-handshakes" in r.getMessage()]
            assert [r.levelno for r in warnings] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
        finally:
            for sock in silent:
                sock.close()
        await env.wait_until(lambda: b.stats()["handshakes_pending"] == 0)
        a.send(2, append(2))
        await env.wait_until(lambda: inb.seqs(1) == [1, 2])

    env.run(scenario)


@pytest.mark.parametrize(
    "bad",
    [
        {"write_timeout": 0},
        {"max_pending_handshakes": 0},
        {"max_pending_handshakes": 1.5},
        {"stable_after": -1},
    ],
)
def test_tcp_new_options_are_validated(bad: dict[str, Any]) -> None:
    for env in ENVS:
        with pytest.raises(ConfigError):
            env.make(1, **bad)


def test_transport_logs_through_the_shared_node_logger() -> None:
    t = AsyncioTcpTransport(3, CLUSTER, "127.0.0.1:0", {})
    assert isinstance(t.log, NodeLogger)
    assert t.log.logger.name == "raftcore.transport" and t.log.extra == {"node_id": 3}


# =========================================================================== TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A throwaway CA and a certificate per node (tests/adapter/certs.py)."""
    yield make_certs(tmp_path_factory.mktemp("certs"), (1, 2, 3))


def server_context(certs: dict[str, Path], node: int) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs["ca"])
    ctx.load_cert_chain(certs[f"cert{node}"], certs[f"key{node}"])
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual: the dialler must show a certificate
    return ctx


def client_context(certs: dict[str, Path], node: int | None) -> ssl.SSLContext:
    """``node``'s client context (``None``: no client certificate)."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=certs["ca"])
    if node is not None:
        ctx.load_cert_chain(certs[f"cert{node}"], certs[f"key{node}"])
    return ctx


def tls_of(certs: dict[str, Path], node: int) -> dict[str, ssl.SSLContext]:
    return {"ssl_server": server_context(certs, node), "ssl_client": client_context(certs, node)}


@envs
def test_tcp_mutual_tls(env: Env, certs: dict[str, Path]) -> None:
    async def scenario(env: Env) -> None:
        a, ina, b, inb = await env.pair(tls_a=tls_of(certs, 1), tls_b=tls_of(certs, 2))
        for i in range(1, 51):
            a.send(2, append(i))
        b.send(1, vote_request(2))
        await env.wait_until(lambda: len(inb.got) == 50 and len(ina.got) == 1)
        assert inb.seqs(1) == list(range(1, 51))
        # No client certificate: refused, and no message gets through.
        no_cert = client_context(certs, None)
        ended, received = await env.to_thread(
            lambda: raw_client(
                b.listen_address,
                hello_frame(node=1) + encode_frame(encode_message(append(99))),
                tls=no_cert,
            )
        )
        assert ended != "timeout" and received == b""
        # Plain TCP to a TLS listener: refused too.
        ended, received = await env.to_thread(raw_client, b.listen_address, hello_frame(node=1))
        assert ended != "timeout" and received == b""
        await env.wait_until(lambda: b.stats()["rejects"] == 2)  # logged and counted
        # A TLS dialler that does not trust the server's CA cannot connect.
        c = env.make(3, {2: b.listen_address}, ssl_client=ssl.create_default_context())
        b.set_peer(3, "127.0.0.1:9")
        await env.start(c, Inbox())
        c.send(2, append(1))
        await env.wait_until(lambda: c.stats()["connect_failures"] >= 1)
        a.send(2, append(51))
        await env.wait_until(lambda: inb.seqs(1)[-1:] == [51])
        assert inb.senders() == {1}

    env.run(scenario)


@envs
def test_a_certificate_names_its_node_and_no_other(env: Env, certs: dict[str, Path]) -> None:
    """A valid certificate of node 3 cannot pass for node 1 (a forged append
    from it is refused and delivers nothing), and a dialler that reaches a
    node claiming to be the one it dialled, with another node's certificate,
    refuses it before saying anything."""

    async def scenario(env: Env) -> None:
        a, _, b, inb = await env.pair(tls_a=tls_of(certs, 1), tls_b=tls_of(certs, 2))
        b.set_peer(3, "127.0.0.1:9")
        ended, received = await env.to_thread(
            lambda: raw_client(
                b.listen_address,
                hello_frame(node=1),
                then=encode_frame(encode_message(append(99))),
                tls=client_context(certs, 3),
            )
        )
        assert ended != "timeout" and received == b""  # refused before b's Hello
        await env.wait_until(lambda: b.stats()["rejects"] == 1)
        assert inb.got == []
        # An impostor: it says it is node 2 but holds node 3's certificate.
        impostor = env.make(
            2, {1: a.listen_address}, ssl_server=server_context(certs, 3),
            ssl_client=client_context(certs, 3),
        )  # fmt: skip
        fooled = Inbox()
        await env.start(impostor, fooled)
        a.set_peer(2, impostor.listen_address)
        a.send(2, append(1))
        await env.wait_until(lambda: a.stats()["connect_failures"] >= 1)
        assert fooled.got == [] and impostor.stats()["accepts"] == 0
        # The real node 2: accepted.
        a.set_peer(2, b.listen_address)
        a.send(2, append(2))
        await env.wait_until(lambda: inb.seqs(1)[-1:] == [2])
        assert fooled.got == []

    env.run(scenario)
