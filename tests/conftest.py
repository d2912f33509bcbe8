"""Reports which engine build the suite runs: pure sources or mypyc-compiled."""

from __future__ import annotations

import raftcore.engine._core


def engine_build() -> str:
    return "pure" if raftcore.engine._core.__file__.endswith(".py") else "mypyc"


def pytest_report_header() -> str:
    return f"raftcore engine build: {engine_build()} ({raftcore.engine._core.__file__})"
