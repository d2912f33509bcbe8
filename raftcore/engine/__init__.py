"""The pure Raft engine."""

from raftcore.engine.core import Engine
from raftcore.engine.state import Rng

__all__ = ["Engine", "Rng"]
