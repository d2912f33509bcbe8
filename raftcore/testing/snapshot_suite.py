"""A conformance suite for ``raftcore.storage.SnapshotStore`` implementations.

Subclass ``SnapshotStoreSuite`` under a name pytest collects and implement
``open_store`` (a new, empty store) and ``reopen`` (close it, open the same
data again); every ``test_*`` method runs against your store. See
``raftcore.testing.storage_suite`` for the same pattern with log stores.
"""

from __future__ import annotations

from typing import Any

from raftcore.ids import LogId
from raftcore.membership import Membership
from raftcore.storage import SnapshotMeta, SnapshotStore

__all__ = ["SnapshotStoreSuite", "sample_snapshot"]


def sample_snapshot(
    index: int, size: int, snapshot_id: str | None = None
) -> tuple[SnapshotMeta, bytes]:
    """A snapshot of ``size`` bytes covering the log up to ``index``."""
    data = bytes((index * 7 + i) % 251 for i in range(size))
    membership = (LogId(1, 1, 1), Membership.of({1: "a", 2: "b", 3: "c"}))
    meta = SnapshotMeta(LogId(2, 1, index), membership, snapshot_id or f"s{index}", size)
    return meta, data


class SnapshotStoreSuite:
    """Conformance tests for a ``SnapshotStore``; see the module docstring."""

    _store: Any = None

    def open_store(self) -> SnapshotStore:
        raise NotImplementedError("implement open_store() in your SnapshotStoreSuite subclass")

    def reopen(self, store: SnapshotStore) -> SnapshotStore:
        raise NotImplementedError("implement reopen() in your SnapshotStoreSuite subclass")

    def teardown_method(self, method: Any = None) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _open(self) -> SnapshotStore:
        self._store = self.open_store()
        return self._store  # type: ignore[no-any-return]

    def _restart(self) -> SnapshotStore:
        self._store = self.reopen(self._store)
        return self._store  # type: ignore[no-any-return]

    def _write(self, store: SnapshotStore, meta: SnapshotMeta, data: bytes, chunk: int = 7) -> None:
        store.begin(meta)
        for offset in range(0, len(data), chunk):
            assert store.write_chunk(meta.snapshot_id, offset, data[offset : offset + chunk]) == (
                min(offset + chunk, len(data))
            )
        assert store.finish(meta.snapshot_id) == meta

    def _read_all(self, store: SnapshotStore, meta: SnapshotMeta, chunk: int = 5) -> bytes:
        out = b""
        while len(out) < meta.size:
            part = store.read_chunk(meta.snapshot_id, len(out), chunk)
            assert part, f"read_chunk returned nothing at {len(out)} of {meta.size}"
            out += part
        return out

    def test_a_new_store_has_no_snapshot(self) -> None:
        assert self._open().latest() is None

    def test_a_finished_snapshot_is_latest_and_reads_back(self) -> None:
        s = self._open()
        meta, data = sample_snapshot(10, 100)
        self._write(s, meta, data)
        assert s.latest() == meta
        assert self._read_all(s, meta) == data
        s = self._restart()
        assert s.latest() == meta, "a finished snapshot must survive a reopen"
        assert self._read_all(s, meta) == data

    def test_duplicate_chunks_change_nothing_and_gaps_are_refused(self) -> None:
        s = self._open()
        meta, data = sample_snapshot(5, 30)
        s.begin(meta)
        assert s.write_chunk(meta.snapshot_id, 0, data[:10]) == 10
        assert s.write_chunk(meta.snapshot_id, 0, data[:10]) == 10  # a duplicate
        assert s.write_chunk(meta.snapshot_id, 5, data[5:20]) == 20  # overlapping
        try:
            s.write_chunk(meta.snapshot_id, 25, data[25:])
        except ValueError:
            pass
        else:
            raise AssertionError("a chunk after a gap was accepted")
        assert s.write_chunk(meta.snapshot_id, 20, data[20:]) == 30
        s.finish(meta.snapshot_id)
        assert self._read_all(s, meta) == data

    def test_an_unfinished_snapshot_is_never_latest(self) -> None:
        s = self._open()
        old, old_data = sample_snapshot(10, 40)
        self._write(s, old, old_data)
        new, new_data = sample_snapshot(20, 40)
        s.begin(new)
        s.write_chunk(new.snapshot_id, 0, new_data[:20])
        assert s.latest() == old
        try:
            s.finish(new.snapshot_id)
        except ValueError:
            pass
        else:
            raise AssertionError("finish accepted a snapshot missing bytes")
        s = self._restart()  # the unfinished write does not survive
        assert s.latest() == old
        assert self._read_all(s, old) == old_data

    def test_a_newer_snapshot_replaces_the_older(self) -> None:
        s = self._open()
        old, old_data = sample_snapshot(10, 50)
        new, new_data = sample_snapshot(30, 70)
        self._write(s, old, old_data)
        self._write(s, new, new_data)
        assert s.latest() == new
        s = self._restart()
        assert s.latest() == new and self._read_all(s, new) == new_data

    def test_begin_again_starts_over_and_discard_drops(self) -> None:
        s = self._open()
        meta, data = sample_snapshot(8, 20)
        s.begin(meta)
        s.write_chunk(meta.snapshot_id, 0, b"x" * 10)
        s.begin(meta)  # a restarted transfer
        assert s.write_chunk(meta.snapshot_id, 0, data) == 20
        s.finish(meta.snapshot_id)
        assert self._read_all(s, meta) == data
        other, _ = sample_snapshot(9, 20)
        s.begin(other)
        s.discard(other.snapshot_id)
        assert s.latest() == meta
