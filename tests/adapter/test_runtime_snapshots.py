"""Snapshots and purge on both runtimes, in process and over TCP.

A node that was down while the leader purged catches up through a snapshot
streamed in chunks; whole clusters restart from their snapshots plus the
log after them; a new node joins a cluster whose history is purged; the
node API's ``trigger_snapshot`` and ``purge_log`` do what they say.
"""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest
from runtime_kit import CONFIG, KITS, WAIT, Cluster, Kit, ListStateMachine

from raftcore.adapters._driver import StateMachineWork, execute_state_machine
from raftcore.adapters.storage import (
    FileSnapshotStore,
    MemoryLogStore,
    MemorySnapshotStore,
    SqliteLogStore,
)
from raftcore.commands import InstallSnapshot, WriteSnapshotChunk
from raftcore.config import Config
from raftcore.errors import ConfigError, LocalProtocolError
from raftcore.events import SnapshotInstalled
from raftcore.ids import LogId
from raftcore.membership import AddVoters, Membership
from raftcore.snapshots import SnapshotMeta

RUNTIMES = pytest.mark.parametrize("kit", KITS, ids=lambda k: k.name)

#: Snapshot every 20 entries, keep 5, small chunks (so a transfer takes several).
SNAP = Config(
    election_timeout_min=CONFIG.election_timeout_min,
    election_timeout_max=CONFIG.election_timeout_max,
    heartbeat_interval=CONFIG.heartbeat_interval,
    snapshot_every=20,
    purge_keep=5,
    snapshot_lag_threshold=10,
    snapshot_chunk_size=64,
    snapshot_window=2,
)


async def write(c: Cluster, values: list[str], among: list[int] | None = None) -> int:
    leader = await c.leader(among)
    last = 0
    for v in values:
        last, _ = await leader.write(v, timeout=WAIT)
    return last


@RUNTIMES
@pytest.mark.parametrize("tcp", [False, True], ids=["inproc", "tcp"])
def test_a_node_that_was_down_catches_up_through_a_snapshot(kit: Kit, tcp: bool) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 4):
            c = Cluster(kit, [1, 2, 3], tcp=tcp, config=SNAP)
            for n in c.ids:
                await c.start(n, snapshots=MemorySnapshotStore())
            try:
                await c.nodes[1].initialize(c.addrs)
                await write(c, ["a", "b"])
                await c.stop(3)
                values = ["a", "b"] + [f"v{i}" for i in range(100)]
                last = await write(c, values[2:], [1, 2])
                leader = await c.leader([1, 2])
                purged = leader.metrics().last_purged.index
                assert purged > 60, leader.metrics()
                await c.start(3, MemoryLogStore(c.stores[3].backing))  # type: ignore[attr-defined]
                await c.wait_applied(last)
                m = c.nodes[3].metrics()
                assert m.snapshots_installed == 1
                assert c.sms[3].restored is not None and c.sms[3].restored.index >= purged
                assert c.sms[3].items == c.sms[leader.node_id].items == values
                assert m.last_purged.index >= purged  # its log starts after the snapshot
            finally:
                for n in list(c.nodes):
                    await c.stop(n)

    kit.run(scenario)


@RUNTIMES
def test_whole_cluster_restarts_from_snapshots_and_the_log_after_them(
    kit: Kit, tmp_path: Path
) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 4):
            c = Cluster(kit, [1, 2, 3], tcp=False, config=SNAP)

            async def start_all() -> None:
                for n in c.ids:
                    await c.start(
                        n,
                        SqliteLogStore(tmp_path / f"{n}.sqlite3"),
                        snapshots=FileSnapshotStore(tmp_path / f"snap-{n}"),
                    )

            await start_all()
            await c.nodes[1].initialize(c.addrs)
            values = [f"v{i}" for i in range(70)]
            await write(c, values)
            snap = {n: c.nodes[n].metrics().snapshot for n in c.ids}
            for n in list(c.nodes):
                await c.stop(n)
            for n in c.ids:
                # The log store keeps only the tail after the purge point.
                rec = SqliteLogStore(tmp_path / f"{n}.sqlite3").load()
                assert rec.last_purged.index > 30 and len(rec.entries) < 50, (n, rec.last_purged)
            await start_all()
            try:
                for n in c.ids:
                    assert c.sms[n].restored == snap[n]  # started from its own snapshot
                last = await write(c, ["after"])
                await c.wait_applied(last)
                for n in c.ids:
                    assert c.sms[n].items == [*values, "after"], n
            finally:
                for n in list(c.nodes):
                    await c.stop(n)

    kit.run(scenario)


@RUNTIMES
def test_a_new_node_joins_a_cluster_whose_history_is_purged(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 4):
            c = Cluster(kit, [1, 2, 3, 4], tcp=True, config=SNAP)
            for n in (1, 2, 3):
                await c.start(n, snapshots=MemorySnapshotStore())
            try:
                await c.nodes[1].initialize({n: c.addrs[n] for n in (1, 2, 3)})
                values = [f"v{i}" for i in range(60)]
                await write(c, values, [1, 2, 3])
                await c.start(4, snapshots=MemorySnapshotStore())
                leader = await c.leader([1, 2, 3])
                assert leader.metrics().last_purged.index > 30
                await leader.add_learner(4, c.addrs[4], timeout=WAIT)
                await leader.change_membership(AddVoters({4: c.addrs[4]}), timeout=WAIT)
                last = await write(c, ["joined"], [1, 2, 3, 4])
                await c.wait_applied(last)
                assert c.nodes[4].metrics().snapshots_installed == 1
                assert c.sms[4].items == [*values, "joined"]
            finally:
                for n in list(c.nodes):
                    await c.stop(n)

    kit.run(scenario)


@RUNTIMES
def test_trigger_snapshot_and_purge_log(kit: Kit) -> None:
    manual = Config(
        election_timeout_min=CONFIG.election_timeout_min,
        election_timeout_max=CONFIG.election_timeout_max,
        heartbeat_interval=CONFIG.heartbeat_interval,
        snapshot_every=None,
    )

    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 2):
            c = Cluster(kit, [1], tcp=False, config=manual)
            await c.start(1, snapshots=MemorySnapshotStore())
            try:
                node = c.nodes[1]
                await node.initialize({1: c.addrs[1]})
                last = await write(c, [f"v{i}" for i in range(10)])
                await c.wait_applied(last)
                assert node.metrics().snapshot is None
                lid = await node.trigger_snapshot(timeout=WAIT)
                assert lid is not None and lid.index == last
                assert node.metrics().last_purged.index == 0  # snapshot_every=None, keep 1000
                assert await node.purge_log(last - 3) == node.metrics().last_purged
                assert node.metrics().last_purged.index == last - 3
            finally:
                await c.stop(1)

    kit.run(scenario)


@RUNTIMES
def test_trigger_snapshot_without_a_snapshot_store_is_a_clear_error(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        c = Cluster(kit, [1], tcp=False)
        await c.start(1)
        try:
            with pytest.raises(LocalProtocolError, match="no snapshot store"):
                await c.nodes[1].trigger_snapshot()
        finally:
            await c.stop(1)

    kit.run(scenario)


@RUNTIMES
def test_a_purged_log_without_its_snapshot_is_refused_with_a_clear_error(
    kit: Kit, tmp_path: Path
) -> None:
    """An operator deleted the snapshot directory: the node does not start
    on a log whose beginning is gone, and says so in one line."""

    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT * 2):
            c = Cluster(kit, [1], tcp=False, config=SNAP)
            db = tmp_path / "1.sqlite3"
            await c.start(1, SqliteLogStore(db), snapshots=FileSnapshotStore(tmp_path / "s"))
            await c.nodes[1].initialize({1: c.addrs[1]})
            await write(c, [f"v{i}" for i in range(40)])
            assert c.nodes[1].metrics().last_purged.index > 0
            await c.stop(1)
            with pytest.raises(ConfigError, match="no snapshot covers it"):
                await c.start(1, SqliteLogStore(db), snapshots=FileSnapshotStore(tmp_path / "x"))

    kit.run(scenario)


@RUNTIMES
def test_a_chunk_size_the_transport_cannot_frame_is_refused(kit: Kit) -> None:
    """A snapshot chunk travels in one frame: a chunk size with no room left
    under the transport's max_frame is a ConfigError when the node is made."""
    big = Config(snapshot_chunk_size=1 << 20)
    addrs = {1: "127.0.0.1:1", 2: "127.0.0.1:2"}

    async def scenario(kit: Kit) -> None:
        transport = kit.tcp(1, addrs, max_frame=1 << 20)
        with pytest.raises(ConfigError, match=r"snapshot_chunk_size: .* max_frame of 1048576"):
            cm = kit.open_node(1, MemoryLogStore(), None, transport, big, MemorySnapshotStore())
            await kit.enter(cm)

    kit.run(scenario)


def test_a_transfer_abandoned_for_another_leaves_no_unfinished_snapshot_behind() -> None:
    """The leader gave up snapshot a (a newer one, or a new leader) and sends
    b: a's unfinished write is discarded when b begins."""
    store = MemorySnapshotStore()
    m = (LogId(0, 0, 1), Membership.of([1, 2, 3]))
    a = SnapshotMeta(LogId(1, 1, 10), m, "a", 4)
    data = cbor2.dumps(["x"])
    b = SnapshotMeta(LogId(2, 2, 20), m, "b", len(data))
    receiving: list[str] = []
    sm = ListStateMachine()
    execute_state_machine(sm, store, [WriteSnapshotChunk(a, 0, b"ab")], 64, receiving)
    assert set(store._partial) == {"a"}
    work: list[StateMachineWork] = [WriteSnapshotChunk(b, 0, data), InstallSnapshot(b)]
    events = execute_state_machine(sm, store, work, 64, receiving)
    assert not store._partial and store.latest() == b and receiving == []
    assert events == [SnapshotInstalled(b)] and sm.items == ["x"]
