"""Node identity: a voter that lost its disk is refused, shown, and recovered.

A store has an incarnation made when it is created; the membership records
each member's. A node that comes back on a wiped store presents a new one:
its peers refuse it at the handshake (it cannot vote or count as a replica
under its old identity), the leader shows it as ``lost``, and the operator
recovers it by removing it and adding it back.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from runtime_kit import CONFIG, KITS, WAIT, Kit, cluster

from raftcore.adapters.errors import ClusterExists
from raftcore.adapters.storage import MemoryLogStore
from raftcore.adapters.transport.identity import (
    IdentityMismatchError,
    OtherClusterError,
    PeerIdentities,
    PeerRefusedError,
    incarnation_of,
)
from raftcore.adapters.transport.peers import (
    transport_logger,
)
from raftcore.codec import Hello
from raftcore.ids import LogId
from raftcore.membership import AddVoters, RemoveVoters
from raftcore.state import Role
from raftcore.storage import StoreIdentity

RUNTIMES = pytest.mark.parametrize("kit", KITS, ids=lambda k: k.name)
NETWORKS = pytest.mark.parametrize("tcp", [False, True], ids=["inproc", "tcp"])


def identities(incarnation: str, cluster_id: str = "c1") -> PeerIdentities:
    ids = PeerIdentities(1, transport_logger(1))
    ids.own = StoreIdentity(incarnation, cluster_id)
    return ids


def test_a_peer_presenting_another_incarnation_is_refused_and_recorded() -> None:
    ids = identities("aaaa")
    ids.expected[2] = "bbbb"
    ids.check(Hello("kv", 2, store_cluster="c1", incarnation="bbbb"))  # the same store: fine
    with pytest.raises(IdentityMismatchError, match="node 2 presents store incarnation cccc"):
        ids.check(Hello("kv", 2, store_cluster="", incarnation="cccc"))
    assert ids.status()[2]["refused"] == "identity-mismatch"
    ids.check(Hello("kv", 2, store_cluster="c1", incarnation="bbbb"))
    assert 2 not in ids.refusals, "a good handshake clears the refusal"


def test_a_store_of_another_cluster_is_refused_naming_both() -> None:
    ids = identities("aaaa", "c1")
    with pytest.raises(OtherClusterError, match="cluster c2, this node's to cluster c1"):
        ids.check(Hello("kv", 3, store_cluster="c2", incarnation="dddd"))


def test_a_fresh_node_adopts_the_cluster_that_reaches_it() -> None:
    ids = identities("aaaa", "")
    adopted: list[str] = []
    ids.on_adopt = adopted.append
    ids.check(Hello("kv", 2, store_cluster="c9", incarnation="bbbb"))
    assert adopted == ["c9"] and ids.own is not None and ids.own.cluster_id == "c9"
    assert ids.hello("kv").store_cluster == "c9"


def test_a_refusal_from_the_peer_is_an_error_with_its_reason() -> None:
    ids = identities("aaaa")
    with pytest.raises(PeerRefusedError, match="node 2 refused this node: lost your disk"):
        ids.check(Hello("kv", 2, refused="lost your disk"))
    assert ids.status()[2]["by_peer"] is True


@RUNTIMES
@NETWORKS
def test_a_wiped_voter_is_refused_shown_lost_and_recovered(kit: Kit, tcp: bool) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 6):
            async with cluster(kit, 3, tcp=tcp) as c:
                leader = await c.leader()
                for i in range(10):
                    last, _ = await leader.write(i, timeout=WAIT)
                await c.wait_applied(last)
                victim = next(n for n in c.ids if n != leader.node_id)
                old = leader.metrics().membership.node_info(victim)
                assert incarnation_of(old), "initialize records every member's incarnation"

                # The victim loses its disk and comes back under its old id.
                await c.stop(victim)
                wiped = await c.start(victim, MemoryLogStore())
                await leader.trigger_heartbeat()

                def lost(_: object) -> bool:
                    state: str = leader.replication()[victim].state
                    return state == "lost"

                await leader.wait_for(lost, timeout=WAIT)
                status = leader.replication()[victim]
                assert "lost or replaced its store" in status.detail
                # Refused both ways: it learns why, and it gets nothing.
                await wiped.wait_for(lambda m: bool(m.extra["refusals"]), timeout=WAIT)
                refusal = next(iter(wiped.metrics().extra["refusals"].values()))
                assert refusal["by_peer"] and "lost or replaced its store" in refusal["detail"]
                m = wiped.metrics()
                assert m.last_log_id.index == 0 and m.vote.term == 0 and m.role is Role.LEARNER
                # It cannot form a cluster of its own with the old members either.
                with pytest.raises(ClusterExists, match=r"already belongs to cluster|refused"):
                    await wiped.initialize(c.addrs, timeout=WAIT)
                # The cluster still commits with the other two.
                more, _ = await leader.write("while-lost", timeout=WAIT)

                # Recovery: remove it, add it back (a new incarnation), promote it.
                await leader.change_membership(RemoveVoters([victim]), timeout=WAIT)
                _, m2 = await leader.add_learner(victim, c.addrs[victim], timeout=WAIT)
                new = incarnation_of(m2.node_info(victim))
                assert new and new != incarnation_of(old)
                _, m3 = await leader.change_membership(AddVoters({victim: None}), timeout=WAIT)
                assert victim in m3.voter_ids()
                await c.wait_applied(more, [victim])
                assert c.sms[victim].items[-1] == "while-lost"
                assert leader.replication()[victim].state in ("replicating", "probing")
                assert not leader.metrics().extra["refusals"]

    kit.run(scenario)


@RUNTIMES
def test_a_stopped_follower_shows_unreachable(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 3):
            async with cluster(kit, 3, tcp=True) as c:
                leader = await c.leader()
                victim = next(n for n in c.ids if n != leader.node_id)
                await leader.write("x", timeout=WAIT)
                assert leader.replication()[victim].state == "replicating"
                await c.stop(victim)

                def unreachable(_: object) -> bool:
                    state: str = leader.replication()[victim].state
                    return state == "unreachable"

                await leader.wait_for(unreachable, timeout=WAIT)
                status = leader.replication()[victim]
                assert status.last_ack_age > leader.config.election_timeout_max

    kit.run(scenario)


def test_a_peer_that_knows_a_newer_membership_is_not_judged_by_an_old_one() -> None:
    """A node catching up holds old records; it must not refuse today's leader."""
    ids = identities("aaaa")
    ids.expected[3] = "old-incarnation-of-3"
    ids.membership_id = LogId(2, 1, 10)
    newer = Hello("kv", 3, store_cluster="c1", incarnation="new-3", membership=LogId(5, 3, 80))
    ids.check(newer)  # not refused: node 3 knows more than this node's records
    same = Hello("kv", 3, store_cluster="c1", incarnation="new-3", membership=LogId(2, 1, 10))
    with pytest.raises(IdentityMismatchError):
        ids.check(same)
    wiped = Hello("kv", 3, store_cluster="", incarnation="new-3")  # knows no membership
    with pytest.raises(IdentityMismatchError):
        ids.check(wiped)


@RUNTIMES
def test_a_node_catching_up_through_old_memberships_accepts_todays_leader(kit: Kit) -> None:
    """Regression (make chaos, seed 22): a node rebuilt from scratch replays a
    membership that left out today's leader (and recorded an older store of
    it). Its transport used to drop the leader as a peer, and then refuse it:
    the catch-up stopped for good."""

    async def scenario(kit: Kit) -> None:
        # One entry per append: the catch-up steps through every membership.
        one_by_one = attrs.evolve(CONFIG, max_entries_per_append=1)
        with kit.fail_after(WAIT * 8):
            async with cluster(kit, 3, tcp=True, config=one_by_one) as c:
                first = await c.leader()
                z, y = (n for n in c.ids if n != first.node_id)

                async def rebuild(n: int, leader: Any) -> None:
                    """``n`` lost its disk: remove it, start it empty, add it back."""
                    await c.stop(n)
                    await leader.change_membership(RemoveVoters([n]), timeout=WAIT)
                    await c.start(n, MemoryLogStore())
                    await leader.add_learner(n, c.addrs[n], timeout=WAIT)
                    await leader.change_membership(AddVoters({n: None}), timeout=WAIT)

                async def reopen(n: int) -> None:
                    """Restart ``n`` on the store it had (a plain restart)."""
                    store = c.stores[n]
                    assert isinstance(store, MemoryLogStore)
                    await c.start(n, MemoryLogStore(store.backing))

                for i in range(5):
                    await first.write(f"a{i}", timeout=WAIT)
                await rebuild(z, first)  # z: out of one membership, then a new store
                # Make z the leader, then stop the old one.
                old = first.node_id
                assert await first.transfer_leader(z, timeout=WAIT) == z
                await c.stop(old)
                leader = await c.leader([y, z])
                assert leader.node_id == z
                await reopen(old)
                last, _ = await leader.write("b", timeout=WAIT)
                await c.wait_applied(last, [old])  # back in the quorum before y goes
                # y is rebuilt from scratch under leader z: it replays the
                # membership without z (and z's first store) on the way.
                await rebuild(y, leader)
                await c.wait_applied(last, [y])
                assert c.sms[y].items == [f"a{i}" for i in range(5)] + ["b"]

    kit.run(scenario)
