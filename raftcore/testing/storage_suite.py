"""A conformance suite for ``raftcore.storage.LogStore`` implementations.

Subclass ``LogStoreSuite`` in a pytest module under a name pytest collects
(``Test...``), implement ``open_store`` and ``reopen``, and every ``test_*``
method below runs against your store::

    import pytest
    from raftcore.testing.storage_suite import LogStoreSuite
    from mystore import MyStore

    class TestMyStore(LogStoreSuite):
        @pytest.fixture(autouse=True)
        def _dir(self, tmp_path):
            self.path = tmp_path / "raft.db"

        def open_store(self):
            return MyStore(self.path)          # a new, empty store

        def reopen(self, store):
            store.close()
            return MyStore(self.path)          # the same data, opened again

Each test calls ``open_store`` once, and ``reopen`` whenever it checks what
survives a restart (always after a ``flush``: the suite never assumes that
unflushed writes are lost, so stores that make every call durable pass too).
The store open at the end of a test is closed by ``teardown_method``; a
subclass that defines its own must call ``super().teardown_method(method)``.

Entries carry ``sample_payload(log_id)`` as data and memberships from
``sample_membership(n)``: override them if your codec cannot carry ``bytes``
payloads or string node infos. The suite's own helpers are private
(``_open``, ``_restart``, ``_check``...), so they do not collide with your
attributes.

The expected state after each step comes from a small reference model of the
``LogStore`` contract (``LogModel``), so a failure reports the whole expected
and actual ``RecoveredState``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from raftcore.entries import Entry, EntryKind
from raftcore.ids import INITIAL_VOTE, ZERO_LOG_ID, LogId, Vote
from raftcore.membership import Membership
from raftcore.state import RecoveredState
from raftcore.storage import LogStore

__all__ = ["LogModel", "LogStoreSuite"]


class LogModel:
    """The ``LogStore`` contract as plain Python: what ``load`` must return."""

    def __init__(self) -> None:
        self.vote: Vote = INITIAL_VOTE
        self.entries: list[Entry] = []
        self.last_purged: LogId = ZERO_LOG_ID
        self.committed: LogId = ZERO_LOG_ID
        self.membership: tuple[LogId, Membership] | None = None

    @classmethod
    def from_state(cls, state: RecoveredState) -> LogModel:
        """A model holding ``state`` (what a store loaded)."""
        m = cls()
        m.vote, m.entries, m.last_purged = state.vote, list(state.entries), state.last_purged
        m.committed, m.membership = state.committed, state.membership
        return m

    @property
    def last_index(self) -> int:
        return self.entries[-1].log_id.index if self.entries else self.last_purged.index

    def can_append(self, entries: Sequence[Entry]) -> bool:
        first = self.last_index + 1
        return all(e.log_id.index == first + i for i, e in enumerate(entries))

    def append(self, entries: Sequence[Entry]) -> None:
        assert self.can_append(entries)
        self.entries.extend(entries)

    def truncate(self, since: int) -> None:
        self.entries = [e for e in self.entries if e.log_id.index < since]

    def purge(self, upto: LogId) -> None:
        if upto.index <= self.last_purged.index:
            return
        for e in self.entries:
            if e.log_id.index <= upto.index and e.kind is EntryKind.MEMBERSHIP:
                self.membership = (e.log_id, e.data)
        self.entries = [e for e in self.entries if e.log_id.index > upto.index]
        self.last_purged = upto

    def state(self) -> RecoveredState:
        return RecoveredState(
            vote=self.vote,
            entries=tuple(self.entries),
            last_purged=self.last_purged,
            committed=self.committed,
            membership=self.membership,
        )


class _Rng:
    """SplitMix64, so the randomized test is the same everywhere (no ``random``)."""

    def __init__(self, seed: int) -> None:
        self._s = seed & 0xFFFFFFFFFFFFFFFF

    def below(self, n: int) -> int:
        self._s = s = (self._s + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        s = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        s = ((s ^ (s >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return (s ^ (s >> 31)) % n


def _first_difference(actual: RecoveredState, expected: RecoveredState) -> str:
    for name in ("vote", "last_purged", "committed", "membership"):
        a, e = getattr(actual, name), getattr(expected, name)
        if a != e:
            return f"{name}: expected {e!r}, got {a!r}"
    for a_entry, e_entry in zip(actual.entries, expected.entries, strict=False):
        if a_entry != e_entry:
            return f"entry {e_entry.log_id.index}: expected {e_entry!r:.300}, got {a_entry!r:.300}"
    return f"expected {len(expected.entries)} entries, got {len(actual.entries)}"


def _describe(state: RecoveredState) -> str:
    entries = ", ".join(f"{e.log_id!r}:{e.kind.name}" for e in state.entries)
    return (
        f"vote={state.vote!r} last_purged={state.last_purged!r} committed={state.committed!r}"
        f" membership={state.membership!r} entries=[{entries}]"
    )


class LogStoreSuite:
    """Conformance tests for a ``LogStore``; see the module docstring."""

    #: The store under test, opened by ``_open()`` and replaced by ``_restart()``.
    _store: LogStore | None = None

    # -- to implement ----------------------------------------------------------

    def open_store(self) -> LogStore:
        """A new, empty store (called once per test)."""
        raise NotImplementedError("implement open_store() in your LogStoreSuite subclass")

    def reopen(self, store: LogStore) -> LogStore:
        """Close ``store`` and open the same data again."""
        raise NotImplementedError("implement reopen() in your LogStoreSuite subclass")

    # -- data; override if your codec needs other values -------------------------

    def sample_payload(self, log_id: LogId) -> Any:
        """The data of the normal entry at ``log_id`` (varied sizes, some empty)."""
        size = (log_id.index * 7 + log_id.term * 13) % 61
        return bytes((log_id.index + log_id.term + i) % 256 for i in range(size))

    def sample_membership(self, n: int) -> Membership:
        """A distinct membership for each ``n``."""
        voters = {i: f"10.0.0.{i}:{5000 + n}" for i in range(1, 2 + n % 4)}
        return Membership.of(voters)

    # -- harness ---------------------------------------------------------------

    def teardown_method(self, method: Callable[..., Any] | None = None) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _open(self) -> LogStore:
        """Open the store under test (once per test)."""
        assert self._store is None, "the store is opened once per test"
        self._store = self.open_store()
        return self._store

    def _restart(self) -> LogStore:
        """Flush, reopen, and return the reopened store."""
        assert self._store is not None
        self._store.flush()
        self._store = self.reopen(self._store)
        return self._store

    def _entry(self, index: int, term: int, kind: EntryKind = EntryKind.NORMAL) -> Entry:
        # Node ids vary with the term, so a store that drops the node id fails.
        log_id = LogId(term, term % 3 + 1, index)
        if kind is EntryKind.NORMAL:
            return Entry(log_id, kind, self.sample_payload(log_id))
        if kind is EntryKind.MEMBERSHIP:
            return Entry(log_id, kind, self.sample_membership(index))
        return Entry(log_id, kind, None)

    def _entries(self, first: int, last: int, term: int) -> list[Entry]:
        """Normal entries ``first..last`` (inclusive) of ``term``."""
        return [self._entry(i, term) for i in range(first, last + 1)]

    def _check(self, store: LogStore, model: LogModel, when: str = "") -> None:
        """``store.load()`` equals the model's state."""
        actual = store.load()
        expected = model.state()
        if actual != expected:
            where = f" {when}" if when else ""
            raise AssertionError(
                f"load(){where} differs from the expected state:"
                f" {_first_difference(actual, expected)}\n"
                f"  expected: {_describe(expected)}\n"
                f"  actual:   {_describe(actual)}"
            )

    def _check_rejected(self, store: LogStore, model: LogModel, entries: Sequence[Entry]) -> None:
        """``append(entries)`` raises ``ValueError`` and changes nothing."""
        try:
            store.append(entries)
        except ValueError:
            pass
        else:
            ids = [e.log_id for e in entries]
            raise AssertionError(f"append({ids!r}) was accepted; last index {model.last_index}")
        self._check(store, model, "after a rejected append")

    # -- initial state -----------------------------------------------------------

    def test_initial_state(self) -> None:
        s = self._open()
        state = s.load()
        assert state == RecoveredState(), f"a new store loads {_describe(state)}"
        assert state.vote == INITIAL_VOTE
        assert state.membership is None

    def test_initial_state_survives_reopen(self) -> None:
        self._open()
        s = self._restart()
        assert s.load() == RecoveredState()

    def test_flush_without_writes(self) -> None:
        s = self._open()
        s.flush()
        s.flush()
        self._check(s, LogModel())

    # -- vote --------------------------------------------------------------------

    def test_save_vote_and_read(self) -> None:
        s, m = self._open(), LogModel()
        for vote in (Vote(1, 2), Vote(1, 2, True), Vote(3, 1), Vote(3, 1, True)):
            s.save_vote(vote)
            m.vote = vote
            self._check(s, m, f"after save_vote({vote!r})")
        s = self._restart()
        self._check(s, m, "after reopen")

    def test_vote_overwrite_survives_reopen(self) -> None:
        s, m = self._open(), LogModel()
        s.save_vote(Vote(5, 3, True))
        s = self._restart()
        s.save_vote(Vote(7, 2))
        m.vote = Vote(7, 2)
        s = self._restart()
        self._check(s, m, "after overwriting the vote and reopening")

    # -- append ------------------------------------------------------------------

    def test_append_and_read(self) -> None:
        s, m = self._open(), LogModel()
        batches = [
            [self._entry(1, 1, EntryKind.BLANK), self._entry(2, 1, EntryKind.MEMBERSHIP)],
            self._entries(3, 3, 1),
            self._entries(4, 40, 2),
            [self._entry(41, 3, EntryKind.BLANK)],
            [self._entry(42, 3, EntryKind.MEMBERSHIP), *self._entries(43, 45, 3)],
        ]
        for batch in batches:
            s.append(batch)
            m.append(batch)
            self._check(s, m, f"after appending up to {batch[-1].log_id!r}")
        s = self._restart()
        self._check(s, m, "after reopen")

    def test_append_one_large_batch(self) -> None:
        s, m = self._open(), LogModel()
        batch = self._entries(1, 2000, 1)
        s.append(batch)
        m.append(batch)
        s = self._restart()
        self._check(s, m, "after reopen")

    def test_append_empty_is_noop(self) -> None:
        s, m = self._open(), LogModel()
        s.append([])
        self._check(s, m)
        s.append(self._entries(1, 2, 1))
        m.append(self._entries(1, 2, 1))
        s.append(())
        self._check(s, m)

    def test_append_first_entry_must_be_index_1(self) -> None:
        s, m = self._open(), LogModel()
        self._check_rejected(s, m, self._entries(2, 3, 1))
        self._check_rejected(s, m, [self._entry(0, 1)])
        s.append(self._entries(1, 1, 1))
        m.append(self._entries(1, 1, 1))
        self._check(s, m)

    def test_append_not_contiguous_rejected(self) -> None:
        s, m = self._open(), LogModel()
        s.append(self._entries(1, 5, 1))
        m.append(self._entries(1, 5, 1))
        self._check_rejected(s, m, self._entries(7, 8, 1))  # a gap
        self._check_rejected(s, m, self._entries(5, 6, 2))  # overlaps the last entry
        self._check_rejected(s, m, self._entries(1, 6, 2))  # overlaps everything
        gap_inside = [self._entry(6, 1), self._entry(8, 1)]
        self._check_rejected(s, m, gap_inside)
        backwards = [self._entry(6, 1), self._entry(7, 1), self._entry(6, 1)]
        self._check_rejected(s, m, backwards)
        s.append(self._entries(6, 7, 1))
        m.append(self._entries(6, 7, 1))
        self._check(s, m, "after a valid append following rejected ones")
        s = self._restart()
        self._check(s, m, "after reopen: rejected appends left nothing behind")

    # -- truncate ----------------------------------------------------------------

    def test_truncate_at_several_points(self) -> None:
        s, m = self._open(), LogModel()
        s.append(self._entries(1, 10, 1))
        m.append(self._entries(1, 10, 1))
        for since in (15, 11):  # past the end: nothing to delete
            s.truncate(since)
            self._check(s, m, f"after truncate({since}) past the end")
        s.truncate(10)  # the last entry
        m.truncate(10)
        self._check(s, m, "after truncating the last entry")
        s.truncate(6)  # the middle
        m.truncate(6)
        self._check(s, m, "after truncating the middle")
        s = self._restart()
        self._check(s, m, "after reopen")
        self._check_rejected(s, m, self._entries(7, 8, 2))
        s.append(self._entries(6, 8, 2))
        m.append(self._entries(6, 8, 2))
        s.truncate(1)  # the first entry: empties the log
        m.truncate(1)
        self._check(s, m, "after truncating from the first entry")
        s = self._restart()
        self._check(s, m, "after reopen of an emptied log")
        s.append(self._entries(1, 3, 3))
        m.append(self._entries(1, 3, 3))
        s = self._restart()
        self._check(s, m, "after appending to an emptied log")

    def test_truncate_then_append_different_terms(self) -> None:
        s, m = self._open(), LogModel()
        first = [self._entry(1, 1, EntryKind.BLANK), *self._entries(2, 8, 1)]
        s.append(first)
        m.append(first)
        s = self._restart()
        for since, term, last in ((5, 2, 9), (3, 3, 4), (4, 5, 12)):
            s.truncate(since)
            m.truncate(since)
            new = [self._entry(since, term, EntryKind.BLANK), *self._entries(since + 1, last, term)]
            s.append(new)
            m.append(new)
            self._check(s, m, f"after truncate({since}) and appending term {term}")
        s = self._restart()
        self._check(s, m, "after reopen")
        assert [e.log_id.term for e in s.load().entries] == [1, 1, 3, 5, *([5] * 8)]

    def test_truncate_in_same_batch_as_appends(self) -> None:
        # What a runtime does between two flushes: append, truncate, append.
        s, m = self._open(), LogModel()
        s.append(self._entries(1, 6, 1))
        s.truncate(4)
        s.append(self._entries(4, 5, 2))
        s.save_vote(Vote(2, 1))
        m.append(self._entries(1, 3, 1))
        m.append(self._entries(4, 5, 2))
        m.vote = Vote(2, 1)
        self._check(s, m)
        s = self._restart()
        self._check(s, m, "after reopen")

    # -- purge -------------------------------------------------------------------

    def test_purge_at_several_points(self) -> None:
        s, m = self._open(), LogModel()
        s.append(self._entries(1, 10, 1))
        m.append(self._entries(1, 10, 1))
        s.purge(ZERO_LOG_ID)  # nothing before the first entry
        self._check(s, m, "after purge(ZERO_LOG_ID)")
        for upto in (1, 4, 10):  # first, middle, last
            lid = self._entry(upto, 1).log_id
            s.purge(lid)
            m.purge(lid)
            self._check(s, m, f"after purge({lid!r})")
        s = self._restart()
        self._check(s, m, "after reopen of a purged-empty log")
        self._check_rejected(s, m, self._entries(10, 11, 2))
        s.append(self._entries(11, 13, 2))
        m.append(self._entries(11, 13, 2))
        s = self._restart()
        self._check(s, m, "after appending after the purge")

    def test_purge_backwards_is_noop(self) -> None:
        s, m = self._open(), LogModel()
        s.append(self._entries(1, 8, 1))
        m.append(self._entries(1, 8, 1))
        s.purge(LogId(1, 2, 5))
        m.purge(LogId(1, 2, 5))
        s.purge(LogId(1, 2, 3))
        s.purge(LogId(1, 2, 5))
        self._check(s, m, "after purging backwards")
        s = self._restart()
        self._check(s, m, "after reopen")

    def test_purge_beyond_end_then_append(self) -> None:
        s, m = self._open(), LogModel()
        s.append(self._entries(1, 10, 1))
        m.append(self._entries(1, 10, 1))
        beyond = LogId(4, 2, 20)  # e.g. a snapshot newer than the whole log
        s.purge(beyond)
        m.purge(beyond)
        self._check(s, m, "after purge beyond the end")
        assert s.load().entries == ()
        assert s.load().last_purged == beyond
        s = self._restart()
        self._check(s, m, "after reopen")
        self._check_rejected(s, m, self._entries(11, 12, 4))
        self._check_rejected(s, m, self._entries(22, 23, 4))
        s.append(self._entries(21, 23, 4))
        m.append(self._entries(21, 23, 4))
        s = self._restart()
        self._check(s, m, "after appending after the purge point")

    def test_purge_membership_reported(self) -> None:
        s, m = self._open(), LogModel()
        batch = [
            self._entry(1, 1, EntryKind.BLANK),
            self._entry(2, 1, EntryKind.MEMBERSHIP),
            *self._entries(3, 4, 1),
            self._entry(5, 2, EntryKind.MEMBERSHIP),
            *self._entries(6, 9, 2),
        ]
        s.append(batch)
        m.append(batch)
        steps: list[tuple[int, int, int | None]] = [(1, 1, None), (3, 1, 2), (4, 1, 2), (7, 2, 5)]
        for upto, term, member_at in steps:
            lid = self._entry(upto, term).log_id
            s.purge(lid)
            m.purge(lid)
            self._check(s, m, f"after purge({lid!r})")
            got = s.load().membership
            if member_at is None:
                assert got is None, f"membership {got!r} reported though none was purged"
            else:
                want = batch[member_at - 1]
                assert got == (want.log_id, want.data), f"purged membership {got!r}"
            s = self._restart()
            self._check(s, m, f"after reopen following purge({lid!r})")
        # A later purge that removes no membership entry keeps the last one.
        s.append(self._entries(10, 12, 3))
        m.append(self._entries(10, 12, 3))
        s.purge(LogId(3, 1, 11))
        m.purge(LogId(3, 1, 11))
        s = self._restart()
        self._check(s, m, "after a purge without membership entries")
        assert s.load().membership == (batch[4].log_id, batch[4].data)

    def test_truncate_after_purge(self) -> None:
        s, m = self._open(), LogModel()
        s.append(self._entries(1, 8, 1))
        m.append(self._entries(1, 8, 1))
        s.purge(LogId(1, 2, 4))
        m.purge(LogId(1, 2, 4))
        s.truncate(6)
        m.truncate(6)
        self._check(s, m, "after truncate above the purge point")
        s.truncate(5)
        m.truncate(5)
        self._check(s, m, "after truncating every entry left")
        s = self._restart()
        self._check(s, m, "after reopen")
        self._check_rejected(s, m, self._entries(1, 2, 2))
        s.append(self._entries(5, 6, 2))
        m.append(self._entries(5, 6, 2))
        s = self._restart()
        self._check(s, m, "after appending after the purge point")

    # -- committed hint and restarts ------------------------------------------------

    # -- identity (stores that keep one: ``raftcore.storage.IdentityStore``) ------

    def _identity_store(self) -> Any:
        import pytest

        s = self._open()
        if not callable(getattr(s, "identity", None)):
            pytest.skip("the store keeps no identity (not an IdentityStore)")
        return s

    def test_identity_survives_reopen_and_writes(self) -> None:
        s = self._identity_store()
        first = s.identity()
        assert isinstance(first.incarnation, str) and first.incarnation, first
        assert first.cluster_id == "", f"a new store belongs to cluster {first.cluster_id!r}"
        s.append(self._entries(1, 3, 1))
        s.save_cluster_id("cluster-a")
        reopened: Any = self._restart()
        again = reopened.identity()
        assert again.incarnation == first.incarnation, "the incarnation changed on reopen"
        assert again.cluster_id == "cluster-a", f"cluster id not kept: {again!r}"
        assert reopened.load().entries[-1].log_id.index == 3

    def test_committed_hint_recovered(self) -> None:
        s, m = self._open(), LogModel()
        s.append(self._entries(1, 5, 1))
        m.append(self._entries(1, 5, 1))
        for c in (LogId(1, 2, 2), LogId(1, 2, 5)):
            s.save_committed(c)
            m.committed = c
            self._check(s, m, f"after save_committed({c!r})")
        s = self._restart()
        self._check(s, m, "after reopen")
        assert s.load().committed == LogId(1, 2, 5)

    def test_reopen_keeps_everything_flushed(self) -> None:
        s, m = self._open(), LogModel()

        def both(op: str, *args: Any) -> None:
            getattr(s, op)(*args)
            getattr(m, op)(*args)

        both("append", [self._entry(1, 1, EntryKind.MEMBERSHIP), *self._entries(2, 20, 1)])
        s.save_vote(Vote(2, 3, True))
        m.vote = Vote(2, 3, True)
        both("truncate", 15)
        both("append", [self._entry(15, 2, EntryKind.BLANK), *self._entries(16, 30, 2)])
        both("purge", LogId(1, 2, 9))
        s.save_committed(LogId(2, 3, 25))
        m.committed = LogId(2, 3, 25)
        s.flush()
        before = s.load()
        s = self._restart()
        after = s.load()
        assert after == before, f"\n  before: {_describe(before)}\n  after:  {_describe(after)}"
        self._check(s, m, "after reopen")
        assert s.load() == after, "load() is not repeatable"

    def test_random_operations_against_model(self) -> None:
        """A fixed pseudo-random mix of every call, checked against the model."""
        rng = _Rng(20240601)
        s, m = self._open(), LogModel()
        term = 1
        for step in range(400):
            op = rng.below(100)
            if op < 45:
                first = m.last_index + 1
                kinds = (EntryKind.NORMAL,) * 6 + (EntryKind.BLANK, EntryKind.MEMBERSHIP)
                batch = [
                    self._entry(first + i, term, kinds[rng.below(len(kinds))])
                    for i in range(1 + rng.below(12))
                ]
                s.append(batch)
                m.append(batch)
            elif op < 55 and m.entries:
                since = m.entries[rng.below(len(m.entries))].log_id.index
                term += 1
                s.truncate(since)
                m.truncate(since)
            elif op < 62:
                upto = m.last_purged.index + rng.below(m.last_index - m.last_purged.index + 3)
                lid = LogId(term, term % 3 + 1, upto)
                s.purge(lid)
                m.purge(lid)
            elif op < 70:
                term += rng.below(2)
                vote = Vote(term, 1 + rng.below(3), rng.below(2) == 1)
                s.save_vote(vote)
                m.vote = vote
            elif op < 76 and m.entries:
                c = m.entries[rng.below(len(m.entries))].log_id
                s.save_committed(c)
                m.committed = c
            elif op < 80:
                s = self._restart()
            elif op < 84:
                # A gap, or an overlap with the last entries (never an overwrite).
                first = m.last_index + 2 if rng.below(2) or not m.entries else m.last_index
                rejected = self._entries(first, first + rng.below(3), term + 1)
                self._check_rejected(s, m, rejected)
            self._check(s, m, f"at step {step}")
        s = self._restart()
        self._check(s, m, "after the final reopen")
