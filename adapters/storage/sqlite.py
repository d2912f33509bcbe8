"""The durable embedded ``LogStore``: one SQLite database per node.

Standard-library ``sqlite3``, WAL journal, ``PRAGMA synchronous=FULL`` by
default. The vote and the log live in one database, so one commit (one WAL
``fsync``) makes a whole batch of writes durable::

    meta(key TEXT PRIMARY KEY, value)     -- format, format_version, vote,
                                          -- committed, last_purged, purged_membership
    log(idx INTEGER PRIMARY KEY, term INTEGER, kind INTEGER, blob BLOB)

Values and entries are encoded with ``raftcore.codec``; ``term`` and ``kind``
are copies kept for checks and for finding membership entries on purge
(a partial index covers ``kind = MEMBERSHIP``).

Durability: every write (``save_vote``, ``append``, ``truncate``, ``purge``,
``save_committed``) joins one open transaction; ``flush()`` commits it, and
with ``synchronous=FULL`` the commit returns once the WAL is fsynced. So the
writes between two flushes become durable together, all or nothing, when
``flush`` returns; ``close()`` (or a crash) before ``flush`` loses them.

One store per database: opening takes an exclusive advisory lock
(``flock``) on ``<path>.lock`` next to the database, held until ``close()``
(or the process's death), so a second store on the same file, in this
process or another, raises ``StoreLockedError``. Plain ``sqlite3``
connections (inspection, backups) ignore the lock.

A store is used by one thread at a time, which need not be the thread that
opened it. After an SQLite error during a write the transaction is rolled back
and the store refuses every further call: reopen it (a runtime reports the
failure to the engine, which stops).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from raftcore import codec
from raftcore.adapters.storage.identity import new_incarnation
from raftcore.entries import Entry, EntryKind
from raftcore.ids import INITIAL_VOTE, ZERO_LOG_ID, LogId, Vote
from raftcore.membership import Membership
from raftcore.state import RecoveredState
from raftcore.storage import StoreIdentity

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no advisory lock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CorruptLogError",
    "SqliteLogStore",
    "SqliteStoreError",
    "StoreFormatError",
    "StoreLockedError",
    "lock_path",
]

#: Stored in ``meta``; a database with another name or version is refused.
FORMAT_NAME = "raftcore-log"
FORMAT_VERSION = 1

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_MEMBERSHIP = int(EntryKind.MEMBERSHIP)

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "CREATE TABLE log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,"
    " kind INTEGER NOT NULL, blob BLOB NOT NULL)",
    f"CREATE INDEX log_membership ON log(idx) WHERE kind = {_MEMBERSHIP}",
)

# Every statement is a constant string, so sqlite3's statement cache keeps
# each one prepared for the life of the connection.
_INSERT_ENTRY = "INSERT INTO log (idx, term, kind, blob) VALUES (?, ?, ?, ?)"
_SET_META = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"
_TRUNCATE = "DELETE FROM log WHERE idx >= ?"
_PURGE = "DELETE FROM log WHERE idx <= ?"
_LAST_MEMBERSHIP = (
    f"SELECT idx, blob FROM log WHERE kind = {_MEMBERSHIP} AND idx <= ? ORDER BY idx DESC LIMIT 1"
)


class SqliteStoreError(Exception):
    """Base of the SQLite store's own errors (``sqlite3`` errors pass through)."""


class StoreFormatError(SqliteStoreError):
    """The database is not a raftcore log store of the supported format version."""


class StoreLockedError(SqliteStoreError):
    """Another open store (in this process or another) holds the database's lock.

    ``path`` is the database, ``lock_path`` the lock file.
    """

    def __init__(self, path: str, lock_path: str) -> None:
        super().__init__(
            f"{path}: the log store is in use by another SqliteLogStore (another process on"
            f" the same data directory?): cannot lock {lock_path}"
        )
        self.path = path
        self.lock_path = lock_path


def lock_path(path: str | os.PathLike[str]) -> str:
    """The lock file of the database at ``path``: ``<path>.lock``."""
    return os.fspath(path) + ".lock"


def _lock(path: str) -> int | None:
    """Open ``<path>.lock`` and take an exclusive, non-blocking ``flock`` on it.

    Returns the descriptor (the lock lives as long as it is open), or ``None``
    for an in-memory or temporary database, or where ``flock`` does not exist.
    """
    if fcntl is None or path in ("", ":memory:"):
        return None
    lock = lock_path(path)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreLockedError(path, lock) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing the only descriptor releases the flock


class CorruptLogError(SqliteStoreError):
    """Stored data cannot be decoded or contradicts itself.

    ``index`` is the log index of the bad entry (``None`` for a ``meta`` value,
    then ``key`` names it).
    """

    def __init__(self, message: str, *, index: int | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.key = key


class SqliteLogStore:
    """A ``LogStore`` in an SQLite database at ``path`` (created if missing).

    ``synchronous`` is SQLite's ``PRAGMA synchronous``: ``FULL`` (default)
    fsyncs the WAL on every commit, i.e. on every ``flush``; ``NORMAL``
    survives a process crash but may lose the last flushes on power loss.

    Raises ``StoreLockedError`` if another store has the database open.
    """

    #: Calls block on disk: a runtime runs them in a worker thread.
    blocking = True

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: str = "FULL", timeout: float = 5.0
    ) -> None:
        sync = synchronous.upper()
        if sync not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, not {synchronous!r}")
        self.path = os.fspath(path)
        self.synchronous = sync
        self._failed: BaseException | None = None
        self._closed = True  # until fully open: __del__ and close() have nothing to do
        # Lock before touching the database: a second store must not even
        # switch the journal mode or roll back the first one's transaction.
        self._lock_fd = _lock(self.path)
        try:
            # isolation_level=None: no implicit transactions, this class issues
            # BEGIN/COMMIT itself.
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except BaseException:
            _unlock(self._lock_fd)
            raise
        try:
            # Check the format before switching to WAL: a foreign file stays untouched.
            self._open_schema()
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal" and self.path != ":memory:":
                raise SqliteStoreError(f"{self.path}: cannot enable WAL mode (got {mode!r})")
            self._db.execute(f"PRAGMA synchronous={sync}")
            self._last_purged = self._meta_log_id("last_purged")
            row = self._db.execute("SELECT max(idx) FROM log").fetchone()
            #: Index of the last entry, or of ``last_purged`` when the log is empty.
            self._last_index: int = max(row[0] or 0, self._last_purged.index)
            self._closed = False
        except BaseException:
            self._db.close()
            _unlock(self._lock_fd)
            raise

    def __repr__(self) -> str:
        return f"SqliteLogStore({self.path!r}, synchronous={self.synchronous!r})"

    def __del__(self) -> None:
        # A store dropped without close() must not keep its lock until exit.
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):
                self.close()

    def __enter__(self) -> SqliteLogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- opening ---------------------------------------------------------------

    def _open_schema(self) -> None:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as e:
            if type(e) is sqlite3.DatabaseError:  # not a subclass such as "locked"
                raise StoreFormatError(f"{self.path}: not an SQLite database ({e})") from e
            raise
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                for stmt in _SCHEMA:
                    db.execute(stmt)
                db.executemany(
                    _SET_META,
                    [
                        ("format", FORMAT_NAME),
                        ("format_version", FORMAT_VERSION),
                        ("incarnation", new_incarnation()),
                    ],
                )
            elif "meta" not in tables or "log" not in tables:
                raise StoreFormatError(
                    f"{self.path}: not a raftcore log store (tables {sorted(tables)})"
                )
            else:
                meta = dict(
                    db.execute(
                        "SELECT key, value FROM meta WHERE key IN ('format', 'format_version')"
                    )
                )
                if meta.get("format") != FORMAT_NAME:
                    raise StoreFormatError(
                        f"{self.path}: not a raftcore log store (format {meta.get('format')!r})"
                    )
                if meta.get("format_version") != FORMAT_VERSION:
                    raise StoreFormatError(
                        f"{self.path}: log store format version {meta.get('format_version')!r};"
                        f" this raftcore reads version {FORMAT_VERSION} only"
                    )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _meta_log_id(self, key: str) -> LogId:
        raw = self._meta(key)
        if raw is None:
            return ZERO_LOG_ID
        try:
            return codec.decode_log_id(raw)
        except Exception as e:
            raise CorruptLogError(f"{self.path}: meta {key!r} is corrupt: {e}", key=key) from e

    # -- guards ----------------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise SqliteStoreError(f"{self.path}: store is closed")
        if self._failed is not None:
            raise SqliteStoreError(
                f"{self.path}: an earlier write failed ({self._failed!r}); reopen the store"
            )

    def _begin(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")

    def _fail(self, e: BaseException) -> None:
        """A write broke half-way: drop the transaction and refuse further calls."""
        self._failed = e
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    # -- LogStore --------------------------------------------------------------

    def load(self) -> RecoveredState:
        """The stored state; raises ``CorruptLogError`` naming the first bad entry."""
        self._check()
        vote_raw = self._meta("vote")
        try:
            vote = INITIAL_VOTE if vote_raw is None else codec.decode_vote(vote_raw)
        except Exception as e:
            raise CorruptLogError(f"{self.path}: meta 'vote' is corrupt: {e}", key="vote") from e
        last_purged = self._meta_log_id("last_purged")
        committed = self._meta_log_id("committed")
        membership: tuple[LogId, Membership] | None = None
        m_raw = self._meta("purged_membership")
        if m_raw is not None:
            try:
                membership = codec.decode_membership(m_raw)
            except Exception as e:
                raise CorruptLogError(
                    f"{self.path}: meta 'purged_membership' is corrupt: {e}",
                    key="purged_membership",
                ) from e

        decode = codec.decode_entry
        entries: list[Entry] = []
        expect = last_purged.index + 1
        for idx, term, blob in self._db.execute("SELECT idx, term, blob FROM log ORDER BY idx"):
            if idx != expect:
                raise CorruptLogError(
                    f"{self.path}: log has a hole: entry {idx} follows {expect - 1}"
                    f" (last purged {last_purged!r})",
                    index=expect,
                )
            try:
                entry = decode(blob)
            except Exception as exc:
                raise CorruptLogError(
                    f"{self.path}: log entry {idx} cannot be decoded: {exc}", index=idx
                ) from exc
            if entry.log_id.index != idx or entry.log_id.term != term:
                raise CorruptLogError(
                    f"{self.path}: log entry {idx} holds entry {entry.log_id!r} (row term {term})",
                    index=idx,
                )
            entries.append(entry)
            expect += 1
        return RecoveredState(
            vote=vote,
            entries=tuple(entries),
            last_purged=last_purged,
            committed=committed,
            membership=membership,
        )

    def save_vote(self, vote: Vote) -> None:
        self._check()
        blob = codec.encode_vote(vote)
        try:
            self._begin()
            self._db.execute(_SET_META, ("vote", blob))
        except sqlite3.Error as e:
            self._fail(e)
            raise

    def append(self, entries: Sequence[Entry]) -> None:
        """Append contiguous entries; ``ValueError`` (nothing written) if they do
        not continue the log."""
        self._check()
        if not entries:
            return
        first = self._last_index + 1
        n = len(entries)
        # One pass in C for the indexes, one comprehension for the rows: no
        # other per-entry Python work.
        if [e.log_id.index for e in entries] != list(range(first, first + n)):
            raise ValueError(
                f"append: entries {entries[0].log_id!r}..{entries[-1].log_id!r} do not continue"
                f" the log at index {first} (or are not contiguous)"
            )
        encode = codec.encode_entry
        rows = [(e.log_id.index, e.log_id.term, e.kind, encode(e)) for e in entries]
        try:
            self._begin()
            self._db.executemany(_INSERT_ENTRY, rows)
        except sqlite3.Error as e:
            self._fail(e)
            raise
        self._last_index = first + n - 1

    def truncate(self, since: int) -> None:
        self._check()
        if since > self._last_index:
            return
        try:
            self._begin()
            self._db.execute(_TRUNCATE, (since,))
        except sqlite3.Error as e:
            self._fail(e)
            raise
        self._last_index = max(since - 1, self._last_purged.index)

    def purge(self, upto: LogId) -> None:
        """Delete entries up to ``upto.index``; remembers the last membership
        entry removed so ``load`` can report it."""
        self._check()
        if upto.index <= self._last_purged.index:
            return
        try:
            self._begin()
            row = self._db.execute(_LAST_MEMBERSHIP, (upto.index,)).fetchone()
            if row is not None:
                idx, blob = row
                try:
                    entry = codec.decode_entry(blob)
                except Exception as exc:
                    raise CorruptLogError(
                        f"{self.path}: log entry {idx} cannot be decoded: {exc}", index=idx
                    ) from exc
                if entry.kind is not EntryKind.MEMBERSHIP:
                    raise CorruptLogError(
                        f"{self.path}: log entry {idx} is marked membership"
                        f" but is {entry.kind.name}",
                        index=idx,
                    )
                self._db.execute(
                    _SET_META,
                    ("purged_membership", codec.encode_membership((entry.log_id, entry.data))),
                )
            self._db.execute(_PURGE, (upto.index,))
            self._db.execute(_SET_META, ("last_purged", codec.encode_log_id(upto)))
        except (sqlite3.Error, SqliteStoreError) as e:
            self._fail(e)
            raise
        self._last_purged = upto
        self._last_index = max(self._last_index, upto.index)

    def identity(self) -> StoreIdentity:
        self._check()
        incarnation = self._meta("incarnation")
        if incarnation is None:  # a store made before incarnations: give it one now
            incarnation = new_incarnation()
            with self._db:
                self._db.execute(_SET_META, ("incarnation", incarnation))
        return StoreIdentity(str(incarnation), str(self._meta("cluster_id") or ""))

    def save_cluster_id(self, cluster_id: str) -> None:
        self._check()
        if self._db.in_transaction:
            self._db.execute(_SET_META, ("cluster_id", cluster_id))
            self.flush()
        else:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(_SET_META, ("cluster_id", cluster_id))
            self._db.execute("COMMIT")

    def save_committed(self, committed: LogId) -> None:
        self._check()
        blob = codec.encode_log_id(committed)
        try:
            self._begin()
            self._db.execute(_SET_META, ("committed", blob))
        except sqlite3.Error as e:
            self._fail(e)
            raise

    def flush(self) -> None:
        """Commit the writes since the last flush (one WAL fsync with ``FULL``)."""
        self._check()
        if not self._db.in_transaction:
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._fail(e)
            raise

    def close(self) -> None:
        """Close the database and release its lock; writes since the last ``flush``
        are rolled back."""
        if self._closed:
            return
        self._closed = True
        try:
            self._db.close()
        finally:
            fd, self._lock_fd = self._lock_fd, None
            _unlock(fd)
