"""Membership changes: extended joint consensus, learners, removal, refusals.

Single-engine tests assert exact commands for each rule; whole-cluster
scenarios run on ``LoopbackCluster`` (instant storage, FIFO delivery).
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import ack, engine, flush, make_leader, membership, recv, requests_to, vote_request

from raftcore import (
    AppendLog,
    AppendRequest,
    Command,
    Config,
    Engine,
    LogId,
    Membership,
    Respond,
    Role,
    Send,
    TriggerElection,
    Vote,
    VoteResponse,
)
from raftcore.entries import blank, membership_entry
from raftcore.errors import (
    ConfigError,
    InvalidMembershipChange,
    LeadershipLost,
    MembershipChangeInProgress,
    MembershipMismatch,
    NotLeader,
)
from raftcore.events import ChangeMembership, ClientWrite
from raftcore.membership import (
    AddLearners,
    AddVoters,
    Change,
    RemoveNodes,
    RemoveVoters,
    ReplaceVoters,
    UpdateNodes,
    leave_joint,
    next_membership,
)
from raftcore.testing.loopback import LoopbackCluster

B2 = LogId(1, 1, 2)  # make_leader's blank entry
M123 = membership([1, 2, 3])  # as the helpers' engines start: node n at "addr-n"
INFO = M123.nodes


def change(e: Engine, c: Change, rid: Any = "c", now: float = 0.0, **kw: Any) -> list[Command]:
    return e.handle(ChangeMembership(rid, c, **kw), now)


def responses(cmds: list[Command]) -> list[Respond]:
    return [c for c in cmds if isinstance(c, Respond)]


def grants(cmds: list[Command]) -> list[bool]:
    return [
        c.message.granted
        for c in cmds
        if isinstance(c, Send) and isinstance(c.message, VoteResponse)
    ]


# -- computing the next membership ------------------------------------------------


def test_voter_changes_go_through_a_joint_config() -> None:
    nxt = next_membership(M123, ReplaceVoters({3: None, 4: "d", 5: "e"}), retain=False)
    assert nxt.configs == (frozenset({1, 2, 3}), frozenset({3, 4, 5}))
    assert leave_joint(nxt, retain=False) == Membership(
        (frozenset({3, 4, 5}),), {3: "addr-3", 4: "d", 5: "e"}
    )
    # retain: removed voters stay on as learners.
    kept = leave_joint(nxt, retain=True)
    assert kept.learner_ids() == {1, 2} and kept.voter_ids() == {3, 4, 5}


def test_from_a_joint_config_the_next_joint_pairs_the_newest_config_with_the_goal() -> None:
    joint = next_membership(M123, AddVoters({4: None}), retain=False)
    nxt = next_membership(joint, RemoveVoters([1]), retain=False)
    assert nxt.configs == (frozenset({1, 2, 3, 4}), frozenset({2, 3, 4}))


def test_learner_and_info_changes_are_one_uniform_step() -> None:
    m = next_membership(M123, AddLearners({4: "d"}), retain=False)
    assert m.configs == M123.configs and m.learner_ids() == {4}
    # Adding never overwrites; updating does.
    assert next_membership(m, AddLearners({4: "zzz"}), retain=False).node_info(4) == "d"
    assert next_membership(m, UpdateNodes({4: "e"}), retain=False).node_info(4) == "e"
    assert next_membership(m, RemoveNodes([4]), retain=False) == M123


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (RemoveNodes([2]), "still voters"),
        (RemoveNodes([9]), "not members"),
        (RemoveVoters([9]), "not voters"),
        (RemoveVoters([1, 2, 3]), "no voter"),
        (UpdateNodes({9: "x"}), "not members"),
    ],
)
def test_impossible_changes_name_the_problem(bad: Change, words: str) -> None:
    with pytest.raises(InvalidMembershipChange, match=words):
        next_membership(M123, bad, retain=False)


def test_a_change_with_a_bad_node_id_cannot_be_made() -> None:
    with pytest.raises(ConfigError, match="node id 0 is not a positive int"):
        AddVoters({0: None})


# -- the leader's two steps, exactly ------------------------------------------------


def test_add_voter_appends_a_joint_entry_in_effect_at_once() -> None:
    e = make_leader()
    out = change(e, AddVoters({4: "addr-4"}))
    joint = Membership((frozenset({1, 2, 3}), frozenset({1, 2, 3, 4})), {**INFO, 4: "addr-4"})
    j = membership_entry(LogId(1, 1, 3), joint)
    assert isinstance(out[0], AppendLog) and out[0].entries == (j,)
    assert e.membership == joint and responses(out) == []
    # Every member gets the entry; the new node's first append starts at the
    # new entry, and its rejection back-tracks to where its log ends.
    for n in (2, 3, 4):
        (req,) = requests_to(out, n)
        assert req.prev_log_id == B2 and req.entries == (j,)


def _ack_round(e: Engine, cmds: list[Command], among: tuple[int, ...]) -> list[Command]:
    out: list[Command] = []
    for n in among:
        for req in requests_to(cmds, n):
            out += recv(e, n, ack(req))
    return out


def test_joint_commit_appends_the_final_config_and_its_commit_answers() -> None:
    e = make_leader()
    out = change(e, AddVoters({4: "addr-4"}))
    out += flush(e)
    # 2 and 3: a majority of {1,2,3} and 3 of {1,2,3,4} with the leader.
    out = _ack_round(e, out, (2, 3))
    final = Membership((frozenset({1, 2, 3, 4}),), {**INFO, 4: "addr-4"})
    f = membership_entry(LogId(1, 1, 4), final)
    appends = [c for c in out if isinstance(c, AppendLog)]
    assert [a.entries for a in appends] == [(f,)]
    assert e.committed == LogId(1, 1, 3) and e.membership == final
    out += flush(e)
    done = _ack_round(e, out, (2, 3))
    assert e.committed == LogId(1, 1, 4)
    assert responses(done) == [Respond("c", (LogId(1, 1, 4), final))]


def test_only_one_change_at_a_time() -> None:
    e = make_leader()
    change(e, AddVoters({4: None}))
    assert change(e, AddVoters({5: None}), rid="d") == [
        Respond("d", None, MembershipChangeInProgress())
    ]


def test_change_on_a_follower_names_the_leader() -> None:
    e = engine(2)
    recv(e, 1, AppendRequest(Vote(1, 1, True), LogId(0, 0, 1), (), 0, 1, 0.0))
    flush(e)
    assert change(e, AddVoters({4: None})) == [Respond("c", None, NotLeader(1, "addr-1"))]


def test_expected_membership_is_compare_and_set() -> None:
    e = make_leader()
    wrong = LogId(9, 9, 9)
    assert change(e, AddLearners({4: None}), expected=wrong) == [
        Respond("c", None, MembershipMismatch(wrong, LogId(0, 0, 1)))
    ]
    out = change(e, AddLearners({4: None}), rid="ok", expected=LogId(0, 0, 1))
    assert isinstance(out[0], AppendLog)


def test_invalid_change_is_answered_with_the_reason() -> None:
    e = make_leader()
    (resp,) = responses(change(e, RemoveNodes([2])))
    assert isinstance(resp.error, InvalidMembershipChange) and "still voters" in resp.error.reason


def test_a_change_to_the_same_membership_is_answered_at_once() -> None:
    e = make_leader()
    assert change(e, AddVoters({2: None})) == [Respond("c", (LogId(0, 0, 1), M123))]


def test_new_leader_holds_a_change_until_its_own_entry_commits() -> None:
    # known bug 2: a leader changing membership before it has committed
    # an entry of its term can form disjoint quorums with a predecessor's change.
    e = make_leader(commit_blank=False)
    out = change(e, AddVoters({4: None}))
    assert out == []  # held, nothing appended
    assert e.log.last_index == 2
    flush(e)
    # The blank commits once 2 acknowledges it: then the change starts.
    req = AppendRequest(Vote(1, 1, True), LogId(0, 0, 1), (blank(B2),), 0, 1, 0.0)
    out = recv(e, 2, ack(req))
    assert e.committed == B2
    appended = [c for c in out if isinstance(c, AppendLog)]
    assert appended and appended[0].entries[0].log_id == LogId(1, 1, 3)
    assert e.membership is not None and e.membership.voter_ids() == {1, 2, 3, 4}


def test_stepping_down_mid_change_answers_leadership_lost() -> None:
    e = make_leader()
    change(e, AddVoters({4: None}))
    out = recv(e, 2, VoteResponse(Vote(5, 2, True), False, Vote(1, 1, False), B2))
    assert Respond("c", None, LeadershipLost(2)) in out
    assert e.role is Role.FOLLOWER


# -- who may vote -------------------------------------------------------------------


def test_a_removed_node_cannot_disturb_a_live_cluster() -> None:
    # known bug 13's twin: a removed node that never learned of its
    # removal campaigns with ever higher terms. While a leader is heard from,
    # the lease refuses it; either way no refused candidate's term is taken.
    e = engine(1)
    recv(e, 2, AppendRequest(Vote(1, 2, True), LogId(0, 0, 1), (), 0, 1, 0.0), 0.1)
    flush(e, 0.1)
    before = e.vote
    out = recv(e, 9, vote_request(7, 9, LogId(6, 9, 100)), 0.2)
    assert out == [Send(9, VoteResponse(before, False, Vote(7, 9, False), LogId(0, 0, 1)))]
    assert e.vote == before
    # Lease over, but its log lacks what we have: refused on log grounds.
    f = engine(1, entries=(blank(LogId(1, 2, 2)),))
    out = recv(f, 9, vote_request(7, 9, LogId(0, 0, 1)), 5.0)
    assert grants(out) == [False]
    assert f.vote.term == 0


def test_a_lagging_voter_still_votes_for_a_new_voter_it_does_not_know() -> None:
    # A voter whose own membership is stale must not refuse the new voters on
    # membership grounds: they could then never elect a leader.
    e = engine(5, (1, 2, 5))  # its membership lags: 4 was added after it
    recv(e, 4, vote_request(2, 4, LogId(1, 1, 5)), 5.0)
    out = flush(e, 5.0)
    assert e.vote == Vote(2, 4, False)
    assert grants(out) == [True]


def test_a_removed_voter_campaigns_until_its_removal_is_known_committed() -> None:
    # Raft thesis 4.2.2: if only removed nodes hold the new membership entry,
    # one of them must lead to commit it.
    f = engine(3)
    joint = next_membership(M123, RemoveVoters([3]), retain=False)
    final = leave_joint(joint, retain=False)
    entries = (
        membership_entry(LogId(1, 1, 2), joint),
        membership_entry(LogId(1, 1, 3), final),
    )
    recv(f, 1, AppendRequest(Vote(1, 1, True), LogId(0, 0, 1), entries, 2, 1, 0.0))
    flush(f)
    assert f.membership == final and not final.is_voter(3)
    assert f.role is Role.FOLLOWER and f.next_deadline is not None  # may still campaign
    # Told that the removing membership committed: it retires.
    recv(f, 1, AppendRequest(Vote(1, 1, True), LogId(1, 1, 3), (), 3, 2, 0.1), 0.1)
    assert f.metrics().role is Role.LEARNER and f.next_deadline is None


def test_learner_never_campaigns_and_never_counts() -> None:
    e = engine(4, (1, 2, 3), learners=(4,))
    assert e.role is Role.LEARNER and e.next_deadline is None
    e.handle(TriggerElection(), 0.0)
    assert e.role is Role.LEARNER and e.vote.term == 0
    leader = engine(1, (1, 2, 3), learners=(4,))
    leader.handle(TriggerElection(), 0.0)
    flush(leader)
    v = leader.vote
    recv(leader, 4, VoteResponse(v, True, v, LogId(0, 0, 1)))
    assert leader.role is Role.CANDIDATE  # a learner's grant does not count


# -- whole clusters -------------------------------------------------------------------


def cluster(ids: range, voters: list[int], cfg: Config | None = None) -> LoopbackCluster:
    c = LoopbackCluster(ids, cfg or Config(), seed=3)
    c.initialize(1, voters)
    c.elect()
    return c


def run_change(c: LoopbackCluster, ch: Change, rid: str, **kw: Any) -> Respond:
    lid = c.elect()
    c.handle(lid, ChangeMembership(rid, ch, **kw))
    for _ in range(200):
        c.advance(0.05)
        for node in c.nodes.values():
            if rid in node.responses:
                return node.responses[rid]
    raise AssertionError(f"change {ch!r} not answered")


def write(c: LoopbackCluster, rid: str) -> Respond:
    lid = c.elect()
    c.handle(lid, ClientWrite(rid, rid))
    c.advance(0.5)
    return c.nodes[lid].responses[rid]


def voter_memberships(c: LoopbackCluster) -> set[Membership | None]:
    """The memberships the leader's voters hold (removed nodes may lag forever)."""
    lead = c.nodes[c.elect()].engine.membership
    assert lead is not None
    return {c.nodes[n].engine.membership for n in lead.voter_ids()}


def test_grow_shrink_to_one_voter_and_grow_back() -> None:
    c = cluster(range(1, 6), [1, 2, 3])
    r = run_change(c, AddLearners({4: None, 5: None}), "learners")
    assert r.error is None
    r = run_change(c, AddVoters({4: None, 5: None}), "promote")
    assert r.error is None and r.result[1].voter_ids() == {1, 2, 3, 4, 5}
    assert write(c, "w1").error is None
    r = run_change(c, ReplaceVoters([5]), "shrink")
    assert r.error is None and r.result[1].voter_ids() == {5}
    assert write(c, "w2").error is None
    assert c.elect() == 5
    r = run_change(c, ReplaceVoters([1, 2, 5]), "grow")
    assert r.error is None and r.result[1].voter_ids() == {1, 2, 5}
    assert write(c, "w3").error is None
    c.advance(1.0)
    assert len(voter_memberships(c)) == 1


def test_removed_leader_steps_down_and_goes_quiet() -> None:
    # known bug 13: a removed leader that keeps heartbeating stalls the cluster.
    c = cluster(range(1, 4), [1, 2, 3])
    old = c.elect()
    rest = [n for n in (1, 2, 3) if n != old]
    r = run_change(c, RemoveVoters([old]), "rm")
    assert r.error is None and old not in r.result[1].voter_ids()
    assert c.nodes[old].engine.role is Role.LEARNER
    assert c.nodes[old].engine.next_deadline is None  # no heartbeats, no elections
    c.advance(3.0)
    new = c.elect()
    assert new in rest
    assert write(c, "after").error is None


def test_leader_removed_while_a_follower_is_partitioned() -> None:
    c = cluster(range(1, 6), [1, 2, 3, 4, 5])
    old = c.elect()
    cut = next(n for n in range(1, 6) if n != old)
    c.down.add(cut)
    r = run_change(c, RemoveVoters([old]), "rm")
    assert r.error is None
    c.down.discard(cut)
    c.advance(3.0)
    new = c.elect()
    assert new != old
    assert write(c, "after").error is None
    c.advance(1.0)
    final = c.nodes[new].engine.membership
    assert final is not None and old not in final.voter_ids()
    assert c.nodes[cut].engine.membership == final  # the partitioned follower caught up


def test_uncommitted_membership_is_undone_by_truncation() -> None:
    f = engine(2)
    joint = next_membership(M123, AddVoters({4: None}), retain=False)
    req = AppendRequest(
        Vote(1, 1, True), LogId(0, 0, 1), (membership_entry(LogId(1, 1, 2), joint),), 0, 1, 0.0
    )
    recv(f, 1, req)
    assert f.membership == joint
    # A new leader of term 2 overwrites index 2: the follower falls back.
    req2 = AppendRequest(Vote(2, 3, True), LogId(0, 0, 1), (blank(LogId(2, 3, 2)),), 0, 1, 0.0)
    recv(f, 3, req2)
    assert f.membership == M123


def test_a_refused_candidates_term_is_remembered_for_our_own_campaign() -> None:
    # Seeds 436 and 462 (churn): stale candidates that needed this node's vote
    # kept campaigning one term ahead of it, so its own campaigns (the only
    # ones that could win) always came in a term the others had already
    # granted. Refusing still adopts nothing; campaigning starts above it.
    e = engine(1, entries=(blank(LogId(1, 1, 2)),), vote=Vote(1, 1, True))
    out = recv(e, 2, vote_request(7, 2, LogId(0, 0, 1)), 5.0)
    assert grants(out) == [False] and e.vote == Vote(1, 1, True)
    e.handle(TriggerElection(), 5.0)
    assert e.vote == Vote(8, 1, False)
    # A refused pre-vote is nobody's vote: it moves nothing.
    f = engine(1, entries=(blank(LogId(1, 1, 2)),), vote=Vote(1, 1, True))
    recv(f, 2, vote_request(9, 2, LogId(0, 0, 1), pre_vote=True), 5.0)
    f.handle(TriggerElection(), 5.0)
    assert f.vote == Vote(2, 1, False)
