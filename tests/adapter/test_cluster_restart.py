"""Whole-cluster restarts, on both runtimes: the start-up contract.

A runtime must run the engine as soon as it starts: the election timer is
armed and recovered committed entries are applied before any message
arrives. A runtime that waited for a first wake-up never elected after every
node restarted at once (no node sends anything until one times out).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runtime_kit import KITS, WAIT, Cluster, Kit

from raftcore.adapters.storage import MemoryLogStore, SqliteLogStore
from raftcore.membership import AddVoters
from raftcore.state import Role

RUNTIMES = pytest.mark.parametrize("kit", KITS, ids=lambda k: k.name)


def sqlite(tmp_path: Path, n: int) -> SqliteLogStore:
    return SqliteLogStore(tmp_path / f"{n}.sqlite3")


async def start_all(c: Cluster, tmp_path: Path, ids: list[int] | None = None) -> None:
    for n in ids if ids is not None else c.ids:
        await c.start(n, sqlite(tmp_path, n))


async def stop_all(c: Cluster) -> None:
    for n in list(c.nodes):
        await c.stop(n)


async def write_some(
    c: Cluster, count: int, tag: str, among: list[int] | None = None
) -> tuple[list[str], int]:
    leader = await c.leader(among)
    values = [f"{tag}-{i}" for i in range(count)]
    results = [await leader.write(v, timeout=WAIT) for v in values]
    return values, results[-1][0]


async def assert_serves_everything(c: Cluster, acked: list[str]) -> list[str]:
    """A leader is elected, a new write commits, and every node applies every
    acknowledged write and that one, in order; returns them all."""
    leader = await c.leader()
    probe = f"after-restart-{len(acked)}"
    index, _ = await leader.write(probe, timeout=WAIT)
    await c.wait_applied(index)
    for n in c.nodes:
        assert c.sms[n].items == [*acked, probe], f"node {n} lost or reordered writes"
    return [*acked, probe]


@RUNTIMES
@pytest.mark.parametrize("tcp", [False, True], ids=["inproc", "tcp"])
def test_whole_cluster_stopped_and_restarted_elects_and_serves(
    kit: Kit, tcp: bool, tmp_path: Path
) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 4):
            c = Cluster(kit, [1, 2, 3], tcp=tcp)
            await start_all(c, tmp_path)
            await c.nodes[1].initialize(c.addrs)
            acked, _ = await write_some(c, 10, "before")
            await stop_all(c)
            await start_all(c, tmp_path)
            try:
                acked = await assert_serves_everything(c, acked)
                # And again: a second whole-cluster restart, right away.
                more, _ = await write_some(c, 5, "second")
                await stop_all(c)
                await start_all(c, tmp_path)
                await assert_serves_everything(c, [*acked, *more])
            finally:
                await stop_all(c)

    kit.run(scenario)


@RUNTIMES
def test_a_restarted_node_applies_its_committed_entries_with_no_peer_up(
    kit: Kit, tmp_path: Path
) -> None:
    """No message ever arrives: the recovered commit hint alone drives apply."""

    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 3):
            c = Cluster(kit, [1, 2, 3], tcp=False)
            await start_all(c, tmp_path)
            await c.nodes[1].initialize(c.addrs)
            acked, last = await write_some(c, 10, "w")
            await c.wait_applied(last)
            await c.nodes[1].trigger_heartbeat()  # the followers learn the commit index
            for n in c.ids:
                await c.nodes[n].wait_for(lambda m: m.committed.index >= last, timeout=WAIT)
            await stop_all(c)  # a clean stop saves each node's commit hint
            lone = 2
            await start_all(c, tmp_path, [lone])
            try:
                node = c.nodes[lone]
                await node.wait_for(lambda m: m.applied.index >= last, timeout=WAIT)
                assert c.sms[lone].items[: len(acked)] == acked
                assert node.metrics().role in (Role.FOLLOWER, Role.CANDIDATE, Role.PRE_CANDIDATE)
            finally:
                await stop_all(c)

    kit.run(scenario)


@RUNTIMES
def test_single_voter_cluster_restarts_and_serves(kit: Kit, tmp_path: Path) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 3):
            c = Cluster(kit, [1], tcp=False)
            await start_all(c, tmp_path)
            await c.nodes[1].initialize({1: c.addrs[1]})
            acked, _ = await write_some(c, 10, "solo")
            await stop_all(c)
            await start_all(c, tmp_path)
            try:
                await assert_serves_everything(c, acked)
            finally:
                await stop_all(c)

    kit.run(scenario)


@RUNTIMES
def test_whole_cluster_restart_after_a_membership_change(kit: Kit, tmp_path: Path) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 5):
            c = Cluster(kit, [1, 2, 3, 4], tcp=True)
            await start_all(c, tmp_path)
            await c.nodes[1].initialize({n: c.addrs[n] for n in (1, 2, 3)})
            acked, _ = await write_some(c, 5, "three", [1, 2, 3])
            leader = await c.leader([1, 2, 3])
            await leader.add_learner(4, c.addrs[4], timeout=WAIT)
            _, m = await leader.change_membership(AddVoters({4: None}), timeout=WAIT)
            assert m.voter_ids() == {1, 2, 3, 4}
            more, _ = await write_some(c, 5, "four")
            await stop_all(c)
            await start_all(c, tmp_path)
            try:
                await assert_serves_everything(c, [*acked, *more])
                for n in c.ids:
                    membership = c.nodes[n].metrics().membership
                    assert membership is not None and membership.voter_ids() == {1, 2, 3, 4}
            finally:
                await stop_all(c)

    kit.run(scenario)


@RUNTIMES
def test_whole_cluster_crash_loses_unflushed_writes_and_restarts(kit: Kit) -> None:
    """Every store crashes at once (unflushed writes lost, no clean stop, no
    commit hint saved on the way out), then every node restarts on what is durable."""

    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 4):
            c = Cluster(kit, [1, 2, 3], tcp=True)
            for n in c.ids:
                await c.start(n, MemoryLogStore())
            await c.nodes[1].initialize(c.addrs)
            acked, _ = await write_some(c, 10, "before")
            backings = {}
            for n in c.ids:
                store = c.stores[n]
                assert isinstance(store, MemoryLogStore)
                backings[n] = store.backing
                store.crash()
            await stop_all(c)
            for n in c.ids:
                await c.start(n, MemoryLogStore(backings[n]))
            try:
                await assert_serves_everything(c, acked)
            finally:
                await stop_all(c)

    kit.run(scenario)
