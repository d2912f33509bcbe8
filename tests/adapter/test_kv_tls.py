"""Security on the KV service: real processes, mutual TLS between nodes,
bearer tokens on the HTTP API.

A three-node cluster with ``--tls-cert/--tls-key/--tls-ca`` and
``--api-token-file`` serves writes to clients with a read-write token; no
token is a 401, a read-only token writing a 403.
A forged append sent to a node's Raft port is refused and changes nothing,
whether it comes in plaintext, over TLS without a certificate, or over TLS
with another node's valid certificate claiming to be the leader. Without TLS,
a Raft address beyond loopback is refused at start (one line, exit 2).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from certs import make_certs

from raftcore.adapters.kv.client import wait_for_leader
from raftcore.adapters.kv.http import HttpError, split_hostport
from raftcore.adapters.kv.testing import LocalCluster, wait_status
from raftcore.adapters.transport.frames import encode_frame
from raftcore.codec import Hello, encode_hello, encode_message
from raftcore.entries import normal
from raftcore.ids import LogId, Vote
from raftcore.messages import AppendRequest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def forge(address: str, claim: int, tls: ssl.SSLContext | None) -> bytes:
    """Claim to be node ``claim`` and send an append writing a bogus entry at
    index 3 of term 99; what the node sent back before it closed."""
    hello = encode_frame(encode_hello(Hello("raftcore-kv", claim)))
    bogus = AppendRequest(
        Vote(99, claim, True), LogId(1, 1, 2), (normal(LogId(99, claim, 3), b"forged"),), 3, 1, 0.0
    )
    host, port = split_hostport(address)
    received = b""
    with socket.create_connection((host, port), timeout=5.0) as raw:
        sock = tls.wrap_socket(raw, server_hostname=host) if tls is not None else raw
        try:
            sock.sendall(hello)
            # The append goes once the node's Hello came back (it never does
            # for a refused peer): a real peer's order.
            while data := sock.recv(65536):
                if not received:
                    sock.sendall(encode_frame(encode_message(bogus)))
                received += data
        except (OSError, ssl.SSLError):
            pass
    return received


RW, RO = "rw-0123456789abcdef", "ro-0123456789abcdef"


async def scenario(cluster: LocalCluster, certs: dict[str, Path]) -> None:
    cluster.start_all()
    https = ssl.create_default_context(cafile=certs["ca"])
    async with cluster.client(deadline=20.0, request_timeout=5.0, token=RW, tls=https) as client:
        await wait_for_leader(client, timeout=15.0)
        for i in range(20):
            await client.put(f"k{i}", f"v{i}")
        addr = cluster.http_addrs[1]
        async with cluster.client(request_timeout=5.0, tls=https) as anonymous:
            r = await anonymous.pool.request(addr, "GET", "/kv/k1", timeout=5.0)
            assert (r.status, r.json_body()["error"]) == (401, "unauthorized")
        async with cluster.client(request_timeout=5.0, token=RO, tls=https) as reader:
            assert await reader.get("k1") == "v1"
            r = await reader.pool.request(addr, "PUT", "/kv/k1", b"x", timeout=5.0)
            assert (r.status, r.json_body()["error"]) == (403, "forbidden")
        # The API is HTTPS only: a plain HTTP client gets no answer.
        async with cluster.client(request_timeout=2.0, token=RW) as plain:
            with pytest.raises((OSError, HttpError, TimeoutError)):
                await plain.pool.request(addr, "GET", "/kv/k1", timeout=2.0)
        target = cluster.nodes[2].address.raft
        ca_only = ssl.create_default_context(cafile=certs["ca"])
        node3 = ssl.create_default_context(cafile=certs["ca"])
        node3.load_cert_chain(certs["cert3"], certs["key3"])
        for claim, tls in ((1, None), (1, ca_only), (1, node3)):
            answer = await asyncio.to_thread(forge, target, claim, tls)
            assert answer == b""  # refused before the node's Hello
        # Refused and logged; nothing changed: every node holds the 20 keys.
        await client.put("after", "ok")
        for n, addr in cluster.http_addrs.items():
            await wait_status(
                client, addr, lambda s: s["keys"] == 21, timeout=10.0, check=f"node {n}"
            )
        for i in range(20):
            assert await client.get(f"k{i}") == f"v{i}"
    log = Path(cluster.nodes[2].log_path).read_text()
    assert "certificate-mismatch" in log, log[-3000:]
    # The plaintext attempt is named for what it is.
    assert "handshake-failed: the peer does not speak TLS" in log, log[-3000:]
    assert "forged" not in log


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_a_tls_cluster_with_https_and_tokens_serves_writes_and_refuses_forged_peers(
    runtime: str, tmp_path: Path
) -> None:
    certs = make_certs(tmp_path, (1, 2, 3))
    tls = [
        "--tls-cert",
        str(tmp_path / "node{id}.crt"),
        "--tls-key",
        str(tmp_path / "node{id}.key"),
    ]
    tls += ["--tls-ca", str(certs["ca"])]
    (tmp_path / "tokens").write_text(f"{RW}\n{RO} ro\n")
    tls += ["--api-token-file", str(tmp_path / "tokens")]
    tls += ["--api-tls-cert", str(tmp_path / "node{id}.crt")]
    tls += ["--api-tls-key", str(tmp_path / "node{id}.key")]
    with LocalCluster(3, runtime=runtime, extra_args=tls) as cluster:

        async def run(c: LocalCluster) -> None:
            await scenario(c, certs)

        cluster.run(run, 120)


def test_plaintext_beyond_loopback_is_refused_at_start(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "raftcore.adapters.kv", "serve", "--id", "1", "--cluster",
         "1=10.1.2.3:7001,2=127.0.0.1:7002", "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert done.stderr.strip() == (
        "serve: 10.1.2.3:7001: Raft traffic beyond loopback must be authenticated: give "
        "--tls-cert, --tls-key and --tls-ca (or --insecure to allow plaintext)"
    )
    assert not (tmp_path / "d").exists()  # nothing was opened
