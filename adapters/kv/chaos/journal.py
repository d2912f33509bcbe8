"""An append-only JSON-lines file, one object per event, stamped with the run's clock."""

from __future__ import annotations

import json
import time
from typing import IO, Any


class Journal:
    """Writes ``{"t": seconds since start, "event": name, ...}`` lines to ``path``
    (flushed at once, so a run that dies leaves everything before it on disk).

    Without a ``path`` it only counts. ``t0`` is a ``time.monotonic()`` reading.
    """

    def __init__(self, path: str | None, t0: float) -> None:
        self.path = path
        self.t0 = t0
        self.count = 0
        self._file: IO[str] | None = open(path, "a") if path else None  # noqa: SIM115

    def event(self, name: str, /, **fields: Any) -> None:
        self.write({"t": round(time.monotonic() - self.t0, 4), "event": name, **fields})

    def write(self, obj: dict[str, Any]) -> None:
        self.count += 1
        if self._file is not None:
            self._file.write(json.dumps(obj, separators=(",", ":"), default=str) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
