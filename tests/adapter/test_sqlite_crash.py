"""SqliteLogStore survives SIGKILL at random moments with every flushed write intact.

A child process (``_crash_child.py``) appends, truncates, purges and saves
votes in random batches, printing each batch before writing it and a
confirmation after its ``flush``. The parent kills it at random points,
reopens the store and checks that it holds exactly the confirmed state, or
that plus the whole batch in flight: nothing confirmed lost, no torn or
reordered entry, no hole, the vote never older than the confirmed one.

The seed is printed and can be set with ``RAFTCORE_CRASH_SEED``.

What it cannot show: SIGKILL kills the process, not the machine, so writes in
the OS page cache survive it and a missing fsync would pass here too. That
the store fsyncs at every flush rests on ``synchronous=FULL`` in WAL mode,
asserted in test_storage_conformance.py.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _crash_child import apply_ops

from raftcore.adapters.storage import SqliteLogStore
from raftcore.ids import LeaderIdMode, vote_ge
from raftcore.state import RecoveredState
from raftcore.testing.storage_suite import LogModel

CHILD = Path(__file__).with_name("_crash_child.py")
ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 10
#: How long to wait for one line from the child before failing (never slept on).
LINE_TIMEOUT = 20.0

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


class LineReader:
    """Lines from a pipe, with a deadline per line."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)
        self.buf = b""
        self.eof = False

    def readline(self, timeout: float) -> str | None:
        """The next line; ``None`` at end of stream. Raises ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                raise TimeoutError(f"no line from the child within {timeout}s")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def close(self) -> None:
        self.sel.close()


def _copy(m: LogModel) -> LogModel:
    return LogModel.from_state(m.state())


def _run_round(
    db: Path, model: LogModel, rng: random.Random, child_seed: int
) -> tuple[LogModel, LogModel | None, int]:
    """Run the child until killed; returns (confirmed, in-flight or None, batches confirmed)."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(db), str(child_seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    reader = LineReader(proc)
    confirmed = _copy(model)
    in_flight: LogModel | None = None
    batches = 0
    target = rng.randint(1, 30)
    # Where to kill: right after a confirmation, right after a batch started
    # (mid-write), or a moment later (mid-write or mid-commit).
    how = rng.choice(("after-confirm", "after-begin", "delay"))
    try:
        while True:
            line = reader.readline(LINE_TIMEOUT)
            if line is None:
                assert proc.stderr is not None
                raise AssertionError(f"child exited early:\n{proc.stderr.read().decode()}")
            kind, _, payload = line.partition(" ")
            if kind == "B":
                in_flight = _copy(confirmed)
                apply_ops(in_flight, json.loads(payload))
                if batches >= target and how == "after-begin":
                    break
            else:
                assert kind == "C" and in_flight is not None, line
                confirmed, in_flight = in_flight, None
                batches += 1
                if batches >= target and how != "after-begin":
                    if how == "delay":
                        time.sleep(rng.uniform(0, 0.004))
                    break
        proc.send_signal(signal.SIGKILL)
        proc.wait(LINE_TIMEOUT)
        assert proc.returncode == -signal.SIGKILL, proc.returncode
        # Lines the child wrote before dying are still in the pipe.
        while (line := reader.readline(LINE_TIMEOUT)) is not None:
            kind, _, payload = line.partition(" ")
            if kind == "B":
                in_flight = _copy(confirmed)
                apply_ops(in_flight, json.loads(payload))
            elif kind == "C":
                assert in_flight is not None
                confirmed, in_flight = in_flight, None
                batches += 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.close()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    return confirmed, in_flight, batches


def _first_difference(got: RecoveredState, want: RecoveredState) -> str:
    for name in ("vote", "last_purged", "committed", "membership"):
        if getattr(got, name) != getattr(want, name):
            return f"{name} {getattr(got, name)!r} != {getattr(want, name)!r}"
    for g, w in zip(got.entries, want.entries, strict=False):
        if g != w:
            return f"entry {g.log_id!r} != {w.log_id!r} (or different content)"
    return f"{len(got.entries)} entries != {len(want.entries)}"


def _diagnose(got: RecoveredState, confirmed: LogModel, in_flight: LogModel | None) -> str:
    """Which rule a recovered state that matches neither allowed state breaks."""
    indexes = [e.log_id.index for e in got.entries]
    start = got.last_purged.index + 1
    if indexes != list(range(start, start + len(indexes))):
        return f"the log has a hole or is out of order: {indexes[:10]}..."
    if not vote_ge(got.vote, confirmed.vote, LeaderIdMode.ADVANCED):
        return f"the vote went back: {got.vote!r} < confirmed {confirmed.vote!r}"
    out = f"a torn or lost batch; vs confirmed: {_first_difference(got, confirmed.state())}"
    if in_flight is not None:
        out += f"; vs in flight: {_first_difference(got, in_flight.state())}"
    return out


def test_sqlite_store_survives_sigkill(tmp_path: Path) -> None:
    seed = int(os.environ.get("RAFTCORE_CRASH_SEED", random.randrange(1 << 32)))
    print(f"crash test seed: {seed} (RAFTCORE_CRASH_SEED={seed} to replay)")
    rng = random.Random(seed)
    db = tmp_path / "raft.db"
    model = LogModel()
    total = 0
    landed = 0
    started = time.monotonic()
    for rnd in range(ROUNDS):
        confirmed, in_flight, batches = _run_round(db, model, rng, rng.randrange(1 << 32))
        total += batches
        with SqliteLogStore(db) as store:
            got = store.load()
        if got == confirmed.state():
            model = confirmed
        elif in_flight is not None and got == in_flight.state():
            model = in_flight  # the batch in flight committed before the kill
            landed += 1
        else:
            raise AssertionError(
                f"seed {seed}, round {rnd}: the recovered state is neither the confirmed state"
                f" nor that plus the batch in flight: {_diagnose(got, confirmed, in_flight)}"
            )
        # Implied by the equality above (the model only builds contiguous logs
        # and raises votes), spelled out:
        indexes = [e.log_id.index for e in got.entries]
        assert indexes == list(range(got.last_purged.index + 1, model.last_index + 1))
        assert vote_ge(got.vote, confirmed.vote, LeaderIdMode.ADVANCED)
    elapsed = time.monotonic() - started
    print(
        f"{ROUNDS} kills, {total} confirmed batches, {landed} in-flight batches landed,"
        f" final log {len(model.entries)} entries after {model.last_purged!r}, {elapsed:.1f}s"
    )
    assert total >= ROUNDS  # every round confirmed at least one batch before its kill
