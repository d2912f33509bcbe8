"""Throwaway TLS certificates for the tests, made with the ``openssl`` CLI.

``make_certs(directory, nodes)`` writes a CA (``ca.crt``) and, per node N,
``nodeN.crt``/``nodeN.key``: a certificate for server and client use that
names ``DNS:node-N`` (the node identity the transport checks) next to
``IP:127.0.0.1`` and ``DNS:localhost``. Tests that need it skip when the
``openssl`` CLI is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_certs(d: Path, nodes: Iterable[int]) -> dict[str, Path]:
    """The CA and each node's certificate and key, as ``ca``, ``certN``, ``keyN``."""
    if shutil.which("openssl") is None:
        pytest.skip("TLS tests need the openssl CLI")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=raftcore test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    out = {"ca": d / "ca.crt"}
    for n in nodes:
        (d / f"node{n}.ext").write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            f"subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:node-{n}\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        _openssl(
            "req", *ec, "-keyout", f"node{n}.key", "-out", f"node{n}.csr",
            "-subj", f"/CN=node-{n}", cwd=d,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"node{n}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"node{n}.crt", "-days", "1", "-extfile", f"node{n}.ext",
            cwd=d,
        )  # fmt: skip
        out[f"cert{n}"], out[f"key{n}"] = d / f"node{n}.crt", d / f"node{n}.key"
    return out
