"""The child process of ``test_sqlite_crash.py``: writes to a SqliteLogStore until killed.

Usage: ``python _crash_child.py DB_PATH SEED``. It continues the log it finds
and loops over batches: for each, it prints ``B <ops as JSON>`` *before*
the first write, performs the writes, calls ``flush()``, then prints
``C <batch number>``. So when the parent kills it, the store must hold
exactly the state after the last ``C`` line, or after the following ``B``
line's batch (the batch in flight, if its commit made it).

The parent imports ``make_entry`` and ``apply_ops`` to rebuild the expected
state from the printed operations.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from typing import Any

from raftcore.adapters.storage import SqliteLogStore
from raftcore.entries import Entry, EntryKind
from raftcore.ids import LogId, Vote
from raftcore.membership import Membership
from raftcore.testing.storage_suite import LogModel

_KINDS = {"N": EntryKind.NORMAL, "B": EntryKind.BLANK, "M": EntryKind.MEMBERSHIP}

Op = list[Any]


def make_entry(index: int, term: int, kind: str) -> Entry:
    """The entry at ``(index, term)``: its content is a function of its id."""
    log_id = LogId(term, term % 5 + 1, index)
    k = _KINDS[kind]
    if k is EntryKind.MEMBERSHIP:
        voters = {n: f"127.0.0.1:{7000 + index % 1000 + n}" for n in range(1, 2 + index % 5)}
        return Entry(log_id, k, Membership.of(voters))
    if k is EntryKind.BLANK:
        return Entry(log_id, k, None)
    size = (index * 37 + term * 11) % 3000
    seed = hashlib.sha256(f"{log_id!r}".encode()).digest()
    return Entry(log_id, k, (seed * (size // 32 + 1))[:size])


def apply_ops(model: LogModel, ops: list[Op]) -> None:
    """Replay one batch of printed operations on ``model``."""
    for op in ops:
        name = op[0]
        if name == "append":
            _, first, term, kinds = op
            model.append([make_entry(first + i, term, k) for i, k in enumerate(kinds)])
        elif name == "truncate":
            model.truncate(op[1])
        elif name == "purge":
            model.purge(LogId(*op[1]))
        elif name == "vote":
            model.vote = Vote(*op[1])
        elif name == "committed":
            model.committed = LogId(*op[1])
        else:  # pragma: no cover - a bug in this file
            raise ValueError(f"unknown op {op!r}")


def _batch(rng: random.Random, model: LogModel, term: int) -> tuple[list[Op], int]:
    """A random batch of operations continuing ``model``; returns it and the new term."""
    ops: list[Op] = []
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        first_live = model.last_purged.index + 1
        if r < 0.6 or model.last_index < first_live:
            n = rng.choice((1, 1, 2, 5, 16, 64, 200))
            kinds = "".join(rng.choice("NNNNNNNNBM") for _ in range(n))
            ops.append(["append", model.last_index + 1, term, kinds])
        elif r < 0.75:
            term += 1
            ops.append(["truncate", rng.randint(first_live, model.last_index)])
        elif r < 0.83:
            upto = rng.randint(first_live, model.last_index + (3 if rng.random() < 0.2 else 0))
            ops.append(["purge", [term, term % 5 + 1, upto]])
        elif r < 0.93:
            term += 1  # votes only go up, as in Raft
            ops.append(["vote", [term, rng.randint(1, 5), rng.random() < 0.5]])
        else:
            ops.append(["committed", [term, 1, model.last_index]])
        apply_ops(model, ops[-1:])
    return ops, term


def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    store = SqliteLogStore(path)
    state = store.load()
    model = LogModel.from_state(state)
    term = max([state.vote.term, state.last_purged.term, *(e.log_id.term for e in state.entries)])
    out = sys.stdout
    batch_no = 0
    while True:
        ops, term = _batch(rng, model, term)
        out.write("B " + json.dumps(ops) + "\n")
        out.flush()
        for op in ops:
            name = op[0]
            if name == "append":
                _, first, t, kinds = op
                store.append([make_entry(first + i, t, k) for i, k in enumerate(kinds)])
            elif name == "truncate":
                store.truncate(op[1])
            elif name == "purge":
                store.purge(LogId(*op[1]))
            elif name == "vote":
                store.save_vote(Vote(*op[1]))
            else:
                store.save_committed(LogId(*op[1]))
        store.flush()
        batch_no += 1
        out.write(f"C {batch_no}\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
