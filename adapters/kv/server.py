"""One KV node process: a Raft node (trio or asyncio) plus the HTTP API.

``KvApi`` is the framework-neutral application: it turns a routed request
into a node call and the outcome (a result or a typed error) into a JSON
response. ``serve_http_asyncio`` and ``serve_http_trio`` are the only
framework-specific parts: accept loops that hand each connection's bytes to
``adapters.kv.http.serve_connection``. ``serve`` runs a whole node until
SIGTERM or SIGINT.

Error mapping (the JSON body always has ``"error"``):

============================  ======  ==================================
outcome                       status  ``error``
============================  ======  ==================================
not the leader, leader known  307     ``not_leader`` (+ ``leader_http``)
no leader known               503     ``no_leader``
new leader not caught up      503     ``leader_not_ready``
write timed out               503     ``timeout`` (outcome unknown)
leadership lost mid-write     503     ``leadership_lost`` (outcome unknown)
node shutting down (any call)  503     ``shutting_down``
cluster not initialized       503     ``not_initialized``
storage failed, node stopped  500     ``node_stopped``
any other ``ClientError``     503     its name, snake_case (+ ``detail``)
bad key/value/HTTP            400     ``bad_key``/``bad_value``/``bad_request``
missing key                   404     ``not_found``
body too large                413     ``body_too_large``
============================  ======  ==================================
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from adapters.errors import ShuttingDown, Timeout
from adapters.kv.client import NodeAddress, default_http, split_hostport
from adapters.kv.http import (
    Delete,
    Get,
    Handler,
    Put,
    Request,
    Response,
    Status,
    error_response,
    not_leader_response,
    route,
    serve_connection,
)
from adapters.kv.state_machine import KVStateMachine, Rejected
from raftcore.config import Config
from raftcore.errors import ClientError, LeadershipLost, NodeStopped, NotInitialized, NotLeader
from raftcore.ids import INITIAL_VOTE, ZERO_LOG_ID, LogId
from raftcore.state import Metrics, Role

if TYPE_CHECKING:
    import trio

log = logging.getLogger("adapters.kv.server")

RUNTIMES = ("asyncio", "trio")
#: How long an idle keep-alive HTTP connection stays open.
IDLE_TIMEOUT = 60.0
DB_NAME = "raft.sqlite3"


class KvNode(Protocol):
    """What ``KvApi`` needs of a node: both runtimes' nodes have it."""

    async def write(self, data: Any, *, timeout: float | None = None) -> Any: ...

    def metrics(self) -> Metrics: ...

    async def wait_for(
        self, predicate: Callable[[Metrics], bool], *, timeout: float
    ) -> Metrics: ...


def _log_id(log_id: LogId) -> dict[str, int]:
    return {"term": log_id.term, "node_id": log_id.node_id, "index": log_id.index}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return repr(value)


def _error_code(e: ClientError) -> str:
    """``MembershipChangeInProgress`` -> ``"membership_change_in_progress"``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(e).__name__).lower()


def read_ready(m: Metrics) -> bool:
    """A leader may serve reads from its state machine once it applied an entry
    of its own term: everything committed before its election is applied."""
    return m.role is Role.LEADER and m.applied.term >= m.vote.term > 0


class KvApi:
    """The HTTP API of one node, independent of the IO framework."""

    def __init__(
        self,
        node: KvNode,
        state_machine: KVStateMachine,
        node_id: int,
        cluster: Mapping[int, NodeAddress],
        *,
        runtime: str = "",
        write_timeout: float = 5.0,
        read_timeout: float = 2.0,
    ) -> None:
        self.node = node
        self.state_machine = state_machine
        self.node_id = node_id
        self.cluster = dict(cluster)
        self.runtime = runtime
        self.write_timeout = write_timeout
        self.read_timeout = read_timeout

    async def handle(self, request: Request) -> Response:
        op = route(request)
        if isinstance(op, Response):
            return op
        try:
            if isinstance(op, Status):
                return Response.json(200, self.status())
            if isinstance(op, Get):
                return await self._get(op.key, request.target)
            if isinstance(op, Put):
                return await self._write(["put", op.key, op.value], request.target)
            assert isinstance(op, Delete)
            return await self._write(["delete", op.key], request.target)
        except ClientError as e:
            # E.g. metrics() of a node that is shutting down: an outcome, not a bug.
            return self._client_error(e, request.target)

    def leader_http(self, leader_id: int | None, leader_info: Any = None) -> str | None:
        """``leader_id``'s HTTP address: from the cluster spec, else its Raft port + 1000."""
        if leader_id is None:
            return None
        known = self.cluster.get(leader_id)
        if known is not None:
            return known.http
        if isinstance(leader_info, str):
            with contextlib.suppress(ValueError):
                return default_http(leader_info)
        return None

    def _not_leader(self, leader_id: int | None, leader_info: Any, target: str) -> Response:
        if leader_id == self.node_id:  # a leader that is not ready yet, or stepping down
            return error_response(503, "no_leader", leader_id=None, leader_http=None)
        return not_leader_response(leader_id, self.leader_http(leader_id, leader_info), target)

    def _client_error(self, e: ClientError, target: str) -> Response:
        """The response for a node call that ended in a typed error (see the table above)."""
        if isinstance(e, NotLeader):
            return self._not_leader(e.leader_id, e.leader_info, target)
        if isinstance(e, NotInitialized):
            return error_response(503, "not_initialized")
        if isinstance(e, Timeout):
            return error_response(
                503, "timeout", detail=f"no outcome within {e.seconds}s; the write may still commit"
            )
        if isinstance(e, LeadershipLost):
            return error_response(
                503,
                "leadership_lost",
                leader_id=e.leader_id,
                detail="leadership changed before the outcome was known; it may still commit",
            )
        if isinstance(e, ShuttingDown):
            return error_response(503, "shutting_down")
        if isinstance(e, NodeStopped):
            return error_response(500, "node_stopped", reason=e.reason)
        return error_response(503, _error_code(e), detail=str(e))

    async def _write(self, command: list[str], target: str) -> Response:
        try:
            result = await self.node.write(command, timeout=self.write_timeout)
        except ClientError as e:
            return self._client_error(e, target)
        if isinstance(result, Rejected):
            return error_response(400, "rejected", detail=result.reason)
        return Response.json(200, {"ok": True, "previous": result})

    async def _get(self, key: str, target: str) -> Response:
        m = self.node.metrics()
        if m.stopped is not None:
            return error_response(500, "node_stopped", reason=m.stopped)
        if m.role is not Role.LEADER:
            return self._not_leader(m.leader_id, None, target)
        if not read_ready(m):
            try:
                m = await self.node.wait_for(
                    lambda m: m.role is not Role.LEADER or read_ready(m), timeout=self.read_timeout
                )
            except Timeout:
                return error_response(503, "leader_not_ready")
            if m.role is not Role.LEADER:
                return self._not_leader(m.leader_id, None, target)
        value = self.state_machine.get(key)
        if value is None:
            return error_response(404, "not_found", key=key)
        return Response.json(200, {"value": value})

    def status(self) -> dict[str, Any]:
        """The node's metrics as JSON."""
        m = self.node.metrics()
        membership = None
        if m.membership is not None:
            membership = {
                "voters": [sorted(c) for c in m.membership.configs],
                "learners": sorted(m.membership.learner_ids()),
                "nodes": {str(n): _jsonable(info) for n, info in m.membership.nodes.items()},
            }
        own = self.cluster.get(self.node_id)
        return {
            "node_id": self.node_id,
            "runtime": self.runtime,
            "role": m.role.value,
            "leader_id": m.leader_id,
            "leader_http": self.leader_http(m.leader_id),
            "raft": own.raft if own else None,
            "http": own.http if own else None,
            "term": m.vote.term,
            "vote": {"term": m.vote.term, "node_id": m.vote.node_id, "committed": m.vote.committed},
            "last_log": _log_id(m.last_log_id),
            "committed": _log_id(m.committed),
            "applied": _log_id(m.applied),
            "membership": membership,
            "replication": {str(n): _log_id(lid) for n, lid in m.replication.items()},
            "keys": len(self.state_machine),
            "stopped": m.stopped,
            "pid": os.getpid(),
            "extra": _jsonable(m.extra),
        }


async def log_leadership(node: KvNode) -> None:
    """Log every change of role, leader or term, until cancelled or shut down."""
    last: tuple[Role, int | None, int] | None = None

    def changed(m: Metrics) -> bool:
        return (m.role, m.leader_id, m.vote.term) != last

    while True:
        try:
            m = await node.wait_for(changed, timeout=3600.0)
        except Timeout:
            continue
        except ShuttingDown:
            return
        last = (m.role, m.leader_id, m.vote.term)
        log.info("now %s in term %d, leader %s", m.role.value, m.vote.term, m.leader_id)


# -- socket loops ------------------------------------------------------------------------------


async def serve_http_asyncio(
    handler: Handler, host: str, port: int, *, idle_timeout: float = IDLE_TIMEOUT
) -> asyncio.Server:
    """Listen on ``host:port``; each connection runs ``serve_connection``.

    Close the returned server, then cancel its connections with ``close_clients``.
    """
    tasks: set[asyncio.Task[Any]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            tasks.add(task)

        async def recv() -> bytes:
            try:
                return await asyncio.wait_for(reader.read(65536), idle_timeout)
            except (TimeoutError, ConnectionError):
                return b""

        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        try:
            await serve_connection(recv, send, handler)
        except (ConnectionError, asyncio.CancelledError):
            # Cancelled by close_http_asyncio: end the task normally, or
            # asyncio's stream callback logs the CancelledError as an error.
            pass
        finally:
            writer.close()
            if task is not None:
                tasks.discard(task)

    server = await asyncio.start_server(on_connection, host, port, reuse_address=True)
    server.kv_connections = tasks  # type: ignore[attr-defined]
    return server


async def close_http_asyncio(server: asyncio.Server) -> None:
    """Stop listening and drop open connections (in-flight requests are cancelled)."""
    server.close()
    tasks: set[asyncio.Task[Any]] = getattr(server, "kv_connections", set())
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.wait_closed(), 1.0)


async def serve_http_trio(
    handler: Handler,
    host: str,
    port: int,
    *,
    idle_timeout: float = IDLE_TIMEOUT,
    task_status: trio.TaskStatus[list[trio.SocketListener]],
) -> None:
    """Listen on ``host:port`` until cancelled (use with ``nursery.start``)."""
    import trio

    async def on_connection(stream: trio.SocketStream) -> None:
        async def recv() -> bytes:
            with trio.move_on_after(idle_timeout):
                try:
                    return bytes(await stream.receive_some(65536))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return b""
            return b""

        async def send(data: bytes) -> None:
            await stream.send_all(data)

        try:
            await serve_connection(recv, send, handler)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners)
    await trio.serve_listeners(on_connection, listeners)


# -- one node process ----------------------------------------------------------------------


@attrs.frozen
class ServeOptions:
    node_id: int
    cluster: Mapping[int, NodeAddress]
    data_dir: str
    runtime: str = "asyncio"
    http: str | None = None
    init: bool = False
    cluster_id: str = "raftcore-kv"
    config: Config = attrs.field(factory=Config)
    write_timeout: float = 5.0

    @property
    def http_listen(self) -> str:
        return self.http or self.cluster[self.node_id].http

    @property
    def raft_listen(self) -> str:
        return self.cluster[self.node_id].raft


class NodeIdFilter(logging.Filter):
    """Gives every record a ``node_id`` (the runtime's records already carry one)."""

    def __init__(self, node_id: int) -> None:
        super().__init__()
        self.node_id = node_id

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "node_id"):
            record.node_id = self.node_id
        return True


def setup_logging(node_id: int, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(NodeIdFilter(node_id))
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03d node=%(node_id)s %(levelname)s %(name)s: %(message)s",
            "%H:%M:%S",
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _open_store(opts: ServeOptions) -> tuple[Any, bool]:
    """The node's SQLite store, and whether it holds no state yet."""
    from adapters.storage import SqliteLogStore

    os.makedirs(opts.data_dir, exist_ok=True)
    store = SqliteLogStore(os.path.join(opts.data_dir, DB_NAME))
    state = store.load()
    fresh = state.vote == INITIAL_VOTE and not state.entries and state.last_purged == ZERO_LOG_ID
    return store, fresh


async def _start(node: Any, opts: ServeOptions, fresh: bool) -> None:
    if opts.init:
        if fresh:
            await node.initialize({n: a.raft for n, a in opts.cluster.items()})
            log.info("initialized the cluster: %s", sorted(opts.cluster))
        else:
            log.info("--init ignored: the store already holds Raft state")


def _api(node: Any, sm: KVStateMachine, opts: ServeOptions) -> KvApi:
    return KvApi(
        node, sm, opts.node_id, opts.cluster, runtime=opts.runtime, write_timeout=opts.write_timeout
    )


async def serve_asyncio(opts: ServeOptions) -> None:
    """Run the node on asyncio until SIGTERM/SIGINT."""
    from adapters.asyncio_node import open_node
    from adapters.transport import AsyncioTcpTransport

    store, fresh = _open_store(opts)
    sm = KVStateMachine()
    transport = AsyncioTcpTransport(
        opts.node_id,
        opts.cluster_id,
        listen=opts.raft_listen,
        peers={n: a.raft for n, a in opts.cluster.items() if n != opts.node_id},
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_node(opts.node_id, opts.config, store, sm, transport) as node:
        await _start(node, opts, fresh)
        host, port = split_hostport(opts.http_listen)
        server = await serve_http_asyncio(_api(node, sm, opts).handle, host, port)
        watcher = asyncio.create_task(log_leadership(node))
        log.info("serving: raft %s, http %s (asyncio)", opts.raft_listen, opts.http_listen)
        await stop.wait()
        log.info("signal received: shutting down")
        watcher.cancel()
        await close_http_asyncio(server)
    log.info("stopped")


async def serve_trio(opts: ServeOptions) -> None:
    """Run the node on trio until SIGTERM/SIGINT."""
    import trio

    from adapters.transport.trio_tcp import TrioTcpTransport
    from adapters.trio_node import open_node

    store, fresh = _open_store(opts)
    sm = KVStateMachine()
    transport = TrioTcpTransport(
        opts.node_id,
        opts.cluster_id,
        listen=opts.raft_listen,
        peers={n: a.raft for n, a in opts.cluster.items() if n != opts.node_id},
    )
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_node(opts.node_id, opts.config, store, sm, transport) as node:
            await _start(node, opts, fresh)
            host, port = split_hostport(opts.http_listen)
            async with trio.open_nursery() as nursery:
                handler = _api(node, sm, opts).handle
                await nursery.start(functools.partial(serve_http_trio, handler, host, port))
                nursery.start_soon(log_leadership, node)
                log.info("serving: raft %s, http %s (trio)", opts.raft_listen, opts.http_listen)
                async for _ in signals:
                    break
                log.info("signal received: shutting down")
                nursery.cancel_scope.cancel()
    log.info("stopped")


def serve(opts: ServeOptions) -> int:
    """Run one node in this process until a signal; the exit status."""
    if opts.node_id not in opts.cluster:
        raise ValueError(f"node {opts.node_id} is not in the cluster spec")
    if opts.runtime == "trio":
        import trio

        trio.run(serve_trio, opts)
    elif opts.runtime == "asyncio":
        asyncio.run(serve_asyncio(opts))
    else:
        raise ValueError(f"unknown runtime {opts.runtime!r}; choose from {RUNTIMES}")
    return 0
