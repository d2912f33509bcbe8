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
from raftcore.snapshots import SnapshotMeta


@value
class VoteRequest(NamedTuple):
    vote: Vote
    last_log_id: LogId
    #: A pre-vote asks "would you vote for me?" without changing anyone's vote.
    pre_vote: bool = False
    #: A leadership transfer: the vote of the leader whose ``TimeoutNow``
    #: started this campaign. A voter still following exactly that leader
    #: grants despite the lease (only that leader can waive it).
    transfer_from: Vote | None = None


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


@value
class InstallSnapshotRequest(NamedTuple):
    """One chunk of the leader's snapshot ``meta``: ``data`` at ``offset``.

    The engine emits it with empty ``data`` inside a ``SendSnapshotChunk``
    command; the adapter reads the chunk from its snapshot store and fills
    it in. The chunk that reaches ``meta.size`` is the last one.
    """

    vote: Vote
    meta: SnapshotMeta
    offset: int
    data: bytes
    seq: int
    sent_at: float


@value
class InstallSnapshotResponse(NamedTuple):
    #: The responder's vote: equal to the request's when the leader was accepted.
    vote: Vote
    snapshot_id: str
    #: The offset the follower wants next (a lost or repeated chunk resends from here).
    next_offset: int
    #: The follower's state machine now covers ``matching`` (it installed the
    #: snapshot, or had already applied past it); the transfer is over.
    done: bool
    matching: LogId
    seq: int
    sent_at: float


@value
class ReadIndexRequest(NamedTuple):
    """A follower asks the leader for a read point for the reads waiting on it
    (one request for all of them)."""

    vote: Vote
    seq: int


@value
class ReadIndexResponse(NamedTuple):
    vote: Vote
    #: The request's ``seq``.
    seq: int
    #: The confirmed read point; ``None`` when the responder could not give
    #: one (it does not lead, or could not confirm that it still does).
    read_point: LogId | None


@value
class TimeoutNow(NamedTuple):
    """The leader hands over: campaign now (no pre-vote), if your log
    reaches ``last_log_id`` and you still follow ``vote``."""

    vote: Vote
    last_log_id: LogId


Message = (
    VoteRequest
    | VoteResponse
    | AppendRequest
    | AppendResponse
    | InstallSnapshotRequest
    | InstallSnapshotResponse
    | ReadIndexRequest
    | ReadIndexResponse
    | TimeoutNow
)
