"""Operator mistakes on the KV command: one line saying what is wrong and what
to do, a distinct exit status, no traceback, and no data touched.

2: bad arguments or configuration; 3: refused or unreachable (or the data
directory in use); 4: an unusable data directory or store; 5: an address
that cannot be listened on.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftcore.adapters.kv.testing import free_ports

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX")


def kv(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftcore.adapters.kv", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The error line: the last one (a node that got as far as starting logs
    its start and stop before it), and no traceback anywhere."""
    lines = done.stderr.strip().splitlines()
    assert lines and "Traceback" not in done.stderr, done.stderr
    assert all(" INFO " in line for line in lines[:-1]), done.stderr
    return lines[-1]


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
@pytest.mark.parametrize("which", ["raft", "http"])
def test_a_port_in_use(tmp_path: Path, taken: int, runtime: str, which: str) -> None:
    (free,) = free_ports(1)
    raft, http = (taken, free) if which == "raft" else (free, taken)
    spec = f"1=127.0.0.1:{raft}/127.0.0.1:{http}"
    done = kv("serve", "--id", "1", "--cluster", spec, "--data-dir", str(tmp_path / "d"),
              "--runtime", runtime)  # fmt: skip
    assert done.returncode == 5
    assert one_line(done) == (
        f"serve: cannot listen on 127.0.0.1:{taken}: Address already in use "
        "(another process on that port? an address of this machine?)"
    )


def test_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    (port,) = free_ports(1)
    done = kv("serve", "--id", "1", "--cluster", f"1=127.0.0.1:{port}",
              "--data-dir", str(tmp_path / "file"))  # fmt: skip
    assert done.returncode == 4
    line = one_line(done)
    assert line.startswith(f"serve: --data-dir {tmp_path / 'file'}: cannot use it:"), line
    assert (tmp_path / "file").read_text() == "not a directory"


def test_a_corrupt_store_is_named_and_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    db = data / "raft.sqlite3"
    # A store as the node writes it, with one entry whose bytes are damaged.
    from raftcore.adapters.storage import SqliteLogStore
    from raftcore.entries import membership_entry, normal
    from raftcore.ids import LogId
    from raftcore.membership import Membership

    store = SqliteLogStore(str(db))
    m = Membership.of({1: "127.0.0.1:7001"})
    store.append([membership_entry(LogId(1, 1, 1), m), normal(LogId(1, 1, 2), ["put", "k", "v"])])
    store.flush()
    store.close()
    with sqlite3.connect(db) as c:
        c.execute("UPDATE log SET blob = x'ff00ff' WHERE idx = 2")
    (port,) = free_ports(1)
    done = kv("serve", "--id", "1", "--cluster", f"1=127.0.0.1:{port}", "--data-dir", str(data))
    assert done.returncode == 4
    line = one_line(done)
    assert "log entry 2 cannot be decoded" in line and "restore the data directory" in line, line
    with sqlite3.connect(db) as c:  # nothing deleted or rewritten
        rows = c.execute("SELECT idx, blob FROM log ORDER BY idx").fetchall()
    assert [i for i, _ in rows] == [1, 2] and rows[1][1] == b"\xff\x00\xff"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--id", "0", "--data-dir", "d"], "argument --id: expected a positive node id"),
        (["serve", "--id", "1", "--data-dir", "d", "--log-level", "LOUD"], "invalid choice"),
        (["get", "k", "--timeout", "-1"], "argument --timeout: expected a number of seconds > 0"),
        (["get", "k", "--timeout", "nan"], "argument --timeout: expected a number of seconds > 0"),
    ],
)
def test_bad_arguments(args: list[str], message: str) -> None:
    done = kv(*args[:1], "--cluster", "1=127.0.0.1:7001", *args[1:])
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_trio_missing(tmp_path: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "trio.py").write_text("raise ImportError('No module named trio (test shim)')\n")
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), *sys.path])}
    (port,) = free_ports(1)
    done = kv("serve", "--id", "1", "--cluster", f"1=127.0.0.1:{port}",
              "--data-dir", str(tmp_path / "d"), "--runtime", "trio", env=env)  # fmt: skip
    assert done.returncode == 2
    assert one_line(done) == (
        "serve: --runtime trio needs trio, which is not installed: pip install 'raftcore[trio]'"
    )


def test_the_asyncio_service_runs_without_trio(tmp_path: Path) -> None:
    """``pip install raftcore`` without the trio extra runs the service."""
    import os
    import signal
    import time

    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "trio.py").write_text("raise ImportError('No module named trio (test shim)')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), *sys.path])}
    (port,) = free_ports(1)
    log = tmp_path / "log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "raftcore.adapters.kv", "serve", "--id", "1", "--cluster",
             f"1=127.0.0.1:{port}", "--data-dir", str(tmp_path / "d"), "--init"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while "now leader" not in log.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log.read_text()
