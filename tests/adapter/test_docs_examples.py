"""The getting-started examples run and print what they claim."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

from runtime_kit import free_port

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def _run(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), {"__name__": "__main__"})
    return out.getvalue().strip()


def test_asyncio_example_prints_the_total() -> None:
    code = _blocks()[0]
    for port in ("7101", "7102", "7103"):  # free ports, so parallel runs never collide
        code = code.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}")
    assert _run(code) == "6"


def test_trio_example_prints_the_total() -> None:
    assert _run(_blocks()[1]) == "6"
