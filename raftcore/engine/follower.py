"""The follower side of replication: accepting (or refusing) appends."""

from __future__ import annotations

from raftcore.engine.base import EngineBase
from raftcore.errors import RemoteProtocolError
from raftcore.ids import ZERO_LOG_ID, LogId, NodeId, compare_votes
from raftcore.messages import AppendRequest, AppendResponse
from raftcore.state import Role


def _validate(sender: NodeId, req: AppendRequest) -> None:
    v = req.vote
    if not v.committed or v.node_id != sender:
        raise RemoteProtocolError(f"append from {sender} carries a non-leader vote {v!r}")
    prev = req.prev_log_id
    if prev.index < 0 or req.leader_commit < 0:
        raise RemoteProtocolError(f"append from {sender} has a negative index")
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


class FollowerHandler(EngineBase):
    def _on_append_request(self, sender: NodeId, req: AppendRequest, now: float) -> None:
        _validate(sender, req)
        c = compare_votes(req.vote, self.vote, self.config.leader_id_mode)
        if c is None or c < 0:
            self._send(sender, self._append_reply(req, False, ZERO_LOG_ID, 0))
            return
        log = self.log
        prev = req.prev_log_id
        committed = self.committed.index
        # Decide everything before changing anything: a bad request must not
        # leave half-applied state behind.
        hint = 0
        truncate_at = 0
        new_from = len(req.entries)
        if prev.index > log.last_index:
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

        if req.vote != self.vote:
            self._save_vote(req.vote)
        if self.role is not Role.FOLLOWER and self.role is not Role.LEARNER:
            self._become_follower(now)
        else:
            self._reset_election_timer(now)
        self.leader_heard_at = now

        if hint:
            self._send(sender, self._append_reply(req, False, ZERO_LOG_ID, hint))
            return
        if truncate_at:
            self._truncate(truncate_at)
        if new_from < len(req.entries):
            self._append(list(req.entries[new_from:]))
        matching = req.entries[-1].log_id if req.entries else prev
        self._send_when_durable(sender, self._append_reply(req, True, matching, 0))
        upto = min(req.leader_commit, matching.index)
        if upto > self.committed.index:
            lid = log.log_id_at(upto)
            assert lid is not None
            self.committed = lid
            self._advance_apply()

    def _append_reply(
        self, req: AppendRequest, success: bool, matching: LogId, hint: int
    ) -> AppendResponse:
        return AppendResponse(
            vote=self.vote,
            success=success,
            matching=matching,
            conflict_hint=hint,
            last_log_id=self.log.last_log_id(),
            seq=req.seq,
            sent_at=req.sent_at,
        )
