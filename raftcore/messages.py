"""The RPCs exchanged between nodes.

Every message carries the sender's vote; a receiver uses it to detect stale
leaders and candidates. ``sent_at`` is the leader's own clock reading, echoed
back untouched so the leader can tell how recent an acknowledgement is
without keeping per-request state.
"""

from __future__ import annotations

from typing import NamedTuple

from raftcore._values import value
from raftcore.entries import Entry
from raftcore.ids import LogId, Vote


@value
class VoteRequest(NamedTuple):
    vote: Vote
    last_log_id: LogId
    #: A pre-vote asks "would you vote for me?" without changing anyone's vote.
    pre_vote: bool = False


@value
class VoteResponse(NamedTuple):
    #: The responder's vote after handling the request.
    vote: Vote
    granted: bool
    #: The vote that was asked for (identifies the round).
    for_vote: Vote
    last_log_id: LogId
    pre_vote: bool = False


@value
class AppendRequest(NamedTuple):
    vote: Vote
    prev_log_id: LogId
    entries: tuple[Entry, ...]
    #: The leader's commit index.
    leader_commit: int
    seq: int
    sent_at: float


@value
class AppendResponse(NamedTuple):
    #: The responder's vote: equal to the request's when the leader was accepted.
    vote: Vote
    success: bool
    #: On success: the last log id of the request, now durable on the responder.
    matching: LogId
    #: On a log conflict: the index the leader should try next.
    conflict_hint: int
    last_log_id: LogId
    seq: int
    sent_at: float


Message = VoteRequest | VoteResponse | AppendRequest | AppendResponse
