"""A client for the KV service (asyncio), and the cluster address spec.

``KvClient`` knows every node's HTTP address. A request goes to the node
believed to be the leader (at first, any node); a ``not_leader`` answer names
the leader's HTTP address and the client goes there next; a node that does
not answer (connection refused or reset, timed out) or has no leader yet is
skipped for the next one after a back-off (20 ms, doubling up to 0.5 s), until
the request's deadline. Errors that retrying cannot fix (400, 413) are raised
at once.

Membership requests (``add_learner``, ``promote``, ``remove_voter``,
``forget_node``, ``remove_node``) go to the leader the same way; they are also
retried while another change is in progress (``409
membership_change_in_progress``) and after an unknown outcome, which is safe
because the server answers a change whose goal already holds with ``200
"changed": false``.

Writes are retried after an unknown outcome (a timeout, a lost leadership, a
connection dropped after the request was sent): ``put`` and ``delete`` are
idempotent on the map's contents, but the ``previous`` value a retried write
reports may be the one the first attempt wrote.

The cluster spec, shared with ``serve``: ``ID=HOST:PORT[/HTTPHOST:HTTPPORT]``
joined by commas, e.g. ``1=127.0.0.1:7001,2=127.0.0.1:7002``. The first
address is the node's Raft (TCP transport) address; the HTTP address
defaults to the same host with the port + 1000.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from raftcore.adapters.kv.http import (
    NEED_DATA,
    ClientConnection,
    Headers,
    HttpError,
    Response,
    join_hostport,
    key_path,
    split_hostport,
)

HTTP_PORT_OFFSET = 1000


# -- cluster spec ------------------------------------------------------------------------


@attrs.frozen
class NodeAddress:
    node_id: int
    raft: str
    http: str


def default_http(raft: str) -> str:
    """The HTTP address of a node whose spec names none: Raft port + 1000."""
    host, port = split_hostport(raft)
    if port + HTTP_PORT_OFFSET > 65535:
        raise ValueError(f"{raft}: port + {HTTP_PORT_OFFSET} is not a port; give /HTTP explicitly")
    return join_hostport(host, port + HTTP_PORT_OFFSET)


def parse_cluster(spec: str) -> dict[int, NodeAddress]:
    """Parse ``ID=RAFT[/HTTP],...``; ``ValueError`` naming the bad part."""
    nodes: dict[int, NodeAddress] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        ident, sep, addrs = part.partition("=")
        if not sep or not ident.strip().isdigit() or int(ident) <= 0:
            raise ValueError(f"expected ID=HOST:PORT with a positive ID, got {part!r}")
        node_id = int(ident)
        if node_id in nodes:
            raise ValueError(f"node {node_id} is listed twice")
        raft, _, http = addrs.partition("/")
        split_hostport(raft)
        if http:
            split_hostport(http)
        nodes[node_id] = NodeAddress(node_id, raft, http or default_http(raft))
    if not nodes:
        raise ValueError("the cluster spec names no node")
    return nodes


def format_cluster(nodes: Iterable[NodeAddress]) -> str:
    return ",".join(f"{n.node_id}={n.raft}/{n.http}" for n in nodes)


# -- errors ---------------------------------------------------------------------------------


class KvError(Exception):
    """A request the service refused, or none of its nodes could serve in time."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class KvUnavailable(KvError):
    """No node served the request before the deadline (the last problem is in the message)."""


# -- one HTTP exchange ---------------------------------------------------------------------


class _Conn:
    def __init__(
        self, addr: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.addr = addr
        self.reader = reader
        self.writer = writer
        self.http = ClientConnection(addr)

    def close(self) -> None:
        self.writer.close()


async def _exchange(
    conn: _Conn, method: str, target: str, body: bytes, headers: Headers = ()
) -> Response:
    conn.writer.write(conn.http.request(method, target, body, headers))
    await conn.writer.drain()
    while True:
        event = conn.http.next_response()
        if event is NEED_DATA:
            conn.http.receive_data(await conn.reader.read(65536))
            continue
        assert isinstance(event, Response)
        return event


class HttpPool:
    """Keep-alive connections per address (one request per connection at a time)."""

    def __init__(
        self, max_idle: int = 8, headers: Headers = (), tls: ssl.SSLContext | None = None
    ) -> None:
        self.max_idle = max_idle
        #: Sent with every request (e.g. ``authorization``).
        self.headers = headers
        #: HTTPS: the context that checks the nodes' certificates.
        self.tls = tls
        self._idle: dict[str, list[_Conn]] = {}

    async def request(
        self, addr: str, method: str, target: str, body: bytes = b"", *, timeout: float
    ) -> Response:
        """One request; ``HttpError``/``OSError``/``TimeoutError`` if it failed.

        A pooled connection the server closed while idle fails before any
        response byte: that one attempt is repeated on a fresh connection.
        """
        async with asyncio.timeout(timeout):
            idle = self._idle.get(addr)
            while idle:
                conn = idle.pop()
                try:
                    response = await _exchange(conn, method, target, body, self.headers)
                except (HttpError, OSError):
                    conn.close()
                    continue
                except BaseException:
                    # Cancelled, e.g. by the timeout above: the exchange is
                    # half done, so the connection can serve nothing else.
                    conn.close()
                    raise
                self._release(conn)
                return response
            host, port = split_hostport(addr)
            if self.tls is not None:
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=self.tls, server_hostname=host
                )
            else:
                reader, writer = await asyncio.open_connection(host, port)
            conn = _Conn(addr, reader, writer)
            try:
                response = await _exchange(conn, method, target, body, self.headers)
            except BaseException:
                conn.close()
                raise
            self._release(conn)
            return response

    def _release(self, conn: _Conn) -> None:
        idle = self._idle.setdefault(conn.addr, [])
        if conn.http.reusable and len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()


# -- the client ------------------------------------------------------------------------------

#: Answers after which another node (or the same one later) may succeed.
_RETRY = frozenset(
    {
        "no_leader",
        "not_leader",
        "leader_not_ready",
        "read_not_confirmed",
        "timeout",
        "leadership_lost",
        "shutting_down",
        "not_initialized",
        "node_stopped",
        "transfer_in_progress",
    }
)


#: Membership requests also wait out another change in progress.
_RETRY_CHANGE = _RETRY | {"membership_change_in_progress"}
#: Adding a learner that did not catch up in time is not repeated (it would wait again).
_RETRY_ADD = _RETRY_CHANGE - {"timeout"}


#: The wait after an attempt that found no leader or no node, doubling up to the maximum.
_FIRST_BACKOFF = 0.02
_MAX_BACKOFF = 0.5


class KvClient:
    """Talks to a KV cluster; see the module docstring for the retry rules."""

    def __init__(
        self,
        http_addrs: Mapping[int, str] | Iterable[str],
        *,
        deadline: float = 10.0,
        request_timeout: float = 3.0,
        token: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``token``: the bearer token of a node started with ``--api-token-file``;
        ``tls``: talk HTTPS, checking the nodes' certificates with this context."""
        addrs = list(http_addrs.values()) if isinstance(http_addrs, Mapping) else list(http_addrs)
        if not addrs:
            raise ValueError("KvClient needs at least one address")
        self.addrs = addrs
        self.deadline = deadline
        self.request_timeout = request_timeout
        self.leader_http: str | None = None
        self.pool = HttpPool(
            headers=(("authorization", f"Bearer {token}"),) if token else (), tls=tls
        )
        #: Attempts that did not end the request (redirects, retries), for reports.
        self.retries = 0

    @classmethod
    def for_cluster(cls, spec: str | Mapping[int, NodeAddress], **kwargs: Any) -> KvClient:
        nodes = parse_cluster(spec) if isinstance(spec, str) else spec
        return cls({n: a.http for n, a in nodes.items()}, **kwargs)

    async def __aenter__(self) -> KvClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.pool.close()

    async def put(self, key: str, value: str, *, deadline: float | None = None) -> str | None:
        """Set ``key``; returns the previous value (or ``None``)."""
        body = await self._call("PUT", key_path(key), value.encode(), deadline)
        previous: str | None = body["previous"]
        return previous

    async def delete(self, key: str, *, deadline: float | None = None) -> str | None:
        """Remove ``key``; returns the removed value (or ``None``)."""
        body = await self._call("DELETE", key_path(key), b"", deadline)
        previous: str | None = body["previous"]
        return previous

    async def get(self, key: str, *, deadline: float | None = None) -> str | None:
        """The leader's value of ``key``, ``None`` if it has none."""
        body = await self._call("GET", key_path(key), b"", deadline, not_found_ok=True)
        if body.get("error") == "not_found":
            return None
        value: str = body["value"]
        return value

    def add_addresses(self, addrs: Iterable[str]) -> None:
        """Also try these HTTP addresses (e.g. of nodes added to the cluster)."""
        for addr in addrs:
            if addr not in self.addrs:
                self.addrs.append(addr)

    def remove_addresses(self, addrs: Iterable[str]) -> None:
        """Stop trying these HTTP addresses (e.g. of nodes removed from the cluster)."""
        gone = set(addrs)
        kept = [a for a in self.addrs if a not in gone]
        if not kept:
            raise ValueError("KvClient needs at least one address")
        self.addrs = kept
        if self.leader_http in gone:
            self.leader_http = None

    # -- membership --------------------------------------------------------------------

    async def cluster(self, *, deadline: float | None = None) -> dict[str, Any]:
        """``GET /cluster`` from the leader: its membership (``voters``,
        ``learners``, ``joint``, ``nodes``, ``http``) and leader."""
        return await self._call("GET", "/cluster", b"", deadline, leader_only=True)

    async def add_learner(
        self,
        node_id: int,
        raft: str,
        http: str | None = None,
        *,
        blocking: bool = True,
        max_lag: int = 0,
        timeout: float = 30.0,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """Add a learner at ``raft`` (HTTP at ``http``, default Raft port + 1000);
        with ``blocking`` the leader answers once its log is within ``max_lag``
        entries of the leader's, or after ``timeout`` seconds (``KvError`` 503
        ``timeout``, with ``added``). Returns the answer (``membership``, ...)."""
        body: dict[str, Any] = {"id": node_id, "raft": raft}
        if http is not None:
            body["http"] = http
        body.update(blocking=blocking, max_lag=max_lag, timeout=timeout)
        return await self._call(
            "POST",
            "/cluster/learners",
            json.dumps(body).encode(),
            deadline if deadline is not None else max(self.deadline, timeout + 5.0),
            retry=_RETRY_ADD,
            request_timeout=timeout + 5.0,
        )

    async def promote(self, ids: Iterable[int], *, deadline: float | None = None) -> dict[str, Any]:
        """Make these learners voters (through a joint config); the answer."""
        body = json.dumps({"ids": sorted(set(ids))}).encode()
        return await self._change("POST", "/cluster/voters", body, deadline)

    async def remove_voter(
        self, node_id: int, *, retain: bool = False, deadline: float | None = None
    ) -> dict[str, Any]:
        """Stop ``node_id`` voting (``retain``: it stays as a learner); the answer."""
        target = f"/cluster/voters/{node_id}" + ("?retain=1" if retain else "")
        return await self._change("DELETE", target, b"", deadline)

    async def transfer_leader(
        self, to: int | None = None, *, deadline: float | None = None
    ) -> dict[str, Any]:
        """Hand leadership to ``to`` (``None``: the most up-to-date voter);
        the answer (``leader_id``, ``leader_http``) once the new leader leads."""
        body = json.dumps({} if to is None else {"to": to}).encode()
        return await self._change("POST", "/cluster/leader", body, deadline)

    async def forget_node(self, node_id: int, *, deadline: float | None = None) -> dict[str, Any]:
        """Remove a non-voting member from the membership; the answer."""
        return await self._change("DELETE", f"/cluster/nodes/{node_id}", b"", deadline)

    async def remove_node(
        self, node_id: int, *, retain: bool = False, deadline: float | None = None
    ) -> dict[str, Any]:
        """Remove ``node_id`` as a voter and, unless ``retain``, as a member: the last answer."""
        answer = await self.remove_voter(node_id, retain=retain, deadline=deadline)
        if retain or str(node_id) not in answer["membership"]["nodes"]:
            return answer
        forgot = await self.forget_node(node_id, deadline=deadline)
        forgot["changed"] = bool(answer["changed"] or forgot["changed"])
        return forgot

    async def _change(
        self, method: str, target: str, body: bytes, deadline: float | None
    ) -> dict[str, Any]:
        return await self._call(
            method,
            target,
            body,
            deadline,
            retry=_RETRY_CHANGE,
            request_timeout=max(self.request_timeout, 15.0),
        )

    async def status(self, addr: str, *, timeout: float | None = None) -> dict[str, Any]:
        """One node's ``/status``, no retries (``OSError``/``HttpError``/``TimeoutError``)."""
        response = await self.pool.request(
            addr, "GET", "/status", timeout=timeout or self.request_timeout
        )
        body = response.json_body()
        if response.status != 200 or not isinstance(body, dict):
            raise HttpError(f"/status answered {response.status}: {body!r}")
        return body

    async def snapshot_all(
        self, *, timeout: float | None = None
    ) -> dict[str, dict[str, Any] | str]:
        """``POST /snapshot`` on every node: each one's answer, or why it failed."""

        async def one(addr: str) -> dict[str, Any] | str:
            try:
                response = await self.pool.request(
                    addr, "POST", "/snapshot", timeout=timeout or self.request_timeout
                )
            except (OSError, HttpError, TimeoutError) as e:
                return f"unreachable: {type(e).__name__}: {e}"
            body = response.json_body()
            if response.status != 200 or not isinstance(body, dict):
                return f"failed: {response.status} {body!r}"
            return body

        results = await asyncio.gather(*(one(a) for a in self.addrs))
        return dict(zip(self.addrs, results, strict=True))

    async def statuses(self, *, timeout: float | None = None) -> dict[str, dict[str, Any] | str]:
        """Every node's status, or why it did not answer, by HTTP address."""

        async def one(addr: str) -> dict[str, Any] | str:
            try:
                return await self.status(addr, timeout=timeout)
            except (OSError, HttpError, TimeoutError) as e:
                return f"unreachable: {type(e).__name__}: {e}"

        results = await asyncio.gather(*(one(a) for a in self.addrs))
        return dict(zip(self.addrs, results, strict=True))

    async def _call(
        self,
        method: str,
        target: str,
        body: bytes,
        deadline: float | None,
        *,
        not_found_ok: bool = False,
        retry: frozenset[str] = _RETRY,
        request_timeout: float | None = None,
        leader_only: bool = False,
    ) -> dict[str, Any]:
        end = time.monotonic() + (deadline if deadline is not None else self.deadline)
        per_request = request_timeout if request_timeout is not None else self.request_timeout
        order = list(self.addrs)
        next_addr: str | None = self.leader_http
        turn = 0
        backoff = _FIRST_BACKOFF
        last_problem = "no attempt"
        while True:
            if next_addr is None:
                next_addr = order[turn % len(order)]
                turn += 1
            addr, next_addr = next_addr, None
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise KvUnavailable(f"{method} {target}: gave up: {last_problem}")
            try:
                response = await self.pool.request(
                    addr, method, target, body, timeout=min(per_request, remaining)
                )
                answer = response.json_body()
            except (OSError, HttpError, TimeoutError) as e:
                last_problem = f"{addr}: {type(e).__name__}: {e}"
                if self.leader_http == addr:
                    self.leader_http = None
                self.retries += 1
                # The node is down or unreachable (maybe every node is): back
                # off as for no_leader rather than spin on refused connections.
                await asyncio.sleep(min(backoff, max(0.0, end - time.monotonic())))
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            if not isinstance(answer, dict):
                raise KvError(f"{addr}: not a JSON object: {answer!r}", response.status, answer)
            status = response.status
            if leader_only and status == 200 and answer.get("role") != "leader":
                # A follower's own view: ask the leader it names instead.
                answer = {"error": "not_leader", "leader_http": answer.get("leader_http")}
                status = 307
            if status == 200 or (
                status == 404 and not_found_ok and answer.get("error") == "not_found"
            ):
                self.leader_http = addr
                return answer
            error = answer.get("error")
            last_problem = f"{addr}: {status} {error}"
            detail = answer.get("reason") or answer.get("detail")
            if detail:
                last_problem += f" ({detail})"
            if error not in retry:
                raise KvError(f"{method} {target}: {status} {answer}", status, answer)
            self.retries += 1
            hint = answer.get("leader_http")
            if error == "not_leader" and isinstance(hint, str) and hint != addr:
                self.leader_http = next_addr = hint
                continue
            if self.leader_http == addr:
                self.leader_http = None
            # No leader known (an election is on): wait a little before the next node.
            await asyncio.sleep(min(backoff, max(0.0, end - time.monotonic())))
            backoff = min(backoff * 2, _MAX_BACKOFF)


async def wait_for_leader(
    client: KvClient, *, timeout: float, exclude: Iterable[int] = ()
) -> dict[str, Any]:
    """Poll every node's ``/status`` until one is a leader that a majority of
    the reachable nodes agree on and whose id is not in ``exclude``; its status.

    Raises ``KvUnavailable`` at the deadline.
    """
    excluded = set(exclude)
    end = time.monotonic() + timeout
    last: dict[str, dict[str, Any] | str] = {}
    while time.monotonic() < end:
        last = await client.statuses(timeout=min(1.0, max(0.05, end - time.monotonic())))
        up = [s for s in last.values() if isinstance(s, dict)]
        for s in up:
            if s["role"] != "leader" or s["node_id"] in excluded:
                continue
            agree = sum(1 for o in up if o.get("leader_id") == s["node_id"])
            if agree * 2 > len(client.addrs):
                return s
        await asyncio.sleep(0.05)
    raise KvUnavailable(f"no leader within {timeout}s: {last}")
