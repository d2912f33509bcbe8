from __future__ import annotations

import itertools

from raftcore.sim.network import (
    NetParams,
    SimNetwork,
    bridge_links,
    one_way_links,
    partial_links,
    split_links,
)
from raftcore.sim.rng import Rng

NODES = (1, 2, 3, 4, 5)


def net(**kw: float) -> SimNetwork:
    return SimNetwork(NODES, Rng(1), NetParams(**kw))


def test_delays_within_range_and_reordering() -> None:
    n = net(delay_min=0.001, delay_max=0.010)
    delays = [n.plan(1, 2)[0] for _ in range(500)]
    assert all(0.001 <= d < 0.010 for d in delays)
    # Messages sent 1ms apart overtake each other sometimes.
    arrivals = [i * 0.001 + d for i, d in enumerate(delays)]
    assert any(b < a for a, b in itertools.pairwise(arrivals))


def test_loss_and_duplication() -> None:
    n = net(loss=1.0)
    assert all(n.plan(1, 2) == [] for _ in range(50))
    assert n.lost == 50
    n = net(dup=1.0)
    assert all(len(n.plan(1, 2)) == 2 for _ in range(50))
    n = net(loss=0.3, dup=0.2)
    copies = [len(n.plan(2, 3)) for _ in range(4000)]
    assert 0.25 < copies.count(0) / 4000 < 0.35
    assert 0.1 < copies.count(2) / 4000 < 0.2


def test_symmetric_partition_and_heal() -> None:
    n = net()
    pid = n.partition(split_links([{1, 2}, {3, 4, 5}]))
    assert not n.connected(1, 3) and not n.connected(3, 1)
    assert n.connected(1, 2) and n.connected(4, 5)
    assert n.plan(1, 3) == [] and n.cut_drops == 1
    n.heal_partition(pid)
    assert n.connected(1, 3) and n.plan(1, 3)


def test_one_way_partition() -> None:
    n = net()
    n.partition(one_way_links({1}, {2, 3}))
    assert not n.connected(1, 2) and not n.connected(1, 3)
    assert n.connected(2, 1) and n.connected(3, 1) and n.connected(1, 4)


def test_partial_partition() -> None:
    links = partial_links(NODES, 1, {2})
    n = net()
    n.partition(links)
    assert n.connected(1, 2) and n.connected(2, 1)
    for other in (3, 4, 5):
        assert not n.connected(1, other) and not n.connected(other, 1)
    assert n.connected(2, 3) and n.connected(3, 4)


def test_bridge_partition() -> None:
    n = net()
    n.partition(bridge_links([1, 2], 3, [4, 5]))
    assert not n.connected(1, 4) and not n.connected(5, 2)
    for x in (1, 2, 4, 5):
        assert n.connected(3, x) and n.connected(x, 3)
    assert n.connected(1, 2) and n.connected(4, 5)


def test_overlapping_partitions_heal_independently() -> None:
    n = net()
    a = n.partition(split_links([{1}, {2, 3, 4, 5}]))
    b = n.partition(one_way_links({1}, {2}))
    n.heal_partition(a)
    assert not n.connected(1, 2)  # still cut by b
    assert n.connected(2, 1) and n.connected(1, 3)
    n.heal_partition(b)
    assert n.connected(1, 2)
    n.partition(split_links([{1}, {2}]))
    n.heal()
    assert n.cut_links() == frozenset() and n.active_partitions == 0


def test_bursts_end_only_with_their_token() -> None:
    n = net()
    t1 = n.set_burst(NetParams(loss=1.0))
    t2 = n.set_burst(NetParams(dup=1.0))
    n.end_burst(t1)
    assert n.params.dup == 1.0
    n.end_burst(t2)
    assert n.params == n.base


def test_same_seed_same_decisions() -> None:
    a = SimNetwork(NODES, Rng(5), NetParams(loss=0.2, dup=0.2))
    b = SimNetwork(NODES, Rng(5), NetParams(loss=0.2, dup=0.2))
    assert [a.plan(1, 2) for _ in range(200)] == [b.plan(1, 2) for _ in range(200)]
