"""One KV node process: a Raft node (trio or asyncio) plus the HTTP API.

``KvApi`` is the framework-neutral application: it turns a routed request
into a node call and the outcome (a result or a typed error) into a JSON
response. ``serve_http_asyncio`` and ``serve_http_trio`` are the only
framework-specific parts: accept loops that hand each connection's bytes to
``raftcore.adapters.kv.http.serve_connection``. ``serve`` runs a whole node until
SIGTERM or SIGINT.

Error mapping (the JSON body always has ``"error"``):

============================  ======  ==================================
outcome                       status  ``error``
============================  ======  ==================================
not the leader, leader known  307     ``not_leader`` (+ ``leader_http``)
no leader known               503     ``no_leader``
read not confirmed (GET)      503     ``read_not_confirmed``
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

``POST /cluster/leader`` (body ``{"to": ID}``, or ``{}`` for the most
up-to-date voter) hands leadership over and answers ``{"leader_id",
"leader_http"}`` once the new leader leads; ``409 invalid_transfer`` (a
learner, a non-member), ``409 transfer_in_progress``, ``503
transfer_timeout``. Writes during a transfer answer ``503
transfer_in_progress`` (the client retries, then follows the new leader).

Membership requests (``/cluster/...``) map the same way, except that a
change that cannot happen now is a ``409``: ``membership_change_in_progress``
(retry shortly), ``invalid_membership_change`` (``reason`` says why),
``membership_mismatch`` (``expected``/``actual``). They are idempotent on
their goal: promoting a voter, removing a non-voter or forgetting a
non-member answers ``200`` with ``"changed": false`` and changes nothing, so a
client may repeat a request whose outcome was unknown.

Node info in the membership is the node's Raft address (the transport dials
it and accepts only ``"host:port"``). The HTTP address of a node added at run
time goes through the log into the state machine's address book just before
the membership change (see ``raftcore.adapters.kv.state_machine``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import signal
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from raftcore import membership as mc
from raftcore.adapters._node_api import ReplicationStatus
from raftcore.adapters.errors import ClusterExists, ShuttingDown, Timeout, Unreachable
from raftcore.adapters.kv.auth import ApiTokens
from raftcore.adapters.kv.client import NodeAddress, default_http
from raftcore.adapters.kv.http import (
    IDLE_TIMEOUT,
    AddLearner,
    ClusterInfo,
    Delete,
    ForgetNode,
    Get,
    Handler,
    MembershipOp,
    Probe,
    Promote,
    Put,
    RemoveVoter,
    Request,
    Response,
    ScrapeMetrics,
    Status,
    TakeSnapshot,
    TransferLeadership,
    error_response,
    join_hostport,
    not_leader_response,
    route,
    serve_connection,
    split_hostport,
)
from raftcore.adapters.kv.metrics import LeadershipStats, exposition, registry_for
from raftcore.adapters.kv.state_machine import (
    KVStateMachine,
    Rejected,
    forget_node_address,
    set_node_address,
)
from raftcore.adapters.transport.frames import is_loopback
from raftcore.adapters.transport.identity import address_of, incarnation_of
from raftcore.config import Config
from raftcore.errors import (
    ClientError,
    InvalidMembershipChange,
    InvalidTransfer,
    LeadershipLost,
    MembershipChangeInProgress,
    MembershipMismatch,
    NodeStopped,
    NotInitialized,
    NotLeader,
    ReadTimeout,
    TransferInProgress,
    TransferTimeout,
)
from raftcore.events import ReadPolicy
from raftcore.ids import INITIAL_VOTE, ZERO_LOG_ID, LogId
from raftcore.membership import Membership
from raftcore.state import Metrics, Role

if TYPE_CHECKING:
    import trio

log = logging.getLogger("raftcore.adapters.kv.server")

RUNTIMES = ("asyncio", "trio")
#: HTTP connections served at once; more are answered 503 and closed.
MAX_CONNECTIONS = 256
DB_NAME = "raft.sqlite3"
SNAPSHOT_DIR = "snapshots"


class KvNode(Protocol):
    """What ``KvApi`` needs of a node: both runtimes' nodes have it."""

    async def write(self, data: Any, *, timeout: float | None = None) -> Any: ...

    async def change_membership(
        self,
        change: mc.Change,
        *,
        retain: bool = False,
        expected: LogId | None = None,
        timeout: float | None = None,
    ) -> tuple[LogId, Membership]: ...

    async def add_learner(
        self,
        node_id: int,
        info: Any,
        *,
        blocking: bool = True,
        max_lag: int = 0,
        timeout: float | None = None,
    ) -> tuple[LogId, Membership]: ...

    def metrics(self) -> Metrics: ...

    def replication(self) -> dict[int, ReplicationStatus]: ...

    async def trigger_snapshot(self, *, timeout: float = 60.0) -> LogId | None: ...

    async def transfer_leader(
        self, to: int | None = None, *, timeout: float | None = None
    ) -> int: ...

    async def read(self, policy: ReadPolicy = ..., *, timeout: float | None = None) -> LogId: ...

    async def wait_for(
        self, predicate: Callable[[Metrics], bool], *, timeout: float
    ) -> Metrics: ...


def _log_id(log_id: LogId) -> dict[str, int]:
    return {"term": log_id.term, "node_id": log_id.node_id, "index": log_id.index}


def _opt_log_id(log_id: Any) -> Any:
    return _log_id(log_id) if isinstance(log_id, LogId) else _jsonable(log_id)


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
        change_timeout: float = 10.0,
        catch_up_timeout: float = 30.0,
        tokens: ApiTokens | None = None,
        leadership: LeadershipStats | None = None,
        scheme: str = "http",
    ) -> None:
        #: ``https`` when the API is served over TLS (redirects say so).
        self.scheme = scheme
        #: Bearer tokens every request must carry (``None``: no authentication).
        self.tokens = tokens
        #: Leader changes and elections seen (kept by ``log_leadership``).
        self.leadership = leadership if leadership is not None else LeadershipStats()
        self.registry = registry_for(node, state_machine, self.leadership)
        self.node = node
        self.state_machine = state_machine
        self.node_id = node_id
        self.cluster = dict(cluster)
        self.runtime = runtime
        self.write_timeout = write_timeout
        self.read_timeout = read_timeout
        #: How long a voter change (two log entries) may take to commit.
        self.change_timeout = change_timeout
        #: How long ``POST /cluster/learners`` waits for the learner by default.
        self.catch_up_timeout = catch_up_timeout

    async def handle(self, request: Request) -> Response:
        response = await self._handle(request)
        # The access log, at debug level (--log-level DEBUG).
        log.debug("%s %s -> %d", request.method, request.target, response.status)
        return response

    async def _handle(self, request: Request) -> Response:
        op = route(request)
        # Health probes answer without a token (load balancers, orchestrators).
        if self.tokens is not None and not isinstance(op, Probe):
            refused = self.tokens.refusal(request)
            if refused is not None:
                return refused
        if isinstance(op, Response):
            return op
        try:
            if isinstance(op, Probe):
                return self.probe(op.ready)
            if isinstance(op, ScrapeMetrics):
                body, content_type = exposition(self.registry)
                return Response(200, body, (("content-type", content_type),))
            if isinstance(op, Status):
                return Response.json(200, self.status())
            if isinstance(op, ClusterInfo):
                return Response.json(200, self.cluster_info())
            if isinstance(op, TakeSnapshot):
                lid = await self.node.trigger_snapshot()
                m = self.node.metrics()
                return Response.json(
                    200, {"snapshot": _opt_log_id(lid), "last_purged": _log_id(m.last_purged)}
                )
            if isinstance(op, AddLearner | Promote | RemoveVoter | ForgetNode):
                return await self._change(op, request.target)
            if isinstance(op, TransferLeadership):
                return await self._transfer(op, request.target)
            if isinstance(op, Get):
                return await self._get(op.key, request.target, op.consistency)
            if isinstance(op, Put):
                return await self._write(["put", op.key, op.value], request.target)
            assert isinstance(op, Delete)
            return await self._write(["delete", op.key], request.target)
        except ClientError as e:
            # E.g. metrics() of a node that is shutting down: an outcome, not a bug.
            return self._client_error(e, request.target)

    def leader_http(self, leader_id: int | None, leader_info: Any = None) -> str | None:
        """``leader_id``'s HTTP address (see ``http_address``)."""
        if leader_id is None:
            return None
        return self.http_address(leader_id, leader_info)

    def http_address(self, node_id: int, info: Any = None) -> str | None:
        """A node's HTTP address: from the replicated address book (nodes added
        at run time), else the cluster spec, else its Raft address's port + 1000."""
        booked = self.state_machine.address(node_id)
        if booked is not None:
            return booked[1]
        known = self.cluster.get(node_id)
        if known is not None:
            return known.http
        raft = address_of(info)
        if isinstance(raft, str):
            with contextlib.suppress(ValueError):
                return default_http(raft)
        return None

    def _not_leader(self, leader_id: int | None, leader_info: Any, target: str) -> Response:
        if leader_id == self.node_id:  # a leader that is not ready yet, or stepping down
            return error_response(503, "no_leader", leader_id=None, leader_http=None)
        return not_leader_response(
            leader_id, self.leader_http(leader_id, leader_info), target, self.scheme
        )

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

    async def _get(self, key: str, target: str, consistency: str) -> Response:
        """A read at the asked consistency (docs/reads.md): ``linearizable``
        and ``lease`` get a confirmed read point from the engine (on a
        follower, from the leader) and wait until this node's state machine
        applied it; ``stale`` reads this node's state as it is."""
        m = self.node.metrics()
        if m.stopped is not None:
            return error_response(500, "node_stopped", reason=m.stopped)
        if consistency == "stale":
            value = self.state_machine.get(key)
            if value is None:
                return error_response(404, "not_found", key=key, stale=True)
            return Response.json(200, {"value": value, "stale": True})
        policy = ReadPolicy.LEASE if consistency == "lease" else ReadPolicy.READ_INDEX
        try:
            # On a follower: a follower read (the leader gives the read point).
            await self.node.read(policy, timeout=self.read_timeout)
        except NotLeader as e:
            return self._not_leader(e.leader_id, e.leader_info, target)
        except (ReadTimeout, Timeout):
            return error_response(
                503, "read_not_confirmed", detail="this node could not confirm it still leads"
            )
        except LeadershipLost as e:
            return error_response(503, "leadership_lost", leader_id=e.leader_id)
        value = self.state_machine.get(key)
        if value is None:
            return error_response(404, "not_found", key=key)
        return Response.json(200, {"value": value})

    def probe(self, ready: bool) -> Response:
        """``/health``: 200 while the engine runs (503 once storage stopped it).
        ``/ready``: 200 when also a member of a cluster with a known leader."""
        m = self.node.metrics()
        if m.stopped is not None:
            return error_response(503, "node_stopped", reason=m.stopped)
        if ready:
            member = m.membership is not None and self.node_id in m.membership.node_ids()
            if not member:
                return error_response(503, "not_a_member")
            if m.leader_id is None:
                return error_response(503, "no_leader")
        return Response.json(200, {"ok": True, "role": m.role.value, "leader_id": m.leader_id})

    def status(self) -> dict[str, Any]:
        """The node's metrics as JSON."""
        m = self.node.metrics()
        membership = self.membership_json(m.membership)
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
            "snapshot": _opt_log_id(m.snapshot),
            "last_purged": _log_id(m.last_purged),
            "snapshots": {"built": m.snapshots_built, "installed": m.snapshots_installed},
            "transfer": None if m.transfer_to is None else {"to": m.transfer_to},
            "membership": membership,
            "replication": {str(n): _log_id(lid) for n, lid in m.replication.items()},
            "followers": {
                str(n): {
                    "matched": _log_id(r.matched),
                    "last_ack_age": round(r.last_ack_age, 3),
                    "state": r.state,
                    **({"detail": r.detail} if r.detail else {}),
                }
                for n, r in self.node.replication().items()
            },
            "keys": len(self.state_machine),
            "stopped": m.stopped,
            "pid": os.getpid(),
            "extra": _jsonable(m.extra),
        }

    def membership_json(self, m: Membership | None) -> dict[str, Any] | None:
        """A membership as JSON: ``voters`` (one list per config: two while
        ``joint``), ``voter_ids``, ``learners``, ``nodes`` (id -> Raft address)
        and ``http`` (id -> HTTP address)."""
        if m is None:
            return None
        return {
            "voters": [sorted(c) for c in m.configs],
            "voter_ids": sorted(m.voter_ids()),
            "learners": sorted(m.learner_ids()),
            "joint": m.is_joint,
            "nodes": {str(n): _jsonable(address_of(info)) for n, info in sorted(m.nodes.items())},
            "incarnations": {str(n): incarnation_of(info) for n, info in sorted(m.nodes.items())},
            "http": {str(n): self.http_address(n, info) for n, info in sorted(m.nodes.items())},
        }

    def cluster_info(self) -> dict[str, Any]:
        """``GET /cluster``: this node's view of the membership and leader."""
        m = self.node.metrics()
        return {
            "node_id": self.node_id,
            "role": m.role.value,
            "leader_id": m.leader_id,
            "leader_http": self.leader_http(m.leader_id),
            "membership": self.membership_json(m.membership),
        }

    # -- leadership transfer -------------------------------------------------------------

    async def _transfer(self, op: TransferLeadership, target: str) -> Response:
        """Hand leadership over (the leader only; others redirect). Answers
        once this node sees the new leader lead."""
        try:
            new = await self.node.transfer_leader(op.to, timeout=self.change_timeout)
        except ClientError as e:
            self.leadership.transfers[type(e).__name__] += 1
            return self._transfer_error(e, target)
        self.leadership.transfers["ok"] += 1
        return Response.json(
            200, {"ok": True, "leader_id": new, "leader_http": self.leader_http(new)}
        )

    def _transfer_error(self, e: ClientError, target: str) -> Response:
        if isinstance(e, InvalidTransfer):
            return error_response(409, "invalid_transfer", reason=e.reason)
        if isinstance(e, TransferInProgress):
            return error_response(
                409, "transfer_in_progress", to=e.to, detail="another transfer is running"
            )
        if isinstance(e, TransferTimeout):
            return error_response(
                503,
                "transfer_timeout",
                to=e.to,
                detail=f"node {e.to} did not take over within {e.timeout:.3g}s; "
                "the leader serves writes again",
            )
        return self._client_error(e, target)

    # -- membership changes --------------------------------------------------------------

    async def _change(self, op: MembershipOp, target: str) -> Response:
        """A membership request: only the leader runs it (others redirect)."""
        m = self.node.metrics()
        if m.stopped is not None:
            return error_response(500, "node_stopped", reason=m.stopped)
        if m.role is not Role.LEADER or m.membership is None:
            return self._not_leader(m.leader_id, None, target)
        try:
            if isinstance(op, AddLearner):
                return await self._add_learner(op, m.membership)
            if isinstance(op, Promote):
                return await self._promote(op, m.membership)
            if isinstance(op, RemoveVoter):
                return await self._remove_voter(op, m.membership)
            return await self._forget(op, m.membership)
        except ClientError as e:
            return self._change_error(e, target)

    def _changed(self, result: tuple[LogId, Membership], **extra: Any) -> Response:
        log_id, membership = result
        body = {
            "ok": True,
            "changed": True,
            "log_id": _log_id(log_id),
            "membership": self.membership_json(membership),
        }
        return Response.json(200, {**body, **extra})

    def _unchanged(self, membership: Membership, why: str) -> Response:
        return Response.json(
            200,
            {
                "ok": True,
                "changed": False,
                "detail": why,
                "log_id": None,
                "membership": self.membership_json(membership),
            },
        )

    def _change_error(self, e: ClientError, target: str) -> Response:
        if isinstance(e, MembershipChangeInProgress):
            return error_response(
                409,
                "membership_change_in_progress",
                detail="another membership change has not committed yet: retry shortly",
            )
        if isinstance(e, InvalidMembershipChange):
            return error_response(409, "invalid_membership_change", reason=e.reason)
        if isinstance(e, MembershipMismatch):
            return error_response(
                409,
                "membership_mismatch",
                expected=_opt_log_id(e.expected),
                actual=_opt_log_id(e.actual),
            )
        if isinstance(e, Timeout):
            return error_response(
                503,
                "timeout",
                detail=f"no outcome within {e.seconds:.3g}s: the change may still commit; "
                "read GET /cluster before retrying",
            )
        return self._client_error(e, target)

    async def _add_learner(self, op: AddLearner, m: Membership) -> Response:
        known = address_of(m.nodes.get(op.node_id))
        if known is not None and known != op.raft:
            return error_response(
                409,
                "invalid_membership_change",
                reason=f"node {op.node_id} is already a member with Raft address {known!r}",
            )
        try:
            http = op.http or default_http(op.raft)
        except ValueError as e:  # Raft port + 1000 is not a port
            return error_response(400, "bad_request", detail=f'{e}: give "http"')
        if self.state_machine.address(op.node_id) != (op.raft, http):
            # First the address book, so that once the node is a member every
            # node can redirect clients to it.
            result = await self.node.write(
                set_node_address(op.node_id, op.raft, http), timeout=self.write_timeout
            )
            if isinstance(result, Rejected):  # pragma: no cover - validated above
                return error_response(400, "rejected", detail=result.reason)
        timeout = op.timeout if op.timeout is not None else self.catch_up_timeout
        try:
            result = await self.node.add_learner(
                op.node_id, op.raft, blocking=op.blocking, max_lag=op.max_lag, timeout=timeout
            )
        except ClusterExists as e:
            return error_response(409, "identity_refused", detail=str(e))
        except Timeout:
            now = self.node.metrics()
            added = now.membership is not None and op.node_id in now.membership.nodes
            matched = now.replication.get(op.node_id)
            return error_response(
                503,
                "timeout",
                added=added,
                matched=_log_id(matched) if matched is not None else None,
                last_log=_log_id(now.last_log_id),
                detail=(
                    f"node {op.node_id} was added as a learner but its log did not catch up "
                    f"within {timeout:.3g}s"
                    if added
                    else f"no outcome within {timeout:.3g}s: the change may still commit"
                ),
            )
        now = self.node.metrics()
        matched = now.replication.get(op.node_id)
        return self._changed(
            result,
            changed=known is None,
            caught_up=op.blocking,
            matched=_log_id(matched) if matched is not None else None,
        )

    async def _promote(self, op: Promote, m: Membership) -> Response:
        unknown = [n for n in op.ids if n not in m.nodes]
        if unknown:
            return error_response(
                409,
                "invalid_membership_change",
                reason=f"not members: {unknown}: add them as learners first",
            )
        if not m.is_joint and all(n in m.configs[-1] for n in op.ids):
            return self._unchanged(m, f"already voters: {list(op.ids)}")
        change = mc.AddVoters({n: m.nodes[n] for n in op.ids})
        result = await self.node.change_membership(
            change, expected=op.expected, timeout=self.change_timeout
        )
        return self._changed(result)

    async def _remove_voter(self, op: RemoveVoter, m: Membership) -> Response:
        if not m.is_joint and op.node_id not in m.configs[-1]:
            return self._unchanged(m, f"node {op.node_id} is not a voter")
        result = await self.node.change_membership(
            mc.RemoveVoters([op.node_id]),
            retain=op.retain,
            expected=op.expected,
            timeout=self.change_timeout,
        )
        if not op.retain:
            await self._forget_address(op.node_id, result[1])
        return self._changed(result)

    async def _forget(self, op: ForgetNode, m: Membership) -> Response:
        if op.node_id not in m.nodes:
            await self._forget_address(op.node_id, m)
            return self._unchanged(m, f"node {op.node_id} is not a member")
        result = await self.node.change_membership(
            mc.RemoveNodes([op.node_id]), expected=op.expected, timeout=self.change_timeout
        )
        await self._forget_address(op.node_id, result[1])
        return self._changed(result)

    async def _forget_address(self, node_id: int, m: Membership) -> None:
        """Best effort: drop a node that left the membership from the address book."""
        if node_id in m.nodes or self.state_machine.address(node_id) is None:
            return
        with contextlib.suppress(ClientError):
            await self.node.write(forget_node_address(node_id), timeout=self.write_timeout)


async def log_leadership(node: KvNode, stats: LeadershipStats | None = None) -> None:
    """Log every change of role, leader or term (and count them in ``stats``),
    until cancelled or shut down."""
    last: tuple[Role, int | None, int] | None = None
    before: Metrics | None = None

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
        if stats is not None:
            stats.observe(before, m)
        before = m
        log.info("now %s in term %d, leader %s", m.role.value, m.vote.term, m.leader_id)


# -- socket loops ------------------------------------------------------------------------------


class ConnectionLimit:
    """At most ``limit`` HTTP connections at once; a refusal is logged at most
    every ``log_every`` seconds (with how many since)."""

    def __init__(self, limit: int = MAX_CONNECTIONS, log_every: float = 10.0) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0
        self._log_every = log_every
        self._logged_at = -log_every
        self._unlogged = 0

    def admit(self) -> bool:
        if self.open < self.limit:
            self.open += 1
            return True
        self.refused += 1
        self._unlogged += 1
        t = time.monotonic()
        if t - self._logged_at >= self._log_every:
            log.warning(
                "refused %d HTTP connection(s): %d open, the limit", self._unlogged, self.open
            )
            self._logged_at, self._unlogged = t, 0
        return False

    def release(self) -> None:
        self.open -= 1


#: What a connection over the limit gets before it is closed.
_BUSY_BODY = b'{"error":"too_many_connections","detail":"retry shortly"}\n'
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


async def serve_http_asyncio(
    handler: Handler,
    host: str,
    port: int,
    *,
    idle_timeout: float = IDLE_TIMEOUT,
    limit: ConnectionLimit | None = None,
    tls: ssl.SSLContext | None = None,
) -> asyncio.Server:
    """Listen on ``host:port``; each connection runs ``serve_connection``.

    Close the returned server, then cancel its connections with ``close_clients``.
    """
    tasks: set[asyncio.Task[Any]] = set()
    limit = limit if limit is not None else ConnectionLimit()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not limit.admit():
            with contextlib.suppress(ConnectionError, TimeoutError):
                writer.write(BUSY)
                await writer.drain()
                # Read what the client sent, briefly: closing with unread
                # input resets the connection, and the 503 could be lost.
                await asyncio.wait_for(reader.read(65536), 0.1)
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            tasks.add(task)

        async def recv(timeout: float) -> bytes:
            try:
                return await asyncio.wait_for(reader.read(65536), timeout)
            except (TimeoutError, ConnectionError):
                return b""

        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        try:
            await serve_connection(
                recv, send, handler, now=time.monotonic, idle_timeout=idle_timeout
            )
        except (ConnectionError, asyncio.CancelledError):
            # Cancelled by close_http_asyncio: end the task normally, or
            # asyncio's stream callback logs the CancelledError as an error.
            pass
        finally:
            limit.release()
            writer.close()
            if task is not None:
                tasks.discard(task)

    try:
        tls_options: dict[str, Any] = {}
        if tls is not None:
            tls_options = {"ssl": tls, "ssl_handshake_timeout": 10.0}
        server = await asyncio.start_server(
            on_connection, host, port, reuse_address=True, **tls_options
        )
    except OSError as e:
        raise OSError(
            e.errno, f"cannot listen on {join_hostport(host, port)}: {_cause(e)}"
        ) from None
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
    limit: ConnectionLimit | None = None,
    tls: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]],
) -> None:
    """Listen on ``host:port`` until cancelled (use with ``nursery.start``)."""
    import trio

    limit = limit if limit is not None else ConnectionLimit()

    async def on_connection(stream: Any) -> None:
        if tls is not None:
            stream = trio.SSLStream(stream, tls, server_side=True)
            try:
                with trio.fail_after(10.0):
                    await stream.do_handshake()
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
                await trio.aclose_forcefully(stream)
                return
        if not limit.admit():
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(BUSY)
                # Read what the client sent, briefly: closing with unread
                # input resets the connection, and the 503 could be lost.
                with trio.move_on_after(0.1):
                    await stream.receive_some(65536)
            await trio.aclose_forcefully(stream)
            return

        async def recv(timeout: float) -> bytes:
            with trio.move_on_after(timeout):
                try:
                    return bytes(await stream.receive_some(65536))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return b""
            return b""

        async def send(data: bytes) -> None:
            await stream.send_all(data)

        try:
            await serve_connection(
                recv, send, handler, now=time.monotonic, idle_timeout=idle_timeout
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            limit.release()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)

    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as e:
        raise OSError(
            e.errno, f"cannot listen on {join_hostport(host, port)}: {_cause(e)}"
        ) from None
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
    #: This node's Raft address, for a node the cluster spec does not list
    #: (one joining a running cluster); default: from the spec.
    raft: str | None = None
    #: Where this node listens for Raft traffic when that differs from the
    #: address its peers dial (behind a proxy or NAT); default: that address.
    raft_bind: str | None = None
    #: Mutual TLS between nodes: this node's certificate (naming ``DNS:node-<id>``),
    #: its key, and the cluster CA. All three or none.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    #: Allow plaintext Raft traffic beyond loopback (logged as a warning).
    insecure: bool = False
    #: Bearer tokens for the HTTP API (``serve --api-token-file``).
    api_tokens: ApiTokens | None = None
    #: HTTP connections served at once (``serve --max-connections``).
    max_connections: int = MAX_CONNECTIONS
    #: Serve the HTTP API over TLS with this certificate and key.
    api_tls_cert: str | None = None
    api_tls_key: str | None = None

    def api_tls(self) -> ssl.SSLContext | None:
        """The HTTP API's TLS context (``None``: plain HTTP); ``ValueError``
        (one line) for a partial or unusable configuration."""
        if self.api_tls_cert is None and self.api_tls_key is None:
            return None
        if self.api_tls_cert is None or self.api_tls_key is None:
            raise ValueError("--api-tls-cert and --api-tls-key go together: give both")
        for flag, path in (
            ("--api-tls-cert", self.api_tls_cert),
            ("--api-tls-key", self.api_tls_key),
        ):
            if not os.path.isfile(path):
                raise ValueError(f"{flag}: {path}: no such file")
        try:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(self.api_tls_cert, self.api_tls_key)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"API TLS: cannot load the certificate or key: {e}") from None
        return ctx

    def peer_tls(self) -> dict[str, Any]:
        """The transport's TLS and plaintext options; ``ValueError`` (one
        line) for a partial or unusable TLS configuration."""
        given = [self.tls_cert, self.tls_key, self.tls_ca]
        if not any(given):
            return {"require_tls": not self.insecure}
        if not all(given):
            raise ValueError("--tls-cert, --tls-key and --tls-ca go together: give all three")
        assert self.tls_cert is not None and self.tls_key is not None
        for flag, path in (
            ("--tls-cert", self.tls_cert),
            ("--tls-key", self.tls_key),
            ("--tls-ca", self.tls_ca),
        ):
            if not os.path.isfile(str(path)):
                raise ValueError(f"{flag}: {path}: no such file")
        try:
            server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.tls_ca)
            server.load_cert_chain(self.tls_cert, self.tls_key)
            server.verify_mode = ssl.CERT_REQUIRED
            client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
            client.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"TLS: cannot load the certificate, key or CA: {e}") from None
        return {"ssl_server": server, "ssl_client": client, "require_tls": True}

    @property
    def http_listen(self) -> str:
        return self.http or self.cluster[self.node_id].http

    @property
    def raft_listen(self) -> str:
        return self.raft_bind or self.cluster[self.node_id].raft

    def resolved(self) -> ServeOptions:
        """These options with this node in ``cluster`` (from ``raft``/``http``
        when the spec does not list it); ``ValueError`` if it cannot be."""
        me = self.cluster.get(self.node_id)
        if self.raft is None:
            if me is None:
                raise ValueError(
                    f"node {self.node_id} is not in the cluster spec: add it there, "
                    "or give its Raft address with --raft"
                )
            return self
        split_hostport(self.raft)
        http = self.http or (me.http if me is not None else default_http(self.raft))
        cluster = {**self.cluster, self.node_id: NodeAddress(self.node_id, self.raft, http)}
        return attrs.evolve(self, cluster=cluster)


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


class DataDirError(Exception):
    """The data directory cannot be used (not a directory, no permission, ...)."""


def _open_store(opts: ServeOptions) -> tuple[Any, Any, bool]:
    """The node's SQLite store, its snapshot store, and whether it holds no state yet."""
    import sqlite3

    from raftcore.adapters.storage import FileSnapshotStore, SqliteLogStore

    try:
        os.makedirs(opts.data_dir, exist_ok=True)
        store = SqliteLogStore(os.path.join(opts.data_dir, DB_NAME))
        snapshots = FileSnapshotStore(os.path.join(opts.data_dir, SNAPSHOT_DIR))
    except (OSError, sqlite3.Error) as e:
        raise DataDirError(f"--data-dir {opts.data_dir}: cannot use it: {e}") from None
    state = store.load()
    fresh = state.vote == INITIAL_VOTE and not state.entries and state.last_purged == ZERO_LOG_ID
    return store, snapshots, fresh


async def _start(node: Any, opts: ServeOptions, fresh: bool) -> None:
    if opts.init:
        if fresh:
            try:
                await node.initialize({n: a.raft for n, a in opts.cluster.items()})
            except (ClusterExists, Unreachable) as e:
                # Forms nothing; the node keeps running with its store untouched.
                log.error("--init refused: %s", e)
                return
            log.info("initialized the cluster: %s", sorted(opts.cluster))
        else:
            log.info("--init ignored: the store already holds Raft state")
    elif fresh:
        log.info("fresh store: waiting to be added to the cluster (or for --init on another node)")


def _peer_security(opts: ServeOptions) -> dict[str, Any]:
    """The transport's TLS options. Without TLS every Raft address must be on
    loopback, unless ``--insecure`` (then a warning: anyone who reaches the
    Raft port can forge messages); ``ValueError`` (one line) otherwise."""
    options = opts.peer_tls()
    if "ssl_client" in options:
        return options
    addresses = [opts.raft_listen, *(a.raft for a in opts.cluster.values())]
    exposed = [a for a in addresses if not is_loopback(split_hostport(a)[0])]
    if exposed and not opts.insecure:
        raise ValueError(
            f"{exposed[0]}: Raft traffic beyond loopback must be authenticated: give "
            "--tls-cert, --tls-key and --tls-ca (or --insecure to allow plaintext)"
        )
    if exposed:
        log.warning(
            "--insecure: Raft traffic is plaintext and unauthenticated (%s): anyone who "
            "can reach these ports can forge messages and corrupt the log",
            ", ".join(exposed),
        )
    return options


def _api(node: Any, sm: KVStateMachine, opts: ServeOptions) -> KvApi:
    return KvApi(
        node,
        sm,
        opts.node_id,
        opts.cluster,
        runtime=opts.runtime,
        write_timeout=opts.write_timeout,
        tokens=opts.api_tokens,
        scheme="https" if opts.api_tls_cert else "http",
    )


async def serve_asyncio(opts: ServeOptions) -> None:
    """Run the node on asyncio until SIGTERM/SIGINT."""
    from raftcore.adapters.asyncio_node import open_node
    from raftcore.adapters.transport import AsyncioTcpTransport

    # The transport first: a refused address or TLS setup stops the node
    # before it opens (and locks) its store.
    api_tls = opts.api_tls()
    transport = AsyncioTcpTransport(
        opts.node_id,
        opts.cluster_id,
        listen=opts.raft_listen,
        peers={n: a.raft for n, a in opts.cluster.items() if n != opts.node_id},
        **_peer_security(opts),
    )
    store, snapshots, fresh = _open_store(opts)
    sm = KVStateMachine()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_node(
        opts.node_id, opts.config, store, sm, transport, snapshot_store=snapshots
    ) as node:
        await _start(node, opts, fresh)
        host, port = split_hostport(opts.http_listen)
        api = _api(node, sm, opts)
        limit = ConnectionLimit(opts.max_connections)
        server = await serve_http_asyncio(api.handle, host, port, limit=limit, tls=api_tls)
        watcher = asyncio.create_task(log_leadership(node, api.leadership))
        log.info("serving: raft %s, http %s (asyncio)", opts.raft_listen, opts.http_listen)
        await stop.wait()
        log.info("signal received: shutting down")
        watcher.cancel()
        await close_http_asyncio(server)
    log.info("stopped")


async def serve_trio(opts: ServeOptions) -> None:
    """Run the node on trio until SIGTERM/SIGINT."""
    import trio

    from raftcore.adapters.transport.trio_tcp import TrioTcpTransport
    from raftcore.adapters.trio_node import open_node

    # The transport first: a refused address or TLS setup stops the node
    # before it opens (and locks) its store.
    api_tls = opts.api_tls()
    transport = TrioTcpTransport(
        opts.node_id,
        opts.cluster_id,
        listen=opts.raft_listen,
        peers={n: a.raft for n, a in opts.cluster.items() if n != opts.node_id},
        **_peer_security(opts),
    )
    store, snapshots, fresh = _open_store(opts)
    sm = KVStateMachine()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_node(
            opts.node_id, opts.config, store, sm, transport, snapshot_store=snapshots
        ) as node:
            await _start(node, opts, fresh)
            host, port = split_hostport(opts.http_listen)
            async with trio.open_nursery() as nursery:
                api = _api(node, sm, opts)
                handler = api.handle
                limit = ConnectionLimit(opts.max_connections)
                await nursery.start(
                    functools.partial(
                        serve_http_trio, handler, host, port, limit=limit, tls=api_tls
                    )
                )
                nursery.start_soon(log_leadership, node, api.leadership)
                log.info("serving: raft %s, http %s (trio)", opts.raft_listen, opts.http_listen)
                async for _ in signals:
                    break
                log.info("signal received: shutting down")
                nursery.cancel_scope.cancel()
    log.info("stopped")


def _cause(e: OSError) -> str:
    """The system's reason (``Address already in use``), without the wrapping."""
    return os.strerror(e.errno) if e.errno else str(e)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out += _leaves(e) if isinstance(e, BaseExceptionGroup) else [e]
    return out


def serve(opts: ServeOptions) -> int:
    """Run one node in this process until a signal; the exit status.

    Without ``init`` a node with a fresh store waits to be added to the
    cluster (``POST /cluster/learners`` on the leader); its cluster spec must
    list the current members, so that it accepts the leader's connection.
    """
    opts = opts.resolved()
    if opts.runtime == "trio":
        try:
            import trio
        except ImportError:
            raise ValueError(
                "--runtime trio needs trio, which is not installed: pip install 'raftcore[trio]'"
            ) from None
        try:
            trio.run(serve_trio, opts)
        except BaseExceptionGroup as group:
            # trio's nurseries wrap what failed (a port in use, a damaged store):
            # surface a lone error as itself, so serve's caller can name it.
            leaves = _leaves(group)
            if len(leaves) == 1:
                raise leaves[0] from None
            raise
    elif opts.runtime == "asyncio":
        asyncio.run(serve_asyncio(opts))
    else:
        raise ValueError(f"unknown runtime {opts.runtime!r}; choose from {RUNTIMES}")
    return 0
