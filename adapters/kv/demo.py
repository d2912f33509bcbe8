"""``make demo``: a real 3-process KV cluster survives its leader being SIGKILLed,
then replaces one of its nodes while it runs.

    python -m raftcore.adapters.kv.demo [--runtime asyncio|trio] [--keys N] [--concurrency C]

Steps, each printed as one line with the elapsed time: start three
``python -m raftcore.adapters.kv serve`` processes on free 127.0.0.1 ports with SQLite
storage in a fresh temporary directory; wait for a leader; write N keys (C at
a time) and record every acknowledged write; SIGKILL the leader; wait for a
new one; read every acknowledged key back from it; write a few more keys with
one node down; restart the killed node on its data directory and wait until
it has applied everything the leader committed. Then replace a node: start a
new node 4 on a fresh data directory, add it as a learner and wait until it
caught up, promote it to voter, remove one of the original followers as a
voter (kept as a learner), forget it, stop its process, check that every live
node shows the same final membership, write more keys and read every
acknowledged key back. Finally stop all nodes with SIGTERM. Every wait has a
deadline; nothing sleeps a fixed time.

Exit status 0 only if every check held. On failure it names the check and
prints the tail of each node's log. The cluster and the shared steps live in
``raftcore.adapters.kv.testing`` (the tests and ``make chaos`` use them too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import secrets
import signal
import sys
import time
import traceback
from collections.abc import Sequence

from raftcore.adapters.kv.client import (
    KvClient,
    KvError,
    wait_for_leader,
)
from raftcore.adapters.kv.testing import (
    CheckFailed,
    LocalCluster,
    describe,
    verify_keys,
    wait_caught_up,
    wait_same_membership,
    wait_status,
    write_keys,
)


async def replace_node(
    cluster: LocalCluster,
    client: KvClient,
    acked: dict[str, str],
    *,
    token: str,
    concurrency: int,
    say: Narrator,
) -> None:
    """Replace one of the original followers with a new node, while the cluster runs."""
    leader = await wait_for_leader(client, timeout=20.0)
    new = cluster.add_node()
    nid, addr = new.node_id, new.address
    cluster.start(nid)
    say.step(
        f"started node {nid} as a new process on a fresh data directory: "
        f"raft {addr.raft} http {addr.http} (no --init)"
    )
    await wait_status(
        client,
        addr.http,
        lambda s: s["membership"] is None,
        timeout=20.0,
        check=f"node {nid} starts and waits to be added",
    )
    say.step(f"node {nid} is up and waits to be added: no membership yet")

    t = time.monotonic()
    try:
        answer = await client.add_learner(nid, addr.raft, addr.http, timeout=30.0)
    except KvError as e:
        raise CheckFailed(f"node {nid} is added as a learner", str(e)) from None
    m = answer["membership"]
    if nid not in m["learners"] or not answer.get("caught_up"):
        raise CheckFailed(f"node {nid} is added as a learner", f"answer {answer}")
    say.step(
        f"added node {nid} as a learner in {time.monotonic() - t:.2f}s (the leader answered once "
        f"its log matched, at {answer['matched']['index']}): {describe(m)}"
    )
    client.add_addresses([addr.http])
    applied, committed, lead = await wait_caught_up(client, addr, timeout=30.0)
    say.step(
        f"node {nid} caught up: applied index {applied} >= leader {lead['node_id']}'s "
        f"committed index {committed}, {lead['keys']} keys"
    )

    t = time.monotonic()
    try:
        answer = await client.promote([nid])
    except KvError as e:
        raise CheckFailed(f"node {nid} is promoted", str(e)) from None
    m = answer["membership"]
    if nid not in m["voter_ids"] or m["joint"]:
        raise CheckFailed(f"node {nid} is promoted", f"membership {m}")
    say.step(
        f"promoted node {nid} to voter in {time.monotonic() - t:.2f}s (through a joint "
        f"config; final membership at log index {answer['log_id']['index']}): {describe(m)}"
    )

    leader = await wait_for_leader(client, timeout=20.0)
    originals = sorted(i for i in cluster.nodes if i != nid and cluster.nodes[i].running)
    victim = next(i for i in originals if i != leader["node_id"])
    try:
        answer = await client.remove_voter(victim, retain=True)
    except KvError as e:
        raise CheckFailed(f"node {victim} is removed as a voter", str(e)) from None
    m = answer["membership"]
    if victim in m["voter_ids"] or victim not in m["learners"] or m["joint"]:
        raise CheckFailed(f"node {victim} is removed as a voter", f"membership {m}")
    say.step(f"removed follower node {victim} as a voter, kept as a learner: {describe(m)}")
    try:
        answer = await client.forget_node(victim)
    except KvError as e:
        raise CheckFailed(f"node {victim} is forgotten", str(e)) from None
    m = answer["membership"]
    if str(victim) in m["nodes"]:
        raise CheckFailed(f"node {victim} is forgotten", f"membership {m}")
    say.step(f"forgot node {victim}: {describe(m)}")

    code = await asyncio.to_thread(cluster.kill, victim, signal.SIGTERM)
    client.remove_addresses([cluster.nodes[victim].address.http])
    say.step(f"stopped node {victim}'s process (SIGTERM): exit code {code}")
    if code != 0:
        raise CheckFailed(f"node {victim} shuts down cleanly", f"exit code {code}")

    live = [i for i in sorted(cluster.nodes) if cluster.nodes[i].running]
    voters = set(m["voter_ids"])
    if set(live) != voters:
        raise CheckFailed("the live nodes are the voters", f"live {live}, voters {sorted(voters)}")
    lead, _ = await wait_same_membership(
        client, [cluster.nodes[i].address.http for i in live], voters, timeout=20.0
    )
    say.step(
        f"final membership, the same on nodes {', '.join(map(str, live))}: "
        f"{describe(lead['membership'])}; leader {lead['node_id']} (term {lead['term']})"
    )

    more = [(f"member-{i:04d}", f"after-replace-{i}-{token}") for i in range(30)]
    more_acked, more_failed = await write_keys(client, more, concurrency=concurrency)
    say.step(f"wrote {len(more_acked)} more keys on the new membership")
    if more_failed:
        raise CheckFailed(
            "writes succeed after the replacement",
            f"{len(more_failed)} failed, e.g. {next(iter(more_failed.items()))}",
        )
    acked.update(more_acked)
    wrong = await verify_keys(client, acked, concurrency=concurrency)
    if wrong:
        sample = list(wrong.items())[:3]
        raise CheckFailed(
            "every acknowledged write is readable after the replacement",
            f"{len(wrong)} wrong: {sample}",
        )
    applied, committed, lead = await wait_caught_up(client, addr, timeout=30.0)
    mine = await client.status(addr.http)
    if mine["keys"] != lead["keys"]:
        raise CheckFailed(
            f"node {nid} holds the leader's map",
            f"{mine['keys']} keys on node {nid}, {lead['keys']} on leader {lead['node_id']}",
        )
    say.step(
        f"verified all {len(acked)} acknowledged keys on leader {lead['node_id']}; "
        f"node {nid} applied up to index {applied} and holds the same {mine['keys']} keys"
    )


# -- the demo ------------------------------------------------------------------------------------


class Narrator:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def step(self, message: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.2f}s] {message}", flush=True)


async def run_demo(cluster: LocalCluster, *, keys: int, concurrency: int, say: Narrator) -> None:
    """Every step of the demo; raises ``CheckFailed`` at the first check that fails."""
    size = len(cluster.nodes)
    cluster.start_all()
    say.step(
        f"started {size} nodes ({cluster.runtime}, SQLite in {cluster.root}): "
        + ", ".join(
            f"{i}=raft {n.address.raft} http {n.address.http}" for i, n in cluster.nodes.items()
        )
    )
    async with cluster.client(deadline=15.0) as client:
        try:
            leader = await wait_for_leader(client, timeout=20.0)
        except KvError as e:
            raise CheckFailed("a leader is elected", str(e)) from None
        first = leader["node_id"]
        say.step(f"leader elected: node {first} (term {leader['term']})")

        token = secrets.token_hex(3)
        items = [(f"key-{i:05d}", f"value-{i}-{token}") for i in range(keys)]
        t = time.monotonic()
        acked, failed = await write_keys(client, items, concurrency=concurrency)
        say.step(
            f"wrote {keys} keys ({concurrency} concurrent) in {time.monotonic() - t:.2f}s: "
            f"{len(acked)} acknowledged, {len(failed)} failed, {client.retries} retries"
        )
        if failed:
            raise CheckFailed(
                "every write is acknowledged",
                f"{len(failed)} failed, e.g. {next(iter(failed.items()))}",
            )

        status = await client.status(cluster.nodes[first].address.http)
        cluster.kill(first)
        t_kill = time.monotonic()
        say.step(
            f"SIGKILL leader node {first} (its last log index {status['last_log']['index']}, "
            f"committed {status['committed']['index']})"
        )
        try:
            leader = await wait_for_leader(client, timeout=20.0, exclude=[first])
        except KvError as e:
            raise CheckFailed("a new leader is elected", str(e)) from None
        second = leader["node_id"]
        say.step(
            f"new leader: node {second} (term {leader['term']}) "
            f"{time.monotonic() - t_kill:.2f}s after the kill"
        )

        t = time.monotonic()
        wrong = await verify_keys(client, acked, concurrency=concurrency)
        say.step(
            f"verified {len(acked) - len(wrong)}/{len(acked)} acknowledged keys on leader {second} "
            f"in {time.monotonic() - t:.2f}s"
        )
        if wrong:
            sample = list(wrong.items())[:3]
            raise CheckFailed(
                "every acknowledged write is readable", f"{len(wrong)} wrong: {sample}"
            )

        more = [(f"more-{i:04d}", f"after-kill-{i}-{token}") for i in range(max(1, keys // 10))]
        more_acked, more_failed = await write_keys(client, more, concurrency=concurrency)
        say.step(f"wrote {len(more_acked)} more keys with node {first} down")
        if more_failed:
            raise CheckFailed("writes succeed with one node down", f"{len(more_failed)} failed")
        acked.update(more_acked)

        cluster.start(first)
        t = time.monotonic()
        say.step(f"restarted node {first} on its data directory")
        applied, committed, leader = await wait_caught_up(
            client, cluster.nodes[first].address, timeout=30.0
        )
        say.step(
            f"node {first} caught up in {time.monotonic() - t:.2f}s: applied index {applied} >= "
            f"leader {leader['node_id']}'s committed index {committed}"
        )

        wrong = await verify_keys(client, acked, concurrency=concurrency)
        if wrong:
            raise CheckFailed(
                "every acknowledged write is readable at the end", f"{len(wrong)} wrong"
            )
        say.step(f"verified all {len(acked)} acknowledged keys again on leader {leader['node_id']}")

        await replace_node(cluster, client, acked, token=token, concurrency=concurrency, say=say)

    codes = cluster.stop_all()
    say.step(
        "stopped all nodes with SIGTERM: exit codes "
        + ", ".join(f"{i}={c}" for i, c in codes.items())
    )
    bad = {i: c for i, c in codes.items() if c != 0}
    if bad:
        raise CheckFailed("every node shuts down cleanly on SIGTERM", f"exit codes {bad}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raftcore.adapters.kv.demo",
        description="A 3-process KV cluster loses its leader, then replaces a node; "
        "every acknowledged write survives.",
    )
    parser.add_argument("--runtime", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--keys", type=int, default=300, help="keys to write (default 300)")
    parser.add_argument("--concurrency", type=int, default=16, help="writes in flight (default 16)")
    parser.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.keys < 1 or args.concurrency < 1 or args.nodes < 3:
        parser.error("--keys and --concurrency must be >= 1 and --nodes >= 3")
    if args.runtime == "trio" and importlib.util.find_spec("trio") is None:
        # Say so now, not after the nodes fail to start and a leader is awaited.
        parser.exit(2, "demo: --runtime trio needs trio: pip install 'raftcore[trio]'\n")

    say = Narrator()
    cluster = LocalCluster(args.nodes, runtime=args.runtime, keep=args.keep)
    ok = False
    try:
        asyncio.run(run_demo(cluster, keys=args.keys, concurrency=args.concurrency, say=say))
        ok = True
    except CheckFailed as e:
        say.step(f"FAILED check '{e.check}': {e.detail}")
    except KeyboardInterrupt:
        say.step("interrupted")
    except Exception as e:  # report it like a failed check, with the nodes' logs
        say.step(f"FAILED with an unexpected error: {type(e).__name__}: {e}")
        traceback.print_exc()
    finally:
        cluster.stop_all()
        if not ok:
            for i in cluster.nodes:
                print(f"---- node {i} log, last lines:")
                print(cluster.log_tail(i))
        cluster.cleanup()
    if ok:
        say.step(
            "OK: every check held"
            + (f" (data kept in {cluster.root})" if args.keep else "; temporary directory removed")
        )
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
