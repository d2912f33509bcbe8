from __future__ import annotations

from raftcore.commands import AppendLog, SaveVote, TruncateLog
from raftcore.entries import Entry, blank, normal
from raftcore.ids import INITIAL_VOTE, LogId, Vote
from raftcore.sim.rng import Rng
from raftcore.sim.storage import FlushTiming, SimStorage


def e(term: int, index: int, data: object = None) -> Entry:
    return normal(LogId(term, 1, index), data) if data is not None else blank(LogId(term, 1, index))


def store(partial: float = 0.0) -> SimStorage:
    return SimStorage(1, Rng(1), FlushTiming(partial_prob=partial))


def test_commands_apply_in_order_to_the_volatile_view() -> None:
    s = store()
    assert s.execute(SaveVote(1, Vote(1, 1, True))) is None
    assert s.execute(AppendLog(2, (e(1, 1), e(1, 2, "a"), e(1, 3, "b")))) is None
    assert s.execute(TruncateLog(3, 2)) is None
    assert s.execute(AppendLog(4, (e(2, 2, "c"),))) is None
    assert [x.log_id for x in s.log] == [LogId(1, 1, 1), LogId(2, 1, 2)]
    assert s.vote == Vote(1, 1, True)
    assert s.durable_log == [] and s.durable_vote == INITIAL_VOTE
    assert s.log_id_at(0) == LogId(0, 0, 0) and s.log_id_at(3) is None


def test_flush_makes_everything_durable() -> None:
    s = store()
    s.execute(SaveVote(1, Vote(1, 1)))
    s.execute(AppendLog(2, (e(1, 1),)))
    done = s.flush()
    assert [c.io_id for c in done] == [1, 2]
    assert s.durable_vote == Vote(1, 1) and s.durable_log_id_at(1) == LogId(1, 1, 1)
    assert s.flush() == []


def test_partial_flush_covers_a_prefix() -> None:
    s = store(partial=1.0)
    for i in range(1, 6):
        s.execute(AppendLog(i, (e(1, i),)))
    done = s.flush()
    assert 1 <= len(done) < 5
    assert [c.io_id for c in done] == list(range(1, len(done) + 1))
    assert len(s.durable_log) == len(done)


def test_crash_loses_unflushed_writes() -> None:
    s = store()
    s.execute(AppendLog(1, (e(1, 1), e(1, 2))))
    s.flush()
    s.execute(SaveVote(2, Vote(2, 2)))
    s.execute(TruncateLog(3, 2))
    s.execute(AppendLog(4, (e(2, 2),)))
    s.crash(torn_prob=0.0)
    assert [x.log_id for x in s.log] == [LogId(1, 1, 1), LogId(1, 1, 2)]
    assert s.vote == INITIAL_VOTE
    rec = s.recovered_state()
    assert rec.vote == INITIAL_VOTE and [x.log_id for x in rec.entries] == [
        LogId(1, 1, 1),
        LogId(1, 1, 2),
    ]
    assert s.pending == [] and s.lost_on_crash == 3 and s.epoch == 1
    # io ids start again for the next incarnation
    assert s.execute(SaveVote(1, Vote(3, 1))) is None


def test_torn_crash_keeps_a_prefix_of_pending_writes() -> None:
    seen = set()
    for seed in range(40):
        s = SimStorage(1, Rng(seed))
        for i in range(1, 5):
            s.execute(AppendLog(i, (e(1, i),)))
        kept = s.crash(torn_prob=1.0)
        assert [c.io_id for c in kept] == list(range(1, len(kept) + 1))
        assert len(s.durable_log) == len(kept) == len(s.log)
        seen.add(len(kept))
    assert len(seen) > 2


def test_contract_breaches_are_reported() -> None:
    s = store()
    assert s.execute(AppendLog(1, (e(1, 1),))) is None
    problem = s.execute(AppendLog(2, (e(1, 3),)))
    assert problem is not None and "index 3" in problem
    s = store()
    s.execute(SaveVote(5, Vote(1, 1)))
    problem = s.execute(SaveVote(5, Vote(1, 1)))
    assert problem is not None and "io_id" in problem
    s = store()
    problem = s.execute(AppendLog(1, (e(1, 1), e(1, 3))))
    assert problem is not None and "contiguous" in problem


def test_flush_delays_are_small_and_positive() -> None:
    s = store()
    delays = [s.next_flush_delay() for _ in range(500)]
    assert all(0 < d < 0.1 for d in delays)
