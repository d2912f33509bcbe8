"""Elections: pre-vote, vote requests and responses, the leader lease."""

from __future__ import annotations

from raftcore.engine.apply import ApplyHandler
from raftcore.errors import RemoteProtocolError
from raftcore.ids import NodeId, Vote, compare_votes, vote_ge
from raftcore.messages import VoteRequest, VoteResponse
from raftcore.state import Role


class ElectionHandler(ApplyHandler):
    def _election_due(self, now: float) -> None:
        """The election timer fired."""
        if not self._self_voter:
            self.election_deadline = None
            return
        if self.config.pre_vote and not self._sole_voter():
            self._start_pre_vote(now)
        else:
            self._start_election(now)

    def _sole_voter(self) -> bool:
        m = self.membership
        return m is not None and m.voter_ids() == {self.node_id}

    def _next_term(self) -> int:
        """The term to campaign in: above our vote and above every refused request.

        Refusing a vote request does not adopt its term (a removed or stale
        node must not disturb us), but a campaign of ours that starts at or
        below a term other voters already granted loses for certain: hopeless
        candidates (stale logs, needing our vote) would keep outbidding the
        only node that can win (seeds 436, 462).
        """
        return max(self.vote.term, self.term_seen) + 1

    def _start_pre_vote(self, now: float) -> None:
        self.role = Role.PRE_CANDIDATE
        self.round_vote = Vote(self._next_term(), self.node_id, False)
        self.granted = {self.node_id}
        self._reset_election_timer(now)
        req = VoteRequest(self.round_vote, self.log.last_log_id(), pre_vote=True)
        for n in self._candidates_and_voters():
            self._send(n, req)

    def _start_election(self, now: float, transfer: bool = False) -> None:
        vote = Vote(self._next_term(), self.node_id, False)
        if self.role is Role.LEADER:
            self._step_down()
        self.self_vote_io = self._save_vote(vote)
        self.role = Role.CANDIDATE
        self.round_vote = vote
        self.granted = set()
        self.election_started_at = now
        self._reset_election_timer(now)
        req = VoteRequest(vote, self.log.last_log_id(), transfer=transfer)
        for n in self._candidates_and_voters():
            self._send_when_durable(n, req)

    def _self_vote_durable(self, now: float) -> None:
        """Called after a flush: a candidate counts its own vote once durable."""
        if (
            self.role is Role.CANDIDATE
            and self.io.flushed >= self.self_vote_io
            and self.node_id not in self.granted
        ):
            self.granted.add(self.node_id)
            self._check_votes(now)

    def _check_votes(self, now: float) -> None:
        q = self.quorum
        if q is None or not q.is_election_quorum(self.granted):
            return
        if self.role is Role.PRE_CANDIDATE:
            self._start_election(now)
        elif self.role is Role.CANDIDATE:
            self._become_leader(now)

    # -- receiving ----------------------------------------------------------

    def _within_lease(self, sender: NodeId, now: float) -> bool:
        """Would granting ``sender`` disturb a leader we know to be alive?

        Only with check-quorum: without it a leader that can send but not hear
        (a one-way partition) never steps down, and a lease honoured on its
        behalf would block every election forever (etcd's rule too).
        """
        if not self.config.check_quorum:
            return False
        if self.role is Role.LEADER:
            return self._leader_lease_valid(now)
        v = self.vote
        return (
            v.committed and v.node_id != sender and now < self.leader_heard_at + self.config.lease
        )

    def _on_vote_request(self, sender: NodeId, req: VoteRequest, now: float) -> None:
        v = req.vote
        if v.node_id != sender or v.committed or v.term < 1:
            raise RemoteProtocolError(
                f"vote request from {sender} carries an impossible vote {v!r}"
            )
        mode = self.config.leader_id_mode
        granted = False
        # A candidate outside our membership is not refused for that: a voter
        # whose own membership lags would then refuse the new voters and the
        # cluster could never elect. A removed node cannot disturb a live
        # cluster anyway: the lease refuses it while a leader is heard from,
        # it lacks the committed membership that removed it (so up-to-date
        # voters refuse it on log grounds), and nothing here adopts the term
        # of a refused candidate.
        if (req.transfer or not self._within_lease(sender, now)) and (
            req.last_log_id >= self.log.last_log_id()
        ):
            if req.pre_vote:
                granted = vote_ge(v, self.vote, mode)
            elif vote_ge(v, self.vote, mode):
                granted = True
                if v != self.vote:
                    self._save_vote(v)
                    self._become_follower(now)
                else:
                    self._reset_election_timer(now)
        if not granted and not req.pre_vote and v.term > self.term_seen:
            self.term_seen = v.term
        resp = VoteResponse(
            vote=self.vote,
            granted=granted,
            for_vote=v,
            last_log_id=self.log.last_log_id(),
            pre_vote=req.pre_vote,
        )
        if granted and not req.pre_vote:
            self._send_when_durable(sender, resp)
        else:
            self._send(sender, resp)

    def _on_vote_response(self, sender: NodeId, resp: VoteResponse, now: float) -> None:
        c = compare_votes(resp.vote, self.vote, self.config.leader_id_mode)
        if not resp.granted and c is not None and c > 0:
            # Refused by a voter holding a greater vote: follow it (never a grant).
            self._adopt_vote(resp.vote, now)
            return
        if self.role not in (Role.PRE_CANDIDATE, Role.CANDIDATE):
            return
        if resp.last_log_id > self.log.last_log_id():
            # A voter has a greater log: let a better candidate go first.
            self._reset_election_timer(now, extra=self.config.backoff)
            return
        if not resp.granted or resp.for_vote != self.round_vote:
            return
        if resp.pre_vote:
            if self.role is Role.PRE_CANDIDATE:
                self.granted.add(sender)
                self._check_votes(now)
        elif self.role is Role.CANDIDATE and resp.vote == self.vote:
            self.granted.add(sender)
            self._check_votes(now)
