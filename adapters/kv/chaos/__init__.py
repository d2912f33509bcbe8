"""``make chaos``: a Jepsen-style nemesis for the KV service, on one machine.

    python -m raftcore.adapters.kv.chaos [--seconds N] [--seed S] [--nodes 3]
        [--runtime asyncio|trio|mixed] [--clients C] [--keys K] [--dir D]

A real cluster of ``serve`` processes (SQLite, TCP on 127.0.0.1), each behind
a fault-injecting proxy for its Raft traffic (``proxy``); concurrent clients
record every operation (``workload``, ``history``); faults from one seed
(``nemesis``), each healed and followed by a liveness check; at the end the
history is checked for lost acknowledged writes and linearizability
(``checker``). ``runner`` drives a run, ``report`` prints it. See
docs/chaos.md.
"""

from raftcore.adapters.kv.chaos.checker import STRICT_READS, CheckResult, check
from raftcore.adapters.kv.chaos.history import History, OpRecord, OpType, classify
from raftcore.adapters.kv.chaos.proxy import Blocks, RaftProxy
from raftcore.adapters.kv.chaos.runner import ChaosRun, Options

__all__ = [
    "STRICT_READS",
    "Blocks",
    "ChaosRun",
    "CheckResult",
    "History",
    "OpRecord",
    "OpType",
    "Options",
    "RaftProxy",
    "check",
    "classify",
]
