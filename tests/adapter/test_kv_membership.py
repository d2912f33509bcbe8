"""Membership changes on a live KV cluster: real processes, TCP, SQLite.

While eight writers keep writing, a 4th node is started on a fresh data
directory, added as a learner (the leader answers once it caught up),
promoted to voter, and one of the original followers is removed and its
process stopped. Then the leader is SIGKILLed: the two remaining voters of
the new membership elect a leader, and every write acknowledged at any point
must be readable from it. Every wait has a deadline.
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
from raftcore.adapters.kv.testing import (
    LocalCluster,
    verify_keys,
    wait_caught_up,
    wait_same_membership,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

WRITERS = 8
#: Acknowledged writes to wait for between the steps.
STEP = 60
#: The learner counts as caught up within this many entries of the leader's
#: log (the writers keep it moving).
MAX_LAG = 64


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


async def scenario(cluster: LocalCluster) -> None:
    cluster.start_all()
    originals = sorted(cluster.nodes)
    async with cluster.client(deadline=10.0, request_timeout=2.0) as admin:
        await wait_for_leader(admin, timeout=15.0)

        acked: dict[str, str] = {}
        unknown: dict[str, str] = {}
        counter = itertools.count()
        stop = asyncio.Event()

        async def writer(c: KvClient) -> None:
            while not stop.is_set():
                i = next(counter)
                key, value = f"k-{i:05d}", f"v-{i}"
                try:
                    await c.put(key, value)
                except KvError as e:  # outcome unknown: not counted
                    unknown[key] = str(e)
                else:
                    acked[key] = value

        async def more_writes(what: str) -> None:
            target = len(acked) + STEP
            await wait_until(lambda: len(acked) >= target, 20.0, f"{STEP} writes {what}")

        clients = [cluster.client(deadline=10.0, request_timeout=2.0) for _ in range(WRITERS)]
        tasks = [asyncio.create_task(writer(c)) for c in clients]
        try:
            await more_writes("before any change")

            # A new node: a fresh process that waits to be added.
            new = cluster.add_node()
            cluster.start(new.node_id)
            answer = await admin.add_learner(
                new.node_id, new.address.raft, new.address.http, max_lag=MAX_LAG, timeout=20.0
            )
            assert answer["changed"] and answer["caught_up"], answer
            assert answer["membership"]["learners"] == [new.node_id]
            assert answer["membership"]["http"][str(new.node_id)] == new.address.http
            await more_writes("with a learner")

            answer = await admin.promote([new.node_id])
            assert answer["changed"] and not answer["membership"]["joint"]
            assert answer["membership"]["voter_ids"] == [*originals, new.node_id]
            for c in (admin, *clients):
                c.add_addresses([new.address.http])
            await more_writes("with four voters")

            # Remove an original follower outright (not kept as a learner).
            leader = (await wait_for_leader(admin, timeout=15.0))["node_id"]
            victim = next(i for i in originals if i != leader)
            answer = await admin.remove_node(victim)
            assert answer["changed"], answer
            assert victim not in answer["membership"]["voter_ids"]
            assert str(victim) not in answer["membership"]["nodes"]
            # Repeating it is harmless: the goal already holds.
            again = await admin.remove_node(victim)
            assert not again["changed"] and again["membership"] == answer["membership"]
            assert await asyncio.to_thread(cluster.kill, victim, signal.SIGTERM) == 0
            for c in (admin, *clients):
                c.remove_addresses([cluster.nodes[victim].address.http])
            voters = set(answer["membership"]["voter_ids"])
            live = sorted(voters)
            await wait_same_membership(
                admin, [cluster.nodes[i].address.http for i in live], voters, timeout=15.0
            )
            await more_writes("after the removal")

            # Now lose the leader: two of the three new voters remain.
            leader = (await wait_for_leader(admin, timeout=15.0))["node_id"]
            await asyncio.to_thread(cluster.kill, leader, signal.SIGKILL)
            at_kill = len(acked)
            new_leader = await wait_for_leader(admin, timeout=15.0, exclude=[leader])
            assert new_leader["node_id"] in voters - {leader}
            await more_writes("after the leader was killed")
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            for c in clients:
                c.close()

        print(
            f"acked {len(acked)} ({at_kill} before the kill), unknown outcome {len(unknown)}; "
            f"added {new.node_id}, removed {victim}, killed leader {leader}"
        )
        wrong = await verify_keys(admin, acked)
        assert not wrong, (
            f"{len(wrong)} acknowledged writes lost or wrong: {list(wrong.items())[:5]}"
        )
        # The other survivor (maybe the new node) applied the same log: same map.
        survivors = sorted(voters - {leader})
        for i in survivors:
            _, _, lead = await wait_caught_up(admin, cluster.nodes[i].address, timeout=15.0)
            status = await admin.status(cluster.nodes[i].address.http)
            assert status["keys"] == lead["keys"] >= len(acked)
            assert set(status["membership"]["voter_ids"]) == voters

    codes = cluster.stop_all()
    expected = {i: 0 for i in cluster.nodes}
    expected[leader] = -signal.SIGKILL
    assert codes == expected, f"unclean shutdown: {codes}"


@pytest.mark.parametrize("runtime", ["trio", "asyncio"])
def test_replace_a_node_then_lose_the_leader_without_losing_writes(runtime: str) -> None:
    with LocalCluster(3, runtime=runtime) as cluster:
        cluster.run(scenario, 60.0, tail=40)
