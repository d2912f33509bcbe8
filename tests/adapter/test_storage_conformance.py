"""Both log stores pass the conformance suite; store-specific behaviour on top."""

from __future__ import annotations

import os
import re
import selectors
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest

from raftcore.adapters.storage import (
    FORMAT_VERSION,
    CorruptLogError,
    MemoryBacking,
    MemoryLogStore,
    SqliteLogStore,
    SqliteStoreError,
    StoreFormatError,
)
from raftcore.adapters.storage.sqlite import StoreLockedError, lock_path
from raftcore.entries import Entry, EntryKind
from raftcore.ids import INITIAL_VOTE, LogId, Vote
from raftcore.membership import Membership
from raftcore.state import RecoveredState
from raftcore.storage import LogStore
from raftcore.testing.storage_suite import LogStoreSuite


def ent(index: int, term: int = 1, data: bytes | None = None) -> Entry:
    return Entry(
        LogId(term, 1, index), EntryKind.NORMAL, data if data is not None else b"x%d" % index
    )


def ents(first: int, last: int, term: int = 1) -> list[Entry]:
    return [ent(i, term) for i in range(first, last + 1)]


# -- the suite -------------------------------------------------------------------


class TestMemoryLogStore(LogStoreSuite):
    def open_store(self) -> LogStore:
        return MemoryLogStore()

    def reopen(self, store: LogStore) -> LogStore:
        assert isinstance(store, MemoryLogStore)
        store.close()
        return MemoryLogStore(store.backing)


class TestSqliteLogStore(LogStoreSuite):
    path: Path

    @pytest.fixture(autouse=True)
    def _db_path(self, tmp_path: Path) -> None:
        self.path = tmp_path / "raft.db"

    def open_store(self) -> LogStore:
        return SqliteLogStore(self.path)

    def reopen(self, store: LogStore) -> LogStore:
        store.close()
        return SqliteLogStore(self.path)


class TestSqliteLogStoreSynchronousNormal(TestSqliteLogStore):
    """The same contract holds with ``synchronous=NORMAL`` (durable across process crashes)."""

    def open_store(self) -> LogStore:
        return SqliteLogStore(self.path, synchronous="normal")

    def reopen(self, store: LogStore) -> LogStore:
        store.close()
        return SqliteLogStore(self.path, synchronous="normal")


def test_a_wiped_store_is_a_new_incarnation(tmp_path: Path) -> None:
    path = tmp_path / "raft.db"
    with SqliteLogStore(path) as store:
        before = store.identity()
        store.save_cluster_id("c1")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with SqliteLogStore(path) as store:
        after = store.identity()
    assert after.incarnation != before.incarnation and after.cluster_id == ""
    assert MemoryLogStore().identity().incarnation != MemoryLogStore().identity().incarnation


def test_docs_memory_example_runs() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "storage.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    example = next(b for b in blocks if "MemoryLogStore(store.backing)" in b)
    exec(compile(example, "docs/storage.md", "exec"), {})


def test_suite_is_not_collected_on_its_own() -> None:
    # Only Test* subclasses run; the base class needs open_store().
    with pytest.raises(NotImplementedError):
        LogStoreSuite().open_store()


# -- the suite catches broken stores ----------------------------------------------------


class _Delegating:
    """A LogStore wrapping a MemoryLogStore; each mutant below breaks one rule."""

    def __init__(self, inner: MemoryLogStore) -> None:
        self.inner = inner

    def load(self) -> RecoveredState:
        return self.inner.load()

    def save_vote(self, vote: Vote) -> None:
        self.inner.save_vote(vote)

    def append(self, entries: Sequence[Entry]) -> None:
        self.inner.append(entries)

    def truncate(self, since: int) -> None:
        self.inner.truncate(since)

    def purge(self, upto: LogId) -> None:
        self.inner.purge(upto)

    def save_committed(self, committed: LogId) -> None:
        self.inner.save_committed(committed)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


class _OverwritesOnOverlap(_Delegating):
    def append(self, entries: Sequence[Entry]) -> None:
        if entries:
            self.inner.truncate(entries[0].log_id.index)
        self.inner.append(entries)


class _ForgetsPurgedMembership(_Delegating):
    def load(self) -> RecoveredState:
        return attrs.evolve(self.inner.load(), membership=None)


class _TruncatesOneTooFew(_Delegating):
    def truncate(self, since: int) -> None:
        self.inner.truncate(since + 1)


class _PurgeStopsAtLastEntry(_Delegating):
    def purge(self, upto: LogId) -> None:
        entries = self.inner.load().entries
        if entries and upto.index > entries[-1].log_id.index:
            upto = entries[-1].log_id
        self.inner.purge(upto)


class _DropsVoteCommittedFlag(_Delegating):
    def save_vote(self, vote: Vote) -> None:
        self.inner.save_vote(vote._replace(committed=False))


class _NeverFlushes(_Delegating):
    def flush(self) -> None:
        pass


class _KeepsCommittedInMemoryOnly(_Delegating):
    def save_committed(self, committed: LogId) -> None:
        pass


@pytest.mark.parametrize(
    ("mutant", "test_name"),
    [
        (_OverwritesOnOverlap, "test_append_not_contiguous_rejected"),
        (_ForgetsPurgedMembership, "test_purge_membership_reported"),
        (_TruncatesOneTooFew, "test_truncate_at_several_points"),
        (_TruncatesOneTooFew, "test_truncate_then_append_different_terms"),
        (_PurgeStopsAtLastEntry, "test_purge_beyond_end_then_append"),
        (_DropsVoteCommittedFlag, "test_save_vote_and_read"),
        (_NeverFlushes, "test_reopen_keeps_everything_flushed"),
        (_NeverFlushes, "test_vote_overwrite_survives_reopen"),
        (_KeepsCommittedInMemoryOnly, "test_committed_hint_recovered"),
        (_OverwritesOnOverlap, "test_random_operations_against_model"),
        (_TruncatesOneTooFew, "test_random_operations_against_model"),
    ],
)
def test_suite_catches_a_broken_store(mutant: type[_Delegating], test_name: str) -> None:
    class Suite(LogStoreSuite):
        def open_store(self) -> LogStore:
            return mutant(MemoryLogStore())

        def reopen(self, store: LogStore) -> LogStore:
            assert isinstance(store, _Delegating)
            store.close()
            return mutant(MemoryLogStore(store.inner.backing))

    suite = Suite()
    # A wrong load() fails a check; a wrong earlier call may also make a valid
    # append fail (ValueError).
    with pytest.raises((AssertionError, ValueError)):
        getattr(suite, test_name)()
    suite.teardown_method()
    # The same test passes on the store the mutant wraps.
    healthy = TestMemoryLogStore()
    getattr(healthy, test_name)()
    healthy.teardown_method()


# -- MemoryLogStore ------------------------------------------------------------------


def test_memory_unflushed_writes_are_lost_on_reopen() -> None:
    store = MemoryLogStore()
    store.append(ents(1, 3))
    store.save_vote(Vote(1, 1))
    store.flush()
    store.append(ents(4, 5))
    store.truncate(2)
    store.save_vote(Vote(2, 1))
    store.save_committed(LogId(1, 1, 1))
    store.purge(LogId(1, 1, 1))
    assert len(store.load().entries) == 0  # its own view has everything
    assert store.load().last_purged == LogId(1, 1, 1)
    reopened = MemoryLogStore(store.backing)
    assert reopened.load() == RecoveredState(vote=Vote(1, 1), entries=tuple(ents(1, 3)))
    assert reopened.load() == store.backing.durable_state()


def test_memory_crash_drops_pending_and_closes() -> None:
    store = MemoryLogStore()
    store.append(ents(1, 2))
    store.crash()
    with pytest.raises(RuntimeError, match="closed"):
        store.load()
    assert MemoryLogStore(store.backing).load() == RecoveredState()


def test_memory_reopen_supersedes_the_old_store() -> None:
    backing = MemoryBacking()
    old = MemoryLogStore(backing)
    old.append(ents(1, 2))
    new = MemoryLogStore(backing)
    with pytest.raises(RuntimeError, match="superseded"):
        old.flush()
    assert new.load().entries == ()
    assert backing.durable_state() == RecoveredState()


def test_memory_flush_counts_only_flushes_with_writes() -> None:
    store = MemoryLogStore()
    store.flush()
    store.append(ents(1, 1))
    store.save_vote(Vote(1, 1))
    store.flush()
    store.flush()
    assert store.flushes == 1
    assert MemoryLogStore.blocking is False


# -- SqliteLogStore ------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "raft.db"


def test_sqlite_wal_and_synchronous_full(db: Path) -> None:
    with SqliteLogStore(db) as store:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.blocking is True
    other = sqlite3.connect(db)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        version = other.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        assert version == (FORMAT_VERSION,)
    finally:
        other.close()


def test_sqlite_synchronous_is_validated(db: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteLogStore(db, synchronous="FULL; DROP TABLE log")
    with SqliteLogStore(db, synchronous="extra") as store:
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 3


def test_sqlite_refuses_other_format_version(db: Path) -> None:
    SqliteLogStore(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (FORMAT_VERSION + 1,))
    raw.close()
    with pytest.raises(StoreFormatError, match=rf"format version {FORMAT_VERSION + 1}\b"):
        SqliteLogStore(db)


def test_sqlite_refuses_a_foreign_database(db: Path) -> None:
    with sqlite3.connect(db) as raw:
        raw.execute("CREATE TABLE users (name TEXT)")
    raw.close()
    with pytest.raises(StoreFormatError, match="not a raftcore log store"):
        SqliteLogStore(db)
    with sqlite3.connect(db) as raw:  # untouched, not even switched to WAL
        assert [r[0] for r in raw.execute("SELECT name FROM sqlite_master")] == ["users"]
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    raw.close()


def test_sqlite_refuses_a_file_that_is_not_a_database(db: Path) -> None:
    db.write_bytes(b"certainly not sqlite\n" * 100)
    with pytest.raises(StoreFormatError, match="not an SQLite database"):
        SqliteLogStore(db)
    assert db.read_bytes() == b"certainly not sqlite\n" * 100


def _corrupt(db: Path, sql: str, *args: object) -> None:
    raw = sqlite3.connect(db)
    with raw:
        raw.execute(sql, args)
    raw.close()


def _store_with(db: Path, entries: list[Entry]) -> None:
    with SqliteLogStore(db) as store:
        store.append(entries)
        store.save_vote(Vote(3, 1, True))
        store.flush()


def test_sqlite_corrupt_entry_is_reported_with_its_index(db: Path) -> None:
    _store_with(db, ents(1, 6))
    _corrupt(db, "UPDATE log SET blob = ? WHERE idx = 4", b"\xff\x00garbage")
    with SqliteLogStore(db) as store, pytest.raises(CorruptLogError, match="entry 4") as info:
        store.load()
    assert info.value.index == 4


def test_sqlite_entry_under_the_wrong_index_is_reported(db: Path) -> None:
    _store_with(db, ents(1, 6))
    raw = sqlite3.connect(db)
    blob5 = raw.execute("SELECT blob FROM log WHERE idx = 5").fetchone()[0]
    raw.close()
    _corrupt(db, "UPDATE log SET blob = ? WHERE idx = 2", blob5)
    with SqliteLogStore(db) as store, pytest.raises(CorruptLogError, match="entry 2") as info:
        store.load()
    assert info.value.index == 2


def test_sqlite_hole_in_the_log_is_reported(db: Path) -> None:
    _store_with(db, ents(1, 6))
    _corrupt(db, "DELETE FROM log WHERE idx = 3")
    with SqliteLogStore(db) as store, pytest.raises(CorruptLogError, match="hole") as info:
        store.load()
    assert info.value.index == 3


def test_sqlite_corrupt_vote_is_reported(db: Path) -> None:
    _store_with(db, ents(1, 2))
    _corrupt(db, "UPDATE meta SET value = ? WHERE key = 'vote'", b"\xff")
    with SqliteLogStore(db) as store, pytest.raises(CorruptLogError, match="vote") as info:
        store.load()
    assert info.value.key == "vote"


def test_sqlite_corrupt_membership_entry_fails_purge(db: Path) -> None:
    m = Membership.of({1: "a"})
    _store_with(db, [Entry(LogId(1, 1, 1), EntryKind.MEMBERSHIP, m), *ents(2, 3)])
    _corrupt(db, "UPDATE log SET blob = ? WHERE idx = 1", b"\xff")
    with SqliteLogStore(db) as store:
        with pytest.raises(CorruptLogError, match="entry 1"):
            store.purge(LogId(1, 1, 2))
        with pytest.raises(SqliteStoreError, match="reopen"):
            store.save_vote(Vote(4, 1))


def test_sqlite_writes_between_flushes_are_one_transaction(db: Path) -> None:
    store = SqliteLogStore(db)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    store.append(ents(1, 10))
    store.append(ents(11, 20))
    store.truncate(15)
    store.append(ents(15, 30, term=2))
    store.save_vote(Vote(2, 1))
    store.purge(LogId(1, 1, 3))
    store.save_committed(LogId(1, 1, 5))
    # A second connection (another process, after a crash) sees none of it yet.
    reader = sqlite3.connect(db)
    assert reader.execute("SELECT count(*) FROM log").fetchone() == (0,)
    store.flush()
    assert reader.execute("SELECT count(*), min(idx), max(idx) FROM log").fetchone() == (27, 4, 30)
    reader.close()
    begins = [s for s in statements if s.startswith("BEGIN")]
    commits = [s for s in statements if s == "COMMIT"]
    assert (len(begins), len(commits)) == (1, 1), statements
    store.close()


def test_sqlite_unflushed_batch_is_lost_on_close(db: Path) -> None:
    with SqliteLogStore(db) as store:
        store.append(ents(1, 3))
        store.save_vote(Vote(1, 1))
        store.flush()
        store.append(ents(4, 100))
        store.save_vote(Vote(2, 1))
        store.truncate(2)
    with SqliteLogStore(db) as store:
        assert store.load() == RecoveredState(vote=Vote(1, 1), entries=tuple(ents(1, 3)))
        store.append(ents(4, 4))  # the cached last index was reloaded, not the lost one
        store.flush()
        assert store.load().entries[-1].log_id.index == 4


def test_sqlite_rejected_append_writes_nothing(db: Path) -> None:
    with SqliteLogStore(db) as store:
        store.append(ents(1, 2))
        store.flush()
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)
        with pytest.raises(ValueError, match="continue"):
            store.append(ents(4, 5))
        with pytest.raises(ValueError, match="continue"):
            store.append([ent(3), ent(5)])
        assert statements == []


def test_sqlite_used_from_another_thread(db: Path) -> None:
    store = SqliteLogStore(db)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            store.append(ents(1, 50))
            store.save_vote(Vote(1, 1, True))
            store.flush()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=work)
    t.start()
    t.join(10)
    assert not t.is_alive() and errors == []
    assert len(store.load().entries) == 50
    store.close()


def test_sqlite_failed_write_poisons_the_store(db: Path) -> None:
    store = SqliteLogStore(db, timeout=0.05)
    store.append(ents(1, 2))
    store.flush()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # holds the write lock
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.save_vote(Vote(9, 1))
        with pytest.raises(SqliteStoreError, match="reopen"):
            store.append(ents(3, 3))
        with pytest.raises(SqliteStoreError, match="reopen"):
            store.load()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        store.close()
    with SqliteLogStore(db) as store:
        assert store.load() == RecoveredState(entries=tuple(ents(1, 2)))


def test_sqlite_closed_store_refuses_calls(db: Path) -> None:
    store = SqliteLogStore(db)
    store.close()
    store.close()  # idempotent
    with pytest.raises(SqliteStoreError, match="closed"):
        store.load()


def test_sqlite_fresh_store_loads_initial_state(db: Path) -> None:
    with SqliteLogStore(str(db)) as store:
        assert store.load() == RecoveredState()
        assert store.load().vote == INITIAL_VOTE
        assert repr(store).startswith("SqliteLogStore(")


# -- one store per database ----------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
#: How long to wait for the lock-holding child to report (never slept on).
CHILD_TIMEOUT = 20.0

_HOLDER = """
import sys
from raftcore.adapters.storage import SqliteLogStore
store = SqliteLogStore(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()  # hold the store until the parent closes our stdin
store.close()
print("closed", flush=True)
"""


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """One line of the child's stdout within ``timeout`` (``""`` at end of stream)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"no line from the child within {timeout}s (got {buf!r})")
            chunk = os.read(fd, 1)
            if not chunk:
                break
            buf += chunk
    return buf.decode().strip()


def _holder(db: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    line = _read_line(proc, CHILD_TIMEOUT)
    if line != "locked":
        proc.kill()
        _, err = proc.communicate(timeout=CHILD_TIMEOUT)
        raise AssertionError(f"the child did not open the store: {line!r}\n{err.decode()}")
    return proc


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(CHILD_TIMEOUT)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def test_sqlite_second_store_on_one_file_is_refused(db: Path) -> None:
    store = SqliteLogStore(db)
    store.append(ents(1, 3))
    store.flush()
    store.append(ents(4, 5))  # an open transaction the refused store must not disturb
    with pytest.raises(StoreLockedError, match="in use") as info:
        SqliteLogStore(db)
    assert isinstance(info.value, SqliteStoreError)
    assert info.value.path == str(db) and str(db) in str(info.value)
    assert info.value.lock_path == lock_path(db) == f"{db}.lock"
    store.flush()  # the first store is unaffected
    assert len(store.load().entries) == 5
    # A plain sqlite3 connection (inspection, backup) does not take the lock.
    reader = sqlite3.connect(db)
    try:
        assert reader.execute("SELECT count(*) FROM log").fetchone() == (5,)
    finally:
        reader.close()
    store.close()
    with SqliteLogStore(db) as again:  # the lock went with close()
        assert len(again.load().entries) == 5
        with pytest.raises(StoreLockedError):
            SqliteLogStore(db, synchronous="normal")
    with SqliteLogStore(db) as again:
        assert len(again.load().entries) == 5


def test_sqlite_refused_open_of_a_foreign_file_releases_the_lock(db: Path) -> None:
    db.write_bytes(b"certainly not sqlite\n" * 100)
    with pytest.raises(StoreFormatError):
        SqliteLogStore(db)
    db.unlink()
    SqliteLogStore(db).close()  # the failed open did not keep the lock


def test_sqlite_store_dropped_without_close_releases_the_lock(db: Path) -> None:
    store = SqliteLogStore(db)
    del store
    SqliteLogStore(db).close()


def test_sqlite_store_held_by_another_process_is_refused(db: Path) -> None:
    SqliteLogStore(db).close()  # create it, so the child only opens it
    proc = _holder(db)
    try:
        with pytest.raises(StoreLockedError, match=re.escape(str(db))):
            SqliteLogStore(db)
        assert proc.stdin is not None
        proc.stdin.close()  # the child closes its store and exits
        assert _read_line(proc, CHILD_TIMEOUT) == "closed"
        assert proc.wait(CHILD_TIMEOUT) == 0
        with SqliteLogStore(db) as store:
            assert store.load() == RecoveredState()
    finally:
        _reap(proc)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sqlite_lock_of_a_killed_process_is_released(db: Path) -> None:
    proc = _holder(db)
    try:
        with pytest.raises(StoreLockedError):
            SqliteLogStore(db)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(CHILD_TIMEOUT) == -signal.SIGKILL
        with SqliteLogStore(db) as store:  # the kernel dropped the dead process's lock
            assert store.load() == RecoveredState()
    finally:
        _reap(proc)
