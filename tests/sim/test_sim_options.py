from __future__ import annotations

import pytest

from raftcore.ids import LeaderIdMode
from raftcore.sim.cli import _options, build_parser
from raftcore.sim.options import FAULT_KINDS, SimOptions, parse_faults


def test_parse_faults() -> None:
    assert parse_faults("all") == frozenset(FAULT_KINDS)
    assert parse_faults("none") == frozenset()
    assert parse_faults("net, crash") == {"net", "crash"}
    with pytest.raises(ValueError):
        parse_faults("net,meteor")


def test_seed_chooses_open_options_deterministically() -> None:
    a = SimOptions(seed=3).resolve()
    assert a == SimOptions(seed=3).resolve()
    modes = {SimOptions(seed=s).resolve().leader_id_mode for s in range(20)}
    sizes = {SimOptions(seed=s).resolve().nodes for s in range(20)}
    pre = {SimOptions(seed=s).resolve().pre_vote for s in range(20)}
    assert modes == set(LeaderIdMode) and sizes == {3, 5} and pre == {True, False}


def test_fixing_one_option_keeps_the_others() -> None:
    a = SimOptions(seed=11).resolve()
    b = SimOptions(seed=11, nodes=7, leader_id_mode=LeaderIdMode.STANDARD).resolve()
    assert (a.pre_vote, a.fault_interval, a.loss) == (b.pre_vote, b.fault_interval, b.loss)
    assert b.nodes == 7 and b.leader_id_mode is LeaderIdMode.STANDARD


@pytest.mark.parametrize(
    "opts",
    [
        SimOptions(seed=5),
        SimOptions(seed=6, nodes=3, steps=100, faults="net,drift", pre_vote=False),
        SimOptions(
            seed=7, loss=0.1, clients=5, keys=1, clock_drift=0.001, max_entries_per_append=7
        ),
        SimOptions(
            seed=8,
            check_linearizability=False,
            election_timeout_min=0.5,
            election_timeout_max=1.0,
            heartbeat_interval=0.1,
            liveness_timeouts=20,
        ),
    ],
)
def test_replay_command_reproduces_the_options(opts: SimOptions) -> None:
    resolved = opts.resolve()
    args = build_parser().parse_args(resolved.cli_args())
    assert _options(args, args.seed).resolve() == resolved
    assert resolved.replay_command().startswith("python -m raftcore.sim --seed")
