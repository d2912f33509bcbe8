"""Snapshots on the KV service: real processes, TCP, SQLite, snapshot files.

With ``--snapshot-every 1000``, 5,000 puts leave every node with a snapshot
and a purged log; a node added afterwards catches up through a snapshot
(streamed in chunks over TCP) and holds all 5,000 keys, and still does
after a SIGKILL and a restart from its snapshot plus the log after it.
Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys

import pytest

from raftcore.adapters.kv.client import wait_for_leader
from raftcore.adapters.kv.testing import (
    LocalCluster,
    verify_keys,
    wait_caught_up,
    wait_status,
    write_keys,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

KEYS = 5_000


def log_rows(data_dir: str) -> int:
    with sqlite3.connect(os.path.join(data_dir, "raft.sqlite3")) as db:
        (n,) = db.execute("SELECT COUNT(*) FROM log").fetchone()
    return int(n)


async def scenario(cluster: LocalCluster) -> None:
    cluster.start_all()
    async with cluster.client(deadline=20.0, request_timeout=5.0) as client:
        await wait_for_leader(client, timeout=15.0)
        items = {f"k{i}": f"v{i}" for i in range(KEYS)}
        acked, failed = await write_keys(client, items.items(), concurrency=32)
        assert not failed and acked == items
        for n, node in cluster.nodes.items():
            s = await wait_status(
                client,
                node.address.http,
                lambda s: s["keys"] == KEYS and s["snapshot"] is not None,
                timeout=20.0,
                check=f"node {n} applied every put and snapshotted",
            )
            assert s["last_purged"]["index"] > 1_000, (n, s["last_purged"])

        # The `snapshot` command snapshots every node now.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "raftcore.adapters.kv",
            "snapshot",
            "--cluster",
            cluster.spec,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        lines = out.decode().splitlines()
        assert proc.returncode == 0 and len(lines) == 3, lines
        assert all(": snapshot at " in line and "purged up to" in line for line in lines), lines

        new = cluster.add_node(4)
        cluster.start(4)
        await client.add_learner(4, new.address.raft, new.address.http, timeout=30.0)
        s = await wait_status(
            client, new.address.http, lambda s: s["keys"] == KEYS, timeout=30.0, check="node 4"
        )
        assert s["snapshots"]["installed"] >= 1, s
        assert s["last_purged"]["index"] >= 1_000, s  # its log starts after the snapshot
        client.add_addresses([new.address.http])
        await wait_caught_up(client, new.address, timeout=30.0)
        assert not await verify_keys(client, items, concurrency=32)

        cluster.kill(4)
        cluster.start(4)  # from its snapshot plus the log after it
        s = await wait_status(
            client, new.address.http, lambda s: s["keys"] == KEYS, timeout=30.0, check="restart"
        )
    cluster.stop_all()
    for n, node in cluster.nodes.items():
        # The purge really deleted rows: far fewer than the 5,000 puts.
        assert log_rows(node.data_dir) < 3_000, n


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_kv_snapshots_purge_and_a_new_node_catches_up_through_one(runtime: str) -> None:
    with LocalCluster(3, runtime=runtime, extra_args=["--snapshot-every", "1000"]) as cluster:
        cluster.run(scenario, 180, tail=40)
