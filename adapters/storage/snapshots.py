"""Snapshot stores (``raftcore.storage.SnapshotStore``): in memory, and in files.

``FileSnapshotStore(directory)`` keeps each finished snapshot in one file,
``<id>.snapshot``: a header (a magic line, then the length-prefixed CBOR of
its ``SnapshotMeta``), then the snapshot's bytes. A snapshot being written
lives in ``<id>.partial``; ``finish`` fsyncs it, renames it to its final
name and fsyncs the directory, and only then removes the older snapshots.
A crash at any point therefore leaves the previous snapshot or the new one,
never neither; partial files are deleted when the store opens.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

import cbor2

from raftcore import codec
from raftcore.ids import LogId
from raftcore.storage import SnapshotMeta

__all__ = ["FileSnapshotStore", "MemorySnapshotStore", "SnapshotStoreError"]

_MAGIC = b"raftcore-snapshot 1\n"
_LEN = struct.Struct(">I")


class SnapshotStoreError(Exception):
    """A snapshot file is not what it should be (its name says which)."""


def _newest(metas: list[SnapshotMeta]) -> SnapshotMeta | None:
    return max(metas, key=lambda m: (m.last_log_id, m.snapshot_id), default=None)


def _check_chunk(meta: SnapshotMeta, written: int, offset: int, data: bytes) -> bool:
    """Whether the chunk is new (to write), after refusing gaps and overruns."""
    if offset < 0 or offset > written:
        raise ValueError(f"snapshot {meta.snapshot_id}: chunk at {offset}, expected {written}")
    if offset + len(data) > meta.size:
        raise ValueError(
            f"snapshot {meta.snapshot_id}: chunk ends at {offset + len(data)}, "
            f"past its size {meta.size}"
        )
    return offset + len(data) > written


class MemorySnapshotStore:
    """Snapshots in memory (for tests): the same contract, nothing on disk."""

    blocking = False

    def __init__(self) -> None:
        self._done: dict[str, tuple[SnapshotMeta, bytes]] = {}
        self._partial: dict[str, tuple[SnapshotMeta, bytearray]] = {}

    def begin(self, meta: SnapshotMeta) -> None:
        self._partial[meta.snapshot_id] = (meta, bytearray())

    def write_chunk(self, snapshot_id: str, offset: int, data: bytes) -> int:
        meta, buf = self._partial[snapshot_id]
        if _check_chunk(meta, len(buf), offset, data):
            buf[offset:] = data
        return len(buf)

    def finish(self, snapshot_id: str) -> SnapshotMeta:
        meta, buf = self._partial.pop(snapshot_id)
        if len(buf) != meta.size:
            raise ValueError(f"snapshot {snapshot_id}: {len(buf)} of {meta.size} bytes written")
        self._done = {snapshot_id: (meta, bytes(buf))}
        return meta

    def latest(self) -> SnapshotMeta | None:
        return _newest([m for m, _ in self._done.values()])

    def read_chunk(self, snapshot_id: str, offset: int, max_len: int) -> bytes:
        return self._done[snapshot_id][1][offset : offset + max_len]

    def discard(self, snapshot_id: str) -> None:
        self._partial.pop(snapshot_id, None)

    def close(self) -> None:
        self._partial.clear()


class FileSnapshotStore:
    """Snapshots as files in ``directory`` (created if missing); see the module doc."""

    blocking = True

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        for partial in self.directory.glob("*.partial"):
            partial.unlink()  # a write a crash interrupted: never finished, never latest
        self._partial: dict[str, tuple[SnapshotMeta, BinaryIO, int]] = {}

    def _path(self, snapshot_id: str, suffix: str) -> Path:
        if not snapshot_id or not all(c.isalnum() or c in "-_" for c in snapshot_id):
            raise ValueError(f"a snapshot id is letters, digits, '-' and '_', got {snapshot_id!r}")
        return self.directory / f"{snapshot_id}{suffix}"

    def begin(self, meta: SnapshotMeta) -> None:
        self.discard(meta.snapshot_id)
        f = open(self._path(meta.snapshot_id, ".partial"), "wb")  # noqa: SIM115 - kept open
        header = _encode_meta(meta)
        f.write(_MAGIC + _LEN.pack(len(header)) + header)
        self._partial[meta.snapshot_id] = (meta, f, 0)

    def write_chunk(self, snapshot_id: str, offset: int, data: bytes) -> int:
        meta, f, written = self._partial[snapshot_id]
        if _check_chunk(meta, written, offset, data):
            new = data[written - offset :]
            f.write(new)
            written += len(new)
            self._partial[snapshot_id] = (meta, f, written)
        return written

    def finish(self, snapshot_id: str) -> SnapshotMeta:
        meta, f, written = self._partial[snapshot_id]
        if written != meta.size:
            raise ValueError(f"snapshot {snapshot_id}: {written} of {meta.size} bytes written")
        del self._partial[snapshot_id]
        f.flush()
        os.fsync(f.fileno())
        f.close()
        final = self._path(snapshot_id, ".snapshot")
        os.replace(self._path(snapshot_id, ".partial"), final)
        _fsync_dir(self.directory)
        # Only now that the new one is durable do the older ones go.
        for old in self.directory.glob("*.snapshot"):
            if old != final:
                old.unlink()
        return meta

    def _finished(self) -> list[tuple[Path, SnapshotMeta, int]]:
        out = []
        for path in self.directory.glob("*.snapshot"):
            with open(path, "rb") as f:
                meta, data_start = _read_header(f, path)
            out.append((path, meta, data_start))
        return out

    def latest(self) -> SnapshotMeta | None:
        return _newest([meta for _, meta, _ in self._finished()])

    def read_chunk(self, snapshot_id: str, offset: int, max_len: int) -> bytes:
        path = self._path(snapshot_id, ".snapshot")
        with open(path, "rb") as f:
            _, data_start = _read_header(f, path)
            f.seek(data_start + offset)
            return f.read(max_len)

    def discard(self, snapshot_id: str) -> None:
        entry = self._partial.pop(snapshot_id, None)
        if entry is not None:
            entry[1].close()
        self._path(snapshot_id, ".partial").unlink(missing_ok=True)

    def close(self) -> None:
        for snapshot_id in list(self._partial):
            self.discard(snapshot_id)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode_meta(meta: SnapshotMeta) -> bytes:
    membership = None if meta.membership is None else codec.encode_membership(meta.membership)
    return cbor2.dumps(
        [codec.encode_log_id(meta.last_log_id), membership, meta.snapshot_id, meta.size]
    )


def _read_header(f: BinaryIO, path: Path) -> tuple[SnapshotMeta, int]:
    head = f.read(len(_MAGIC) + _LEN.size)
    if len(head) != len(_MAGIC) + _LEN.size or not head.startswith(_MAGIC):
        raise SnapshotStoreError(f"{path}: not a raftcore snapshot")
    (n,) = _LEN.unpack_from(head, len(_MAGIC))
    try:
        last, membership, snapshot_id, size = cbor2.loads(f.read(n))
        meta = SnapshotMeta(
            last_log_id=codec.decode_log_id(last),
            membership=None if membership is None else codec.decode_membership(membership),
            snapshot_id=snapshot_id,
            size=size,
        )
    except Exception as e:
        raise SnapshotStoreError(f"{path}: corrupt snapshot header: {e}") from e
    if not isinstance(meta.last_log_id, LogId) or not isinstance(size, int):
        raise SnapshotStoreError(f"{path}: corrupt snapshot header")
    return meta, len(head) + n
