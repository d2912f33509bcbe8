"""The KV service's sans-IO HTTP layer and its framework-neutral API handler."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from raftcore import membership as mc
from raftcore.adapters._node_api import ReplicationStatus
from raftcore.adapters.errors import ShuttingDown, Timeout
from raftcore.adapters.kv.auth import ApiTokens
from raftcore.adapters.kv.client import (
    HttpPool,
    KvClient,
    KvError,
    KvUnavailable,
    NodeAddress,
    parse_cluster,
)
from raftcore.adapters.kv.http import (
    CLOSED,
    NEED_DATA,
    AddLearner,
    ClientConnection,
    ClusterInfo,
    Delete,
    ForgetNode,
    Get,
    HttpError,
    Promote,
    Put,
    RemoveVoter,
    Request,
    Response,
    ServerConnection,
    Status,
    TransferLeadership,
    check_address,
    key_path,
    not_leader_response,
    route,
    serve_connection,
)
from raftcore.adapters.kv.server import KvApi, ServeOptions
from raftcore.adapters.kv.state_machine import KVStateMachine, Rejected, set_node_address
from raftcore.entries import normal
from raftcore.errors import (
    ClientError,
    InvalidMembershipChange,
    InvalidTransfer,
    LeadershipLost,
    MembershipChangeInProgress,
    MembershipMismatch,
    NodeStopped,
    NotLeader,
    ReadTimeout,
    TransferInProgress,
    TransferTimeout,
)
from raftcore.events import ReadPolicy
from raftcore.ids import LogId, Vote
from raftcore.membership import Membership
from raftcore.state import Metrics, Role

# -- ServerConnection --------------------------------------------------------------------------


def feed(conn: ServerConnection, data: bytes) -> Request | Response | object:
    conn.receive_data(data)
    return conn.next_event()


def parse_response(data: bytes) -> Response:
    client = ClientConnection("x")
    client.request("GET", "/")  # put the client state machine in the "awaiting response" state
    client.receive_data(data)
    r = client.next_response()
    assert isinstance(r, Response)
    return r


def test_a_request_comes_out_whole_and_keep_alive_works() -> None:
    conn = ServerConnection()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"PUT /kv/a%20b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel")
    assert conn.next_event() is NEED_DATA
    req = feed(conn, b"lo")
    assert req == Request("PUT", "/kv/a%20b", (("host", "x"), ("content-length", "5")), b"hello")
    conn.respond(Response.json(200, {"ok": True}))
    out = conn.data_to_send()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert parse_response(out).json_body() == {"ok": True}
    assert not conn.closing
    # Next request on the same connection.
    req2 = feed(conn, b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(req2, Request) and req2.method == "GET" and req2.path == "/status"
    conn.respond(Response.json(200, {}))
    assert conn.requests == 2


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        (
            b"PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            "Content-Length and Transfer-Encoding together",
        ),
        (b"GET /kv/a#b HTTP/1.1\r\nHost: x\r\n\r\n", "percent-encode it as %23"),
    ],
)
def test_ambiguous_requests_are_refused_and_the_connection_closed(
    head: bytes, problem: str
) -> None:
    conn = ServerConnection()
    r = feed(conn, head)
    assert isinstance(r, Response) and r.status == 400, r
    assert problem in r.json_body()["detail"]
    assert conn.closing


def test_pipelined_requests_are_served_one_at_a_time() -> None:
    conn = ServerConnection()
    conn.receive_data(b"GET /kv/a HTTP/1.1\r\nHost: x\r\n\r\nGET /kv/b HTTP/1.1\r\nHost: x\r\n\r\n")
    first = conn.next_event()
    assert isinstance(first, Request) and first.target == "/kv/a"
    conn.respond(Response.json(404, {}))
    second = conn.next_event()
    assert isinstance(second, Request) and second.target == "/kv/b"


@pytest.mark.parametrize(
    "garbage",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /kv/a HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET /kv/a HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
    ],
)
def test_malformed_http_gets_400_and_the_connection_closes(garbage: bytes) -> None:
    conn = ServerConnection()
    event = feed(conn, garbage)
    assert isinstance(event, Response) and event.status == 400
    assert event.json_body()["error"] == "bad_request"
    conn.respond(event)
    out = conn.data_to_send()
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close" in out
    assert conn.closing and conn.next_event() is CLOSED


def test_oversized_headers_get_431() -> None:
    conn = ServerConnection(max_header=1024)
    event = feed(conn, b"GET /kv/a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000)
    assert isinstance(event, Response) and event.status == 431
    assert event.json_body()["error"] == "headers_too_large"


def test_a_declared_large_body_gets_413_before_it_is_read() -> None:
    conn = ServerConnection(max_body=100)
    event = feed(conn, b"PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n")
    assert isinstance(event, Response) and event.status == 413
    conn.respond(event)
    assert b"connection: close" in conn.data_to_send()
    assert conn.closing


def test_a_large_chunked_body_gets_413_once_over_the_limit() -> None:
    conn = ServerConnection(max_body=100)
    head = b"PUT /kv/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"40\r\n" + b"x" * 64 + b"\r\n"
    assert feed(conn, head + chunk) is NEED_DATA
    event = feed(conn, chunk)
    assert isinstance(event, Response) and event.status == 413
    # A body within the limit is fine.
    conn = ServerConnection(max_body=100)
    req = feed(conn, head + chunk + b"0\r\n\r\n")
    assert isinstance(req, Request) and req.body == b"x" * 64


def test_expect_100_continue_is_answered() -> None:
    conn = ServerConnection()
    head = b"PUT /kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
    assert feed(conn, head) is NEED_DATA
    assert conn.data_to_send().startswith(b"HTTP/1.1 100 Continue")
    req = feed(conn, b"abc")
    assert isinstance(req, Request) and req.body == b"abc"


def test_client_connection_close_is_honoured() -> None:
    conn = ServerConnection()
    req = feed(conn, b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert isinstance(req, Request)
    conn.respond(Response.json(200, {}))
    assert conn.closing


def test_head_gets_headers_only_and_keeps_the_connection() -> None:
    conn = ServerConnection()
    req = feed(conn, b"HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(req, Request) and route(req) == Status()
    conn.respond(Response.json(200, {"a": 1}))
    out = conn.data_to_send()
    assert out.endswith(b"content-length: 8\r\n\r\n")
    assert not conn.closing and conn.requests == 1


def test_eof_between_requests_is_a_clean_close() -> None:
    conn = ServerConnection()
    assert feed(conn, b"") is CLOSED


# -- client side ------------------------------------------------------------------------------


def test_client_and_server_connections_talk() -> None:
    server, client = ServerConnection(), ClientConnection("127.0.0.1:8001")
    for value in ("v1", "ünïcode"):
        server.receive_data(client.request("PUT", key_path("k/1"), value.encode()))
        req = server.next_event()
        assert isinstance(req, Request)
        assert req.header("Host") == "127.0.0.1:8001"
        assert route(req) == Put("k/1", value)
        server.respond(Response.json(200, {"ok": True, "previous": None}))
        client.receive_data(server.data_to_send())
        resp = client.next_response()
        assert isinstance(resp, Response) and resp.status == 200
        assert resp.header("content-type") == "application/json"
        assert client.reusable


def test_client_rejects_garbage_and_early_close() -> None:
    client = ClientConnection("x")
    client.request("GET", "/status")
    client.receive_data(b"NOT HTTP\r\n\r\n")
    with pytest.raises(HttpError):
        client.next_response()
    client = ClientConnection("x")
    client.request("GET", "/status")
    client.receive_data(b"")
    with pytest.raises(HttpError):
        client.next_response()


def test_client_bounds_the_response_body() -> None:
    client = ClientConnection("x", max_body=10)
    client.request("GET", "/status")
    client.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n" + b"x" * 20)
    with pytest.raises(HttpError, match="over 10 bytes"):
        client.next_response()


# -- routing --------------------------------------------------------------------------------


def req(method: str, target: str, body: bytes = b"") -> Request:
    return Request(method, target, (("host", "x"),), body)


def test_routes() -> None:
    assert route(req("GET", "/status")) == Status()
    assert route(req("GET", "/kv/a")) == Get("a")
    assert route(req("GET", "/kv/a%2Fb?consistency=stale")) == Get("a/b", "stale")
    assert route(req("GET", "/kv/a%3Fx%3D1")) == Get("a?x=1")  # '?' in a key: %3F
    # An unknown query is refused, not dropped: the client meant a key with '?'.
    for r in (
        route(req("GET", "/kv/a%2Fb?x=1")),
        route(req("PUT", "/kv/a?x=1", b"v")),
        route(req("DELETE", "/kv/a?")),
    ):
        assert isinstance(r, Response) and r.status == 400, r
        assert r.json_body()["error"] == "bad_key" and "%3F" in r.json_body()["detail"]
    assert route(req("DELETE", "/kv/a")) == Delete("a")
    assert route(req("PUT", "/kv/a", b"v")) == Put("a", "v")
    assert route(req("PUT", "/kv/a", b"")) == Put("a", "")
    assert route(req("GET", key_path("sp ace/ü"))) == Get("sp ace/ü")


@pytest.mark.parametrize(
    ("request_", "status", "error"),
    [
        (req("GET", "/nope"), 404, "no_such_route"),
        (req("GET", "/kv/"), 400, "bad_key"),
        (req("GET", "/kv/%ff"), 400, "bad_key"),
        (req("GET", "/kv/" + "k" * 2000), 400, "bad_key"),
        (req("PUT", "/kv/a", b"\xff\xfe"), 400, "bad_value"),
        (req("POST", "/kv/a", b"v"), 405, "method_not_allowed"),
        (req("PUT", "/status"), 405, "method_not_allowed"),
    ],
)
def test_bad_routes(request_: Request, status: int, error: str) -> None:
    r = route(request_)
    assert isinstance(r, Response) and r.status == status
    assert r.json_body()["error"] == error


def test_not_leader_response() -> None:
    r = not_leader_response(2, "127.0.0.1:8002", "/kv/a")
    assert r.status == 307
    assert r.header("location") == "http://127.0.0.1:8002/kv/a"
    assert r.json_body() == {"error": "not_leader", "leader_id": 2, "leader_http": "127.0.0.1:8002"}
    r = not_leader_response(None, None, "/kv/a")
    assert r.status == 503
    assert r.json_body() == {"error": "no_leader", "leader_id": None, "leader_http": None}


# -- serve_connection over fake streams ---------------------------------------------------------


def run_connection(
    chunks: list[bytes | tuple[float, bytes]], handler: Callable[[Request], Any]
) -> bytes:
    """Serve ``chunks`` on virtual time: a ``(delay, data)`` chunk arrives
    ``delay`` seconds after the previous one (a plain one at once); a read
    whose timeout passes first returns nothing, and the clock moves on."""
    sent = bytearray()
    pending = [c if isinstance(c, tuple) else (0.0, c) for c in chunks]
    clock = [0.0]

    async def recv(timeout: float) -> bytes:
        if not pending:
            return b""
        delay, data = pending[0]
        if delay > timeout:
            clock[0] += timeout
            pending[0] = (delay - timeout, data)
            return b""
        clock[0] += delay
        pending.pop(0)
        return data

    async def send(data: bytes) -> None:
        sent.extend(data)

    async def handle(request: Request) -> Response:
        result: Response = handler(request)
        return result

    asyncio.run(serve_connection(recv, send, handle, now=lambda: clock[0]))
    return bytes(sent)


def test_a_slow_request_is_answered_408_and_the_connection_closed() -> None:
    """A client trickling a request (a byte every few seconds) cannot hold a
    connection: the whole request must arrive within REQUEST_TIMEOUT."""
    head: list[bytes | tuple[float, bytes]] = [
        b"GET /a HTTP/1.1\r\n",
        (6.0, b"Host: x\r\n"),
        (6.0, b"\r\n"),
    ]
    out = run_connection(head, lambda r: Response.json(200, {}))
    r = parse_response(out)
    assert (r.status, r.json_body()["error"]) == (408, "request_timeout")
    # Within the limit it is served; an idle connection between requests
    # just closes after the idle timeout, without an answer.
    ok: list[bytes | tuple[float, bytes]] = [
        b"GET /a HTTP/1.1\r\n",
        (4.0, b"Host: x\r\n"),
        (4.0, b"\r\n"),
    ]
    assert parse_response(run_connection(ok, lambda r: Response.json(200, {}))).status == 200
    assert run_connection([(61.0, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")], print) == b""


def test_serve_connection_answers_each_request_and_survives_a_failing_handler() -> None:
    def handler(request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("kaput")
        return Response.json(200, {"path": request.path})

    out = run_connection(
        [b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /boom HTTP/1.1\r\n", b"Host: x\r\n\r\n"],
        handler,
    )
    assert out.count(b"HTTP/1.1 200 OK") == 1
    assert out.count(b"HTTP/1.1 500 Internal Server Error") == 1
    assert b'"error":"internal"' in out and b"kaput" in out


def test_serve_connection_answers_garbage_with_400_and_stops() -> None:
    out = run_connection([b"BLAH\r\n\r\n", b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"], lambda r: None)
    assert out.startswith(b"HTTP/1.1 400 Bad Request")
    assert out.count(b"HTTP/1.1") == 1


# -- KvApi with a fake node ---------------------------------------------------------------------

CLUSTER = parse_cluster("1=127.0.0.1:7001,2=127.0.0.1:7002/127.0.0.1:9002,3=127.0.0.1:7003")


def metrics(role: Role, leader: int | None, term: int = 2, applied_term: int = 2) -> Metrics:
    return Metrics(
        node_id=1,
        role=role,
        vote=Vote(term, leader or 0, leader is not None),
        leader_id=leader,
        last_log_id=LogId(applied_term, leader or 1, 10),
        committed=LogId(applied_term, leader or 1, 10),
        applied=LogId(applied_term, leader or 1, 10),
        membership=Membership.of({n: a.raft for n, a in CLUSTER.items()}),
        replication={2: LogId(applied_term, 1, 9)},
        extra={"transport": {"sent": 3}, "odd": object()},
    )


class FakeTransport:
    def stats(self) -> dict[str, int]:
        return {"frames_sent": 7, "bytes_sent": 700, "connects": 2, "peers": 2}


@attrs.define
class FakeNode:
    m: Metrics
    outcome: Any = None
    ready_later: Metrics | None = None
    writes: list[Any] = attrs.Factory(list)
    #: Raised by ``metrics()`` (a node shutting down raises ``ShuttingDown``).
    metrics_error: ClientError | None = None
    #: Applies the writes, if given (the address book needs it).
    sm: KVStateMachine | None = None
    #: Each membership call: ``(change, retain, expected, timeout)``.
    changes: list[tuple[Any, ...]] = attrs.Factory(list)
    #: Raised by the next membership calls, one each, before they succeed.
    change_errors: list[ClientError] = attrs.Factory(list)
    #: Raised by ``add_learner`` after it changed the membership (catch-up timed out).
    catch_up_error: ClientError | None = None
    #: Each ``read`` call's policy; raised by ``read`` when set.
    reads: list[ReadPolicy] = attrs.Factory(list)
    read_error: ClientError | None = None

    async def read(
        self, policy: ReadPolicy = ReadPolicy.READ_INDEX, *, timeout: float | None = None
    ) -> LogId:
        self.reads.append(policy)
        if self.read_error is not None:
            raise self.read_error
        return self.m.applied

    async def write(self, data: Any, *, timeout: float | None = None) -> Any:
        self.writes.append(data)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        if self.sm is not None:
            index = self.m.last_log_id.index + len(self.writes)
            [(_, result)] = self.sm.apply([normal(LogId(2, 1, index), data)])
            return result
        return self.outcome

    async def change_membership(
        self,
        change: mc.Change,
        *,
        retain: bool = False,
        expected: LogId | None = None,
        timeout: float | None = None,
    ) -> tuple[LogId, Membership]:
        self.changes.append((change, retain, expected, timeout))
        if self.change_errors:
            raise self.change_errors.pop(0)
        m = self.m.membership
        assert m is not None
        try:
            new = mc.next_membership(m, change, retain=retain)
        except ValueError as e:
            raise InvalidMembershipChange(str(e)) from None
        if new.is_joint:
            new = mc.leave_joint(new, retain=retain)
        log_id = LogId(2, 1, self.m.last_log_id.index + 2)
        self.m = attrs.evolve(self.m, membership=new, last_log_id=log_id)
        return log_id, new

    async def add_learner(
        self,
        node_id: int,
        info: Any,
        *,
        blocking: bool = True,
        max_lag: int = 0,
        timeout: float | None = None,
    ) -> tuple[LogId, Membership]:
        result = await self.change_membership(mc.AddLearners({node_id: info}), timeout=timeout)
        self.changes[-1] = ("add_learner", node_id, info, blocking, max_lag, timeout)
        if self.catch_up_error is not None:
            raise self.catch_up_error
        self.m = attrs.evolve(self.m, replication={**self.m.replication, node_id: result[0]})
        return result

    async def transfer_leader(self, to: int | None = None, *, timeout: float | None = None) -> int:
        self.changes.append(("transfer_leader", to, timeout))
        if self.change_errors:
            raise self.change_errors.pop(0)
        return 2 if to is None else to

    #: What ``/metrics`` reads of the transport, and the latency histograms.
    transport: Any = attrs.Factory(lambda: FakeTransport())
    histograms: dict[str, Any] = attrs.Factory(dict)

    def latency(self) -> dict[str, Any]:
        return self.histograms

    def replication(self) -> dict[int, ReplicationStatus]:
        m = self.metrics()
        return {n: ReplicationStatus(lid, 0.01, "replicating") for n, lid in m.replication.items()}

    async def trigger_snapshot(self, *, timeout: float = 60.0) -> LogId | None:
        self.m = attrs.evolve(self.m, snapshot=self.m.applied, last_purged=LogId(1, 1, 1))
        return self.m.applied

    def metrics(self) -> Metrics:
        if self.metrics_error is not None:
            raise self.metrics_error
        return self.m

    async def wait_for(self, predicate: Callable[[Metrics], bool], *, timeout: float) -> Metrics:
        if self.ready_later is not None:
            self.m = self.ready_later
        if predicate(self.m):
            return self.m
        raise Timeout(timeout)


def call(
    node: FakeNode,
    request: Request,
    sm: KVStateMachine | None = None,
    tokens: ApiTokens | None = None,
) -> Response:
    if sm is None:  # (not `or`: an empty KVStateMachine is falsy)
        sm = node.sm if node.sm is not None else KVStateMachine()
    api = KvApi(node, sm, 1, CLUSTER, runtime="asyncio", tokens=tokens)
    return asyncio.run(api.handle(request))


RW, RO = "rw-token-0123456789", "ro-token-0123456789"


def test_tokens_guard_every_request(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# the API's tokens\n{RW}\n\n{RO} ro   # a dashboard\n")
    tokens = ApiTokens.load(str(path))
    assert tokens == ApiTokens(((RW, True), (RO, False)))
    node = FakeNode(metrics(Role.LEADER, 1), outcome="old")

    def with_token(method: str, target: str, token: str | None, body: bytes = b"") -> Response:
        headers = (("host", "x"),) + ((("authorization", f"Bearer {token}"),) if token else ())
        return call(node, Request(method, target, headers, body), tokens=tokens)

    for token in (None, "wrong-token-0123456789", RW[:-1]):
        r = with_token("GET", "/status", token)
        assert (r.status, r.json_body()["error"]) == (401, "unauthorized")
        assert r.header("www-authenticate") == 'Bearer realm="raftcore-kv"'
    assert with_token("GET", "/status", RO).status == 200
    r = with_token("PUT", "/kv/k", RO, b"v")
    assert (r.status, r.json_body()["error"]) == (403, "forbidden")
    assert node.writes == []  # refused before it reached the node
    assert with_token("PUT", "/kv/k", RW, b"v").status == 200
    assert node.writes == [["put", "k", "v"]]
    r = call(
        node, Request("PUT", "/kv/k", (("authorization", f"Basic {RW}"),), b"v"), tokens=tokens
    )
    assert r.status == 401


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "holds no token"),
        ("short\n", "at least 16 characters"),
        (f"{RW} admin\n", "expected 'TOKEN' or 'TOKEN rw|ro'"),
        (f"{RW} ro extra\n", "expected 'TOKEN' or 'TOKEN rw|ro'"),
    ],
)
def test_a_bad_token_file_is_one_clear_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem) as info:
        ApiTokens.load(str(path))
    assert str(info.value).startswith(f"--api-token-file: {path}")
    with pytest.raises(ValueError, match="cannot read"):
        ApiTokens.load(str(tmp_path / "missing"))


def test_put_and_delete_go_through_the_log() -> None:
    node = FakeNode(metrics(Role.LEADER, 1), outcome="old")
    r = call(node, req("PUT", "/kv/k", b"new"))
    assert (r.status, r.json_body()) == (200, {"ok": True, "previous": "old"})
    r = call(node, req("DELETE", "/kv/k"))
    assert (r.status, r.json_body()) == (200, {"ok": True, "previous": "old"})
    assert node.writes == [["put", "k", "new"], ["delete", "k"]]


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (Timeout(5.0), 503, "timeout"),
        (LeadershipLost(3), 503, "leadership_lost"),
        (ShuttingDown(), 503, "shutting_down"),
        (NodeStopped("disk full"), 500, "node_stopped"),
        (NotLeader(None, None), 503, "no_leader"),
    ],
)
def test_write_errors_map_to_statuses(error: Exception, status: int, code: str) -> None:
    r = call(FakeNode(metrics(Role.LEADER, 1), outcome=error), req("PUT", "/kv/k", b"v"))
    assert r.status == status and r.json_body()["error"] == code


def test_a_rejected_command_is_a_400() -> None:
    r = call(FakeNode(metrics(Role.LEADER, 1), outcome=Rejected("nope")), req("DELETE", "/kv/k"))
    assert r.status == 400 and r.json_body()["error"] == "rejected"


def test_a_write_to_a_follower_redirects_to_the_leaders_http_address() -> None:
    node = FakeNode(metrics(Role.FOLLOWER, 2), outcome=NotLeader(2, "127.0.0.1:7002"))
    r = call(node, req("PUT", "/kv/k", b"v"))
    assert r.status == 307
    assert r.json_body() == {"error": "not_leader", "leader_id": 2, "leader_http": "127.0.0.1:9002"}
    assert r.header("location") == "http://127.0.0.1:9002/kv/k"
    # A leader missing from the spec: its Raft address + 1000.
    node = FakeNode(metrics(Role.FOLLOWER, 7), outcome=NotLeader(7, "10.0.0.7:7007"))
    assert call(node, req("PUT", "/kv/k", b"v")).json_body()["leader_http"] == "10.0.0.7:8007"


def test_reads_are_confirmed_by_the_engine_on_leader_and_followers() -> None:
    sm = KVStateMachine()
    sm.data["k"] = "v"
    node = FakeNode(metrics(Role.LEADER, 1))
    r = call(node, req("GET", "/kv/k"), sm)
    assert (r.status, r.json_body()) == (200, {"value": "v"})
    r = call(node, req("GET", "/kv/missing"), sm)
    assert (r.status, r.json_body()) == (404, {"error": "not_found", "key": "missing"})
    r = call(node, req("GET", "/kv/k?consistency=lease"), sm)
    assert r.status == 200
    assert node.reads == [ReadPolicy.READ_INDEX, ReadPolicy.READ_INDEX, ReadPolicy.LEASE]
    # A follower serves it itself (a follower read through the engine)...
    follower = FakeNode(metrics(Role.FOLLOWER, 3))
    r = call(follower, req("GET", "/kv/k"), sm)
    assert (r.status, r.json_body()) == (200, {"value": "v"})
    assert follower.reads == [ReadPolicy.READ_INDEX]
    # ...unless its engine says to ask the leader, or that none is known.
    moved = FakeNode(metrics(Role.FOLLOWER, 3), read_error=NotLeader(3, "127.0.0.1:7003"))
    r = call(moved, req("GET", "/kv/k"), sm)
    assert r.status == 307 and r.json_body()["leader_http"] == "127.0.0.1:8003"
    lost = FakeNode(metrics(Role.CANDIDATE, None), read_error=NotLeader(None, None))
    r = call(lost, req("GET", "/kv/k"), sm)
    assert r.status == 503 and r.json_body()["error"] == "no_leader"


@pytest.mark.parametrize(
    ("error", "code"),
    [(ReadTimeout(0.3), "read_not_confirmed"), (LeadershipLost(2), "leadership_lost")],
)
def test_a_read_the_leader_cannot_confirm_is_a_503_never_stale_data(
    error: ClientError, code: str
) -> None:
    sm = KVStateMachine()
    sm.data["k"] = "old"
    node = FakeNode(metrics(Role.LEADER, 1), read_error=error)
    r = call(node, req("GET", "/kv/k"), sm)
    assert r.status == 503 and r.json_body()["error"] == code
    assert "old" not in r.body.decode()


def test_a_stale_read_is_served_by_any_node_and_says_so() -> None:
    sm = KVStateMachine()
    sm.data["k"] = "v"
    node = FakeNode(metrics(Role.FOLLOWER, 3))
    r = call(node, req("GET", "/kv/k?consistency=stale"), sm)
    assert (r.status, r.json_body()) == (200, {"value": "v", "stale": True})
    assert node.reads == []  # no confirmation asked
    r = call(node, req("GET", "/kv/nope?consistency=stale"), sm)
    assert r.status == 404 and r.json_body()["stale"] is True
    r = call(node, req("GET", "/kv/k?consistency=eventual"), sm)
    assert r.status == 400 and "linearizable, lease, stale" in r.json_body()["detail"]


def test_status_is_json() -> None:
    sm = KVStateMachine()
    sm.data["k"] = "v"
    r = call(FakeNode(metrics(Role.LEADER, 1)), req("GET", "/status"), sm)
    assert r.status == 200
    s = json.loads(r.body)
    assert s["node_id"] == 1 and s["role"] == "leader" and s["leader_id"] == 1
    assert s["leader_http"] == "127.0.0.1:8001" and s["http"] == "127.0.0.1:8001"
    assert s["term"] == 2 and s["applied"] == {"term": 2, "node_id": 1, "index": 10}
    assert s["membership"]["voters"] == [[1, 2, 3]]
    assert s["replication"] == {"2": {"term": 2, "node_id": 1, "index": 9}}
    assert s["keys"] == 1 and s["extra"]["transport"] == {"sent": 3}
    assert s["snapshot"] is None and s["last_purged"] == {"term": 0, "node_id": 0, "index": 0}
    assert s["snapshots"] == {"built": 0, "installed": 0}


def test_post_snapshot_snapshots_this_node_and_status_reports_it() -> None:
    node = FakeNode(metrics(Role.FOLLOWER, 2))
    r = call(node, req("POST", "/snapshot"))
    applied = {"term": 2, "node_id": 2, "index": 10}
    assert (r.status, r.json_body()) == (
        200,
        {"snapshot": applied, "last_purged": {"term": 1, "node_id": 1, "index": 1}},
    )
    assert call(node, req("GET", "/status")).json_body()["snapshot"] == applied
    r = call(node, req("GET", "/snapshot"))
    assert r.status == 405 and r.header("allow") == "POST"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ShuttingDown(), 503, "shutting_down"),
        (NodeStopped("disk full"), 500, "node_stopped"),
        (MembershipChangeInProgress(), 503, "membership_change_in_progress"),
    ],
)
@pytest.mark.parametrize("target", ["/status", "/kv/k"])
def test_metrics_errors_map_to_json_statuses(
    error: ClientError, status: int, code: str, target: str
) -> None:
    # During shutdown the node's metrics() raises ShuttingDown: reads and
    # /status answer 503 with a JSON error, not 500 "internal".
    node = FakeNode(metrics(Role.LEADER, 1), metrics_error=error)
    r = call(node, req("GET", target))
    assert r.status == status and r.json_body()["error"] == code
    assert r.header("content-type") == "application/json"


def test_any_client_error_from_a_write_is_a_503() -> None:
    node = FakeNode(metrics(Role.LEADER, 1), outcome=MembershipChangeInProgress())
    r = call(node, req("PUT", "/kv/k", b"v"))
    assert r.status == 503
    assert r.json_body() == {
        "error": "membership_change_in_progress",
        "detail": "MembershipChangeInProgress()",
    }


def test_cluster_spec() -> None:
    assert CLUSTER[1] == NodeAddress(1, "127.0.0.1:7001", "127.0.0.1:8001")
    assert CLUSTER[2] == NodeAddress(2, "127.0.0.1:7002", "127.0.0.1:9002")
    for bad in ("", "x=1.2.3.4:5", "1=nohost", "1=a:1,1=b:2", "0=a:1", "1=a:99999"):
        with pytest.raises(ValueError):
            parse_cluster(bad)


# -- membership routes ---------------------------------------------------------------------------


def post(target: str, body: Any) -> Request:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Request("POST", target, (("host", "x"),), data)


def test_membership_routes() -> None:
    assert route(req("GET", "/cluster")) == ClusterInfo()
    assert route(req("GET", "/cluster/")) == ClusterInfo()
    learner = {"id": 4, "raft": "127.0.0.1:7004", "http": "127.0.0.1:8004"}
    assert route(post("/cluster/learners", learner)) == AddLearner(
        4, "127.0.0.1:7004", "127.0.0.1:8004"
    )
    assert route(
        post(
            "/cluster/learners",
            {"id": 4, "raft": "[::1]:7004", "blocking": False, "max_lag": 5, "timeout": 2},
        )
    ) == AddLearner(4, "[::1]:7004", None, False, 5, 2.0)
    assert route(post("/cluster/voters", {"ids": [5, 4, 5]})) == Promote((4, 5))
    assert route(post("/cluster/voters", {"id": 4, "expected": "2-1-9"})) == Promote(
        (4,), LogId(2, 1, 9)
    )
    assert route(
        post("/cluster/voters", {"ids": [4], "expected": {"term": 2, "node_id": 1, "index": 9}})
    ) == Promote((4,), LogId(2, 1, 9))
    assert route(req("DELETE", "/cluster/voters/2")) == RemoveVoter(2)
    assert route(req("DELETE", "/cluster/voters/2?retain=1")) == RemoveVoter(2, True)
    assert route(req("DELETE", "/cluster/voters/2?retain=false")) == RemoveVoter(2, False)
    assert route(req("DELETE", "/cluster/voters/2?expected=1-1-5")) == RemoveVoter(
        2, False, LogId(1, 1, 5)
    )
    assert route(req("DELETE", "/cluster/nodes/3")) == ForgetNode(3)
    assert route(post("/cluster/leader", {"to": 2})) == TransferLeadership(2)
    assert route(post("/cluster/leader", {})) == TransferLeadership(None)
    assert route(post("/cluster/leader", b"")) == TransferLeadership(None)


@pytest.mark.parametrize(
    ("request_", "status", "error"),
    [
        (post("/cluster/learners", b"{nope"), 400, "bad_request"),
        (post("/cluster/learners", [4]), 400, "bad_request"),
        (post("/cluster/learners", {"id": 4}), 400, "bad_request"),
        (post("/cluster/learners", {"raft": "a:1"}), 400, "bad_request"),
        (post("/cluster/learners", {"id": 0, "raft": "a:1"}), 400, "bad_request"),
        (post("/cluster/learners", {"id": True, "raft": "a:1"}), 400, "bad_request"),
        (post("/cluster/learners", {"id": 4, "raft": "nohost"}), 400, "bad_request"),
        (post("/cluster/learners", {"id": 4, "raft": 7004}), 400, "bad_request"),
        (post("/cluster/learners", {"id": 4, "raft": "a:1/b:2"}), 400, "bad_request"),
        (post("/cluster/learners", {"id": 4, "raft": "a:1", "http": "b"}), 400, "bad_request"),
        (post("/cluster/learners", {"id": 4, "raft": "a:1", "max_lag": -1}), 400, "bad_request"),
        (post("/cluster/learners", {"id": 4, "raft": "a:1", "timeout": 0}), 400, "bad_request"),
        (post("/cluster/learners", {"id": 4, "raft": "a:1", "blocking": 1}), 400, "bad_request"),
        (post("/cluster/learners", {"id": 4, "raft": "a:1", "extra": 1}), 400, "bad_request"),
        (post("/cluster/voters", {}), 400, "bad_request"),
        (post("/cluster/voters", {"ids": []}), 400, "bad_request"),
        (post("/cluster/voters", {"ids": ["x"]}), 400, "bad_request"),
        (post("/cluster/voters", {"ids": [4], "expected": "1-2"}), 400, "bad_request"),
        (req("DELETE", "/cluster/voters/abc"), 400, "bad_request"),
        (req("DELETE", "/cluster/voters/0"), 400, "bad_request"),
        (req("DELETE", "/cluster/voters/2?retain=maybe"), 400, "bad_request"),
        (req("DELETE", "/cluster/nodes/2?expected=x"), 400, "bad_request"),
        (post("/cluster/leader", {"to": "x"}), 400, "bad_request"),
        (post("/cluster/leader", {"to": 0}), 400, "bad_request"),
        (post("/cluster/leader", {"node": 2}), 400, "bad_request"),
        (req("GET", "/cluster/leader"), 405, "method_not_allowed"),
        (post("/cluster/voters", {"ids": [2**70]}), 400, "bad_request"),
        (post("/cluster/leader", {"to": 2**64}), 400, "bad_request"),
        (req("DELETE", "/cluster/voters/" + "9" * 30), 400, "bad_request"),
        (post("/cluster/voters", b"[" * 100_000 + b"]" * 100_000), 400, "bad_request"),
        (req("GET", "/cluster/learners"), 405, "method_not_allowed"),
        (req("GET", "/cluster/voters/2"), 405, "method_not_allowed"),
        (req("POST", "/cluster"), 405, "method_not_allowed"),
        (req("DELETE", "/cluster/learners/2"), 404, "no_such_route"),
        (req("GET", "/cluster/nope"), 404, "no_such_route"),
    ],
)
def test_bad_membership_requests(request_: Request, status: int, error: str) -> None:
    r = route(request_)
    assert isinstance(r, Response) and r.status == status, r
    assert r.json_body()["error"] == error


def test_check_address() -> None:
    for good in ("127.0.0.1:7001", "node-4.example:1", "[::1]:7001"):
        assert check_address(good) == good
    for bad in ("", "a", "a:", ":1", "a:0", "a:70000", "a b:1", "a:1/b:2", "::1:7001", "[::1:7"):
        with pytest.raises(ValueError):
            check_address(bad)


def leader_node(**kwargs: Any) -> FakeNode:
    return FakeNode(metrics(Role.LEADER, 1), sm=KVStateMachine(), **kwargs)


def test_adding_a_learner_records_its_addresses_then_waits_for_it() -> None:
    node = leader_node()
    body = {"id": 4, "raft": "127.0.0.1:7004", "http": "127.0.0.1:9004", "max_lag": 3}
    r = call(node, post("/cluster/learners", body))
    assert r.status == 200, r.json_body()
    answer = r.json_body()
    # The address book entry is written (and committed) before the change.
    assert node.writes == [["node", 4, "127.0.0.1:7004", "127.0.0.1:9004"]]
    assert node.changes == [("add_learner", 4, "127.0.0.1:7004", True, 3, 30.0)]
    assert answer["ok"] and answer["changed"] and answer["caught_up"]
    assert answer["matched"] == {"term": 2, "node_id": 1, "index": 12}
    assert answer["log_id"] == {"term": 2, "node_id": 1, "index": 12}
    m = answer["membership"]
    assert m["voters"] == [[1, 2, 3]] and m["voter_ids"] == [1, 2, 3]
    assert m["learners"] == [4] and m["joint"] is False
    assert m["nodes"]["4"] == "127.0.0.1:7004"
    assert m["http"] == {
        "1": "127.0.0.1:8001",
        "2": "127.0.0.1:9002",
        "3": "127.0.0.1:8003",
        "4": "127.0.0.1:9004",
    }
    # Again: already a member at that address, nothing to write; still waits.
    r = call(node, post("/cluster/learners", body))
    assert r.status == 200 and r.json_body()["changed"] is False
    assert len(node.writes) == 1 and len(node.changes) == 2


def test_a_learner_without_http_gets_raft_port_plus_1000() -> None:
    node = leader_node()
    r = call(node, post("/cluster/learners", {"id": 4, "raft": "10.0.0.4:7004", "timeout": 3}))
    assert r.status == 200
    assert node.writes == [["node", 4, "10.0.0.4:7004", "10.0.0.4:8004"]]
    assert node.changes[0][-1] == 3.0
    assert r.json_body()["membership"]["http"]["4"] == "10.0.0.4:8004"


def test_a_learner_whose_raft_port_plus_1000_is_no_port_needs_http() -> None:
    node = leader_node()
    r = call(node, post("/cluster/learners", {"id": 4, "raft": "10.0.0.4:65000"}))
    assert r.status == 400 and r.json_body()["error"] == "bad_request"
    assert node.writes == [] and node.changes == []


def test_a_member_cannot_be_added_again_at_another_address() -> None:
    node = leader_node()
    r = call(node, post("/cluster/learners", {"id": 2, "raft": "10.9.9.9:7002"}))
    assert r.status == 409
    assert r.json_body()["error"] == "invalid_membership_change"
    assert "127.0.0.1:7002" in r.json_body()["reason"]
    assert node.writes == [] and node.changes == []


def test_a_learner_that_does_not_catch_up_in_time_is_a_503_saying_it_was_added() -> None:
    node = leader_node(catch_up_error=Timeout(2.0))
    r = call(node, post("/cluster/learners", {"id": 4, "raft": "127.0.0.1:7004", "timeout": 2}))
    assert r.status == 503
    body = r.json_body()
    assert body["error"] == "timeout" and body["added"] is True
    assert "did not catch up within 2s" in body["detail"]
    # The change itself timing out: the outcome is unknown.
    node = leader_node(change_errors=[Timeout(2.0)])
    body = call(node, post("/cluster/learners", {"id": 4, "raft": "127.0.0.1:7004"})).json_body()
    assert body["error"] == "timeout" and body["added"] is False
    assert "may still commit" in body["detail"]


@pytest.mark.parametrize(
    "request_",
    [
        post("/cluster/learners", {"id": 4, "raft": "127.0.0.1:7004"}),
        post("/cluster/voters", {"ids": [4]}),
        req("DELETE", "/cluster/voters/2?retain=1"),
        req("DELETE", "/cluster/nodes/2"),
    ],
)
def test_membership_requests_to_a_follower_redirect_to_the_leader(request_: Request) -> None:
    node = FakeNode(metrics(Role.FOLLOWER, 2), sm=KVStateMachine())
    r = call(node, request_)
    assert r.status == 307
    assert r.header("location") == f"http://127.0.0.1:9002{request_.target}"
    assert r.json_body()["leader_http"] == "127.0.0.1:9002"
    r = call(FakeNode(metrics(Role.CANDIDATE, None)), request_)
    assert r.status == 503 and r.json_body()["error"] == "no_leader"
    assert node.writes == [] and node.changes == []


def test_a_follower_redirects_to_a_leader_known_from_the_address_book() -> None:
    node = FakeNode(metrics(Role.FOLLOWER, 7), sm=KVStateMachine())
    assert node.sm is not None
    node.sm.apply([normal(LogId(1, 1, 1), set_node_address(7, "10.0.0.7:7007", "10.0.0.7:9999"))])
    r = call(node, req("DELETE", "/cluster/voters/2"))
    assert r.status == 307 and r.json_body()["leader_http"] == "10.0.0.7:9999"
    r = call(
        FakeNode(metrics(Role.FOLLOWER, 7), outcome=NotLeader(7, "10.0.0.7:7007")),
        req("PUT", "/kv/k", b"v"),
        node.sm,
    )
    assert r.status == 307 and r.json_body()["leader_http"] == "10.0.0.7:9999"


def test_promote_a_learner_then_again() -> None:
    node = leader_node()
    call(node, post("/cluster/learners", {"id": 4, "raft": "127.0.0.1:7004"}))
    r = call(node, post("/cluster/voters", {"ids": [4], "expected": "2-1-12"}))
    assert r.status == 200
    change, retain, expected, timeout = node.changes[-1]
    assert change == mc.AddVoters({4: "127.0.0.1:7004"}) and not retain
    assert expected == LogId(2, 1, 12) and timeout == 10.0
    m = r.json_body()["membership"]
    assert m["voter_ids"] == [1, 2, 3, 4] and m["learners"] == [] and not m["joint"]
    # Already a voter: nothing to do, and the answer says so.
    r = call(node, post("/cluster/voters", {"ids": [4]}))
    assert r.status == 200 and len(node.changes) == 2
    assert r.json_body()["changed"] is False and r.json_body()["log_id"] is None
    assert "already voters" in r.json_body()["detail"]


def test_promoting_a_non_member_is_refused() -> None:
    node = leader_node()
    r = call(node, post("/cluster/voters", {"ids": [4, 9]}))
    assert r.status == 409 and r.json_body()["error"] == "invalid_membership_change"
    assert "not members: [4, 9]" in r.json_body()["reason"]
    assert node.changes == []


def test_remove_a_voter_keeping_it_as_a_learner_then_forget_it() -> None:
    node = leader_node()
    r = call(node, req("DELETE", "/cluster/voters/2?retain=1"))
    assert r.status == 200
    assert node.changes[-1][:3] == (mc.RemoveVoters([2]), True, None)
    m = r.json_body()["membership"]
    assert m["voter_ids"] == [1, 3] and m["learners"] == [2]
    # Removing it as a voter again: already so.
    r = call(node, req("DELETE", "/cluster/voters/2"))
    assert r.status == 200 and r.json_body()["changed"] is False and len(node.changes) == 1
    r = call(node, req("DELETE", "/cluster/nodes/2"))
    assert r.status == 200 and r.json_body()["changed"] is True
    assert node.changes[-1][0] == mc.RemoveNodes([2])
    assert "2" not in r.json_body()["membership"]["nodes"]
    r = call(node, req("DELETE", "/cluster/nodes/2"))
    assert r.status == 200 and r.json_body()["changed"] is False and len(node.changes) == 2


def test_removing_an_added_node_also_forgets_its_addresses() -> None:
    node = leader_node()
    call(node, post("/cluster/learners", {"id": 4, "raft": "127.0.0.1:7004"}))
    call(node, post("/cluster/voters", {"ids": [4]}))
    assert node.sm is not None and node.sm.address(4) is not None
    r = call(node, req("DELETE", "/cluster/voters/4"))
    assert r.status == 200
    assert "4" not in r.json_body()["membership"]["nodes"]
    assert node.writes[-1] == ["forget", 4] and node.sm.address(4) is None


def test_forgetting_a_voter_is_refused_by_the_engine() -> None:
    r = call(leader_node(), req("DELETE", "/cluster/nodes/2"))
    assert r.status == 409
    assert r.json_body()["error"] == "invalid_membership_change"
    assert "still voters" in r.json_body()["reason"]


@pytest.mark.parametrize(
    ("error", "status", "code", "fields"),
    [
        (MembershipChangeInProgress(), 409, "membership_change_in_progress", {}),
        (InvalidMembershipChange("nope"), 409, "invalid_membership_change", {"reason": "nope"}),
        (
            MembershipMismatch(LogId(1, 1, 5), LogId(2, 1, 9)),
            409,
            "membership_mismatch",
            {
                "expected": {"term": 1, "node_id": 1, "index": 5},
                "actual": {"term": 2, "node_id": 1, "index": 9},
            },
        ),
        (Timeout(10.0), 503, "timeout", {}),
        (LeadershipLost(3), 503, "leadership_lost", {}),
        (ShuttingDown(), 503, "shutting_down", {}),
        (NodeStopped("disk"), 500, "node_stopped", {"reason": "disk"}),
        (NotLeader(None, None), 503, "no_leader", {}),
    ],
)
def test_membership_errors_map_to_statuses(
    error: ClientError, status: int, code: str, fields: dict[str, Any]
) -> None:
    node = leader_node(change_errors=[error])
    r = call(node, req("DELETE", "/cluster/voters/2"))
    body = r.json_body()
    assert r.status == status and body["error"] == code, body
    for k, v in fields.items():
        assert body[k] == v
    # A NotLeader naming the leader redirects like any other request.
    node = leader_node(change_errors=[NotLeader(3, "127.0.0.1:7003")])
    r = call(node, req("DELETE", "/cluster/voters/2"))
    assert r.status == 307 and r.header("location") == "http://127.0.0.1:8003/cluster/voters/2"


@pytest.mark.parametrize(
    ("error", "status", "code", "fields"),
    [
        (InvalidTransfer("node 4 is a learner"), 409, "invalid_transfer", {}),
        (TransferInProgress(3), 409, "transfer_in_progress", {"to": 3}),
        (TransferTimeout(3, 0.6), 503, "transfer_timeout", {"to": 3}),
        (LeadershipLost(3), 503, "leadership_lost", {}),
        (Timeout(10.0), 503, "timeout", {}),
    ],
)
def test_transfer_answers(
    error: ClientError, status: int, code: str, fields: dict[str, Any]
) -> None:
    node = leader_node()
    r = call(node, post("/cluster/leader", {"to": 3}))
    assert (r.status, r.json_body()) == (
        200,
        {"ok": True, "leader_id": 3, "leader_http": "127.0.0.1:8003"},
    )
    assert node.changes[-1][:2] == ("transfer_leader", 3)
    node = leader_node(change_errors=[error])
    r = call(node, post("/cluster/leader", {"to": 3}))
    body = r.json_body()
    assert r.status == status and body["error"] == code, body
    for k, v in fields.items():
        assert body[k] == v
    # A follower redirects it to the leader.
    node = leader_node(change_errors=[NotLeader(3, "127.0.0.1:7003")])
    r = call(node, post("/cluster/leader", {}))
    assert r.status == 307 and r.header("location") == "http://127.0.0.1:8003/cluster/leader"


def test_writes_during_a_transfer_are_retryable() -> None:
    node = FakeNode(metrics(Role.LEADER, 1), outcome=TransferInProgress(2))
    r = call(node, req("PUT", "/kv/k", b"v"))
    assert (r.status, r.json_body()["error"]) == (503, "transfer_in_progress")


def test_status_and_cluster_show_voters_learners_and_joint() -> None:
    joint = Membership(
        ({1, 2, 3}, {1, 3, 4}),
        {
            1: "127.0.0.1:7001",
            2: "127.0.0.1:7002",
            3: "127.0.0.1:7003",
            4: "127.0.0.1:7004",
            5: "127.0.0.1:7005",
        },
    )
    node = FakeNode(attrs.evolve(metrics(Role.FOLLOWER, 3), membership=joint))
    s = call(node, req("GET", "/status")).json_body()
    m = s["membership"]
    assert m["voters"] == [[1, 2, 3], [1, 3, 4]] and m["voter_ids"] == [1, 2, 3, 4]
    assert m["learners"] == [5] and m["joint"] is True
    assert m["http"]["4"] == "127.0.0.1:8004"
    c = call(node, req("GET", "/cluster")).json_body()
    assert c == {
        "node_id": 1,
        "role": "follower",
        "leader_id": 3,
        "leader_http": "127.0.0.1:8003",
        "membership": m,
    }
    # A node not yet in any cluster.
    fresh = FakeNode(attrs.evolve(metrics(Role.LEARNER, None), membership=None))
    assert call(fresh, req("GET", "/cluster")).json_body()["membership"] is None


def test_serve_options_for_a_node_the_spec_does_not_list() -> None:
    spec = parse_cluster("1=127.0.0.1:7001,2=127.0.0.1:7002")
    with pytest.raises(ValueError, match="--raft"):
        ServeOptions(node_id=4, cluster=spec, data_dir="d").resolved()
    opts = ServeOptions(node_id=4, cluster=spec, data_dir="d", raft="127.0.0.1:7004").resolved()
    assert opts.cluster[4] == NodeAddress(4, "127.0.0.1:7004", "127.0.0.1:8004")
    assert opts.raft_listen == "127.0.0.1:7004" and opts.http_listen == "127.0.0.1:8004"
    opts = ServeOptions(
        node_id=4, cluster=spec, data_dir="d", raft="127.0.0.1:7004", http="0.0.0.0:9"
    ).resolved()
    assert opts.cluster[4].http == "0.0.0.0:9" and opts.http_listen == "0.0.0.0:9"
    same = ServeOptions(node_id=1, cluster=spec, data_dir="d")
    assert same.resolved() is same


# -- the two socket loops over real sockets ----------------------------------------------------


async def echo(request: Request) -> Response:
    return Response.json(200, {"method": request.method, "path": request.path})


def test_asyncio_socket_loop_serves_and_survives_garbage() -> None:
    from raftcore.adapters.kv.client import HttpPool
    from raftcore.adapters.kv.server import close_http_asyncio, serve_http_asyncio

    async def main() -> None:
        server = await serve_http_asyncio(echo, "127.0.0.1", 0)
        addr = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        pool = HttpPool()
        try:
            for _ in range(3):  # keep-alive: one connection, three requests
                r = await pool.request(addr, "GET", "/kv/x", timeout=5)
                assert r.json_body() == {"method": "GET", "path": "/kv/x"}
            reader, writer = await asyncio.open_connection("127.0.0.1", int(addr.split(":")[1]))
            writer.write(b"\x16\x03\x01 not http at all\r\n\r\n")
            answer = await reader.read()  # the server answers and closes
            assert answer.startswith(b"HTTP/1.1 400 Bad Request")
            writer.close()
            r = await pool.request(addr, "PUT", "/kv/y", b"v", timeout=5)
            assert r.status == 200
        finally:
            pool.close()
            await close_http_asyncio(server)

    asyncio.run(main())


def test_trio_socket_loop_serves_and_survives_garbage() -> None:
    import functools

    import trio

    from raftcore.adapters.kv.server import serve_http_trio

    async def exchange(port: int, data: bytes) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(data)
            out = b""
            while chunk := await stream.receive_some(65536):
                out += chunk
            return out

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(serve_http_trio, echo, "127.0.0.1", 0)
            )
            port = listeners[0].socket.getsockname()[1]
            garbage = await exchange(port, b"NOPE\r\n\r\n")
            assert garbage.startswith(b"HTTP/1.1 400 Bad Request")
            client = ClientConnection(f"127.0.0.1:{port}")
            ok = await exchange(
                port, client.request("GET", "/status", headers=(("connection", "close"),))
            )
            client.receive_data(ok)
            r = client.next_response()
            assert isinstance(r, Response) and r.json_body() == {"method": "GET", "path": "/status"}
            nursery.cancel_scope.cancel()

    trio.run(main)


# -- the client ------------------------------------------------------------------------------


def _closed_ports(n: int) -> list[str]:
    """Loopback addresses nothing listens on (bound, then closed)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{sock.getsockname()[1]}" for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def test_client_backs_off_when_every_node_is_down() -> None:
    async def main() -> None:
        attempts = 0
        client = KvClient(_closed_ports(3), request_timeout=0.5)
        request = client.pool.request

        async def counting(*args: Any, **kwargs: Any) -> Response:
            nonlocal attempts
            attempts += 1
            return await request(*args, **kwargs)

        client.pool.request = counting  # type: ignore[method-assign]
        started = time.monotonic()
        with pytest.raises(KvUnavailable, match="gave up"):
            await client.put("k", "v", deadline=1.0)
        elapsed = time.monotonic() - started
        client.close()
        # Without a back-off this was thousands of attempts; with 20 ms doubling
        # to 0.5 s it is about six.
        assert 2 <= attempts < 50, attempts
        assert 0.9 <= elapsed < 5.0, elapsed

    asyncio.run(main())


def test_pooled_connection_is_closed_when_its_exchange_times_out() -> None:
    from raftcore.adapters.kv.server import close_http_asyncio, serve_http_asyncio

    never = asyncio.Event()

    async def handler(request: Request) -> Response:
        if request.path == "/kv/slow":
            await never.wait()  # the server never answers this one
        return Response.json(200, {"path": request.path})

    async def main() -> None:
        server = await serve_http_asyncio(handler, "127.0.0.1", 0)
        addr = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        pool = HttpPool()
        try:
            r = await pool.request(addr, "GET", "/kv/fast", timeout=5)
            assert r.json_body() == {"path": "/kv/fast"}
            [conn] = pool._idle[addr]  # kept alive for the next request
            with pytest.raises(TimeoutError):
                await pool.request(addr, "GET", "/kv/slow", timeout=0.2)
            assert conn.writer.is_closing()  # closed, not leaked half-way through an exchange
            assert pool._idle[addr] == []  # and not handed out again
            r = await pool.request(addr, "GET", "/kv/fast", timeout=5)  # a fresh connection
            assert r.status == 200 and pool._idle[addr] != [conn]
        finally:
            pool.close()
            await close_http_asyncio(server)

    asyncio.run(main())


# -- membership through the client and the command line ------------------------------------------


class FakeCluster:
    """Two KvApi servers on real sockets in a background thread: node 1 (follower)
    redirects to node 2 (leader), whose fake node changes the membership."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.leader_sm = KVStateMachine()
        self.leader = FakeNode(attrs.evolve(metrics(Role.LEADER, 2), node_id=2), sm=self.leader_sm)
        self.follower = FakeNode(attrs.evolve(metrics(Role.FOLLOWER, 2), node_id=1))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> list[asyncio.Server]:
        from raftcore.adapters.kv.server import serve_http_asyncio

        servers = [await serve_http_asyncio(_unset, "127.0.0.1", 0) for _ in range(2)]
        ports = [s.sockets[0].getsockname()[1] for s in servers]
        self.spec = parse_cluster(
            ",".join(f"{i + 1}=127.0.0.1:{7001 + i}/127.0.0.1:{p}" for i, p in enumerate(ports))
        )
        for server in servers:
            server.close()
        await asyncio.gather(*(s.wait_closed() for s in servers))
        # Listen again on the same ports with the real handlers (which need the spec).
        apis = [
            KvApi(self.follower, KVStateMachine(), 1, self.spec),
            KvApi(self.leader, self.leader_sm, 2, self.spec),
        ]
        return [
            await serve_http_asyncio(api.handle, "127.0.0.1", port)
            for api, port in zip(apis, ports, strict=True)
        ]

    @property
    def cluster_arg(self) -> str:
        return ",".join(f"{n}={a.raft}/{a.http}" for n, a in self.spec.items())

    def close(self) -> None:
        from raftcore.adapters.kv.server import close_http_asyncio

        async def stop() -> None:
            for s in self.servers:
                await close_http_asyncio(s)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def _unset(request: Request) -> Response:
    return Response.json(500, {"error": "not ready"})


@pytest.fixture
def fake_cluster() -> Any:
    cluster = FakeCluster()
    try:
        yield cluster
    finally:
        cluster.close()


def test_client_membership_calls_follow_redirects_and_wait_out_a_change_in_progress(
    fake_cluster: FakeCluster,
) -> None:
    leader = fake_cluster.leader
    leader.change_errors = [MembershipChangeInProgress()]

    async def main() -> None:
        async with KvClient.for_cluster(fake_cluster.spec, deadline=5.0) as client:
            answer = await client.add_learner(4, "127.0.0.1:7004", "127.0.0.1:8004", timeout=2)
            assert answer["membership"]["learners"] == [4]
            assert client.retries >= 2  # the follower's redirect, then the 409
            answer = await client.promote([4])
            assert answer["membership"]["voter_ids"] == [1, 2, 3, 4]
            cluster = await client.cluster()
            assert cluster["leader_id"] == 2 and cluster["membership"] == answer["membership"]
            answer = await client.remove_node(1)
            assert answer["changed"] and "1" not in answer["membership"]["nodes"]
            answer = await client.remove_node(1)  # repeating it is harmless
            assert not answer["changed"]
            with pytest.raises(KvError) as info:
                await client.promote([9])
            assert info.value.status == 409

    asyncio.run(main())
    kinds = [type(c[0]).__name__ if not isinstance(c[0], str) else c[0] for c in leader.changes]
    assert kinds == ["AddLearners", "add_learner", "AddVoters", "RemoveVoters"]


def test_cli_membership_commands(
    fake_cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    from raftcore.adapters.kv.__main__ import main

    spec = fake_cluster.cluster_arg
    assert (
        main(["add-node", "4", "127.0.0.1:7004", "--http", "127.0.0.1:9004", "--cluster", spec])
        == 0
    )
    out = capsys.readouterr().out
    assert "node 4 is a learner, caught up" in out
    assert "voters 1, 2, 3  learners 4  (uniform)" in out
    assert "4 learner  raft 127.0.0.1:7004" in out and "http 127.0.0.1:9004" in out
    assert main(["promote", "4", "--cluster", spec]) == 0
    assert "voters 1, 2, 3, 4  learners -" in capsys.readouterr().out
    assert main(["remove-node", "3", "--retain", "--cluster", spec]) == 0
    out = capsys.readouterr().out
    assert "node 3 removed as a voter, kept as a learner" in out
    assert "voters 1, 2, 4  learners 3" in out
    assert main(["remove-node", "3", "--cluster", spec, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["changed"] and "3" not in answer["membership"]["nodes"]
    assert main(["status", "--cluster", spec]) == 0
    out = capsys.readouterr().out
    assert "membership (the leader): voters 1, 2, 4  learners -  (uniform)" in out
    # A refused change: exit status 3 and the reason.
    assert main(["promote", "9", "--cluster", spec, "--timeout", "2"]) == 3
    assert "not members: [9]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["add-node", "4", "nohost", "--cluster", spec])


def test_the_cluster_defaults_to_raftcore_cluster(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from raftcore.adapters.kv.__main__ import main

    monkeypatch.delenv("RAFTCORE_CLUSTER", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["status"])
    assert exited.value.code == 2
    assert "--cluster" in capsys.readouterr().err
    # From the environment: the command runs (nothing listens there: exit 3).
    monkeypatch.setenv("RAFTCORE_CLUSTER", "1=127.0.0.1:9/127.0.0.1:9")
    assert main(["get", "k", "--timeout", "0.5"]) == 3
    assert "127.0.0.1:9" in capsys.readouterr().err
    monkeypatch.setenv("RAFTCORE_CLUSTER", "nonsense")
    with pytest.raises(SystemExit) as exited:
        main(["status"])
    assert exited.value.code == 2
    assert "argument --cluster" in capsys.readouterr().err


def test_metrics_health_and_ready() -> None:
    node = leader_node()
    r = call(node, req("GET", "/metrics"))
    assert r.status == 200 and (r.header("content-type") or "").startswith("text/plain")
    text = r.body.decode()
    for line in (
        'raftcore_role{role="leader"} 1.0',
        'raftcore_role{role="follower"} 0.0',
        "raftcore_term 2.0",
        "raftcore_transport_frames_sent_total 7.0",
        "raftcore_transport_peers 2.0",
        "raftcore_transfer_in_progress 0.0",
    ):
        assert line in text.splitlines(), (line, text)
    assert 'raftcore_follower_lag_entries{follower="2"}' in text
    r = call(node, req("GET", "/health"))
    assert (r.status, r.json_body()["ok"]) == (200, True)
    assert call(node, req("GET", "/ready")).status == 200
    # No leader known: alive but not ready.
    lost = FakeNode(metrics(Role.FOLLOWER, None))
    assert call(lost, req("GET", "/health")).status == 200
    r = call(lost, req("GET", "/ready"))
    assert (r.status, r.json_body()["error"]) == (503, "no_leader")
    stopped = FakeNode(attrs.evolve(metrics(Role.FOLLOWER, 1), stopped="disk"))
    r = call(stopped, req("GET", "/health"))
    assert (r.status, r.json_body()["error"]) == (503, "node_stopped")
    assert call(node, req("POST", "/metrics")).status == 405


def test_health_needs_no_token_but_metrics_does(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{RO} ro\n")
    tokens = ApiTokens.load(str(path))
    node = leader_node()
    assert call(node, req("GET", "/health"), tokens=tokens).status == 200
    assert call(node, req("GET", "/ready"), tokens=tokens).status == 200
    assert call(node, req("GET", "/metrics"), tokens=tokens).status == 401
    authorized = Request("GET", "/metrics", (("authorization", f"Bearer {RO}"),))
    assert call(node, authorized, tokens=tokens).status == 200


def test_latency_histograms_are_cumulative_prometheus_buckets() -> None:
    from raftcore.adapters._latency import BUCKETS, Histogram

    h = Histogram()
    for seconds in (0.0001, 0.0005, 0.003, 0.2, 30.0):
        h.observe(seconds)
    buckets = dict(h.cumulative())
    assert buckets["0.0005"] == 2.0  # le is inclusive
    assert buckets["0.005"] == 3.0 and buckets["0.25"] == 4.0 and buckets["10.0"] == 4.0
    assert buckets["+Inf"] == 5.0 == h.count and len(buckets) == len(BUCKETS) + 1
    assert abs(h.sum - 30.2036) < 1e-9
    node = leader_node()
    node.histograms = {"commit": h}
    text = call(node, req("GET", "/metrics")).body.decode().splitlines()
    assert 'raftcore_commit_latency_seconds_bucket{le="0.005"} 3.0' in text
    assert "raftcore_commit_latency_seconds_count 5.0" in text


def test_requests_are_logged_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "raftcore.adapters.kv.server")
    call(leader_node(), req("GET", "/status"))
    call(leader_node(), req("GET", "/nope"))
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert lines == ["GET /status -> 200", "GET /nope -> 404"]


def test_commit_latency_is_per_append_batch_and_forgets_truncated_ones() -> None:
    from collections import deque
    from types import SimpleNamespace

    from raftcore.adapters._driver import Driver
    from raftcore.adapters._latency import new_latencies
    from raftcore.commands import AppendLog, PurgeLog, TruncateLog

    d: Any = SimpleNamespace(_appended=deque(), latency=new_latencies())

    def append(first: int, last: int) -> AppendLog:
        entries = tuple(normal(LogId(1, 1, i), b"x") for i in range(first, last + 1))
        return AppendLog(0, entries)

    for cmd in (append(1, 3), append(4, 5), append(6, 8)):
        Driver._track_commit(d, cmd)
    Driver._track_commit(d, TruncateLog(0, 6))  # batch 6..8 is gone
    Driver._committed_through(d, 4)  # covers batch 1..3 only
    assert d.latency["commit"].count == 1
    Driver._committed_through(d, 9)
    assert d.latency["commit"].count == 2 and not d._appended
    Driver._track_commit(d, append(9, 9))
    Driver._track_commit(d, PurgeLog(0, LogId(1, 1, 9)))  # replaced by a snapshot
    Driver._committed_through(d, 20)
    assert d.latency["commit"].count == 2
