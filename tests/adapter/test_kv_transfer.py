"""Leadership transfer on the KV service: real processes, TCP, SQLite.

``transfer-leader --to 2`` makes node 2 the leader within seconds while a
client keeps writing (writes refused during the hand-over are retried by
the client, none is lost); ``/status`` shows a transfer in progress; a
transfer to a non-member or a learner is a ``409`` and one clear line from
the command.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from raftcore.adapters.kv.client import wait_for_leader
from raftcore.adapters.kv.testing import LocalCluster, wait_status

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def kv_command(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftcore.adapters.kv", *args, "--cluster", cluster.spec],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def scenario(cluster: LocalCluster) -> None:
    cluster.start_all()
    async with cluster.client(deadline=20.0, request_timeout=5.0) as client:
        await wait_for_leader(client, timeout=15.0)
        statuses = await client.statuses(timeout=2.0)
        (leader,) = (s for s in statuses.values() if isinstance(s, dict) and s["role"] == "leader")
        assert leader["transfer"] is None
        target = next(n for n in cluster.nodes if n != leader["node_id"])
        # A writer keeps going through the hand-over.
        written: list[str] = []
        stop = asyncio.Event()

        async def writer() -> None:
            i = 0
            while not stop.is_set():
                await client.put("k", f"v{i}")
                written.append(f"v{i}")
                i += 1

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.3)
        start = time.monotonic()
        done = await asyncio.to_thread(kv_command, cluster, "transfer-leader", "--to", str(target))
        took = time.monotonic() - start
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"node {target} leads"), done.stdout
        assert took < 10.0, took  # a whole command, process start included
        await wait_status(
            client,
            cluster.http_addrs[target],
            lambda s: s["role"] == "leader",
            timeout=5.0,
            check="the target leads",
        )
        await asyncio.sleep(0.3)
        stop.set()
        await task
        assert len(written) > 5
        # Every acknowledged write is there, the last one last.
        assert await client.get("k") == written[-1]
        # Refusals: one clear line, exit status 3, nothing changes.
        bad = await asyncio.to_thread(kv_command, cluster, "transfer-leader", "--to", "9")
        assert bad.returncode == 3, bad
        assert "invalid_transfer" in bad.stderr and "not a member" in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        st = await client.status(cluster.http_addrs[target], timeout=2.0)
        assert st["role"] == "leader" and st["transfer"] is None
        # The same seen through /metrics (Prometheus text): the target leads,
        # won one election, and the old leader saw the leader change.
        r = await client.pool.request(cluster.http_addrs[target], "GET", "/metrics", timeout=5.0)
        lines = r.body.decode().splitlines()
        assert 'raftcore_role{role="leader"} 1.0' in lines
        assert "raftcore_elections_won_total 1.0" in lines
        assert "raftcore_transfer_in_progress 0.0" in lines
        counts = {
            line.split()[0]: float(line.split()[1])
            for line in lines
            if line.endswith(tuple("0123456789")) and "_latency_seconds_count" in line
        }
        # The writer's writes after the transfer went through the new leader.
        assert counts["raftcore_storage_flush_latency_seconds_count"] > 0, counts
        assert counts["raftcore_commit_latency_seconds_count"] > 0, counts
        assert counts["raftcore_apply_latency_seconds_count"] > 0, counts
        old_http = cluster.http_addrs[leader["node_id"]]
        r = await client.pool.request(old_http, "GET", "/metrics", timeout=5.0)
        old_lines = r.body.decode().splitlines()
        assert "raftcore_leader_changes_total 2.0" in old_lines
        assert 'raftcore_transfers_total{outcome="ok"} 1.0' in old_lines
        assert 'raftcore_transfers_total{outcome="InvalidTransfer"} 1.0' in lines
        # `status` with a spec naming one follower only still finds the leader
        # (the follower names it) and, through its membership, everyone.
        follower = next(n for n in cluster.nodes if n != target)
        a = cluster.nodes[follower].address
        partial = subprocess.run(
            [sys.executable, "-m", "raftcore.adapters.kv", "status", "--cluster",
             f"{follower}={a.raft}/{a.http}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert partial.returncode == 0, partial.stderr
        rows = [line.split() for line in partial.stdout.splitlines()[1:4]]
        assert sorted(int(r[0]) for r in rows) == [1, 2, 3], partial.stdout
        assert [int(r[0]) for r in rows if r[2] == "leader"] == [target], partial.stdout
        # Without --to: the most up-to-date other voter.
        again = await asyncio.to_thread(kv_command, cluster, "transfer-leader", "--json")
        assert again.returncode == 0, again.stderr
        assert '"leader_id"' in again.stdout and f'"leader_id": {target}' not in again.stdout


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_transfer_leader_moves_leadership_while_clients_write(runtime: str) -> None:
    with LocalCluster(3, runtime=runtime) as cluster:
        cluster.run(scenario, 120, tail=30)
