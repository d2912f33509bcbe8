"""The public node API, shared by the asyncio and trio runtimes.

``NodeApi`` implements every public call once, on top of four primitives a
runtime supplies: the current time, waking its event loop, waiting for a
group of requests (with a timeout), and waiting for a metrics condition.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import attrs

from raftcore.adapters._driver import Driver, Resolve, as_membership, peers_of
from raftcore.adapters._latency import Histogram
from raftcore.adapters._log import NodeLogger, node_logger
from raftcore.adapters.errors import ClusterExists, ShuttingDown, Timeout, Unreachable
from raftcore.adapters.storage.identity import new_incarnation
from raftcore.adapters.transport.identity import (
    RECOVERY_DOC,
    HandshakeError,
    IdentityMismatchError,
    OtherClusterError,
    PeerIdentities,
    PeerRefusedError,
    address_of,
    incarnation_of,
    node_info,
)
from raftcore.codec import Hello, check_data
from raftcore.config import Config
from raftcore.engine import Rng
from raftcore.errors import ConfigError, LocalProtocolError
from raftcore.events import (
    Event,
    Initialize,
    ReadPolicy,
    TriggerElection,
    TriggerHeartbeat,
    TriggerPurge,
    TriggerSnapshot,
)
from raftcore.ids import LogId, NodeId, check_node_id
from raftcore.membership import AddLearners, Change, Membership
from raftcore.messages import Message
from raftcore.state import Metrics
from raftcore.storage import LogStore, SnapshotStore, StateMachine

T = TypeVar("T")

#: Room a snapshot chunk's frame needs besides the chunk: the vote, the
#: snapshot's meta and its membership (node addresses included).
FRAME_ROOM = 64 * 1024

#: How long ``add_learner`` waits at most for a new node to answer its probe.
PROBE_TIMEOUT = 30.0

#: Queues one request with the driver, given the callback that resolves it.
Submit = Callable[[Resolve], int]


class Transport(Protocol):
    """What the runtimes use of any transport (see ``raftcore.adapters.transport``)."""

    identities: PeerIdentities

    def send(self, to: NodeId, msg: Message) -> None: ...
    def check_address(self, address: Any) -> None: ...
    def set_peer(self, node_id: NodeId, address: Any, incarnation: str = "") -> None: ...
    def remove_peer(self, node_id: NodeId) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    async def probe(self, node_id: NodeId, address: Any) -> Hello: ...


@attrs.frozen
class ReplicationStatus:
    """A leader's view of one follower or learner (``NodeApi.replication``)."""

    #: The last log id known to be in its log.
    matched: LogId
    #: Seconds since the leader sent the latest request it acknowledged.
    last_ack_age: float
    #: ``replicating``, ``probing`` (looking for the match point),
    #: ``unreachable`` (no acknowledgement within the election timeout) or
    #: ``lost`` (refused at the handshake: its store is not the one the
    #: membership records, or it belongs to another cluster).
    state: str
    #: Why, for ``lost``.
    detail: str = ""


class NodeApi:
    """Everything public about a node; subclassed by each runtime."""

    node_id: NodeId
    config: Config
    transport: Transport
    log: NodeLogger
    _driver: Driver | None
    _closed: bool
    _members: frozenset[NodeId] = frozenset()

    def __init__(
        self,
        node_id: NodeId,
        config: Config,
        log_store: LogStore,
        state_machine: StateMachine,
        transport: Transport,
        rng: Rng | None,
        snapshot_store: SnapshotStore | None = None,
    ) -> None:
        max_frame = getattr(transport, "max_frame", None)
        if isinstance(max_frame, int) and config.snapshot_chunk_size + FRAME_ROOM > max_frame:
            raise ConfigError(
                "snapshot_chunk_size",
                f"{config.snapshot_chunk_size} bytes leave no room in the transport's "
                f"max_frame of {max_frame} (keep it at most max_frame - {FRAME_ROOM})",
            )
        self.node_id = node_id
        self.config = config
        self.log_store = log_store
        self.state_machine = state_machine
        self.snapshot_store = snapshot_store
        self.transport = transport
        self.log = node_logger("raftcore.node", node_id)
        self._rng: Rng = rng if rng is not None else random.Random()
        self._driver = None
        self._closed = False

    # -- primitives (each runtime) -------------------------------------------------

    def _now(self) -> float:
        raise NotImplementedError

    def _kick(self) -> None:
        """Wake the event loop task: the driver's inbox has work."""
        raise NotImplementedError

    async def _requests(self, submits: Sequence[Submit], timeout: float | None) -> list[Any]:
        """Queue requests together and wait for all: their results, in order, or
        the first error in order; ``Timeout`` (and every request forgotten) after
        ``timeout`` seconds."""
        raise NotImplementedError

    async def wait_for(self, predicate: Callable[[Metrics], bool], *, timeout: float) -> Metrics:
        """Wait until ``predicate(metrics)`` holds (checked after every engine
        step); returns those metrics, or raises ``Timeout``."""
        raise NotImplementedError

    async def _sleep(self, seconds: float) -> None:
        raise NotImplementedError

    async def _offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the node's worker thread, in order with storage."""
        raise NotImplementedError

    # -- the public API ------------------------------------------------------------

    async def initialize(
        self, members: Membership | Mapping[NodeId, Any], *, timeout: float = 30.0
    ) -> None:
        """Form a new cluster with this first membership (node id -> address).

        With a store that keeps an identity (both bundled stores do), every
        other member must answer first (``Unreachable`` after ``timeout``
        seconds otherwise): the membership records each member's store incarnation,
        and ``ClusterExists`` is raised, forming nothing, if one of them
        already belongs to a cluster.
        """
        d = self._live()
        if d.identity is not None and not isinstance(members, Membership):
            if d.identity.cluster_id:
                raise ClusterExists(
                    f"node {self.node_id}'s store already belongs to cluster "
                    f"{d.identity.cluster_id}: it cannot form another"
                )
            incarnations = await self._probe_members(members, timeout)
            incarnations[self.node_id] = d.identity.incarnation
            members = {n: node_info(a, incarnations[n]) for n, a in members.items()}
            cluster_id = new_incarnation()
            await self._offload(self.log_store.save_cluster_id, cluster_id)  # type: ignore[attr-defined]
            d.identity = attrs.evolve(d.identity, cluster_id=cluster_id)
            self.transport.identities.set_cluster(cluster_id)
            self.log.info("formed cluster %s", cluster_id)
        self._step_now(Initialize(as_membership(members)))

    async def _probe_members(
        self, members: Mapping[NodeId, Any], timeout: float, cluster: str = ""
    ) -> dict[NodeId, str]:
        """Each other member's incarnation, from its Hello (``Unreachable``
        after ``timeout``); ``ClusterExists`` for a member that belongs to a
        cluster other than ``cluster``, or refuses this node."""
        deadline = self._now() + timeout
        found: dict[NodeId, str] = {}
        waiting = {n: a for n, a in members.items() if n != self.node_id}
        logged = False
        while waiting:
            for n, address in list(waiting.items()):
                try:
                    hello = await self.transport.probe(n, address)
                except (OtherClusterError, PeerRefusedError, IdentityMismatchError) as e:
                    raise ClusterExists(f"node {n} at {address}: {e}") from None
                except HandshakeError as e:  # e.g. it does not list this node as a peer
                    raise Unreachable(n, f"{address!r}: {e}") from None
                except (OSError, TimeoutError) as e:
                    if self._now() >= deadline:
                        raise Unreachable(n, f"{address!r}: {e}") from None
                    continue
                if hello.store_cluster and hello.store_cluster != cluster:
                    why = (
                        f"this node's cluster is {cluster}"
                        if cluster
                        else "not forming a second one (a node that lost its disk rejoins"
                        f" by being removed and added back: {RECOVERY_DOC})"
                    )
                    raise ClusterExists(
                        f"node {n} at {address} already belongs to cluster "
                        f"{hello.store_cluster}: {why}"
                    )
                found[n] = hello.incarnation
                del waiting[n]
            if waiting:
                if not logged:
                    self.log.info("initialize: waiting for nodes %s to answer", sorted(waiting))
                    logged = True
                await self._sleep(0.1)
        return found

    async def write(self, data: Any, *, timeout: float | None = None) -> Any:
        """Replicate ``data``; returns the state machine's result once applied.

        ``data`` must be encodable by ``raftcore.codec`` (``EncodeError`` otherwise:
        nothing is proposed).
        """
        check_data(data)
        d = self._live()
        (result,) = await self._requests([_write(d, data)], timeout)
        return result

    async def read(
        self, policy: ReadPolicy = ReadPolicy.READ_INDEX, *, timeout: float | None = None
    ) -> LogId:
        """Make a linearizable read safe: returns once this node's state
        machine has applied everything acknowledged before the call; then
        read it. Returns the read point (docs/reads.md).

        On a follower the leader gives the read point (a follower read).
        ``NotLeader`` when no leader is known; ``ReadTimeout`` or
        ``LeadershipLost`` when the leader cannot confirm it still leads.
        """
        d = self._live()
        start = self._now()
        (point,) = await self._requests([lambda r: d.submit_read(policy, r)], timeout)
        if self.metrics().applied.index < point.index:
            left = None if timeout is None else max(0.0, timeout - (self._now() - start))
            await self.wait_for(
                lambda m: m.applied.index >= point.index,
                timeout=left if left is not None else self.config.read_deadline,
            )
        return point  # type: ignore[no-any-return]

    async def ensure_linearizable(self, *, timeout: float | None = None) -> LogId:
        """``read(ReadPolicy.READ_INDEX)``: the name openraft users look for."""
        return await self.read(ReadPolicy.READ_INDEX, timeout=timeout)

    async def transfer_leader(
        self, to: NodeId | None = None, *, timeout: float | None = None
    ) -> NodeId:
        """Hand leadership to voter ``to`` (``None``: the most up-to-date other
        voter); returns the new leader's id once this node sees it lead.

        Call it on the leader (``NotLeader`` otherwise, naming the leader).
        Meanwhile writes and membership changes are refused with
        ``TransferInProgress`` (retry them at the new leader). Errors:
        ``InvalidTransfer`` (a learner, a non-member, no other voter),
        ``TransferInProgress`` (another transfer runs), ``TransferTimeout``
        (not done within ``Config.transfer_timeout``: the leader serves
        writes again), ``LeadershipLost`` (another node took over), and
        ``Timeout`` after ``timeout`` seconds.
        """
        if to is not None:
            check_node_id(to, "to")
        d = self._live()
        start = self._now()
        (target,) = await self._requests([lambda r: d.submit_transfer(to, r)], timeout)
        if self.metrics().leader_id != target:
            # Handed over: the target campaigns with every voter's blessing.
            left = self.config.election_timeout_max if timeout is None else timeout
            left -= self._now() - start if timeout is not None else 0.0
            await self.wait_for(lambda m: m.leader_id == target, timeout=max(0.0, left))
        return target  # type: ignore[no-any-return]

    async def write_batch(self, items: Sequence[Any], *, timeout: float | None = None) -> list[Any]:
        """Several writes in one log append; results in order (first error raised)."""
        for data in items:
            check_data(data)
        d = self._live()
        return await self._requests([_write(d, data) for data in items], timeout)

    async def change_membership(
        self,
        change: Change,
        *,
        retain: bool = False,
        expected: LogId | None = None,
        timeout: float | None = None,
    ) -> tuple[LogId, Membership]:
        """Change the membership (see ``raftcore.membership`` for the changes);
        returns the final membership and its log id once committed.

        ``retain`` keeps removed voters as learners; ``expected`` makes the
        change conditional on the current membership's log id.
        """
        # Node info is the peer's address: one the transport cannot dial would
        # reach every node's log. Refuse it here (ConfigError), before that.
        for _, info in getattr(change, "nodes", ()):
            if info is not None:
                self.transport.check_address(address_of(info))
        d = self._live()
        (result,) = await self._requests(
            [lambda r: d.submit_change(change, retain, expected, r)], timeout
        )
        return result  # type: ignore[no-any-return]

    async def add_learner(
        self,
        node_id: NodeId,
        info: Any,
        *,
        blocking: bool = True,
        max_lag: int = 0,
        timeout: float | None = None,
    ) -> tuple[LogId, Membership]:
        """Add a non-voting member that receives the log (existing info is kept).

        With ``blocking``, returns only once the learner's log is within
        ``max_lag`` entries of this leader's (``Timeout`` otherwise).
        """
        deadline = math.inf if timeout is None else self._now() + timeout
        d = self._live()
        if d.identity is not None and not incarnation_of(info):
            # Record the store it runs on: a wiped store later is told apart.
            address = address_of(info)
            wait = min(deadline - self._now(), PROBE_TIMEOUT)
            found = await self._probe_members({node_id: address}, wait, d.identity.cluster_id)
            info = node_info(address, found[node_id])
        result = await self.change_membership(AddLearners({node_id: info}), timeout=timeout)
        if blocking:

            def caught_up(m: Metrics) -> bool:
                matching = m.replication.get(node_id)
                return matching is not None and matching.index + max_lag >= m.last_log_id.index

            remaining = deadline - self._now()
            await self.wait_for(caught_up, timeout=max(0.0, remaining))
        return result

    async def trigger_election(self) -> None:
        self._step_now(TriggerElection())

    async def trigger_heartbeat(self) -> None:
        self._step_now(TriggerHeartbeat())

    async def trigger_snapshot(self, *, timeout: float = 60.0) -> LogId | None:
        """Snapshot what is applied now; returns the snapshot's last log id
        once it is durable (``None``: nothing applied yet). If a snapshot is
        being built already, waits for that one instead."""
        d = self._live()
        if d.snapshot_store is None:
            raise LocalProtocolError("this node has no snapshot store: pass snapshot_store=...")
        self._step_now(TriggerSnapshot())
        eng = d.engine
        target = eng.building or (eng.snapshot.last_log_id if eng.snapshot else None)
        if target is None:
            return None
        m = await self.wait_for(
            lambda m: m.snapshot is not None and m.snapshot.index >= target.index,
            timeout=timeout,
        )
        return m.snapshot

    async def purge_log(self, upto: int) -> LogId:
        """Purge the log up to index ``upto`` now (at most up to the latest
        snapshot; a leader keeps what followers close behind still need).
        Returns the last purged log id."""
        self._step_now(TriggerPurge(upto))
        return self.metrics().last_purged

    def metrics(self) -> Metrics:
        return self._live().metrics()

    def latency(self) -> dict[str, Histogram]:
        """Latency histograms since start: ``write``, ``storage_flush`` and
        ``apply`` (``raftcore.adapters._latency``)."""
        return self._live().latency

    def replication(self) -> dict[NodeId, ReplicationStatus]:
        """Leader only (else empty): each follower's and learner's matched log
        id, time since its last acknowledgement, and state."""
        m = self.metrics()
        now = self._now()
        refusals = self.transport.identities.refusals
        out = {}
        for n, p in sorted(m.followers.items()):
            age = max(0.0, now - p.acked_at)
            refusal = refusals.get(n)
            if refusal is not None:
                state, detail = "lost", refusal.detail
            elif age > self.config.election_timeout_max:
                state, detail = "unreachable", ""
            else:
                state, detail = ("probing" if p.probing else "replicating"), ""
            out[n] = ReplicationStatus(p.matching, age, state, detail)
        return out

    # -- shared internals ------------------------------------------------------------

    def _attach(self, d: Driver) -> None:
        """Connect a new driver to the transport: metrics, identity."""
        self._driver = d
        d.metrics_extra = lambda: {
            "transport": self.transport.stats(),
            "identity": None if d.identity is None else attrs.asdict(d.identity),
            "refusals": self.transport.identities.status(),
        }
        self.transport.identities.own = d.identity
        self.transport.identities.on_adopt = d.adopt_cluster

    def _live(self) -> Driver:
        if self._driver is None:
            raise LocalProtocolError("the node is not started: use `async with open_node(...)`")
        if self._closed:
            raise ShuttingDown()
        return self._driver

    def _step_now(self, event: Event) -> None:
        """Feed an event synchronously so a LocalProtocolError reaches the caller."""
        d = self._live()
        d.run(self._now())
        d.handle(event, self._now())
        self._kick()

    def _deliver(self, sender: NodeId, message: Message) -> None:
        if self._driver is not None:
            self._driver.deliver(sender, message)
            self._kick()

    def _sync_peers(self, membership_id: LogId, m: Membership) -> None:
        """Keep the transport's peers in step with the effective membership.

        Members are added (or their address and incarnation updated); a node
        that leaves the membership is not removed from the transport, only its
        recorded incarnation is forgotten. A node catching up replays old
        memberships, and one of them may leave out today's leader: removing it
        would refuse the leader's connection and stop the catch-up for good
        (found by ``make chaos``). The engine sends nothing to non-members, so
        nothing is dialled for them.
        """
        identities = self.transport.identities
        identities.membership_id = membership_id
        peers = peers_of(m, self.node_id)
        for n, info in peers.items():
            address = address_of(info)
            if address is None:
                continue
            try:
                self.transport.set_peer(n, address, incarnation_of(info))
            except Exception as e:  # e.g. written by another client: skip that peer only
                self.log.warning("cannot reach node %s at %r: %s", n, address, e)
        for n in self._members - peers.keys():
            identities.forget(n)
        self._members = frozenset(peers)


def _write(d: Driver, data: Any) -> Submit:
    return lambda resolve: d.submit(data, resolve)


def timeout_error(timeout: float | None) -> Timeout:
    return Timeout(timeout if timeout is not None else 0.0)
