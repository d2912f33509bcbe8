"""Cluster throughput: 3 OS processes over loopback TCP, per runtime and store.

``python -m bench.cluster_bench [--runtimes asyncio,trio] [--storages memory,sqlite]
[--clients 1,64] [--duration S] [--warmup S]``

For each runtime and store it starts three ``bench.cluster_node`` processes on
free loopback ports (SQLite files in a fresh temporary directory); node 1
leads and runs the load; one JSON line per client count is printed with
``bench``, ``runtime``, ``storage``, ``nodes``, ``clients``, ``writes_per_s``,
``p50_ms``, ``p99_ms``. Exits non-zero if a run fails.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run(runtime: str, storage: str, clients: str, duration: float, warmup: float) -> int:
    ports = _free_ports(3)
    addrs = ",".join(f"{i}=127.0.0.1:{p}" for i, p in enumerate(ports, start=1))
    with tempfile.TemporaryDirectory(prefix="raftcore-bench-") as data:
        base = [sys.executable, "-m", "bench.cluster_node", "--addrs", addrs]
        base += ["--runtime", runtime, "--storage", storage, "--data-dir", data]
        followers = [
            subprocess.Popen([*base, "--id", str(i)], stderr=subprocess.DEVNULL) for i in (2, 3)
        ]
        load = [*base, "--id", "1", "--load", clients]
        load += ["--duration", str(duration), "--warmup", str(warmup)]
        try:
            leader = subprocess.Popen(load, stdout=subprocess.PIPE, text=True)
            assert leader.stdout is not None
            for line in leader.stdout:
                result = json.loads(line)
                row = {"bench": "cluster", "runtime": runtime, "storage": storage, "nodes": 3}
                print(json.dumps({**row, **result}), flush=True)
            rc = leader.wait(timeout=60)
        finally:
            for f in followers:
                f.terminate()
            for f in followers:
                try:
                    f.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    f.kill()
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
    args = p.parse_args(argv)
    failed = 0
    for runtime in args.runtimes.split(","):
        for storage in args.storages.split(","):
            failed |= run(runtime, storage, args.clients, args.duration, args.warmup) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
