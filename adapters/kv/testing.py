"""Local KV clusters for tests, the demo and the chaos harness.

``LocalCluster`` runs ``python -m raftcore.adapters.kv serve`` processes on
free 127.0.0.1 ports, each with its own data directory and log file; the
functions below are the steps the demo, the tests and ``make chaos`` share
(write and verify keys, wait for a node to catch up or for a status).
Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import IO, Any

import attrs

import raftcore
from raftcore.adapters.kv.client import (
    KvClient,
    KvError,
    NodeAddress,
    format_cluster,
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
    """The directory holding the ``raftcore`` package (a checkout or site-packages)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(raftcore.__file__)))


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
        # ``extra_args`` go to every node's ``serve``; ``{id}`` in one is that node's id.
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
            *(a.replace("{id}", str(node_id)) for a in self.extra_args),
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

    def run(
        self, scenario: Callable[[LocalCluster], Awaitable[None]], timeout: float, tail: int = 40
    ) -> None:
        """Run ``scenario(self)`` on a fresh asyncio loop within ``timeout``
        seconds; if it fails, stop every node and print each one's log tail
        (pytest shows it with the failure), then re-raise."""
        try:
            asyncio.run(asyncio.wait_for(scenario(self), timeout))
        except BaseException:
            self.stop_all()
            for i in self.nodes:
                print(f"---- node {i} log tail")
                print(self.log_tail(i, tail))
            raise

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
