"""The runtimes' behaviour, the same suite for asyncio and trio, in-process and TCP."""

from __future__ import annotations

import functools
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from runtime_kit import KITS, STAY_LEADER, WAIT, Kit, ListStateMachine, cluster

from raftcore.adapters.errors import ShuttingDown, Timeout
from raftcore.adapters.storage import MemoryLogStore, SqliteLogStore
from raftcore.adapters.transport.identity import address_of, incarnation_of
from raftcore.codec import EncodeError
from raftcore.entries import Entry
from raftcore.errors import (
    ConfigError,
    InvalidMembershipChange,
    LocalProtocolError,
    MembershipMismatch,
    NodeStopped,
    NotLeader,
)
from raftcore.ids import LogId
from raftcore.membership import AddLearners, AddVoters, RemoveNodes, RemoveVoters
from raftcore.state import Role

RUNTIMES = pytest.mark.parametrize("kit", KITS, ids=lambda k: k.name)
NETWORKS = pytest.mark.parametrize("tcp", [False, True], ids=["inproc", "tcp"])


@RUNTIMES
@NETWORKS
def test_election_and_writes(kit: Kit, tcp: bool) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 3):
            async with cluster(kit, 3, tcp=tcp) as c:
                leader = await c.leader()
                first = await leader.write("a", timeout=WAIT)
                results = await kit.gather(*(leader.write(i, timeout=WAIT) for i in range(50)))
                assert all(not isinstance(r, BaseException) for r in results), results
                # Each result is (index, data), indexes distinct and after the first write.
                assert sorted(r[1] for r in results) == list(range(50))
                indexes = [r[0] for r in results]
                assert len(set(indexes)) == 50 and min(indexes) > first[0]
                batch = await leader.write_batch(["x", "y"], timeout=WAIT)
                assert [b[1] for b in batch] == ["x", "y"] and batch[1][0] == batch[0][0] + 1
                await c.wait_applied(batch[1][0])
                for n in c.ids:  # every state machine applied the same sequence
                    assert c.sms[n].items == c.sms[leader.node_id].items
                m = leader.metrics()
                assert m.role is Role.LEADER and m.committed.index >= batch[1][0]
                assert m.extra["write_batches"] >= 1  # concurrent writes were batched
                assert set(m.replication) == set(c.ids) - {leader.node_id}

    kit.run(scenario)


@RUNTIMES
def test_write_to_a_follower_names_the_leader(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 2):
            async with cluster(kit, 3) as c:
                leader = await c.leader()
                follower = next(c.nodes[n] for n in c.ids if n != leader.node_id)
                with pytest.raises(NotLeader) as exc:
                    await follower.write("x", timeout=WAIT)
                assert exc.value.leader_id == leader.node_id
                assert exc.value.leader_info == c.addrs[leader.node_id]

    kit.run(scenario)


@RUNTIMES
@NETWORKS
def test_leader_failover(kit: Kit, tcp: bool) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 3):
            async with cluster(kit, 3, tcp=tcp) as c:
                old = await c.leader()
                acked = [await old.write(f"before-{i}", timeout=WAIT) for i in range(10)]
                await c.stop(old.node_id)
                rest = [n for n in c.ids if n != old.node_id]
                new = await c.leader(rest)
                assert new.node_id != old.node_id
                after = await new.write("after", timeout=WAIT)
                await c.wait_applied(after[0], rest)
                for n in rest:
                    items = c.sms[n].items
                    assert [data for _, data in acked] == [x for x in items if x != "after"][:10]
                    assert items[-1] == "after"

    kit.run(scenario)


@RUNTIMES
def test_restart_from_sqlite_keeps_the_log_and_reapplies(kit: Kit, tmp_path: Path) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 3):
            async with cluster(kit, 3, init=False) as c:
                for n in c.ids:  # restart every node on SQLite before forming the cluster
                    await c.stop(n)
                    await c.start(n, SqliteLogStore(tmp_path / f"{n}.sqlite3"))
                await c.nodes[1].initialize(c.addrs)
                leader = await c.leader()
                results = [await leader.write(i, timeout=WAIT) for i in range(20)]
                last = results[-1][0]
                await c.wait_applied(last)
                victim = next(n for n in c.ids if n != leader.node_id)
                before = c.nodes[victim].metrics()
                await c.stop(victim)
                node = await c.start(victim, SqliteLogStore(tmp_path / f"{victim}.sqlite3"))
                m = node.metrics()
                assert m.last_log_id >= before.last_log_id and m.vote.term >= before.vote.term
                await c.wait_applied(last, [victim])
                assert c.sms[victim].items[:20] == list(range(20))

    kit.run(scenario)


@RUNTIMES
def test_bad_frames_and_unknown_peers_leave_the_node_working(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 3):
            async with cluster(kit, 3, tcp=True) as c:
                leader = await c.leader()
                host, port = c.addrs[leader.node_id].split(":")

                def send_junk(junk: bytes) -> bytes:
                    with socket.create_connection((host, int(port)), timeout=WAIT) as s:
                        s.sendall(junk)
                        return s.recv(1024)  # b"": the node closed the connection

                for junk in (b"\x00\x00\x00\x05hello", b"\xff\xff\xff\xff", b"GET / HTTP/1.1\r\n"):
                    assert await kit.to_thread(functools.partial(send_junk, junk)) == b""
                result = await leader.write("still fine", timeout=WAIT)
                assert result[1] == "still fine"
                assert leader.metrics().role is Role.LEADER

    kit.run(scenario)


@RUNTIMES
def test_shutdown_fails_requests_in_flight(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 2):
            async with cluster(kit, 3, config=STAY_LEADER) as c:
                leader = await c.leader()
                c.net.isolate(leader.node_id)  # nothing can commit any more

                async def shut_down_soon() -> None:
                    for _ in range(20):
                        await kit.checkpoint()
                    await leader.shutdown()

                writes = [leader.write(i) for i in range(5)]
                results = await kit.gather(*writes, shut_down_soon())
                assert all(isinstance(r, ShuttingDown) for r in results[:5]), results
                with pytest.raises(ShuttingDown):
                    await leader.write("late")

    kit.run(scenario)


@RUNTIMES
def test_write_timeout_and_wait_for_timeout(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 2):
            async with cluster(kit, 3, config=STAY_LEADER) as c:
                leader = await c.leader()
                c.net.isolate(leader.node_id)
                with pytest.raises(Timeout):
                    await leader.write("lost", timeout=0.2)
                with pytest.raises(Timeout):
                    await leader.wait_for(lambda m: m.applied.index > 10**9, timeout=0.1)

    kit.run(scenario)


@RUNTIMES
def test_initialize_twice_is_refused(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT):
            async with cluster(kit, 1) as c:
                await c.leader()
                with pytest.raises(LocalProtocolError):
                    await c.nodes[1].initialize(c.addrs)
                assert (await c.nodes[1].write("ok", timeout=WAIT))[1] == "ok"

    kit.run(scenario)


class FailingStore(MemoryLogStore):
    """Fails every append once ``broken`` is set."""

    broken = False

    def append(self, entries: Sequence[Entry]) -> None:
        if self.broken:
            raise OSError("disk on fire")
        super().append(entries)


@RUNTIMES
def test_storage_failure_stops_the_node_cleanly(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 2):
            async with cluster(kit, 1, init=False) as c:
                store = FailingStore()
                await c.stop(1)
                node = await c.start(1, store)
                await node.initialize(c.addrs)
                await c.leader()
                store.broken = True
                with pytest.raises(NodeStopped) as exc:
                    await node.write("x", timeout=WAIT)
                assert "disk on fire" in exc.value.reason
                assert "disk on fire" in (node.metrics().stopped or "")
                with pytest.raises(NodeStopped):
                    await node.write("y", timeout=WAIT)

    kit.run(scenario)


@RUNTIMES
@NETWORKS
def test_add_learner_promote_and_remove_a_voter(kit: Kit, tcp: bool) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 4):
            async with cluster(kit, 4, tcp=tcp, voters=3) as c:
                leader = await c.leader([1, 2, 3])
                for i in range(20):
                    await leader.write(i, timeout=WAIT)
                lid, m = await leader.add_learner(4, c.addrs[4], timeout=WAIT)
                assert m.learner_ids() == {4} and address_of(m.node_info(4)) == c.addrs[4]
                # The membership records the store node 4 runs on.
                store4 = c.stores[4]
                assert isinstance(store4, MemoryLogStore)
                assert incarnation_of(m.node_info(4)) == store4.identity().incarnation
                # blocking: returned only once the learner had the whole log.
                assert leader.metrics().replication[4] == leader.metrics().last_log_id
                assert c.nodes[4].metrics().role is Role.LEARNER
                lid2, m2 = await leader.change_membership(AddVoters({4: None}), timeout=WAIT)
                assert lid2 > lid and m2.voter_ids() == {1, 2, 3, 4} and not m2.is_joint
                await c.nodes[4].wait_for(lambda m: m.role is Role.FOLLOWER, timeout=WAIT)
                victim = next(n for n in (1, 2, 3) if n != leader.node_id)
                _, m3 = await leader.change_membership(RemoveVoters([victim]), timeout=WAIT)
                assert victim not in m3.node_ids()
                result = await leader.write("after", timeout=WAIT)
                await c.wait_applied(result[0], [n for n in c.ids if n != victim])
                assert c.sms[4].items[-1] == "after"
                metrics = leader.metrics()
                assert metrics.membership == m3 and set(metrics.replication) == m3.node_ids() - {
                    leader.node_id
                }

    kit.run(scenario)


@RUNTIMES
def test_membership_change_errors_are_typed(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 2):
            async with cluster(kit, 3) as c:
                leader = await c.leader()
                follower = next(c.nodes[n] for n in c.ids if n != leader.node_id)
                with pytest.raises(NotLeader) as exc:
                    await follower.change_membership(AddLearners({9: None}), timeout=WAIT)
                assert exc.value.leader_id == leader.node_id
                with pytest.raises(InvalidMembershipChange, match="still voters"):
                    await leader.change_membership(RemoveNodes([follower.node_id]), timeout=WAIT)
                with pytest.raises(MembershipMismatch):
                    await leader.change_membership(
                        AddLearners({9: None}), expected=LogId(9, 9, 9), timeout=WAIT
                    )
                c.net.isolate(leader.node_id)  # the first change cannot commit
                results = await kit.gather(
                    leader.change_membership(AddLearners({8: None}), timeout=0.05),
                    leader.change_membership(AddLearners({9: None}), timeout=0.05),
                )
                # Whichever reached the engine second was refused at once; the
                # other could not commit (timed out, or the isolated leader
                # stepped down first).
                kinds = sorted(type(r).__name__ for r in results)
                assert kinds[0] == "MembershipChangeInProgress", results
                assert kinds[1] in ("LeadershipLost", "Timeout"), results

    kit.run(scenario)


@RUNTIMES
def test_unencodable_write_is_refused_and_the_cluster_keeps_working(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 2):
            async with cluster(kit, 3) as c:
                leader = await c.leader()
                with pytest.raises(EncodeError, match="unsupported type set"):
                    await leader.write({1, 2}, timeout=WAIT)
                with pytest.raises(EncodeError):
                    await leader.write_batch(["fine", float("nan")], timeout=WAIT)
                assert (await leader.write("ok", timeout=WAIT))[1] == "ok"
                assert leader.metrics().stopped is None

    kit.run(scenario)


@RUNTIMES
def test_a_failing_predicate_fails_only_its_wait(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 2):
            async with cluster(kit, 3) as c:
                leader = await c.leader()

                def broken(m: Any) -> bool:
                    raise KeyError("no such field")

                with pytest.raises(KeyError):
                    await leader.wait_for(broken, timeout=WAIT)
                assert (await leader.write("ok", timeout=WAIT))[1] == "ok"
                # Predicates see the same metrics as metrics(): the transport's too.
                m = await leader.wait_for(lambda m: "transport" in m.extra, timeout=WAIT)
                assert isinstance(m.extra["transport"], dict)

    kit.run(scenario)


@RUNTIMES
def test_shutdown_ends_waits_and_code_after_it_runs(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT):
            async with cluster(kit, 1) as c:
                node = await c.leader()

                async def shut() -> None:
                    for _ in range(20):
                        await kit.checkpoint()
                    await node.shutdown()
                    reached.append(True)  # the body is not cancelled by shutdown

                reached: list[bool] = []
                results = await kit.gather(node.wait_for(lambda m: False, timeout=WAIT), shut())
                assert isinstance(results[0], ShuttingDown), results
                assert reached == [True]

    kit.run(scenario)


@RUNTIMES
def test_cancelled_waits_leave_nothing_behind(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT):
            async with cluster(kit, 1) as c:
                node = await c.leader()
                for _ in range(10):
                    await kit.cancel_soon(node.wait_for(lambda m: False, timeout=WAIT))
                    await kit.cancel_soon(node.write_batch(["a", "b"], timeout=WAIT))
                assert node._driver.watchers == []
                assert node._driver.waiters == {}

    kit.run(scenario)


class BlockingFailingStore(MemoryLogStore):
    """Fails appends once ``broken``; runs in the worker thread like a real disk."""

    blocking = True
    broken = False

    def append(self, entries: Sequence[Entry]) -> None:
        if self.broken:
            raise OSError("disk on fire")
        super().append(entries)


class ExplodingStateMachine(ListStateMachine):
    def apply(self, entries: Sequence[Entry]) -> list[tuple[int, Any]]:
        if any(e.data == "boom" for e in entries):
            raise RuntimeError("bug in the state machine")
        return super().apply(entries)


@RUNTIMES
def test_storage_failure_in_the_worker_thread_stops_the_node(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 2):
            async with cluster(kit, 1, init=False) as c:
                store = BlockingFailingStore()
                await c.stop(1)
                node = await c.start(1, store)
                await node.initialize(c.addrs)
                await c.leader()
                store.broken = True
                with pytest.raises(NodeStopped, match="disk on fire"):
                    await node.write("x", timeout=WAIT)

    kit.run(scenario)


@RUNTIMES
def test_state_machine_failure_stops_the_node(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 2):
            async with cluster(kit, 1, init=False) as c:
                await c.stop(1)
                node = await c.start(1, MemoryLogStore(), ExplodingStateMachine())
                await node.initialize(c.addrs)
                await c.leader()
                with pytest.raises(NodeStopped, match="bug in the state machine"):
                    await node.write("boom", timeout=WAIT)
                with pytest.raises(NodeStopped):
                    await node.write("after", timeout=WAIT)

    kit.run(scenario)


@RUNTIMES
def test_node_info_the_transport_cannot_dial_is_refused_before_the_log(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 2):
            async with cluster(kit, 4, tcp=True, voters=3) as c:
                leader = await c.leader([1, 2, 3])
                last = leader.metrics().last_log_id
                with pytest.raises(ConfigError, match="host:port"):
                    await leader.add_learner(4, {"raft": "nowhere"}, timeout=WAIT)
                assert leader.metrics().last_log_id == last  # nothing was proposed
                await leader.add_learner(4, c.addrs[4], timeout=WAIT)
                # The new member's address was known before the first append to
                # it went out: nothing was dropped as "unknown peer".
                assert leader.metrics().extra["transport"]["dropped_unknown_peer"] == 0
                assert (await leader.write("ok", timeout=WAIT))[1] == "ok"

    kit.run(scenario)
