"""The chaos harness's parts on their own: the proxy on real loopback sockets,
the client's classification of answers, and the checker on made-up histories."""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from raftcore.adapters.kv.chaos.checker import FINAL_CLIENT, check
from raftcore.adapters.kv.chaos.history import (
    History,
    OpRecord,
    OpType,
    Outcome,
    Verdict,
    classify,
)
from raftcore.adapters.kv.chaos.journal import Journal
from raftcore.adapters.kv.chaos.nemesis import KINDS, Deck
from raftcore.adapters.kv.chaos.proxy import (
    Blocks,
    HelloError,
    RaftProxy,
    hello_source,
    isolate,
    one_way,
    split,
)
from raftcore.adapters.kv.chaos.workload import OpClient
from raftcore.adapters.kv.testing import free_ports
from raftcore.adapters.transport.frames import (
    encode_frame,
)
from raftcore.codec import Hello, encode_hello

TIMEOUT = 5.0


def hello_frame(node_id: int) -> bytes:
    return encode_frame(encode_hello(Hello("chaos-test", node_id)))


# -- which pairs are blocked -------------------------------------------------------------


def test_partition_shapes() -> None:
    assert isolate(1, [1, 2, 3]) == {(1, 2), (2, 1), (1, 3), (3, 1)}
    out = one_way([1], [2, 3])
    assert out == {(1, 2), (1, 3)}
    blocks = Blocks()
    blocks.set(out)
    assert blocks.blocked(1, 2) and not blocks.blocked(2, 1)
    # A bridge: 1 and 3 cannot talk; 2 talks to both.
    assert split([1], [3]) == {(1, 3), (3, 1)}
    blocks.heal()
    assert not blocks.pairs


def test_hello_source_reads_the_dialler_id() -> None:
    assert hello_source(hello_frame(7)) == 7
    with pytest.raises(HelloError):
        hello_source(encode_frame(b"\xa1\x01\x02"))  # CBOR, but no Hello
    with pytest.raises(HelloError):
        hello_source(struct.pack(">I", 1 << 20))  # too large for a Hello
    with pytest.raises(HelloError):
        hello_source(hello_frame(7)[:-1])  # truncated


# -- the proxy on real sockets -------------------------------------------------------------


class FakeNode:
    """An acceptor: answers each Hello with its own, then records what arrives."""

    def __init__(self) -> None:
        self.received: dict[int, bytearray] = {}
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n = self.connections
        self.received[n] = bytearray()
        writer.write(hello_frame(1))
        try:
            while data := await reader.read(65536):
                self.received[n] += data
        except OSError:
            pass
        finally:
            writer.close()


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def read_some(reader: asyncio.StreamReader, n: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), TIMEOUT)


async def is_cut(reader: asyncio.StreamReader) -> bool:
    """True once the connection is closed or reset (no data is expected)."""
    try:
        data = await asyncio.wait_for(reader.read(1), TIMEOUT)
    except ConnectionError:
        return True
    return data == b""


@asynccontextmanager
async def proxied() -> AsyncIterator[tuple[FakeNode, RaftProxy, Blocks, str]]:
    node = FakeNode()
    listen_port, node_port = free_ports(2)
    node.server = await asyncio.start_server(node.handle, "127.0.0.1", node_port)
    blocks = Blocks()
    proxy = RaftProxy(
        1, f"127.0.0.1:{listen_port}", f"127.0.0.1:{node_port}", blocks, Journal(None, 0.0)
    )
    await proxy.start()
    try:
        yield node, proxy, blocks, f"127.0.0.1:{listen_port}"
    finally:
        await proxy.aclose()
        node.server.close()


async def dial(addr: str, src: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(hello_frame(src))
    return reader, writer


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 30.0))


def test_proxy_forwards_both_ways_after_the_hello() -> None:
    async def scenario() -> None:
        async with proxied() as (node, proxy, _, addr):
            reader, writer = await dial(addr, 2)
            reply = hello_frame(1)
            assert await read_some(reader, len(reply)) == reply  # the node's Hello, back
            message = encode_frame(b"x" * 100_000)
            writer.write(message)
            expected = hello_frame(2) + message
            await wait_for(
                lambda: bytes(node.received.get(1, b"")) == expected, "the bytes at the node"
            )
            assert proxy.accepted == 1 and proxy.links and next(iter(proxy.links)).src == 2
            writer.close()
            await wait_for(lambda: not proxy.links, "the link to close")

    run(scenario)


def test_blocking_a_source_cuts_it_and_refuses_it_until_healed() -> None:
    async def scenario() -> None:
        async with proxied() as (node, proxy, blocks, addr):
            r2, w2 = await dial(addr, 2)
            r3, w3 = await dial(addr, 3)
            await read_some(r2, len(hello_frame(1)))
            await read_some(r3, len(hello_frame(1)))
            await wait_for(lambda: len(proxy.links) == 2, "two links")

            blocks.set(one_way([2], [1]))  # 2 -> 1 blocked; 3 -> 1 still flows
            assert await is_cut(r2)
            w3.write(b"still here")
            await wait_for(lambda: node.received[2].endswith(b"still here"), "3's bytes")
            assert proxy.cut == 1

            before = node.connections
            r2b, _ = await dial(addr, 2)
            assert await is_cut(r2b)  # reset right after its Hello
            assert proxy.refused == 1 and node.connections == before

            blocks.heal()
            r2c, w2c = await dial(addr, 2)
            await read_some(r2c, len(hello_frame(1)))
            assert node.connections == before + 1
            for w in (w2, w3, w2c):
                w.close()

    run(scenario)


def test_a_bad_hello_is_reset_and_never_reaches_the_node() -> None:
    async def scenario() -> None:
        async with proxied() as (node, _, _, addr):
            host, port = addr.rsplit(":", 1)
            for first in (encode_frame(b"\xa1\x01\x02"), struct.pack(">I", 1 << 20)):
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(first)
                assert await is_cut(reader)
                writer.close()
            assert node.connections == 0

    run(scenario)


# -- classifying answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "status", "body", "verdict"),
    [
        (OpType.PUT, 200, {"ok": True, "previous": None}, Verdict.OK),
        (OpType.GET, 200, {"value": "v"}, Verdict.OK),
        (OpType.GET, 404, {"error": "not_found"}, Verdict.OK),
        (OpType.PUT, 307, {"error": "not_leader", "leader_http": "h:1"}, Verdict.RETRY),
        (OpType.PUT, 503, {"error": "no_leader"}, Verdict.RETRY),
        (OpType.DELETE, 503, {"error": "not_initialized"}, Verdict.RETRY),
        (OpType.GET, 503, {"error": "leader_not_ready"}, Verdict.RETRY),
        (OpType.PUT, 503, {"error": "timeout"}, Verdict.UNKNOWN),
        (OpType.DELETE, 503, {"error": "leadership_lost"}, Verdict.UNKNOWN),
        (OpType.PUT, 503, {"error": "shutting_down"}, Verdict.UNKNOWN),
        (OpType.PUT, 500, {"error": "node_stopped"}, Verdict.UNKNOWN),
        (OpType.PUT, 503, {"error": "something_new"}, Verdict.UNKNOWN),
        (OpType.GET, 503, {"error": "timeout"}, Verdict.FAIL),
        (OpType.PUT, 400, {"error": "bad_key"}, Verdict.FAIL),
    ],
)
def test_classify(op: OpType, status: int, body: dict[str, object], verdict: Verdict) -> None:
    answer = classify(op, status, body)
    assert answer.verdict is verdict
    assert answer.unexpected == (status == 400)
    if status == 307:
        assert answer.leader == "h:1"


def _response(status: int, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def fake_http(answer: bytes | None) -> tuple[asyncio.Server, str]:
    """A server that reads one request and answers ``answer`` (``None``: hangs up)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"127.0.0.1:{port}"


def test_client_outcomes_against_fake_nodes() -> None:
    async def scenario() -> None:
        history = History(Journal(None, time.monotonic()))
        (dead,) = free_ports(1)
        refused = OpClient("a", [f"127.0.0.1:{dead}"], history)
        r = await refused.run(OpType.PUT, "k", "v1", deadline=0.3)
        assert r.outcome is Outcome.FAIL and "connect" in r.detail

        hangup, hangup_addr = await fake_http(None)
        r = await OpClient("b", [hangup_addr], history).run(OpType.PUT, "k", "v2")
        assert r.outcome is Outcome.UNKNOWN and r.complete is None

        leader, leader_addr = await fake_http(_response(200, b'{"ok":true,"previous":null}'))
        redirect = _response(
            307, b'{"error":"not_leader","leader_http":"%s"}' % leader_addr.encode()
        )
        follower, follower_addr = await fake_http(redirect)
        client = OpClient("c", [follower_addr], history)
        r = await client.run(OpType.PUT, "k", "v3")
        assert r.outcome is Outcome.OK and r.node == leader_addr and client.leader == leader_addr

        slow, slow_addr = await fake_http(_response(503, b'{"error":"timeout"}'))
        r = await OpClient("d", [slow_addr], history).run(OpType.DELETE, "k")
        assert r.outcome is Outcome.UNKNOWN and "timeout" in r.detail
        for server in (hangup, leader, follower, slow):
            server.close()
        assert [x.outcome for x in history.records] == [
            Outcome.FAIL,
            Outcome.UNKNOWN,
            Outcome.OK,
            Outcome.UNKNOWN,
        ]

    run(scenario)


def test_history_records_once_and_abandons_open_ops() -> None:
    history = History(Journal(None, time.monotonic()))
    a = history.invoke("c0", OpType.PUT, "k", "v")
    b = history.invoke("c0", OpType.GET, "k")
    history.complete(a, Outcome.OK)
    with pytest.raises(ValueError):
        history.complete(a, Outcome.OK)
    assert history.abandon_open("stopped") == 1
    assert b.outcome is Outcome.UNKNOWN and b.complete is None
    assert history.counts()["put"]["ok"] == 1 and history.counts()["get"]["unknown"] == 1


def test_the_deck_deals_every_kind_before_repeating() -> None:
    deck = Deck(random.Random(3))
    assert sorted(deck.next() for _ in KINDS) == sorted(KINDS)


# -- the checker -------------------------------------------------------------------------------


class Ops:
    """Builds a history by hand: times are given, op ids are assigned in order."""

    def __init__(self) -> None:
        self.records: list[OpRecord] = []

    def add(
        self,
        op: OpType,
        value: str | None,
        invoke: float,
        complete: float | None,
        outcome: Outcome = Outcome.OK,
        *,
        key: str = "k",
        client: str = "c0",
    ) -> OpRecord:
        r = OpRecord(len(self.records), client, op, key, value, invoke, complete, outcome)
        self.records.append(r)
        return r

    def put(self, value: str, t0: float, t1: float | None, outcome: Outcome = Outcome.OK) -> None:
        self.add(OpType.PUT, value, t0, None if outcome is Outcome.UNKNOWN else t1, outcome)

    def delete(self, t0: float, t1: float) -> None:
        self.add(OpType.DELETE, None, t0, t1)

    def get(self, value: str | None, t0: float, t1: float) -> None:
        self.add(OpType.GET, value, t0, t1)

    def final(self, value: str | None, t: float = 100.0) -> None:
        self.add(OpType.GET, value, t, t + 1, client=FINAL_CLIENT)


def test_a_clean_history_passes() -> None:
    h = Ops()
    h.put("a", 0, 1)
    h.put("b", 0.5, 3)  # concurrent with a: either may come last
    h.get("a", 1.5, 2)
    h.final("b")
    result = check(h.records, ["k"])
    assert result.linearizable and not result.lost and not result.stale
    assert result.acknowledged_writes == 2 and not result.problems(strict_reads=True)


def test_a_lost_acknowledged_write_is_caught() -> None:
    h = Ops()
    h.put("a", 0, 1)
    h.put("b", 2, 3)  # acknowledged after a completed: b must win
    h.final("a")
    result = check(h.records, ["k"])
    assert len(result.lost) == 1 and "op 1" in result.lost[0]
    assert not result.linearizable
    assert result.problems()


def test_an_unknown_write_may_explain_the_final_value() -> None:
    h = Ops()
    h.put("a", 0, 1)
    h.put("b", 2, None, Outcome.UNKNOWN)
    h.final("b")
    result = check(h.records, ["k"])
    assert result.linearizable and not result.lost


def test_a_stale_read_is_counted_and_fails_only_in_strict_mode() -> None:
    h = Ops()
    h.put("a", 0, 1)
    h.put("b", 2, 3)
    h.get("a", 4, 5)  # b completed before this read began
    h.final("b")
    result = check(h.records, ["k"])
    assert len(result.stale) == 1 and "op 2" in result.stale[0]
    assert result.linearizable and not result.lost and not result.reads_linearizable
    assert result.problems(strict_reads=False) == []
    assert result.problems(strict_reads=True)


def test_deletes_and_not_found_reads() -> None:
    h = Ops()
    h.put("a", 0, 1)
    h.delete(2, 3)
    h.get(None, 3.5, 4)  # after the delete: fine
    h.put("b", 5, 6)
    h.get(None, 7, 8)  # b completed and nothing deleted it since: stale
    h.final("b")
    result = check(h.records, ["k"])
    assert len(result.stale) == 1 and "op 4" in result.stale[0]
    assert result.linearizable and not result.lost


def test_a_final_not_found_after_an_acknowledged_put_loses_it() -> None:
    h = Ops()
    h.put("a", 0, 1)
    h.delete(2, 3)
    h.put("b", 4, 5)
    h.final(None)
    result = check(h.records, ["k"])
    assert len(result.lost) == 1 and not result.linearizable


def test_impossible_reads_and_missing_final_reads_always_fail() -> None:
    h = Ops()
    h.put("a", 0, 1, Outcome.FAIL)
    h.get("a", 2, 3)  # the write definitely failed
    h.get("zz", 2, 3)  # nobody wrote it
    h.final(None)
    result = check(h.records, ["k", "other"])
    assert len(result.impossible) == 2
    assert result.missing_final == ["other"]
    assert len(result.problems()) == 3


def test_reads_each_possible_alone_but_not_together() -> None:
    h = Ops()
    h.put("a", 0, 10)
    h.put("b", 0, 10)  # concurrent: either may be last, but only one of them
    h.get("b", 11, 12)
    h.get("a", 13, 14)  # after both writes completed and b was read: non-monotonic
    h.put("c", 20, 21)
    h.final("c")
    result = check(h.records, ["k"])
    assert not result.stale and result.linearizable
    assert not result.reads_linearizable
    assert result.problems(strict_reads=False) == []
    assert result.problems(strict_reads=True)
