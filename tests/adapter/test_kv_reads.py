"""Reads on the KV service: real processes, TCP, SQLite.

A PUT acknowledged by the leader is seen at once by a GET sent to a
follower, which serves it itself (a follower read: 200, not a redirect);
a stale GET says it is stale.
"""

from __future__ import annotations

import sys

import pytest

from raftcore.adapters.kv.client import wait_for_leader
from raftcore.adapters.kv.testing import LocalCluster

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


async def scenario(cluster: LocalCluster) -> None:
    cluster.start_all()
    async with cluster.client(deadline=20.0, request_timeout=5.0) as client:
        await wait_for_leader(client, timeout=15.0)
        statuses = await client.statuses(timeout=2.0)
        leader = next(
            a for a, s in statuses.items() if isinstance(s, dict) and s["role"] == "leader"
        )
        followers = [a for a in statuses if a != leader]
        for i in range(20):
            value = f"v{i}"
            r = await client.pool.request(leader, "PUT", "/kv/k", value.encode(), timeout=5.0)
            assert r.status == 200, r.json_body()
            f = followers[i % len(followers)]
            r = await client.pool.request(f, "GET", "/kv/k", timeout=5.0)
            assert (r.status, r.json_body()) == (200, {"value": value}), f
        r = await client.pool.request(followers[0], "GET", "/kv/k?consistency=stale", timeout=5.0)
        assert r.status == 200 and r.json_body()["stale"] is True


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_a_follower_serves_a_linearizable_get_itself(runtime: str) -> None:
    with LocalCluster(3, runtime=runtime) as cluster:
        cluster.run(scenario, 120, tail=30)
