"""The cluster under test: ``serve`` processes, each behind its ``RaftProxy``.

``ChaosCluster`` is ``raftcore.adapters.kv.testing.LocalCluster`` with one more port per
node: the spec (``--cluster``) advertises the proxy's address, and each node
listens for Raft at its own ``--raft-listen`` address behind it. HTTP goes to
the nodes directly. It also pauses (SIGSTOP), resumes, SIGKILLs without
blocking the event loop, wipes data directories, and stops everything it
started however the run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import time
from collections.abc import Collection, Sequence

from raftcore.adapters.kv.chaos.journal import Journal
from raftcore.adapters.kv.chaos.proxy import Blocks, RaftProxy
from raftcore.adapters.kv.http import join_hostport
from raftcore.adapters.kv.testing import HOST, LocalCluster, free_ports


def runtimes_for(runtime: str, size: int) -> list[str]:
    """Each node's runtime: all the same, or (``mixed``) asyncio and trio alternating."""
    if runtime == "mixed":
        return ["asyncio" if i % 2 == 0 else "trio" for i in range(size)]
    return [runtime] * size


class ChaosCluster(LocalCluster):
    def __init__(
        self,
        size: int,
        *,
        runtime: str,
        root: str,
        journal: Journal,
        election_timeout: float = 0.3,
        write_timeout: float = 1.5,
    ) -> None:
        runtimes = runtimes_for(runtime, size)
        super().__init__(
            size,
            runtime=runtimes[0],
            root=root,
            election_timeout=election_timeout,
            keep=True,
            extra_args=["--write-timeout", str(write_timeout)],
        )
        self.runtimes = dict(zip(sorted(self.nodes), runtimes, strict=True))
        self._base_args = list(self.extra_args)
        taken = {a for n in self.nodes.values() for a in (n.address.raft, n.address.http)}
        listen: list[str] = []
        while len(listen) < size:
            listen = [
                a for a in (join_hostport(HOST, p) for p in free_ports(size)) if a not in taken
            ]
        self.raft_listen = dict(zip(sorted(self.nodes), listen, strict=True))
        self.blocks = Blocks()
        self.proxies = {
            i: RaftProxy(i, n.address.raft, self.raft_listen[i], self.blocks, journal)
            for i, n in self.nodes.items()
        }
        self.paused: set[int] = set()

    async def start_proxies(self) -> None:
        for proxy in self.proxies.values():
            await proxy.start()

    def start(self, node_id: int, *, init: bool = False) -> None:
        self.runtime = self.runtimes[node_id]
        self.extra_args = [*self._base_args, "--raft-listen", self.raft_listen[node_id]]
        self.paused.discard(node_id)
        super().start(node_id, init=init)

    def running_ids(self) -> list[int]:
        return sorted(i for i, n in self.nodes.items() if n.running)

    def signal(self, node_id: int, sig: int) -> None:
        proc = self.nodes[node_id].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)

    def pause(self, node_id: int) -> None:
        self.signal(node_id, signal.SIGSTOP)
        self.paused.add(node_id)

    def resume(self, node_id: int) -> None:
        self.signal(node_id, signal.SIGCONT)
        self.paused.discard(node_id)

    async def kill9(self, node_id: int, timeout: float = 10.0) -> None:
        """SIGKILL ``node_id`` and wait (without blocking the loop) until it is gone."""
        self.paused.discard(node_id)
        self.signal(node_id, signal.SIGKILL)
        proc = self.nodes[node_id].proc
        end = time.monotonic() + timeout
        while proc is not None and proc.poll() is None:
            if time.monotonic() > end:
                raise RuntimeError(f"node {node_id} (pid {proc.pid}) survived SIGKILL {timeout}s")
            await asyncio.sleep(0.01)

    async def terminate(self, node_id: int, timeout: float = 10.0) -> None:
        """SIGTERM ``node_id`` (a graceful stop) and wait until it is gone;
        SIGKILL if it is still there after ``timeout``."""
        self.signal(node_id, signal.SIGTERM)
        proc = self.nodes[node_id].proc
        end = time.monotonic() + timeout
        while proc is not None and proc.poll() is None:
            if time.monotonic() > end:
                await self.kill9(node_id)
                raise RuntimeError(f"node {node_id} (pid {proc.pid}) ignored SIGTERM {timeout}s")
            await asyncio.sleep(0.01)

    def wipe(self, node_id: int) -> None:
        """Delete a stopped node's data directory: it lost its disk."""
        if self.nodes[node_id].running:
            raise RuntimeError(f"node {node_id} is running: stop it before wiping its disk")
        shutil.rmtree(self.nodes[node_id].data_dir, ignore_errors=True)

    def heal_processes(self, skip: Collection[int] = ()) -> list[int]:
        """Resume paused nodes and start dead ones (but those in ``skip``); the ids started."""
        for i in list(self.paused):
            self.resume(i)
        dead = [i for i, n in self.nodes.items() if not n.running and i not in skip]
        for i in dead:
            self.start(i)
        return dead

    def shutdown(self, timeout: float = 5.0) -> dict[int, int | None]:
        """Stop every node this run started, whatever state it is in: SIGCONT,
        SIGTERM, then SIGKILL after ``timeout``. Safe to call more than once."""
        for i in list(self.paused):
            with contextlib.suppress(OSError):
                self.resume(i)
        return self.stop_all(timeout)

    async def close_proxies(self) -> None:
        for proxy in self.proxies.values():
            await proxy.aclose()

    def pids(self) -> dict[int, int]:
        return {i: n.proc.pid for i, n in self.nodes.items() if n.proc is not None and n.running}

    @property
    def http_list(self) -> Sequence[str]:
        return [n.address.http for _, n in sorted(self.nodes.items())]

    def describe(self) -> str:
        return ", ".join(
            f"{i}={self.runtimes[i]} raft {n.address.raft} (node at {self.raft_listen[i]}) "
            f"http {n.address.http}"
            for i, n in sorted(self.nodes.items())
        )
