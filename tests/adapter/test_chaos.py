"""A short chaos round: the harness as a subprocess, about 30 s, one fixed seed.

Seed 4 deals kill-leader, partition-one-way, pause, partition-bridge and
lose-disk first (the deck is shuffled by the seed alone), so even 25 s of
faults cover processes, the network and a lost disk. The mixed runtime puts
asyncio and trio nodes in one cluster. ``make chaos`` runs the long version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SEED = 4
SECONDS = 25
ROOT = Path(__file__).resolve().parents[2]


def test_a_short_chaos_round_finds_no_violation(tmp_path: Path) -> None:
    args = [
        sys.executable,
        "-m",
        "raftcore.adapters.kv.chaos",
        "--seconds",
        str(SECONDS),
        "--seed",
        str(SEED),
        "--runtime",
        "mixed",
        "--dir",
        str(tmp_path),
    ]
    env = {
        **os.environ,
        # The repo appended, so a build the caller chose (make unit-compiled) wins.
        "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
    }
    # The harness bounds itself (seconds + about 60 s); the timeout only catches a hang.
    done = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=SECONDS + 90
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{done.stderr[-3000:]}"
    verdict = json.loads(lines[-1])
    report = "\n".join(lines[-40:])
    assert verdict["ok"] is True, report
    assert done.returncode == 0, report
    assert verdict["seed"] == SEED and verdict["dir"] == str(tmp_path)
    assert verdict["lost_acknowledged"] == 0
    assert verdict["linearizable"] is True
    assert verdict["liveness_failures"] == 0 and verdict["nemesis_failures"] == 0
    assert verdict["acknowledged_writes"] > 100 and verdict["reads_checked"] > 100
    assert verdict["write_once_keys"] > 10

    kinds = set(verdict["nemesis_events"])
    assert len(kinds) >= 3, kinds
    assert kinds & {"kill-leader", "kill-follower", "kill-all"}, kinds
    assert kinds & {"partition-one-way", "partition-bridge", "partition-isolate"}, kinds

    # What it claims is on disk: the whole history, and the proxies did block someone.
    history = (tmp_path / "history.jsonl").read_text().splitlines()
    assert len(history) == verdict["ops"]
    proxy_events = [json.loads(line)["event"] for line in (tmp_path / "proxy.jsonl").open()]
    assert "refused" in proxy_events or "cut" in proxy_events
    assert all((tmp_path / f"node-{i}.log").stat().st_size > 0 for i in (1, 2, 3))
