"""``transport.probe``: one dial and Hello exchange, as ``initialize`` and
``add_learner`` use it to learn a member's store identity.

Whatever stands at the address (nothing, a node, something that accepts and
hangs up before its Hello, such as a proxy whose node is down) ends in the
node's Hello or in an ``OSError`` the caller retries, never anything else.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from runtime_kit import KITS, WAIT, Kit, ListStateMachine, free_port

from raftcore.adapters.kv.testing import free_ports
from raftcore.adapters.storage import MemoryLogStore

RUNTIMES = pytest.mark.parametrize("kit", KITS, ids=lambda k: k.name)


@pytest.fixture
def hang_up_server() -> Iterator[str]:
    """A TCP server that reads a little of each connection, then closes it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    conn.recv(16)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    t.join(WAIT)
    server.close()


@RUNTIMES
def test_probe_of_a_peer_that_hangs_up_is_a_connection_error(kit: Kit, hang_up_server: str) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT):
            t = kit.tcp(1, {1: f"127.0.0.1:{free_port()}", 2: hang_up_server})
            _, close = await kit.enter(kit.open_node(1, MemoryLogStore(), ListStateMachine(), t))
            try:
                with pytest.raises(ConnectionError):
                    await t.probe(2, hang_up_server)
                with pytest.raises(OSError):  # nobody listening
                    await t.probe(2, f"127.0.0.1:{free_port()}")
            finally:
                await close()

    kit.run(scenario)


@RUNTIMES
def test_probe_returns_the_nodes_identity(kit: Kit) -> None:
    async def scenario(kit: Kit) -> None:
        with kit.fail_after(WAIT):
            addrs = {n: f"127.0.0.1:{p}" for n, p in zip((1, 2), free_ports(2), strict=True)}
            stores = {n: MemoryLogStore() for n in addrs}
            closers = []
            try:
                for n in addrs:
                    t = kit.tcp(n, addrs)
                    _, close = await kit.enter(kit.open_node(n, stores[n], ListStateMachine(), t))
                    closers.append((t, close))
                hello = await closers[0][0].probe(2, addrs[2])
                assert hello.node_id == 2
                assert hello.incarnation == stores[2].identity().incarnation
                assert hello.store_cluster == ""
            finally:
                for _, close in closers:
                    await close()

    kit.run(scenario)
