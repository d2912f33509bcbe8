"""What users get: one top-level package, and an engine that does no IO.

- The engine, the simulator and the rest of ``raftcore`` (but not
  ``raftcore.adapters``, where the IO lives) import no asyncio, trio, socket,
  threading, time, os, sqlite3 or the global random module: time and
  randomness come in as arguments, so the same inputs and seed give the
  same outputs.
- The wheel installs ``raftcore`` and nothing else at the top level (the
  repository's ``adapters/`` folder is ``raftcore.adapters``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIP_INSTALL = (sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q")
FORBIDDEN = {"asyncio", "trio", "socket", "threading", "time", "os", "sqlite3", "random"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_engine_and_simulator_import_nothing_that_does_io() -> None:
    pkg = ROOT / "raftcore"
    files = [p for p in pkg.rglob("*.py") if "adapters" not in p.relative_to(pkg).parts]
    assert any(p.parts[-2] == "engine" for p in files) and any(p.parts[-2] == "sim" for p in files)
    bad = {str(p.relative_to(ROOT)): sorted(_imports(p) & FORBIDDEN) for p in files}
    assert not {k: v for k, v in bad.items() if v}


def test_no_module_imports_the_adapters_under_their_folder_name() -> None:
    """``adapters.x`` and ``raftcore.adapters.x`` would be two copies of one module."""
    offenders = [
        str(p.relative_to(ROOT))
        for top in ("raftcore", "adapters", "tests", "fuzz", "bench")
        for p in (ROOT / top).rglob("*.py")
        if "adapters" in _imports(p)
    ]
    assert not offenders


@pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree")
def test_the_wheel_installs_one_top_level_package(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("raftcore-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"raftcore"}
    assert "raftcore/adapters/kv/server.py" in names and "raftcore/adapters/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    )
    assert b"raftcore-kv = raftcore.adapters.kv.__main__:main" in entry_points
    # The console command, installed from the wheel, runs.
    target = tmp_path / "site"
    subprocess.run(
        [*PIP_INSTALL, "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    done = subprocess.run(
        [str(target / "bin" / "raftcore-kv"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: raftcore-kv ") and "transfer-leader" in done.stdout
    assert "RAFTCORE_CLUSTER" in done.stdout


@pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree")
def test_the_sdist_carries_the_license_docs_and_every_test(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from setuptools import build_meta; build_meta.build_sdist({str(tmp_path)!r})",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (sdist,) = tmp_path.glob("raftcore-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    tests = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")}
    docs = {str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")}
    assert {"LICENSE", "Makefile", "README.md", "pyproject.toml"} <= names
    assert tests <= names and docs <= names, sorted((tests | docs) - names)
    assert "fuzz/test_membership_fuzz.py" in names and "bench/cluster_bench.py" in names
    assert not any("__pycache__" in n for n in names)
    assert "Apache License" in (ROOT / "LICENSE").read_text()
