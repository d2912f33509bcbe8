"""Identifiers and messages compare as values of their own type, never as tuples."""

from __future__ import annotations

from raftcore.ids import LogId, Vote
from raftcore.messages import VoteRequest


def test_log_ids_and_votes_are_values_of_their_type() -> None:
    log_id: object = LogId(1, 2, 1)
    vote: object = Vote(1, 2, True)
    assert log_id != vote and vote != log_id
    assert log_id != (1, 2, 1) and Vote(1, 2) != (1, 2, False)
    assert LogId(1, 2, 1) == LogId(1, 2, 1) and Vote(3, 1, True) == Vote(3, 1, True)
    assert len({LogId(1, 2, 1), Vote(1, 2, True)}) == 2
    # Ordering stays Raft's: (term, node id, index).
    assert LogId(1, 2, 5) < LogId(2, 1, 1) < LogId(2, 1, 2)


def test_messages_holding_equal_fields_differ_by_type() -> None:
    req = VoteRequest(Vote(1, 2), LogId(1, 1, 1))
    assert req == VoteRequest(Vote(1, 2), LogId(1, 1, 1))
    assert req != tuple(req)
