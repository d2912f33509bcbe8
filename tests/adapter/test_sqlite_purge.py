"""The SQLite log store under a long run of appends and purges.

A node that snapshots and purges forever must keep a bounded database: the
rows a purge deletes free their pages, and later appends reuse them, so the
file (with its WAL) stays the size of the live tail, not of the history. A
restart reads only that tail.
"""

from __future__ import annotations

from pathlib import Path

from raftcore.adapters.storage import SqliteLogStore
from raftcore.entries import normal
from raftcore.ids import LogId

PAYLOAD = "x" * 200


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def run(path: Path, entries: int, purge_every: int | None, keep: int = 100) -> SqliteLogStore:
    store = SqliteLogStore(path, synchronous="NORMAL")
    index = 0
    while index < entries:
        batch = [normal(LogId(1, 1, i), PAYLOAD) for i in range(index + 1, index + 101)]
        store.append(batch)
        store.flush()
        index += len(batch)
        if purge_every and index % purge_every == 0:
            store.purge(LogId(1, 1, index - keep))
            store.flush()
    return store


def test_appends_and_purges_keep_the_database_the_size_of_the_tail(tmp_path: Path) -> None:
    purged = run(tmp_path / "purged.sqlite3", 20_000, purge_every=1_000)
    state = purged.load()
    assert state.last_purged == LogId(1, 1, 19_900)
    assert [e.log_id.index for e in state.entries] == list(range(19_901, 20_001))
    purged.close()
    kept = run(tmp_path / "kept.sqlite3", 20_000, purge_every=None)
    kept.close()
    with_purge = disk_bytes(tmp_path / "purged.sqlite3")
    without = disk_bytes(tmp_path / "kept.sqlite3")
    # The whole history is ~4.3 MB of rows; the purged store holds at most
    # ~1,100 entries at a time (plus the WAL between checkpoints).
    assert without > 4_000_000, without
    assert with_purge < without / 3, (with_purge, without)


def test_a_reopened_store_loads_only_the_tail_after_the_purge(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    run(path, 5_000, purge_every=1_000, keep=10).close()
    store = SqliteLogStore(path)
    state = store.load()
    assert state.last_purged == LogId(1, 1, 4_990)
    assert [e.log_id.index for e in state.entries] == list(range(4_991, 5_001))
    store.close()
