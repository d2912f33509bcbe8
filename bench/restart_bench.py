"""Restart time of a KV node with a long history: ``python -m bench.restart_bench``.

Builds the history first: one KV node (the service's ``KVStateMachine``,
SQLite log, file snapshots, ``snapshot_every`` 10,000) takes ``--writes``
puts over ``--keys`` keys in batches, in process on asyncio. Then it stops
the node and starts it again on the same files, several times, and measures
from opening the stores to the node having applied its whole history and
committed a new write as leader:

- ``snapshot_load_s``: the part spent in ``KVStateMachine.restore``
  (reading the snapshot file is included in ``restart_s``, not here);
- ``restart_s``: the whole restart; ``restart_s - snapshot_load_s`` is what
  the history costs beyond its snapshot.

Prints one JSON line per restart and a summary line with the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from typing import Any

from raftcore.adapters.asyncio_node import open_node
from raftcore.adapters.kv.state_machine import KVStateMachine, put
from raftcore.adapters.storage import FileSnapshotStore, SqliteLogStore
from raftcore.adapters.transport.inproc import InProcNetwork
from raftcore.config import Config
from raftcore.ids import LogId
from raftcore.state import Role

CONFIG = Config(
    election_timeout_min=0.05,
    election_timeout_max=0.1,
    heartbeat_interval=0.02,
    snapshot_every=10_000,
)


class TimedKV(KVStateMachine):
    """The KV state machine, timing its restores."""

    restore_seconds = 0.0

    def restore(self, data: bytes, last_log_id: LogId) -> None:
        t = time.perf_counter()
        super().restore(data, last_log_id)
        TimedKV.restore_seconds += time.perf_counter() - t


def _size(root: str, name: str) -> int:
    path = os.path.join(root, name)
    return os.path.getsize(path) if os.path.exists(path) else 0


def _stores(root: str) -> tuple[SqliteLogStore, FileSnapshotStore]:
    return (
        SqliteLogStore(os.path.join(root, "raft.sqlite3")),
        FileSnapshotStore(os.path.join(root, "snapshots")),
    )


async def build_history(root: str, writes: int, keys: int, batch: int) -> dict[str, Any]:
    store, snaps = _stores(root)
    net = InProcNetwork()
    t = time.perf_counter()
    async with open_node(
        1, CONFIG, store, KVStateMachine(), net.transport(1), snapshot_store=snaps
    ) as node:
        await node.initialize({1: "node-1"})
        await node.wait_for(lambda m: m.role is Role.LEADER, timeout=10.0)
        done = 0
        while done < writes:
            n = min(batch, writes - done)
            await node.write_batch(
                [put(f"k{(done + i) % keys}", f"v{done + i}") for i in range(n)], timeout=60.0
            )
            done += n
        m = node.metrics()
    return {
        "build_s": round(time.perf_counter() - t, 2),
        "last_log_index": m.last_log_id.index,
        "snapshot_index": m.snapshot.index if m.snapshot else None,
        "last_purged": m.last_purged.index,
    }


async def restart_once(root: str, keys: int) -> dict[str, Any]:
    TimedKV.restore_seconds = 0.0
    net = InProcNetwork()
    t = time.perf_counter()
    store, snaps = _stores(root)
    tail = len(store.load().entries)
    sm = TimedKV()
    async with open_node(1, CONFIG, store, sm, net.transport(1), snapshot_store=snaps) as node:
        await node.wait_for(lambda m: m.role is Role.LEADER, timeout=10.0)
        await node.write(put("restart-probe", "x"), timeout=10.0)
        total = time.perf_counter() - t
        assert len(sm) >= keys, (len(sm), keys)  # the whole history is there
    return {
        "restart_s": round(total, 3),
        "snapshot_load_s": round(TimedKV.restore_seconds, 3),
        "restart_minus_snapshot_s": round(total - TimedKV.restore_seconds, 3),
        "log_tail_entries": tail,
    }


async def main_async(args: argparse.Namespace) -> None:
    root = args.dir or tempfile.mkdtemp(prefix="raftcore-restart-")
    history = await build_history(root, args.writes, args.keys, args.batch)
    snap_bytes = sum(
        f.stat().st_size for f in os.scandir(os.path.join(root, "snapshots")) if f.is_file()
    )
    runs = []
    for i in range(args.restarts):
        r = await restart_once(root, args.keys)
        runs.append(r)
        print(json.dumps({"bench": "restart", "run": i, **r}), flush=True)
    print(
        json.dumps(
            {
                "bench": "restart",
                "writes": args.writes,
                "keys": args.keys,
                **history,
                "snapshot_mb": round(snap_bytes / 1e6, 2),
                "db_mb": round(_size(root, "raft.sqlite3") / 1e6, 2),
                "db_wal_mb": round(_size(root, "raft.sqlite3-wal") / 1e6, 2),
                "restart_s_median": statistics.median(r["restart_s"] for r in runs),
                "snapshot_load_s_median": statistics.median(r["snapshot_load_s"] for r in runs),
                "restart_minus_snapshot_s_median": statistics.median(
                    r["restart_minus_snapshot_s"] for r in runs
                ),
            }
        ),
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.restart_bench", description=__doc__)
    p.add_argument("--writes", type=int, default=1_000_000)
    p.add_argument("--keys", type=int, default=100_000, help="distinct keys the puts cycle over")
    p.add_argument("--batch", type=int, default=1_000, help="puts per write_batch")
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--dir", help="where to build the history (default: a new temp dir)")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
