"""The snapshot stores pass the conformance suite, and a SIGKILL in the middle
of writing a snapshot leaves the previous one intact (known bug 11)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from raftcore.adapters.storage.snapshots import FileSnapshotStore, MemorySnapshotStore
from raftcore.storage import SnapshotStore
from raftcore.testing.snapshot_suite import SnapshotStoreSuite, sample_snapshot

ROOT = Path(__file__).resolve().parents[2]


class TestMemorySnapshotStore(SnapshotStoreSuite):
    def open_store(self) -> SnapshotStore:
        self._memory = MemorySnapshotStore()
        return self._memory

    def reopen(self, store: SnapshotStore) -> SnapshotStore:
        store.close()  # drops unfinished writes, keeps finished ones, like a restart
        return store


class TestFileSnapshotStore(SnapshotStoreSuite):
    path: Path

    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path: Path) -> None:
        self.path = tmp_path / "snapshots"

    def open_store(self) -> SnapshotStore:
        return FileSnapshotStore(self.path)

    def reopen(self, store: SnapshotStore) -> SnapshotStore:
        store.close()
        return FileSnapshotStore(self.path)


CHILD = textwrap.dedent(
    """
    import sys
    from raftcore.adapters.storage.snapshots import FileSnapshotStore
    from raftcore.testing.snapshot_suite import sample_snapshot
    store = FileSnapshotStore(sys.argv[1])
    meta, data = sample_snapshot(500, 400_000)
    store.begin(meta)
    for offset in range(0, len(data) // 2, 1000):
        store.write_chunk(meta.snapshot_id, offset, data[offset : offset + 1000])
    print("half written", flush=True)
    sys.stdin.readline()  # killed while waiting here: the write is half done
    """
)


def test_a_sigkill_while_writing_a_snapshot_keeps_the_previous_one(tmp_path: Path) -> None:
    directory = tmp_path / "snapshots"
    store = FileSnapshotStore(directory)
    old, old_data = sample_snapshot(100, 10_000)
    store.begin(old)
    store.write_chunk(old.snapshot_id, 0, old_data)
    store.finish(old.snapshot_id)
    store.close()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "half written"
    child.kill()  # SIGKILL in the middle of the new snapshot
    child.wait(10)
    assert any(directory.glob("*.partial"))
    reopened = FileSnapshotStore(directory)
    assert reopened.latest() == old
    assert reopened.read_chunk(old.snapshot_id, 0, len(old_data)) == old_data
    assert not any(directory.glob("*.partial")), "a partial write was not cleaned up"
