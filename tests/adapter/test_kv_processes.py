"""The KV service as three real processes over TCP with SQLite storage.

Concurrent writers keep writing while the leader is SIGKILLed; every write
that was acknowledged must be readable from the new leader, and the killed
node, restarted on its data directory, must catch up. Every wait has a
deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import time
from collections.abc import Callable

import pytest

from raftcore.adapters.kv.client import KvClient, KvError, wait_for_leader
from raftcore.adapters.kv.testing import LocalCluster, verify_keys, wait_caught_up

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

WRITERS = 8
BEFORE_KILL = 120
AFTER_KILL = 120


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


async def scenario(cluster: LocalCluster) -> None:
    cluster.start_all()
    async with cluster.client(deadline=10.0, request_timeout=2.0) as client:
        first = (await wait_for_leader(client, timeout=15.0))["node_id"]

        acked: dict[str, str] = {}
        failed: dict[str, str] = {}
        counter = itertools.count()
        stop = asyncio.Event()

        async def writer(c: KvClient) -> None:
            while not stop.is_set():
                i = next(counter)
                key, value = f"k-{i:05d}", f"v-{i}"
                try:
                    await c.put(key, value)
                except KvError as e:  # outcome unknown: not counted
                    failed[key] = str(e)
                else:
                    acked[key] = value

        # Separate clients, so each writer discovers the new leader by itself.
        clients = [cluster.client(deadline=10.0, request_timeout=2.0) for _ in range(WRITERS)]
        tasks = [asyncio.create_task(writer(c)) for c in clients]
        try:
            await wait_until(lambda: len(acked) >= BEFORE_KILL, 20.0, "writes before the kill")
            await asyncio.to_thread(cluster.kill, first, signal.SIGKILL)
            at_kill = len(acked)
            new = await wait_for_leader(client, timeout=15.0, exclude=[first])
            await wait_until(
                lambda: len(acked) >= at_kill + AFTER_KILL, 20.0, "writes after the kill"
            )
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            for c in clients:
                c.close()

        assert new["node_id"] != first
        print(f"acked {len(acked)} ({at_kill} before the kill), unknown outcome {len(failed)}")
        wrong = await verify_keys(client, acked)
        assert not wrong, (
            f"{len(wrong)} acknowledged writes lost or wrong: {list(wrong.items())[:5]}"
        )

        cluster.start(first)
        applied, committed, leader = await wait_caught_up(
            client, cluster.nodes[first].address, timeout=20.0
        )
        assert applied >= committed
        restarted = await client.status(cluster.nodes[first].address.http)
        assert restarted["role"] == "follower" and restarted["leader_id"] == leader["node_id"]
        # Same log applied, same map.
        assert restarted["keys"] == leader["keys"] >= len(acked)

    codes = cluster.stop_all()
    assert codes == {1: 0, 2: 0, 3: 0}, f"unclean shutdown: {codes}"


@pytest.mark.parametrize("runtime", ["trio", "asyncio"])
def test_three_processes_survive_leader_sigkill_mid_writes(runtime: str) -> None:
    with LocalCluster(3, runtime=runtime) as cluster:
        cluster.run(scenario, 60.0, tail=40)
