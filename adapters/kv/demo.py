"""``make demo``: a real 3-process KV cluster survives its leader being SIGKILLed.

    python -m adapters.kv.demo [--runtime asyncio|trio] [--keys N] [--concurrency C]

Steps, each printed as one line with the elapsed time: start three
``python -m adapters.kv serve`` processes on free 127.0.0.1 ports with SQLite
storage in a fresh temporary directory; wait for a leader; write N keys (C at
a time) and record every acknowledged write; SIGKILL the leader; wait for a
new one; read every acknowledged key back from it; write a few more keys with
one node down; restart the killed node on its data directory and wait until
it has applied everything the leader committed; stop all nodes with SIGTERM.
Every wait has a deadline; nothing sleeps a fixed time.

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
from collections.abc import Iterable, Sequence
from typing import IO, Any

import attrs

from adapters.kv.client import (
    KvClient,
    KvError,
    NodeAddress,
    format_cluster,
    join_hostport,
    wait_for_leader,
)

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
            "adapters.kv",
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
        prog="python -m adapters.kv.demo",
        description="A 3-process KV cluster loses its leader; every acknowledged write survives.",
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
