"""Cluster throughput: 3 OS processes over loopback TCP, per runtime and store.

``python -m bench.cluster_bench [--runtimes asyncio,trio] [--storages memory,sqlite]
[--clients 1,64] [--scenarios ...] [--duration S] [--warmup S] [--timeout S]``

For each runtime and store it starts three ``bench.cluster_node`` processes on
free loopback ports (SQLite files in a fresh temporary directory); node 1
leads and runs the load. One JSON line per scenario and client count is
printed with ``bench``, ``runtime``, ``storage``, ``nodes``, ``scenario``,
``clients``, ``ops_per_s``, ``p50_ms``, ``p99_ms`` (and ``writes_per_s`` for
writes, ``reads_per_s``/``writes_per_s`` for the mixed load). Scenarios
(``--scenarios``): ``write``; ``read_index`` and ``lease`` (linearizable
reads on the leader); ``mixed_90_10`` (90 % ReadIndex reads, 10 % writes);
``follower`` (node 1 hands leadership to node 2, then reads as a follower:
follower reads). Exits non-zero if a run fails or a check fails.

Each run has a deadline (``--timeout``; by default 60 s plus warm-up,
duration and 30 s per client count): a leader that has not finished by then is
killed and the run fails. Every process is killed and reaped whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO

from bench.cluster_node import SCENARIOS

#: Default time budget of a run: start-up (processes, election) ...
STARTUP_SECONDS = 60.0
#: ... plus, per client count, its warm-up and duration and this much slack.
SLACK_PER_COUNT = 30.0


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run_budget(clients: str, duration: float, warmup: float, scenarios: int = 1) -> float:
    """The default deadline of one run, in seconds."""
    counts = len([c for c in clients.split(",") if c.strip()]) * scenarios
    return STARTUP_SECONDS + counts * (warmup + duration + SLACK_PER_COUNT)


def _lines(pipe: IO[bytes], deadline: float) -> Iterator[str]:
    """The pipe's lines until end of stream; ``TimeoutError`` once ``deadline`` passes."""
    fd = pipe.fileno()
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                yield line.decode()
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise TimeoutError
            chunk = os.read(fd, 65536)
            if not chunk:
                if buf:
                    yield buf.decode()
                return
            buf += chunk


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
        print(f"bench cluster: process {proc.pid} did not exit after SIGKILL", file=sys.stderr)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not exit within 10 s."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        _kill(proc)


def run(
    runtime: str,
    storage: str,
    clients: str,
    duration: float,
    warmup: float,
    timeout: float | None = None,
    scenarios: str = ",".join(SCENARIOS),
) -> int:
    """One run; its exit status. The load node is killed if it has not
    finished within ``timeout`` seconds (default ``run_budget``)."""
    n = len([s for s in scenarios.split(",") if s.strip()])
    budget = timeout if timeout is not None else run_budget(clients, duration, warmup, n)
    deadline = time.monotonic() + budget
    ports = _free_ports(3)
    addrs = ",".join(f"{i}=127.0.0.1:{p}" for i, p in enumerate(ports, start=1))
    with tempfile.TemporaryDirectory(prefix="raftcore-bench-") as data:
        base = [sys.executable, "-m", "bench.cluster_node", "--addrs", addrs]
        base += ["--runtime", runtime, "--storage", storage, "--data-dir", data]
        load = [*base, "--id", "1", "--load", clients]
        load += ["--duration", str(duration), "--warmup", str(warmup), "--scenarios", scenarios]
        followers: list[subprocess.Popen[bytes]] = []
        leader: subprocess.Popen[bytes] | None = None
        try:
            for i in (2, 3):
                followers.append(
                    subprocess.Popen([*base, "--id", str(i)], stderr=subprocess.DEVNULL)
                )
            leader = subprocess.Popen(load, stdout=subprocess.PIPE)
            assert leader.stdout is not None
            for line in _lines(leader.stdout, deadline):
                result = json.loads(line)
                row = {"bench": "cluster", "runtime": runtime, "storage": storage, "nodes": 3}
                print(json.dumps({**row, **result}), flush=True)
            rc = leader.wait(timeout=max(0.1, deadline - time.monotonic()))
        except (TimeoutError, subprocess.TimeoutExpired):
            print(
                f"bench cluster {runtime}/{storage}: not done within {budget:g}s;"
                " killed the leader",
                file=sys.stderr,
            )
            return 1
        finally:
            if leader is not None:
                _kill(leader)  # a no-op when it already exited
                if leader.stdout is not None:
                    leader.stdout.close()
            for f in followers:
                if f.poll() is None:
                    f.terminate()
            for f in followers:
                _stop(f)
    if rc != 0:
        print(f"bench cluster {runtime}/{storage}: leader exited {rc}", file=sys.stderr)
    return rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cluster_bench")
    p.add_argument("--runtimes", default="asyncio,trio")
    p.add_argument("--storages", default="memory,sqlite")
    p.add_argument("--clients", default="1,64")
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma list of {', '.join(SCENARIOS)} (default all; follower runs last)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="deadline of each run in seconds (default: 60 + (warmup + duration + 30)"
        " per client count); the leader is killed when it passes",
    )
    args = p.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    failed = 0
    for runtime in args.runtimes.split(","):
        for storage in args.storages.split(","):
            rc = run(
                runtime,
                storage,
                args.clients,
                args.duration,
                args.warmup,
                args.timeout,
                args.scenarios,
            )
            failed |= rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
