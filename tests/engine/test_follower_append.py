"""The follower side of AppendEntries: Raft paper section 5.3.

Consistency check, conflict truncation, commit from the leader's commit index,
and acknowledgement only after the appended entries are durable.
"""

from __future__ import annotations

import pytest
from helpers import (
    ELECTION_MIN,
    MEMBERSHIP_ID,
    FixedRng,
    config,
    engine,
    ent,
    flush,
    membership,
    mentry,
    recv,
)

from raftcore import (
    ZERO_LOG_ID,
    AppendLog,
    AppendRequest,
    AppendResponse,
    Apply,
    Command,
    Engine,
    Entry,
    LogId,
    RecoveredState,
    Role,
    SaveVote,
    Send,
    TruncateLog,
    Vote,
)
from raftcore.entries import membership_entry

L = Vote(2, 3, True)  # the leader: node 3, term 2
OLD = [ent(1, 1, 2, "a"), ent(1, 1, 3, "b")]  # the follower's log after the membership entry


def follower(entries: list[Entry] | None = None, **kw: object) -> Engine:
    return engine(2, entries=OLD if entries is None else entries, vote=L, **kw)  # type: ignore[arg-type]


def areq(prev: LogId, entries: list[Entry], commit: int = 0, seq: int = 7) -> AppendRequest:
    return AppendRequest(L, prev, tuple(entries), commit, seq, 0.5)


def reply(success: bool, matching: LogId, hint: int, last: LogId, seq: int = 7) -> Send:
    return Send(3, AppendResponse(L, success, matching, hint, last, seq, 0.5))


N4 = ent(2, 3, 4, "n4")
N3 = ent(2, 3, 3, "n3")
N2 = ent(2, 3, 2, "n2")


@pytest.mark.parametrize(
    ("prev", "entries", "storage", "last"),
    [
        # Appends after the last entry.
        (LogId(1, 1, 3), [N4], [AppendLog(1, (N4,))], N4.log_id),
        # Entries already present are skipped, only the new ones appended.
        (MEMBERSHIP_ID, [*OLD, N4], [AppendLog(1, (N4,))], N4.log_id),
        # A conflict truncates from the first differing entry, then appends.
        (LogId(1, 1, 2), [N3], [TruncateLog(1, 3), AppendLog(2, (N3,))], N3.log_id),
        (MEMBERSHIP_ID, [N2], [TruncateLog(1, 2), AppendLog(2, (N2,))], N2.log_id),
        (MEMBERSHIP_ID, [OLD[0], N3], [TruncateLog(1, 3), AppendLog(2, (N3,))], N3.log_id),
        # Entries already present, and nothing after them: nothing to store,
        # and the later entries are NOT removed (they do not conflict).
        (MEMBERSHIP_ID, [OLD[0]], [], OLD[1].log_id),
        (LogId(1, 1, 3), [], [], OLD[1].log_id),
    ],
)
def test_follower_append_entries(
    prev: LogId, entries: list[Entry], storage: list[Command], last: LogId
) -> None:
    """TestFollowerAppendEntries: append new entries, truncate at a conflict."""
    e = follower()
    out = recv(e, 3, areq(prev, entries), 1.0)
    matching = entries[-1].log_id if entries else prev
    if storage:
        # The acknowledgement waits until the new entries are durable.
        assert out == storage
        assert flush(e, 1.0) == [reply(True, matching, 0, last)]
    else:
        assert out == [reply(True, matching, 0, last)]
    assert e.last_log_id == last


@pytest.mark.parametrize(
    ("prev", "hint"),
    [
        # prev beyond our log: ask for the entry after our last one.
        (LogId(1, 1, 4), 4),
        (LogId(2, 3, 9), 4),
        # prev conflicts: ask from the first entry of the conflicting leader.
        (LogId(2, 3, 3), 2),
        (LogId(2, 3, 2), 2),
    ],
)
def test_follower_check_msg_app(prev: LogId, hint: int) -> None:
    """TestFollowerCheckMsgApp: refuse an append whose prev the log does not hold,
    with a hint where the leader should retry; the log is untouched."""
    e = follower()
    assert recv(e, 3, areq(prev, [ent(2, 3, prev.index + 1)]), 1.0) == [
        reply(False, ZERO_LOG_ID, hint, OLD[-1].log_id)
    ]
    assert e.last_log_id == OLD[-1].log_id
    # The refusal still counts as hearing from the leader.
    assert e.next_deadline == 1.0 + ELECTION_MIN


def test_conflict_hint_does_not_go_below_commit() -> None:
    e = follower(committed=LogId(1, 1, 2), applied=LogId(1, 1, 2))
    assert recv(e, 3, areq(LogId(2, 3, 3), [ent(2, 3, 4)]), 1.0) == [
        reply(False, ZERO_LOG_ID, 3, OLD[-1].log_id)
    ]


def test_follower_commit_entry() -> None:
    """TestFollowerCommitEntry: commit = min(leader commit, last entry the
    request proved we share), and the newly committed entries are applied."""
    e = follower(entries=[])
    n2, n3 = ent(2, 3, 2, "x"), ent(2, 3, 3, "y")
    # Committed at once, but applied only as far as this node's log is durable.
    assert recv(e, 3, areq(MEMBERSHIP_ID, [n2, n3], commit=2), 1.0) == [
        AppendLog(1, (n2, n3)),
        Apply((mentry(),)),
    ]
    assert e.committed == n2.log_id
    assert flush(e, 1.0) == [reply(True, n3.log_id, 0, n3.log_id), Apply((n2,))]
    assert recv(e, 3, areq(n3.log_id, [], commit=3), 1.0) == [
        reply(True, n3.log_id, 0, n3.log_id),
        Apply((n3,)),
    ]
    assert e.committed == n3.log_id


def test_follower_commit_is_capped_by_what_the_request_proved() -> None:
    # The follower's entries 2..3 are from an old leader: a heartbeat whose
    # prev is the membership entry proves only index 1 is shared.
    e = follower()
    assert recv(e, 3, areq(MEMBERSHIP_ID, [], commit=3), 1.0) == [
        reply(True, MEMBERSHIP_ID, 0, OLD[-1].log_id),
        Apply((mentry(),)),
    ]
    assert e.committed == MEMBERSHIP_ID


def test_follower_commit_never_moves_back() -> None:
    e = follower(committed=LogId(1, 1, 3), applied=LogId(1, 1, 3))
    assert recv(e, 3, areq(MEMBERSHIP_ID, [], commit=1), 1.0) == [
        reply(True, MEMBERSHIP_ID, 0, OLD[-1].log_id)
    ]
    assert e.committed == LogId(1, 1, 3)


def test_append_resets_election_timer() -> None:
    e = follower()
    assert e.next_deadline == ELECTION_MIN
    recv(e, 3, areq(LogId(1, 1, 3), []), 1.5)
    assert e.next_deadline == 1.5 + ELECTION_MIN
    assert e.role is Role.FOLLOWER
    assert e.metrics().leader_id == 3


def test_first_append_from_a_new_leader_saves_its_vote_first() -> None:
    e = engine(2, entries=OLD, vote=Vote(1, 1, True))
    out = recv(e, 3, areq(LogId(1, 1, 3), [N4]), 1.0)
    assert out == [SaveVote(1, L), AppendLog(2, (N4,))]
    assert flush(e, 1.0) == [reply(True, N4.log_id, 0, N4.log_id)]


def test_duplicate_append_is_idempotent() -> None:
    e = follower()
    recv(e, 3, areq(LogId(1, 1, 3), [N4]), 1.0)
    flush(e, 1.0)
    assert recv(e, 3, areq(LogId(1, 1, 3), [N4]), 1.0) == [reply(True, N4.log_id, 0, N4.log_id)]
    assert e.last_log_id == N4.log_id


def test_learner_accepts_appends() -> None:
    e = engine(4, (1, 2, 3), learners=(4,), entries=OLD, vote=L)
    assert e.role is Role.LEARNER
    assert recv(e, 3, areq(LogId(1, 1, 3), [N4], commit=4), 1.0) == [
        AppendLog(1, (N4,)),
        Apply((mentry((1, 2, 3), (4,)), *OLD)),
    ]
    assert flush(e, 1.0)[-1] == Apply((N4,))
    assert e.role is Role.LEARNER
    assert e.next_deadline is None


def test_entries_covered_by_a_purge_are_skipped() -> None:
    m = membership_entry(LogId(1, 1, 4), membership((1, 2, 3)))
    purged = LogId(1, 1, 3)
    rec = RecoveredState(vote=L, entries=(m,), last_purged=purged, applied=purged)
    e = Engine(2, config(), rec, FixedRng())
    assert e.role is Role.FOLLOWER
    new = ent(2, 3, 5)
    reqd = areq(MEMBERSHIP_ID, [*OLD, m, new], commit=0)
    assert recv(e, 3, reqd, 1.0) == [AppendLog(1, (new,))]
