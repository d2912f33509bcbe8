"""Logging with the node id on every record."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from raftcore.ids import NodeId


class NodeLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes messages with ``[node N]`` and sets ``record.node_id``."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("node_id", self.extra["node_id"] if self.extra else None)
        kwargs["extra"] = extra
        return f"[node {extra['node_id']}] {msg}", kwargs


def node_logger(name: str, node_id: NodeId) -> NodeLogger:
    return NodeLogger(logging.getLogger(name), {"node_id": node_id})
