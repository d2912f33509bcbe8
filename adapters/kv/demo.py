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
prints the tail of each node's log. ``LocalCluster`` is reused by the
multi-process tests (tests/adapter/test_kv_processes.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

import attrs

from raftcore.adapters.kv.client import (
    KvClient,
    KvError,
    NodeAddress,
    format_cluster,
    wait_for_leader,
)
from raftcore.adapters.kv.http import HttpError, join_hostport

HOST = "127.0.0.1"


class CheckFailed(Exception):
    """A demo/test check did not hold; ``check`` names it."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


def free_ports(n: int, host: str = HOST) -> list[int]:
    """``n`` distinct ports that were free a moment ago (bound to port 0, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _repo_root() -> str:
    """The directory holding the ``adapters`` package (this file is adapters/kv/demo.py)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@attrs.define
class NodeProcess:
    node_id: int
    address: NodeAddress
    data_dir: str
    log_path: str
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    starts: int = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    """A cluster of ``serve`` processes on this machine, each logging to a file.

    Use as a context manager: on exit every process is stopped and the
    temporary directory removed (unless ``keep``).
    """

    def __init__(
        self,
        size: int = 3,
        *,
        runtime: str = "asyncio",
        root: str | None = None,
        election_timeout: float = 0.3,
        keep: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.runtime = runtime
        self.root = root or tempfile.mkdtemp(prefix="raftcore-kv-")
        self.keep = keep
        self.election_timeout = election_timeout
        self.extra_args = list(extra_args)
        ports = free_ports(2 * size)
        self.nodes: dict[int, NodeProcess] = {}
        for i in range(1, size + 1):
            addr = NodeAddress(
                i, join_hostport(HOST, ports[2 * i - 2]), join_hostport(HOST, ports[2 * i - 1])
            )
            self.nodes[i] = NodeProcess(
                i,
                addr,
                os.path.join(self.root, f"node-{i}"),
                os.path.join(self.root, f"node-{i}.log"),
            )
        self.spec = format_cluster(n.address for n in self.nodes.values())

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        self.cleanup()

    @property
    def http_addrs(self) -> dict[int, str]:
        return {i: n.address.http for i, n in self.nodes.items()}

    def client(self, **kwargs: Any) -> KvClient:
        return KvClient(self.http_addrs, **kwargs)

    def start(self, node_id: int, *, init: bool = False) -> None:
        """Start (or restart, on the same data directory) one node."""
        node = self.nodes[node_id]
        if node.running:
            raise RuntimeError(f"node {node_id} is already running")
        args = [
            sys.executable,
            "-m",
            "raftcore.adapters.kv",
            "serve",
            "--id",
            str(node_id),
            "--cluster",
            self.spec,
            "--data-dir",
            node.data_dir,
            "--runtime",
            self.runtime,
            "--election-timeout",
            str(self.election_timeout),
            *self.extra_args,
        ]
        if init:
            args.append("--init")
        env = dict(os.environ)
        # Importable even without an installed package; appended so a
        # PYTHONPATH chosen by the caller (the compiled build) wins.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (env.get("PYTHONPATH", ""), _repo_root()) if p
        )
        if node.log_file is not None:
            node.log_file.close()
        node.log_file = open(node.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        node.log_file.write(f"---- start #{node.starts + 1}: {' '.join(args)}\n".encode())
        node.log_file.flush()
        node.proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=node.log_file, stderr=subprocess.STDOUT, env=env
        )
        node.starts += 1

    def add_node(self, node_id: int | None = None) -> NodeProcess:
        """A new node (not started) on fresh ports and a fresh data directory.

        It joins the cluster spec that ``start`` gives every node from now on;
        the running nodes learn of it only once it is added to the membership.
        """
        if node_id is None:
            node_id = max(self.nodes) + 1
        if node_id in self.nodes:
            raise ValueError(f"node {node_id} exists")
        raft, http = free_ports(2)
        node = NodeProcess(
            node_id,
            NodeAddress(node_id, join_hostport(HOST, raft), join_hostport(HOST, http)),
            os.path.join(self.root, f"node-{node_id}"),
            os.path.join(self.root, f"node-{node_id}.log"),
        )
        self.nodes[node_id] = node
        self.spec = format_cluster(n.address for n in self.nodes.values())
        return node

    def start_all(self) -> None:
        """Start every node; the first one forms the cluster (``--init``)."""
        for i in self.nodes:
            self.start(i, init=(i == min(self.nodes)))

    def kill(self, node_id: int, sig: int = signal.SIGKILL, timeout: float = 10.0) -> int | None:
        """Send ``sig`` and wait for the process to exit; its exit code."""
        node = self.nodes[node_id]
        if node.proc is None:
            return None
        if node.proc.poll() is None:
            node.proc.send_signal(sig)
        return node.proc.wait(timeout)

    def stop_all(self, timeout: float = 10.0) -> dict[int, int | None]:
        """SIGTERM every running node, wait up to ``timeout``, SIGKILL the rest.

        Returns each node's exit code (``None`` for one that never ran);
        a node that had to be killed reports ``-9``.
        """
        codes: dict[int, int | None] = {}
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        for i, node in self.nodes.items():
            if node.proc is None:
                codes[i] = None
                continue
            try:
                codes[i] = node.proc.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
                codes[i] = -signal.SIGKILL
            if node.log_file is not None:
                node.log_file.close()
                node.log_file = None
        return codes

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, node_id: int, lines: int = 25) -> str:
        try:
            with open(self.nodes[node_id].log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def exited(self) -> dict[int, int]:
        """Nodes whose process ended by itself, with their exit codes."""
        return {
            i: code
            for i, n in self.nodes.items()
            if n.proc is not None and (code := n.proc.poll()) is not None
        }


# -- steps shared by the demo and the tests -----------------------------------------------------


async def write_keys(
    client: KvClient, items: Iterable[tuple[str, str]], *, concurrency: int = 16
) -> tuple[dict[str, str], dict[str, str]]:
    """Put every ``(key, value)``, ``concurrency`` at a time.

    Returns the acknowledged writes and the failed ones (key -> why).
    """
    acked: dict[str, str] = {}
    failed: dict[str, str] = {}
    sem = asyncio.Semaphore(concurrency)

    async def one(key: str, value: str) -> None:
        async with sem:
            try:
                await client.put(key, value)
            except KvError as e:
                failed[key] = str(e)
            else:
                acked[key] = value

    await asyncio.gather(*(one(k, v) for k, v in items))
    return acked, failed


async def verify_keys(
    client: KvClient, expected: dict[str, str], *, concurrency: int = 16
) -> dict[str, str]:
    """Read every key back; the ones that differ (key -> what was found)."""
    wrong: dict[str, str] = {}
    sem = asyncio.Semaphore(concurrency)

    async def one(key: str, value: str) -> None:
        async with sem:
            try:
                got = await client.get(key)
            except KvError as e:
                wrong[key] = f"error: {e}"
                return
            if got != value:
                wrong[key] = f"expected {value!r}, got {got!r}"

    await asyncio.gather(*(one(k, v) for k, v in expected.items()))
    return wrong


async def wait_caught_up(
    client: KvClient, node: NodeAddress, *, timeout: float
) -> tuple[int, int, dict[str, Any]]:
    """Wait until ``node`` has applied at least what the leader has committed.

    Returns ``(node's applied index, leader's committed index, leader status)``;
    raises ``CheckFailed`` at the deadline.
    """
    end = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < end:
        statuses = await client.statuses(timeout=1.0)
        mine = statuses.get(node.http)
        leaders = [s for s in statuses.values() if isinstance(s, dict) and s["role"] == "leader"]
        if isinstance(mine, dict) and len(leaders) == 1:
            applied = mine["applied"]["index"]
            committed = leaders[0]["committed"]["index"]
            last = f"applied {applied}, leader committed {committed}"
            if applied >= committed and mine["leader_id"] == leaders[0]["node_id"]:
                return applied, committed, leaders[0]
        elif not isinstance(mine, dict):
            last = str(mine)
        await asyncio.sleep(0.05)
    raise CheckFailed("restarted node catches up", f"node {node.node_id} after {timeout}s: {last}")


def describe(membership: dict[str, Any] | None) -> str:
    """``voters 1, 3, 4  learners 2  (uniform)`` for a membership from ``/status``."""
    if membership is None:
        return "no membership"

    def ids(xs: Iterable[int]) -> str:
        return ", ".join(str(x) for x in xs) or "-"

    if membership["joint"]:
        voters = " + ".join("{" + ids(c) + "}" for c in membership["voters"])
    else:
        voters = ids(membership["voter_ids"])
    kind = "joint" if membership["joint"] else "uniform"
    return f"voters {voters}  learners {ids(membership['learners'])}  ({kind})"


async def wait_status(
    client: KvClient,
    addr: str,
    condition: Callable[[dict[str, Any]], bool],
    *,
    timeout: float,
    check: str,
) -> dict[str, Any]:
    """Poll one node's ``/status`` until ``condition`` holds; ``CheckFailed`` at the deadline."""
    end = time.monotonic() + timeout
    last: Any = "no answer"
    while time.monotonic() < end:
        try:
            last = await client.status(addr, timeout=1.0)
        except (OSError, HttpError, TimeoutError) as e:
            last = f"{type(e).__name__}: {e}"
        else:
            if condition(last):
                status: dict[str, Any] = last
                return status
        await asyncio.sleep(0.05)
    raise CheckFailed(check, f"{addr} after {timeout}s: {last}")


async def wait_same_membership(
    client: KvClient, addrs: Sequence[str], voters: set[int], *, timeout: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Wait until every node at ``addrs`` has the uniform membership with
    exactly ``voters`` and no learners, and all follow one leader among them.

    Returns the leader's status and every node's; ``CheckFailed`` at the deadline.
    """
    end = time.monotonic() + timeout
    last: dict[str, Any] = {}

    async def one(addr: str) -> dict[str, Any] | str:
        try:
            return await client.status(addr, timeout=1.0)
        except (OSError, HttpError, TimeoutError) as e:
            return f"unreachable: {type(e).__name__}: {e}"

    while time.monotonic() < end:
        found = await asyncio.gather(*(one(a) for a in addrs))
        ok = [s for s in found if isinstance(s, dict)]
        last = {
            a: describe(s["membership"]) if isinstance(s, dict) else s
            for a, s in zip(addrs, found, strict=True)
        }
        leaders = [s for s in ok if s["role"] == "leader"]
        if len(ok) == len(addrs) and len(leaders) == 1:
            leader = leaders[0]
            if all(
                s["membership"] is not None
                and not s["membership"]["joint"]
                and set(s["membership"]["voter_ids"]) == voters
                and not s["membership"]["learners"]
                and s["leader_id"] == leader["node_id"]
                for s in ok
            ):
                return leader, ok
        await asyncio.sleep(0.05)
    raise CheckFailed("every live node has the final membership", f"after {timeout}s: {last}")


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
