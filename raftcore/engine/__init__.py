"""The pure Raft engine."""

from raftcore.engine._core import Engine
from raftcore.engine._state import Rng

__all__ = ["Engine", "Rng"]
