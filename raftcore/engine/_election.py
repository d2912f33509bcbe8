"""Elections: pre-vote, vote requests and responses, the leader lease."""

from __future__ import annotations

from raftcore.engine._leader import become_leader, lease_valid
from raftcore.engine._roles import CandidateState
from raftcore.engine._state import NodeState
from raftcore.engine._transfer import authorized, handover_from
from raftcore.errors import RemoteProtocolError
from raftcore.ids import NodeId, Vote, compare_votes, vote_ge
from raftcore.messages import TimeoutNow, VoteRequest, VoteResponse
from raftcore.state import Role


def election_due(s: NodeState, now: float) -> None:
    """The election timer fired."""
    if not s.self_voter:
        s.election_deadline = None
        return
    if s.config.pre_vote and not _sole_voter(s):
        _start_pre_vote(s, now)
    else:
        start_election(s, now)


def _sole_voter(s: NodeState) -> bool:
    m = s.membership
    return m is not None and m.voter_ids() == {s.node_id}


def _next_term(s: NodeState) -> int:
    """The term to campaign in: above our vote and above every refused request.

    Refusing a vote request does not adopt its term (a removed or stale
    node must not disturb us), but a campaign of ours that starts at or
    below a term other voters already granted loses for certain: hopeless
    candidates (stale logs, needing our vote) would keep outbidding the
    only node that can win (seeds 436, 462).
    """
    return max(s.vote.term, s.term_seen) + 1


def _start_pre_vote(s: NodeState, now: float) -> None:
    s.role = Role.PRE_CANDIDATE
    round_vote = Vote(_next_term(s), s.node_id, False)
    s.candidate = CandidateState(round_vote, {s.node_id}, now)
    s.reset_election_timer(now)
    req = VoteRequest(round_vote, s.log.last_log_id(), pre_vote=True)
    for n in s.other_voters():
        s.send(n, req)


def start_election(s: NodeState, now: float, transfer_from: Vote | None = None) -> None:
    """Campaign now (no pre-vote); ``transfer_from``: a leadership transfer
    from the leader of that vote."""
    vote = Vote(_next_term(s), s.node_id, False)
    s.step_down()
    campaign = CandidateState(vote, set(), now)
    campaign.self_vote_io = s.save_vote(vote)
    s.role = Role.CANDIDATE
    s.candidate = campaign
    s.reset_election_timer(now)
    req = VoteRequest(vote, s.log.last_log_id(), False, transfer_from)
    for n in s.other_voters():
        s.send_when_durable(n, req)


def on_timeout_now(s: NodeState, sender: NodeId, msg: TimeoutNow, now: float) -> None:
    """The leader this node follows hands leadership over to it."""
    leader_vote = handover_from(s, sender, msg)
    if leader_vote is not None:
        start_election(s, now, transfer_from=leader_vote)


def self_vote_durable(s: NodeState, now: float) -> None:
    """Called after a flush: a candidate counts its own vote once durable."""
    campaign = s.candidate
    if (
        s.role is Role.CANDIDATE
        and campaign is not None
        and s.io.flushed >= campaign.self_vote_io
        and s.node_id not in campaign.granted
    ):
        campaign.granted.add(s.node_id)
        _check_votes(s, campaign, now)


def _check_votes(s: NodeState, campaign: CandidateState, now: float) -> None:
    q = s.quorum
    if q is None or not q.is_election_quorum(campaign.granted):
        return
    if s.role is Role.PRE_CANDIDATE:
        start_election(s, now)
    elif s.role is Role.CANDIDATE:
        become_leader(s, campaign, now)


# -- receiving ----------------------------------------------------------------


def lease_holder(s: NodeState, now: float) -> NodeId | None:
    """The leader whose lease this node (not leading) honours now, if any.

    A follower that accepted a message from a leader promises not to help
    elect anyone else for a lease after it, whatever it does meanwhile (its
    own vote may change: a forced campaign, a restart). Only with
    check-quorum: without it a leader that can send but not hear (a one-way
    partition) never steps down, and a lease honoured on its behalf would
    block every election forever (etcd's rule too).
    """
    lv = s.lease_vote
    c = s.config
    if c.check_quorum and lv.committed and now < s.leader_heard_at + c.lease:
        return lv.node_id
    return None


def _within_lease(s: NodeState, sender: NodeId, req: VoteRequest, now: float) -> bool:
    """Would granting ``sender`` disturb a leader we know to be alive?

    A leadership transfer waives the lease of the leader named in
    ``transfer_from``: on a follower of exactly that leader, and on that
    leader only for the target it sent ``TimeoutNow``.
    """
    if not s.config.check_quorum:
        return False
    tr = req.transfer_from
    ld = s.leader
    if ld is not None:
        return not (tr == s.vote and authorized(ld, sender)) and lease_valid(s, ld, now)
    holder = lease_holder(s, now)
    return holder is not None and holder != sender and tr != s.lease_vote


def on_vote_request(s: NodeState, sender: NodeId, req: VoteRequest, now: float) -> None:
    v = req.vote
    if v.node_id != sender or v.committed or v.term < 1:
        raise RemoteProtocolError(f"vote request from {sender} carries an impossible vote {v!r}")
    mode = s.config.leader_id_mode
    granted = False
    # A candidate outside our membership is not refused for that: a voter
    # whose own membership lags would then refuse the new voters and the
    # cluster could never elect. A removed node cannot disturb a live
    # cluster anyway: the lease refuses it while a leader is heard from,
    # it lacks the committed membership that removed it (so up-to-date
    # voters refuse it on log grounds), and nothing here adopts the term
    # of a refused candidate.
    if not _within_lease(s, sender, req, now) and req.last_log_id >= s.log.last_log_id():
        if req.pre_vote:
            granted = vote_ge(v, s.vote, mode)
        elif vote_ge(v, s.vote, mode):
            granted = True
            if v != s.vote:
                s.save_vote(v)
                s.become_follower(now)
            else:
                s.reset_election_timer(now)
    if not granted and not req.pre_vote and v.term > s.term_seen:
        s.term_seen = v.term
    resp = VoteResponse(
        vote=s.vote,
        granted=granted,
        for_vote=v,
        last_log_id=s.log.last_log_id(),
        pre_vote=req.pre_vote,
    )
    if granted and not req.pre_vote:
        s.send_when_durable(sender, resp)
    else:
        s.send(sender, resp)


def on_vote_response(s: NodeState, sender: NodeId, resp: VoteResponse, now: float) -> None:
    c = compare_votes(resp.vote, s.vote, s.config.leader_id_mode)
    if not resp.granted and c is not None and c > 0:
        # Refused by a voter holding a greater vote: follow it (never a grant).
        s.adopt_vote(resp.vote, now)
        return
    campaign = s.candidate
    if campaign is None or s.role not in (Role.PRE_CANDIDATE, Role.CANDIDATE):
        return
    if resp.last_log_id > s.log.last_log_id():
        # A voter has a greater log: let a better candidate go first.
        s.reset_election_timer(now, extra=s.config.backoff)
        return
    if not resp.granted or resp.for_vote != campaign.round_vote:
        return
    if resp.pre_vote:
        if s.role is Role.PRE_CANDIDATE:
            campaign.granted.add(sender)
            _check_votes(s, campaign, now)
    elif s.role is Role.CANDIDATE and resp.vote == s.vote:
        campaign.granted.add(sender)
        _check_votes(s, campaign, now)
