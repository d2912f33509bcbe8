"""Deterministic whole-cluster simulation of raftcore engines.

Run a seeded cluster on virtual time, inject faults, check Raft's safety
properties after every step, check the client history for linearizability
and check that the cluster recovers after the faults heal::

    from raftcore.sim import Simulation, SimOptions

    result = Simulation(SimOptions(seed=7, nodes=5)).run()
    assert result.ok, result.violations
    print(result.summary(), result.trace_digest)

Plug in your own state machine (see ``raftcore.sim.kv``)::

    Simulation(SimOptions(seed=7), state_machine=MyStateMachine, codec=MyCodec()).run()

From the shell: ``python -m raftcore.sim --seeds 0:100`` (``--help`` for more).
"""

from __future__ import annotations

from raftcore.sim.cluster import SimResult, Simulation, TraceSink
from raftcore.sim.invariants import InvariantChecker, InvariantViolation
from raftcore.sim.kv import (
    KvCodec,
    KvStateMachine,
    StateMachine,
    StateMachineFactory,
    TupleKvCodec,
)
from raftcore.sim.options import FAULT_KINDS, ResolvedOptions, SimOptions
from raftcore.sim.rng import Rng

__all__ = [
    "FAULT_KINDS",
    "InvariantChecker",
    "InvariantViolation",
    "KvCodec",
    "KvStateMachine",
    "ResolvedOptions",
    "Rng",
    "SimOptions",
    "SimResult",
    "Simulation",
    "StateMachine",
    "StateMachineFactory",
    "TraceSink",
    "TupleKvCodec",
]
