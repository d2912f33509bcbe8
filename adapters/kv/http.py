"""HTTP/1.1 for the KV service, sans-IO: bytes in, requests out; responses in, bytes out.

Built on h11. Nothing here touches a socket or an event loop, so one
implementation serves both runtimes and the tests feed it bytes directly:

- ``ServerConnection`` turns received bytes into ``Request`` values and
  ``Response`` values into bytes to send. Malformed HTTP, oversized headers
  and oversized bodies become ready-made error ``Response`` s (400, 431, 413)
  followed by closing that one connection; the server keeps running.
- ``serve_connection`` is the whole per-connection loop, written against two
  awaitables (``recv``, ``send``) that the asyncio and trio socket loops in
  ``raftcore.adapters.kv.server`` supply.
- ``route`` maps a request to an ``Operation`` (or an error ``Response``);
  ``not_leader_response`` and friends build the API's JSON answers.
- ``ClientConnection`` is the client side: a request to bytes, bytes to a
  ``Response``; ``raftcore.adapters.kv.client`` runs it over asyncio streams.

The API (see docs/kv-service.md): ``PUT /kv/<key>`` with the value as the raw
UTF-8 request body, ``GET /kv/<key>``, ``DELETE /kv/<key>``, ``GET /status``.
Keys are percent-decoded from the path. Membership: ``GET /cluster``,
``POST /cluster/learners`` (JSON ``{"id", "raft", "http"}``), ``POST
/cluster/voters`` (JSON ``{"ids": [...]}``), ``DELETE /cluster/voters/<id>``
(``?retain=1``) and ``DELETE /cluster/nodes/<id>``. Every answer is a JSON
object.
"""

from __future__ import annotations

import enum
import http
import json
import logging
import reprlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import attrs
import h11

from raftcore.adapters.kv.state_machine import MAX_KEY_BYTES, MAX_VALUE_BYTES
from raftcore.ids import LogId

log = logging.getLogger("raftcore.adapters.kv.http")

#: The largest request body a server reads (larger ones get 413) and the
#: largest response body a client reads.
MAX_BODY = MAX_VALUE_BYTES
MAX_RESPONSE_BODY = 16 << 20
#: The largest request line + headers (larger ones get 431).
MAX_HEADER = 16 * 1024

Headers = tuple[tuple[str, str], ...]


def split_hostport(addr: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) to ``(host, port)``; ``ValueError`` if malformed."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {addr!r}")
    return host.strip("[]"), int(port)


def join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Signal(enum.Enum):
    NEED_DATA = "need-data"
    CLOSED = "closed"


#: ``ServerConnection.next_event`` / ``ClientConnection.next_response``: feed more bytes.
NEED_DATA = _Signal.NEED_DATA
#: ``ServerConnection.next_event``: the peer closed the connection cleanly.
CLOSED = _Signal.CLOSED


class HttpError(Exception):
    """The peer broke the HTTP protocol (client side) or the connection failed."""


@attrs.frozen
class Request:
    method: str
    target: str
    headers: Headers = ()
    body: bytes = b""

    @property
    def path(self) -> str:
        """The target without its query string, still percent-encoded."""
        return urlsplit(self.target).path

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None


@attrs.frozen
class Response:
    status: int
    body: bytes = b""
    headers: Headers = ()

    @classmethod
    def json(cls, status: int, obj: Any, headers: Headers = ()) -> Response:
        body = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        return cls(status, body, (("content-type", "application/json"), *headers))

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def json_body(self) -> Any:
        """The body decoded as JSON; ``HttpError`` if it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise HttpError(f"response {self.status} is not JSON: {self.body[:80]!r}") from e


def error_response(status: int, error: str, headers: Headers = (), **fields: Any) -> Response:
    """``{"error": error, **fields}`` with ``status``."""
    return Response.json(status, {"error": error, **fields}, headers)


def _decode_headers(headers: Any) -> Headers:
    return tuple((bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in headers)


def _h11_response(response: Response, close: bool) -> h11.Response:
    headers = [
        (k, v) for k, v in response.headers if k.lower() not in ("content-length", "connection")
    ]
    headers.append(("content-length", str(len(response.body))))
    if close:
        headers.append(("connection", "close"))
    try:
        reason = http.HTTPStatus(response.status).phrase
    except ValueError:
        reason = ""
    return h11.Response(status_code=response.status, headers=headers, reason=reason)


# -- server ---------------------------------------------------------------------------


class ServerConnection:
    """One HTTP/1.1 server connection (keep-alive, one request at a time).

    Drive it like this (``serve_connection`` does exactly this)::

        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                send(conn.data_to_send())          # e.g. "100 Continue"
                conn.receive_data(recv())          # b"" at end of stream
            elif event is CLOSED:
                break
            else:                                  # Request, or an error Response
                response = event if isinstance(event, Response) else handle(event)
                conn.respond(response)
                send(conn.data_to_send())
                if conn.closing:
                    break
    """

    def __init__(self, *, max_body: int = MAX_BODY, max_header: int = MAX_HEADER) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header)
        self.max_body = max_body
        self._out = bytearray()
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._head = False
        #: Set once the connection must be closed after what is in ``data_to_send``.
        self.closing = False
        #: Requests answered on this connection.
        self.requests = 0

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` means it closed its side."""
        self._h11.receive_data(data)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Request | Response | _Signal:
        """The next complete request, an error response to send, or a signal."""
        if self.closing:
            return CLOSED
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as e:
                status = e.error_status_hint
                error = "headers_too_large" if status == 431 else "bad_request"
                return self._fail(status, error, str(e))
            if event is h11.NEED_DATA:
                return NEED_DATA
            if event is h11.PAUSED:  # pragma: no cover - respond() restarts the cycle first
                return NEED_DATA
            if isinstance(event, h11.ConnectionClosed):
                self.closing = True
                return CLOSED
            if isinstance(event, h11.Request):
                self._request = event
                self._head = event.method == b"HEAD"
                self._body.clear()
                names = {bytes(k).lower() for k, _ in event.headers}
                if b"content-length" in names and b"transfer-encoding" in names:
                    # Two framings a proxy and this server may read differently
                    # (request smuggling): refuse, and close.
                    return self._fail(
                        400, "bad_request", "Content-Length and Transfer-Encoding together"
                    )
                if b"#" in event.target:
                    return self._fail(
                        400, "bad_request", "'#' in a request target: percent-encode it as %23"
                    )
                length = _content_length(event.headers)
                if length is not None and length > self.max_body:
                    return self._fail(413, "body_too_large", f"the limit is {self.max_body} bytes")
                if self._h11.they_are_waiting_for_100_continue:
                    self._out += self._h11.send(
                        h11.InformationalResponse(status_code=100, headers=[], reason="Continue")
                    )
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self.max_body:
                    return self._fail(413, "body_too_large", f"the limit is {self.max_body} bytes")
            elif isinstance(event, h11.EndOfMessage):
                req = self._request
                assert req is not None
                self._request = None
                return Request(
                    req.method.decode("ascii"),
                    req.target.decode("ascii"),
                    _decode_headers(req.headers),
                    bytes(self._body),
                )

    def respond(self, response: Response) -> None:
        """Queue ``response`` to the current request (or error) for ``data_to_send``."""
        h = self._h11
        if h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self.closing = True  # nothing sensible to send any more
            return
        # Answering before the request body arrived (413) leaves the stream
        # unusable: say so and close.
        close = self.closing or h.their_state is not h11.DONE
        try:
            self._out += h.send(_h11_response(response, close))
            if not self._head:  # a HEAD answer has the headers of a GET, no body
                self._out += h.send(h11.Data(data=response.body))
            self._out += h.send(h11.EndOfMessage())
        except h11.LocalProtocolError:  # pragma: no cover - defensive
            self.closing = True
            return
        self.requests += 1
        if close or self._h11.our_state is h11.MUST_CLOSE:  # the client asked to close
            self.closing = True
        else:
            h.start_next_cycle()

    def _fail(self, status: int, error: str, detail: str) -> Response:
        self.closing = True
        return error_response(status, error, detail=detail)

    @property
    def mid_request(self) -> bool:
        """Has part of a request arrived (its head or body is incomplete)?"""
        h = self._h11
        return h.their_state is h11.SEND_BODY or (
            h.their_state is h11.IDLE and bool(h.trailing_data[0])
        )

    def timed_out(self, seconds: float) -> Response:
        """The answer to a request not complete within ``seconds`` (then close)."""
        return self._fail(408, "request_timeout", f"the request took over {seconds:g}s to arrive")


def _content_length(headers: Any) -> int | None:
    for k, v in headers:
        if k == b"content-length":
            return int(v)  # h11 validated it
    return None


Handler = Callable[[Request], Awaitable[Response]]


#: Close a connection idle this long between requests (seconds).
IDLE_TIMEOUT = 60.0
#: A request must arrive whole (head and body) this long after its first byte.
REQUEST_TIMEOUT = 10.0


async def serve_connection(
    recv: Callable[[float], Awaitable[bytes]],
    send: Callable[[bytes], Awaitable[None]],
    handler: Handler,
    conn: ServerConnection | None = None,
    *,
    now: Callable[[], float],
    idle_timeout: float = IDLE_TIMEOUT,
    request_timeout: float = REQUEST_TIMEOUT,
) -> None:
    """Serve one connection until either side closes it.

    ``recv(timeout)`` returns the next bytes (``b""`` at end of stream, or
    when ``timeout`` seconds pass); ``send`` writes all of its bytes. Between
    requests the connection may idle for ``idle_timeout``; a request must
    arrive whole within ``request_timeout`` of its first byte, or it is
    answered ``408`` and the connection closed (a slow client cannot hold a
    connection open). A handler that raises gets the client a 500; the
    connection stays usable.
    """
    conn = conn if conn is not None else ServerConnection()
    started: float | None = None
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            out = conn.data_to_send()
            if out:
                await send(out)
            if not conn.mid_request:
                started = None
                conn.receive_data(await recv(idle_timeout))
                continue
            if started is None:
                started = now()
            left = started + request_timeout - now()
            data = await recv(left) if left > 0 else b""
            if not data and now() - started >= request_timeout:
                conn.respond(conn.timed_out(request_timeout))
                await send(conn.data_to_send())
                return
            conn.receive_data(data)
        elif isinstance(event, _Signal):  # CLOSED
            return
        else:
            if isinstance(event, Response):
                response = event
            else:
                try:
                    response = await handler(event)
                except Exception as e:
                    log.exception("handler failed on %s %s", event.method, event.target)
                    response = error_response(500, "internal", detail=f"{type(e).__name__}: {e}")
            conn.respond(response)
            await send(conn.data_to_send())
            if conn.closing:
                return


# -- the API's routes and answers ---------------------------------------------------------


#: ``GET /kv/KEY?consistency=...``: ``linearizable`` (ReadIndex, the
#: default), ``lease`` (a lease read) or ``stale`` (this node's state as it
#: is, on any node; the answer says ``"stale": true``).
CONSISTENCY = ("linearizable", "lease", "stale")


@attrs.frozen
class Get:
    key: str
    consistency: str = "linearizable"


@attrs.frozen
class Put:
    key: str
    value: str


@attrs.frozen
class Delete:
    key: str


@attrs.frozen
class Status:
    pass


@attrs.frozen
class ScrapeMetrics:
    """``GET /metrics``: Prometheus metrics (adapters/kv/metrics.py)."""


@attrs.frozen
class Probe:
    """``GET /health`` (the process and its engine run) or ``GET /ready``
    (a member of a cluster with a known leader)."""

    ready: bool


@attrs.frozen
class ClusterInfo:
    """``GET /cluster``: this node's view of the membership."""


@attrs.frozen
class TakeSnapshot:
    """``POST /snapshot``: snapshot this node's state machine now."""


@attrs.frozen
class AddLearner:
    """``POST /cluster/learners``: add a non-voting member, by default blocking
    until its log is within ``max_lag`` entries of the leader's."""

    node_id: int
    raft: str
    #: ``None``: the Raft port + 1000 (decided by the server).
    http: str | None = None
    blocking: bool = True
    max_lag: int = 0
    #: ``None``: the server's default.
    timeout: float | None = None


@attrs.frozen
class Promote:
    """``POST /cluster/voters``: make these members (learners) voters."""

    ids: tuple[int, ...]
    expected: LogId | None = None


@attrs.frozen
class RemoveVoter:
    """``DELETE /cluster/voters/<id>``: stop a voter voting (``retain``: keep it as a learner)."""

    node_id: int
    retain: bool = False
    expected: LogId | None = None


@attrs.frozen
class ForgetNode:
    """``DELETE /cluster/nodes/<id>``: forget a member that is not a voter."""

    node_id: int
    expected: LogId | None = None


@attrs.frozen
class TransferLeadership:
    """``POST /cluster/leader``: hand leadership to voter ``to`` (``None``:
    the most up-to-date other voter)."""

    to: int | None = None


MembershipOp = AddLearner | Promote | RemoveVoter | ForgetNode
Operation = (
    Get
    | Put
    | Delete
    | Status
    | ClusterInfo
    | TakeSnapshot
    | TransferLeadership
    | ScrapeMetrics
    | Probe
    | MembershipOp
)

KV_PREFIX = "/kv/"
CLUSTER_PREFIX = "/cluster"
#: The longest a membership request may ask the server to wait (seconds).
MAX_CHANGE_TIMEOUT = 600.0


def key_path(key: str) -> str:
    """The request path of ``key`` (percent-encoded)."""
    return KV_PREFIX + quote(key, safe="")


def route(request: Request) -> Operation | Response:
    """What ``request`` asks for, or the error response it deserves."""
    path = request.path
    if path == "/status":
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed("GET")
        return Status()
    if path == "/snapshot":
        if request.method != "POST":
            return _method_not_allowed("POST")
        return TakeSnapshot()
    if path in ("/metrics", "/health", "/ready"):
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed("GET")
        return ScrapeMetrics() if path == "/metrics" else Probe(path == "/ready")
    if path == CLUSTER_PREFIX or path.startswith(CLUSTER_PREFIX + "/"):
        return _cluster_route(request)
    if not path.startswith(KV_PREFIX):
        return error_response(404, "no_such_route", detail=f"no route for {path!r}")
    try:
        key = unquote(path[len(KV_PREFIX) :], errors="strict")
    except UnicodeDecodeError:
        return error_response(400, "bad_key", detail="the key is not UTF-8")
    if not key:
        return error_response(400, "bad_key", detail="empty key")
    if len(key.encode()) > MAX_KEY_BYTES:
        return error_response(400, "bad_key", detail=f"keys are at most {MAX_KEY_BYTES} bytes")
    query = parse_qs(urlsplit(request.target).query, keep_blank_values=True)
    allowed = {"consistency"} if request.method == "GET" else set()
    unknown = sorted(set(query) - allowed)
    if unknown or ("?" in request.target and not query):
        # A key is the whole path: a '?' in one must be sent as %3F, or the
        # rest would be silently dropped as a query string.
        return error_response(
            400,
            "bad_key",
            detail=f"unknown query {unknown or request.target.split('?', 1)[1]!r}: "
            "percent-encode '?' in a key as %3F",
        )
    if request.method == "GET":
        consistency = query.get("consistency", ["linearizable"])[-1]
        if consistency not in CONSISTENCY:
            return error_response(
                400, "bad_request", detail=f"consistency is one of {', '.join(CONSISTENCY)}"
            )
        return Get(key, consistency)
    if request.method == "DELETE":
        return Delete(key)
    if request.method == "PUT":
        try:
            value = request.body.decode("utf-8")
        except UnicodeDecodeError:
            return error_response(400, "bad_value", detail="the value is not UTF-8")
        return Put(key, value)
    return _method_not_allowed("GET, PUT, DELETE")


def _method_not_allowed(allow: str) -> Response:
    return error_response(405, "method_not_allowed", (("allow", allow),), allow=allow)


class _BadRequest(Exception):
    pass


def check_address(addr: Any, what: str = "address") -> str:
    """``addr`` if it is a plain ``HOST:PORT`` (``[v6]:PORT``), else ``ValueError``.

    Stricter than ``split_hostport``: a membership's node info is what every
    node's transport dials, so nothing that merely parses is good enough.
    """
    if not isinstance(addr, str):
        raise ValueError(f"{what}: expected a 'HOST:PORT' string, got {addr!r}")
    host, _ = split_hostport(addr)
    bracketed = addr.startswith("[")
    if (
        not host
        or any(c.isspace() or c in "/?#@[]" for c in host)
        or (":" in host and not bracketed)
        or (bracketed and not addr.rpartition(":")[0].endswith("]"))
    ):
        raise ValueError(f"{what}: expected HOST:PORT, got {addr!r}")
    return addr


#: Node ids are unsigned 64-bit integers on the wire.
MAX_NODE_ID = (1 << 64) - 1


def _node_id(value: Any, what: str = "id") -> int:
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_NODE_ID:
        raise _BadRequest(
            f"{what}: expected a node id from 1 to {MAX_NODE_ID}, got {reprlib.repr(value)}"
        )
    return value


def parse_log_id(value: Any) -> LogId | None:
    """``"TERM-NODE-INDEX"`` or ``{"term", "node_id", "index"}`` to a ``LogId``."""
    if value is None:
        return None
    parts: list[Any]
    if isinstance(value, str):
        parts = value.split("-")
    elif isinstance(value, dict):
        parts = [value.get("term"), value.get("node_id"), value.get("index")]
    else:
        parts = []
    try:
        if len(parts) != 3:
            raise ValueError
        ints = [int(p) for p in parts]
    except (TypeError, ValueError):
        raise _BadRequest(
            f"expected: a log id 'TERM-NODE-INDEX' or {{term, node_id, index}}, got {value!r}"
        ) from None
    if any(n < 0 for n in ints):
        raise _BadRequest(f"expected: negative numbers in {value!r}")
    return LogId(*ints)


def _flag(query: dict[str, list[str]], name: str) -> bool:
    values = query.get(name)
    if not values:
        return False
    value = values[-1].lower()
    if value in ("", "1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise _BadRequest(f"{name}: expected 1 or 0, got {values[-1]!r}")


def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError as e:
        raise _BadRequest(f"the body is not JSON: {e}") from None
    except RecursionError:
        raise _BadRequest("the body nests too deeply") from None
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object")
    return body


def _add_learner(body: dict[str, Any]) -> AddLearner:
    unknown = body.keys() - {"id", "raft", "http", "blocking", "max_lag", "timeout"}
    if unknown:
        raise _BadRequest(f"unknown fields {sorted(unknown)}")
    if "id" not in body or "raft" not in body:
        raise _BadRequest('give "id" and "raft" (and optionally "http")')
    try:
        raft = check_address(body["raft"], "raft")
        http = None if body.get("http") is None else check_address(body["http"], "http")
    except ValueError as e:
        raise _BadRequest(str(e)) from None
    blocking = body.get("blocking", True)
    if not isinstance(blocking, bool):
        raise _BadRequest(f"blocking: expected true or false, got {blocking!r}")
    max_lag = body.get("max_lag", 0)
    if not isinstance(max_lag, int) or isinstance(max_lag, bool) or max_lag < 0:
        raise _BadRequest(f"max_lag: expected an integer >= 0, got {max_lag!r}")
    return AddLearner(_node_id(body["id"]), raft, http, blocking, max_lag, _timeout(body))


def _timeout(body: dict[str, Any]) -> float | None:
    timeout = body.get("timeout")
    if timeout is None:
        return None
    if (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not 0 < timeout <= MAX_CHANGE_TIMEOUT
    ):
        raise _BadRequest(f"timeout: expected seconds in (0, {MAX_CHANGE_TIMEOUT:g}]")
    return float(timeout)


def _promote(body: dict[str, Any]) -> Promote:
    unknown = body.keys() - {"ids", "id", "expected"}
    if unknown:
        raise _BadRequest(f"unknown fields {sorted(unknown)}")
    if "ids" in body:
        ids = body["ids"]
        if not isinstance(ids, list) or not ids:
            raise _BadRequest('ids: expected a non-empty list of node ids, e.g. {"ids": [4]}')
    elif "id" in body:
        ids = [body["id"]]
    else:
        raise _BadRequest('give the node ids to promote, e.g. {"ids": [4]}')
    node_ids = tuple(sorted({_node_id(n, "ids") for n in ids}))
    return Promote(node_ids, parse_log_id(body.get("expected")))


def _transfer(body: dict[str, Any]) -> TransferLeadership:
    unknown = body.keys() - {"to"}
    if unknown:
        raise _BadRequest(f"unknown fields {sorted(unknown)}")
    to = body.get("to")
    return TransferLeadership(None if to is None else _node_id(to, "to"))


def _cluster_route(
    request: Request,
) -> MembershipOp | ClusterInfo | TransferLeadership | Response:
    parts = request.path[len(CLUSTER_PREFIX) :].strip("/").split("/")
    method = request.method
    query = parse_qs(urlsplit(request.target).query, keep_blank_values=True)
    try:
        if parts == [""]:
            if method not in ("GET", "HEAD"):
                return _method_not_allowed("GET")
            return ClusterInfo()
        if parts == ["learners"]:
            if method != "POST":
                return _method_not_allowed("POST")
            return _add_learner(_json_object(request))
        if parts == ["voters"]:
            if method != "POST":
                return _method_not_allowed("POST")
            return _promote(_json_object(request))
        if parts == ["leader"]:
            if method != "POST":
                return _method_not_allowed("POST")
            return _transfer(_json_object(request))
        if len(parts) == 2 and parts[0] in ("voters", "nodes"):
            if method != "DELETE":
                return _method_not_allowed("DELETE")
            node_id = _node_id(unquote(parts[1]), "node id in the path")
            expected = parse_log_id(query["expected"][-1]) if "expected" in query else None
            if parts[0] == "voters":
                return RemoveVoter(node_id, _flag(query, "retain"), expected)
            return ForgetNode(node_id, expected)
    except _BadRequest as e:
        return error_response(400, "bad_request", detail=str(e))
    return error_response(404, "no_such_route", detail=f"no route for {request.path!r}")


def not_leader_response(
    leader_id: int | None,
    leader_http: str | None,
    target: str | None = None,
    scheme: str = "http",
) -> Response:
    """Where to send a request this node cannot serve.

    With a known leader: ``307`` (so ``curl -L`` follows it, method and body
    kept) with ``Location`` and ``{"error": "not_leader", "leader_id",
    "leader_http"}``; with none: ``503 {"error": "no_leader"}``.
    """
    if leader_id is None or leader_http is None:
        return error_response(503, "no_leader", leader_id=leader_id, leader_http=None)
    headers: Headers = ()
    if target is not None:
        headers = (("location", f"{scheme}://{leader_http}{target}"),)
    return error_response(307, "not_leader", headers, leader_id=leader_id, leader_http=leader_http)


# -- client -------------------------------------------------------------------------------


class ClientConnection:
    """One HTTP/1.1 client connection: a request out, its response in; repeatable."""

    def __init__(self, host: str, *, max_body: int = MAX_RESPONSE_BODY) -> None:
        self.host = host
        self.max_body = max_body
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER)
        self._response: h11.Response | None = None
        self._body = bytearray()

    @property
    def reusable(self) -> bool:
        """Whether another request may follow on this connection."""
        return self._h11.our_state is h11.IDLE and self._h11.their_state is h11.IDLE

    def request(self, method: str, target: str, body: bytes = b"", headers: Headers = ()) -> bytes:
        """The bytes of one request."""
        h = self._h11
        if h.our_state is h11.DONE and h.their_state is h11.DONE:
            h.start_next_cycle()
        hdrs = [("host", self.host), *headers]
        if body or method in ("PUT", "POST"):
            hdrs.append(("content-length", str(len(body))))
        out = h.send(h11.Request(method=method, target=target, headers=hdrs))
        if body:
            out += h.send(h11.Data(data=body))
        out += h.send(h11.EndOfMessage())
        self._response = None
        self._body.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        self._h11.receive_data(data)

    def next_response(self) -> Response | _Signal:
        """The response once complete, else ``NEED_DATA``; ``HttpError`` if broken."""
        h = self._h11
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as e:
                raise HttpError(f"bad response: {e}") from e
            if event is h11.NEED_DATA:
                return NEED_DATA
            if isinstance(event, h11.ConnectionClosed):
                raise HttpError("the server closed the connection before responding")
            if isinstance(event, h11.Response):
                self._response = event
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self.max_body:
                    raise HttpError(f"response body over {self.max_body} bytes")
            elif isinstance(event, h11.EndOfMessage):
                r = self._response
                assert r is not None
                response = Response(r.status_code, bytes(self._body), _decode_headers(r.headers))
                if h.our_state is h11.DONE and h.their_state is h11.DONE:
                    h.start_next_cycle()
                return response
            # InformationalResponse (100 Continue) needs nothing.
