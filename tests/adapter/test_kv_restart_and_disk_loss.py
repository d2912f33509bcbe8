"""The KV service as real processes: whole-cluster restarts and a lost disk.

Every node of a 3-process cluster stopped at once (SIGTERM, then SIGKILL)
and started again must elect a leader and serve every acknowledged key. A
voter whose data directory is wiped must be refused by its peers, shown as
``lost`` in the leader's ``/status``, and recovered by the documented
procedure with the CLI (remove it, add it back, promote it). Every wait has
a deadline.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from raftcore.adapters.kv.client import KvClient, wait_for_leader
from raftcore.adapters.kv.testing import LocalCluster, verify_keys, write_keys

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

RUNTIMES = pytest.mark.parametrize("runtime", ["asyncio", "trio"])


async def wait_status(
    client: KvClient, http: str, check: Any, what: str, timeout: float = 20.0
) -> dict[str, Any]:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            last = await client.status(http, timeout=1.0)
        except Exception as e:  # not up yet
            last = repr(e)
        else:
            if check(last):
                return last  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last status: {last}")


async def start_and_write(
    cluster: LocalCluster, client: KvClient, count: int, prefix: str = "k"
) -> tuple[dict[str, Any], dict[str, str]]:
    """Start every node, wait for a leader, write ``count`` keys; the leader's
    status and the acknowledged writes."""
    cluster.start_all()
    leader = await wait_for_leader(client, timeout=20.0)
    acked, _ = await write_keys(client, [(f"{prefix}{i}", f"v{i}") for i in range(count)])
    return leader, acked


def run(cluster: LocalCluster, scenario: Any) -> None:
    try:
        asyncio.run(asyncio.wait_for(scenario(), 120.0))
    except BaseException:
        cluster.stop_all()
        for i in cluster.nodes:
            print(f"---- node {i} log tail")
            print(cluster.log_tail(i, 40))
        raise


@RUNTIMES
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_whole_cluster_stopped_at_once_restarts_and_serves_every_key(
    runtime: str, sig: signal.Signals
) -> None:
    with LocalCluster(3, runtime=runtime) as cluster:

        async def scenario() -> None:
            async with cluster.client(deadline=15.0, request_timeout=2.0) as client:
                _, acked = await start_and_write(cluster, client, 40)
                for i in cluster.nodes:  # all at once: no node outlives another
                    cluster.nodes[i].proc.send_signal(sig)  # type: ignore[union-attr]
                for i in cluster.nodes:
                    cluster.kill(i, sig)
                for i in cluster.nodes:
                    cluster.start(i)  # no --init: every store holds the cluster
                leader = await wait_for_leader(client, timeout=20.0)
                wrong = await verify_keys(client, acked)
                assert not wrong, f"acknowledged keys lost after the restart: {wrong}"
                await client.put("after", "restart")
                for node in cluster.nodes.values():  # every node applies everything
                    await wait_status(
                        client,
                        node.address.http,
                        lambda s: s["keys"] == len(acked) + 1,
                        f"node {node.node_id} to apply every key",
                    )
                assert leader["role"] == "leader"

        run(cluster, scenario)
        assert set(cluster.stop_all().values()) == {0}


@RUNTIMES
def test_single_voter_cluster_sigkilled_restarts_and_serves(runtime: str) -> None:
    with LocalCluster(1, runtime=runtime) as cluster:

        async def scenario() -> None:
            async with cluster.client(deadline=15.0, request_timeout=2.0) as client:
                _, acked = await start_and_write(cluster, client, 20)
                cluster.kill(1)
                cluster.start(1)
                await wait_for_leader(client, timeout=20.0)
                assert not await verify_keys(client, acked)

        run(cluster, scenario)


@RUNTIMES
def test_whole_cluster_sigkilled_after_a_membership_change_restarts_and_serves(
    runtime: str,
) -> None:
    with LocalCluster(3, runtime=runtime) as cluster:

        async def scenario() -> None:
            async with cluster.client(deadline=15.0, request_timeout=2.0) as client:
                _, acked = await start_and_write(cluster, client, 20, "a")
                new = cluster.add_node()
                cluster.start(new.node_id)
                client.add_addresses([new.address.http])
                await client.add_learner(new.node_id, new.address.raft, new.address.http)
                await client.promote([new.node_id])
                more, _ = await write_keys(client, [(f"b{i}", f"v{i}") for i in range(20)])
                acked.update(more)
                for i in cluster.nodes:
                    cluster.kill(i)
                for i in cluster.nodes:
                    cluster.start(i)
                leader = await wait_for_leader(client, timeout=20.0)
                assert leader["membership"]["voter_ids"] == [1, 2, 3, new.node_id]
                assert not await verify_keys(client, acked)
                for node in cluster.nodes.values():
                    await wait_status(
                        client,
                        node.address.http,
                        lambda s: s["keys"] == len(acked),
                        f"node {node.node_id} to apply every key",
                    )

        run(cluster, scenario)


def cli(cluster: LocalCluster, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "raftcore.adapters.kv", *args, "--cluster", cluster.spec],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@RUNTIMES
def test_a_wiped_voter_is_refused_shown_lost_and_recovered_with_the_cli(runtime: str) -> None:
    with LocalCluster(3, runtime=runtime) as cluster:

        async def scenario() -> None:
            async with cluster.client(deadline=15.0, request_timeout=2.0) as client:
                leader, acked = await start_and_write(cluster, client, 30)
                victim = next(i for i in cluster.nodes if i != leader["node_id"])
                leader_http = cluster.nodes[leader["node_id"]].address.http
                vnode = cluster.nodes[victim]

                # The victim loses its disk, then is restarted with --init on
                # the empty store: it must neither form a cluster nor rejoin.
                cluster.kill(victim)
                shutil.rmtree(vnode.data_dir)
                cluster.start(victim, init=True)
                lost = await wait_status(
                    client,
                    leader_http,
                    lambda s: s["followers"].get(str(victim), {}).get("state") == "lost",
                    f"the leader to show node {victim} lost",
                )
                assert "lost or replaced its store" in lost["followers"][str(victim)]["detail"]
                mine = await wait_status(
                    client, vnode.address.http, lambda s: s["role"] == "learner", "the wiped node"
                )
                assert mine["last_log"]["index"] == 0 and mine["membership"] is None
                text = cluster.log_tail(victim, 200)
                assert "--init refused" in text, text
                assert "already belongs to cluster" in text or "refused this node" in text, text
                status_text = cli(cluster, "status")
                assert f"{victim} lost" in status_text.replace("  ", " ")

                # Writes still commit with the two others.
                await client.put("while-lost", "yes")
                acked["while-lost"] = "yes"

                # The documented procedure: remove it, add it back, promote it.
                raft = vnode.address.raft
                cli(cluster, "remove-node", str(victim))
                cli(cluster, "add-node", str(victim), raft, "--http", vnode.address.http)
                cli(cluster, "promote", str(victim))
                recovered = await wait_status(
                    client,
                    leader_http,
                    lambda s: (
                        s["followers"].get(str(victim), {}).get("state") == "replicating"
                        and victim in s["membership"]["voter_ids"]
                    ),
                    f"node {victim} replicating as a voter again",
                )
                assert recovered["membership"]["incarnations"][str(victim)]
                await wait_status(
                    client,
                    vnode.address.http,
                    lambda s: s["keys"] == len(acked),
                    f"node {victim} to hold every key",
                )
                wrong = await verify_keys(client, acked)
                assert not wrong, wrong

        run(cluster, scenario)
