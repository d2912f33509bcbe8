"""The pure Raft engine."""

from raftcore.engine.base import Rng
from raftcore.engine.core import Engine

__all__ = ["Engine", "Rng"]
