"""Bounded resources on the KV service, with a real process.

Connections over ``--max-connections`` are answered ``503
too_many_connections`` and closed (the refusals logged once, not once
each); half-sent requests are cut after the request timeout; the node keeps
serving everyone else throughout.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from raftcore.adapters.kv.client import wait_for_leader
from raftcore.adapters.kv.http import split_hostport
from raftcore.adapters.kv.testing import LocalCluster

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

LIMIT = 4


def hold(addr: str, n: int) -> list[socket.socket]:
    """``n`` connections, each with half a request sent (a slow client)."""
    host, port = split_hostport(addr)
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, port), timeout=5.0)
        s.sendall(b"GET /status HTTP/1.1\r\n")
        socks.append(s)
    return socks


def answer(s: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass  # after the answer: the server closed
    return data


async def scenario(cluster: LocalCluster) -> None:
    cluster.start_all()
    async with cluster.client(deadline=20.0, request_timeout=5.0) as client:
        await wait_for_leader(client, timeout=15.0)
        addr = cluster.http_addrs[2]
        held = await asyncio.to_thread(hold, addr, LIMIT)
        await asyncio.sleep(0.2)  # let the node accept them
        extra = await asyncio.to_thread(hold, addr, 5)
        for s in extra:  # refused at once: 503 and closed
            got = await asyncio.to_thread(answer, s)
            assert got.startswith(b"HTTP/1.1 503 ") and b"too_many_connections" in got, got
            s.close()
        # The other nodes serve meanwhile; once the held connections go, so does node 2.
        await client.put("k", "v")
        for s in held:
            s.close()
        await asyncio.sleep(0.2)
        status = await client.status(addr, timeout=5.0)
        assert status["keys"] == 1
    log = Path(cluster.nodes[2].log_path).read_text()
    refusals = [
        line for line in log.splitlines() if "refused" in line and "HTTP connection" in line
    ]
    assert len(refusals) == 1 and "refused 1 HTTP connection(s)" in refusals[0], refusals


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_connections_over_the_limit_are_refused(runtime: str) -> None:
    with LocalCluster(3, runtime=runtime, extra_args=["--max-connections", str(LIMIT)]) as c:
        c.run(scenario, 60)
