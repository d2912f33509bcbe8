from __future__ import annotations

import pytest

from raftcore.sim.rng import Rng


def test_same_seed_same_stream() -> None:
    a, b = Rng(42), Rng(42)
    assert [a.next_u64() for _ in range(100)] == [b.next_u64() for _ in range(100)]


def test_different_seeds_differ() -> None:
    assert [Rng(1).next_u64() for _ in range(3)] != [Rng(2).next_u64() for _ in range(3)]


def test_known_values_are_stable() -> None:
    # Pinned: a change to the generator changes every seed's trace.
    r = Rng(0)
    assert [r.randint(0, 999) for _ in range(5)] == [686, 110, 762, 256, 674]
    assert Rng(0).next_u64() == 0x7F57A3C4101B245E


def test_fork_is_independent_of_parent_position() -> None:
    a, b = Rng(7), Rng(7)
    for _ in range(10):
        a.random()
    assert a.fork("net").random() == b.fork("net").random()
    assert a.fork("net").random() != a.fork("disk").random()
    assert a.fork("x").fork("y").key == "seed:7/x/y"


def test_ranges() -> None:
    r = Rng(3)
    for _ in range(2000):
        x = r.random()
        assert 0.0 <= x < 1.0
        u = r.uniform(2.0, 5.0)
        assert 2.0 <= u < 5.0
        assert 1 <= r.randint(1, 6) <= 6
    assert r.uniform(1.0, 1.0) == 1.0
    assert r.randint(4, 4) == 4
    with pytest.raises(ValueError):
        r.randint(5, 4)


def test_randint_covers_range_evenly() -> None:
    r = Rng(11)
    counts = [0] * 6
    for _ in range(6000):
        counts[r.randint(0, 5)] += 1
    assert all(800 < c < 1200 for c in counts)


def test_choice_shuffle_sample() -> None:
    r = Rng(5)
    items = list(range(20))
    r.shuffle(items)
    assert sorted(items) == list(range(20))
    assert items != list(range(20))
    s = r.sample(range(10), 4)
    assert len(set(s)) == 4 and all(0 <= x < 10 for x in s)
    assert r.choice("abc") in "abc"
    with pytest.raises(IndexError):
        r.choice([])
    with pytest.raises(ValueError):
        r.sample([1, 2], 3)


def test_chance_and_expovariate() -> None:
    r = Rng(9)
    assert not any(r.chance(0.0) for _ in range(100))
    assert all(r.chance(1.0) for _ in range(100))
    mean = sum(r.expovariate(2.0) for _ in range(5000)) / 5000
    assert 1.8 < mean < 2.2
