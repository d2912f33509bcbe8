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

Drive a cluster by hand, one action at a time (``raftcore.sim.manual``)::

    c = SimControl(nodes=3, spares=2)
    c.start()
    c.advance(1.0)
    c.assert_ok()

From the shell: ``python -m raftcore.sim --seeds 0:100`` (``--help`` for more).
"""

from __future__ import annotations

from raftcore.sim.churn import ChurnClient, ChurnRecord
from raftcore.sim.cluster import ManualTiming, SimResult, Simulation, TraceSink
from raftcore.sim.invariants import InvariantChecker, InvariantViolation
from raftcore.sim.kv import (
    KvCodec,
    KvStateMachine,
    StateMachine,
    StateMachineFactory,
    TupleKvCodec,
)
from raftcore.sim.manual import SimControl, SimulationFailure
from raftcore.sim.options import FAULT_KINDS, ResolvedOptions, SimOptions
from raftcore.sim.rng import Rng

__all__ = [
    "FAULT_KINDS",
    "ChurnClient",
    "ChurnRecord",
    "InvariantChecker",
    "InvariantViolation",
    "KvCodec",
    "KvStateMachine",
    "ManualTiming",
    "ResolvedOptions",
    "Rng",
    "SimControl",
    "SimOptions",
    "SimResult",
    "Simulation",
    "SimulationFailure",
    "StateMachine",
    "StateMachineFactory",
    "TraceSink",
    "TupleKvCodec",
]
