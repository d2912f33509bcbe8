"""An in-memory ``LogStore`` with explicit durability, for tests and simulations.

A ``MemoryLogStore`` keeps two copies of its state:

- its own *volatile* view, changed by every call (what ``load`` returns);
- the *durable* view in a ``MemoryBacking``, changed only by ``flush``, which
  replays the writes made since the previous flush, in order.

Reopening is building a new store on the same backing::

    store = MemoryLogStore()
    store.append(entries)
    store.flush()                                # durable from here on
    store.save_vote(vote)                        # not flushed
    store = MemoryLogStore(store.backing)        # "restart": sees entries, not the vote

A store built on a backing takes it over: the previous store on that backing
is superseded and raises ``RuntimeError`` on its next call, like a process
that died. ``crash()`` (or ``close()``) throws away the unflushed writes of a
store; neither flushes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from raftcore.adapters.storage.identity import new_incarnation
from raftcore.entries import Entry, EntryKind
from raftcore.ids import INITIAL_VOTE, ZERO_LOG_ID, LogId, Vote
from raftcore.membership import Membership
from raftcore.state import RecoveredState
from raftcore.storage import StoreIdentity

__all__ = ["MemoryBacking", "MemoryLogStore"]


class _LogState:
    """Vote, log and purge state with the ``LogStore`` semantics (no durability)."""

    __slots__ = ("committed", "entries", "last_purged", "membership", "vote")

    def __init__(self) -> None:
        self.vote: Vote = INITIAL_VOTE
        #: entries[i] has index ``last_purged.index + 1 + i``.
        self.entries: list[Entry] = []
        self.last_purged: LogId = ZERO_LOG_ID
        self.committed: LogId = ZERO_LOG_ID
        self.membership: tuple[LogId, Membership] | None = None

    def copy(self) -> _LogState:
        c = _LogState()
        c.vote = self.vote
        c.entries = list(self.entries)
        c.last_purged = self.last_purged
        c.committed = self.committed
        c.membership = self.membership
        return c

    @property
    def last_index(self) -> int:
        return self.last_purged.index + len(self.entries)

    def check_append(self, entries: Sequence[Entry]) -> None:
        expect = self.last_index + 1
        for e in entries:
            if e.log_id.index != expect:
                raise ValueError(
                    f"append: entry {e.log_id!r} does not continue the log "
                    f"(expected index {expect}; last index {self.last_index})"
                )
            expect += 1

    def set_vote(self, vote: Vote) -> None:
        self.vote = vote

    def set_committed(self, committed: LogId) -> None:
        self.committed = committed

    def append(self, entries: Sequence[Entry]) -> None:
        self.entries.extend(entries)

    def truncate(self, since: int) -> None:
        del self.entries[max(since - self.last_purged.index - 1, 0) :]

    def purge(self, upto: LogId) -> None:
        n = upto.index - self.last_purged.index
        if n <= 0:
            return
        removed = self.entries[:n]
        for e in reversed(removed):
            if e.kind is EntryKind.MEMBERSHIP:
                self.membership = (e.log_id, e.data)
                break
        del self.entries[:n]
        self.last_purged = upto

    def recovered(self) -> RecoveredState:
        return RecoveredState(
            vote=self.vote,
            entries=tuple(self.entries),
            last_purged=self.last_purged,
            committed=self.committed,
            membership=self.membership,
        )


class MemoryBacking:
    """What survives a ``MemoryLogStore``: the state as of its last ``flush``."""

    __slots__ = ("_owner", "_state", "cluster_id", "incarnation")

    def __init__(self) -> None:
        self._state = _LogState()
        self._owner: object = None
        #: A new backing is a new disk: a new incarnation.
        self.incarnation = new_incarnation()
        self.cluster_id = ""

    def durable_state(self) -> RecoveredState:
        """The durable view, as a store reopened on this backing would load it."""
        return self._state.recovered()


# A write waiting for the next flush, replayed on the durable state.
_Write = Callable[[_LogState], None]


class MemoryLogStore:
    """A ``LogStore`` in memory; only ``flush`` makes writes durable (see the module doc)."""

    #: Every call returns at once: a runtime may call it on its event loop.
    blocking = False

    def __init__(self, backing: MemoryBacking | None = None) -> None:
        self.backing = backing if backing is not None else MemoryBacking()
        self._token = object()
        self.backing._owner = self._token
        self._state = self.backing._state.copy()
        self._pending: list[_Write] = []
        self._closed = False
        #: How many flushes wrote something (for tests).
        self.flushes = 0

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError("MemoryLogStore is closed")
        if self.backing._owner is not self._token:
            raise RuntimeError("MemoryLogStore was superseded: another store opened its backing")

    def load(self) -> RecoveredState:
        self._check()
        return self._state.recovered()

    def save_vote(self, vote: Vote) -> None:
        self._check()
        self._write(partial(_LogState.set_vote, vote=vote))

    def append(self, entries: Sequence[Entry]) -> None:
        self._check()
        if not entries:
            return
        self._state.check_append(entries)
        self._write(partial(_LogState.append, entries=tuple(entries)))

    def truncate(self, since: int) -> None:
        self._check()
        self._write(partial(_LogState.truncate, since=since))

    def purge(self, upto: LogId) -> None:
        self._check()
        self._write(partial(_LogState.purge, upto=upto))

    def save_committed(self, committed: LogId) -> None:
        self._check()
        self._write(partial(_LogState.set_committed, committed=committed))

    def identity(self) -> StoreIdentity:
        self._check()
        return StoreIdentity(self.backing.incarnation, self.backing.cluster_id)

    def save_cluster_id(self, cluster_id: str) -> None:
        self._check()
        self.backing.cluster_id = cluster_id

    def _write(self, write: _Write) -> None:
        write(self._state)
        self._pending.append(write)

    def flush(self) -> None:
        self._check()
        if not self._pending:
            return
        durable = self.backing._state
        for write in self._pending:
            write(durable)
        self._pending.clear()
        self.flushes += 1

    def crash(self) -> None:
        """Simulate a crash: unflushed writes are lost and the store is closed."""
        self._pending.clear()
        self._closed = True

    def close(self) -> None:
        """Close without flushing (unflushed writes are lost, as after a crash)."""
        self.crash()
