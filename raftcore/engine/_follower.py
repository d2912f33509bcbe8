"""The follower side of replication: accepting (or refusing) appends."""

from __future__ import annotations

from operator import itemgetter

from raftcore.engine._apply import advance_apply
from raftcore.engine._state import NodeState
from raftcore.errors import RemoteProtocolError
from raftcore.ids import ZERO_LOG_ID, LogId, NodeId, compare_votes
from raftcore.messages import AppendRequest, AppendResponse

_LOG_ID = itemgetter(0)
_INDEX = itemgetter(2)


def _validate(sender: NodeId, req: AppendRequest) -> None:
    v = req.vote
    if not v.committed or v.node_id != sender:
        raise RemoteProtocolError(f"append from {sender} carries a non-leader vote {v!r}")
    prev = req.prev_log_id
    if prev.index < 0 or req.leader_commit < 0:
        raise RemoteProtocolError(f"append from {sender} has a negative index")
    ents = req.entries
    if ents:
        # Fast path, all in C: indexes contiguous after prev and log ids
        # sorted imply leader ids non-decreasing; then only the ends need
        # checking against prev and the vote. Anything else takes the
        # entry-by-entry path below, which names the offending entry.
        if len(ents) == 1:
            first = last = ents[0].log_id
            ordered = first.index == prev.index + 1
        else:
            ids = list(map(_LOG_ID, ents))
            first = ids[0]
            last = ids[-1]
            start = prev.index + 1
            ordered = list(map(_INDEX, ids)) == list(range(start, start + len(ids))) and (
                ids == sorted(ids)
            )
        if (
            ordered
            and (first.term, first.node_id) >= (prev.term, prev.node_id)
            and (last.term, last.node_id) <= (v.term, v.node_id)
            and (prev.term, prev.node_id) <= (v.term, v.node_id)
        ):
            return
    elif (prev.term, prev.node_id) <= (v.term, v.node_id):
        return
    expect = prev.index + 1
    last_leader = (prev.term, prev.node_id)
    for e in req.entries:
        lid = e.log_id
        if lid.index != expect:
            raise RemoteProtocolError(
                f"append from {sender}: entry {lid!r} does not follow index {expect - 1}"
            )
        key = (lid.term, lid.node_id)
        if key < last_leader or key > (v.term, v.node_id):
            raise RemoteProtocolError(
                f"append from {sender}: entry {lid!r} is out of leader order for vote {v!r}"
            )
        last_leader = key
        expect += 1
    if (prev.term, prev.node_id) > (v.term, v.node_id):
        raise RemoteProtocolError(f"append from {sender}: prev {prev!r} is newer than its vote")


def on_append_request(s: NodeState, sender: NodeId, req: AppendRequest, now: float) -> None:
    _validate(sender, req)
    if req.vote != s.vote:
        c = compare_votes(req.vote, s.vote, s.config.leader_id_mode)
        if c is None or c < 0:
            s.send(sender, _append_reply(s, req, False, ZERO_LOG_ID, 0))
            return
    log = s.log
    prev = req.prev_log_id
    committed = s.committed.index
    # Decide everything before changing anything: a bad request must not
    # leave half-applied state behind.
    hint = 0
    truncate_at = 0
    new_from = len(req.entries)
    if prev == log.last_log_id():
        # The common case: the entries go right after our last one.
        new_from = 0
    elif prev.index > log.last_index:
        hint = log.last_index + 1
    elif prev.index >= log.last_purged.index and log.log_id_at(prev.index) != prev:
        if prev.index <= committed:
            raise RemoteProtocolError(
                f"append from {sender}: prev {prev!r} contradicts committed entry "
                f"{log.log_id_at(prev.index)!r}"
            )
        hint = max(committed + 1, log.first_index_of_leader(prev.index))
    else:
        last = log.last_index
        for i, e in enumerate(req.entries):
            idx = e.log_id.index
            if idx <= log.last_purged.index:
                continue
            if idx > last:
                new_from = i
                break
            if log.log_id_at(idx) != e.log_id:
                if idx <= committed:
                    raise RemoteProtocolError(
                        f"append from {sender}: entry {e.log_id!r} would overwrite "
                        f"committed entry {log.log_id_at(idx)!r}"
                    )
                truncate_at = idx
                new_from = i
                break

    s.follow(req.vote, now)

    if hint:
        s.send(sender, _append_reply(s, req, False, ZERO_LOG_ID, hint))
        return
    if truncate_at:
        s.truncate(truncate_at)
    entries = req.entries
    if new_from < len(entries):
        s.append(list(entries[new_from:]) if new_from else list(entries))
    matching = entries[-1].log_id if entries else prev
    reply = _append_reply(s, req, True, matching, 0)
    io = s.io
    if (
        not entries
        and not truncate_at
        and (prev.index <= io.durable_log_id.index and io.durable_vote == s.vote)
    ):
        # A heartbeat claims only what is already durable: answering it
        # must not wait behind an unrelated slow write (check-quorum).
        s.send(sender, reply)
    else:
        s.send_when_durable(sender, reply)
    upto = min(req.leader_commit, matching.index)
    if upto > committed:
        lid = log.log_id_at(upto)
        assert lid is not None
        s.committed = lid
        advance_apply(s)
        if s.self_voter:
            s.commit_advanced()


def _append_reply(
    s: NodeState, req: AppendRequest, success: bool, matching: LogId, hint: int
) -> AppendResponse:
    return AppendResponse(
        vote=s.vote,
        success=success,
        matching=matching,
        conflict_hint=hint,
        last_log_id=s.log.last_log_id(),
        seq=req.seq,
        sent_at=req.sent_at,
    )
