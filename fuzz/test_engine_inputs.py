"""Hypothesis fuzzing of the engine boundary with arbitrary peer messages.

Whatever a peer sends, the engine either handles it or raises
``RemoteProtocolError`` — and when it raises, its state is exactly what it was.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftcore import (
    AppendRequest,
    AppendResponse,
    ClientWrite,
    Config,
    Engine,
    Entry,
    EntryKind,
    IoFlushed,
    LeaderIdMode,
    LogId,
    MessageReceived,
    RemoteProtocolError,
    Vote,
    VoteRequest,
    VoteResponse,
)
from raftcore.testing.loopback import LoopbackCluster

settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("long", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

small = st.integers(min_value=0, max_value=6)
node = st.integers(min_value=1, max_value=4)
log_ids = st.builds(LogId, small, st.integers(min_value=0, max_value=4), small)
votes = st.builds(Vote, small, st.integers(min_value=0, max_value=4), st.booleans())
entries = st.lists(
    st.builds(Entry, log_ids, st.sampled_from([EntryKind.BLANK, EntryKind.NORMAL]), st.none()),
    max_size=4,
).map(tuple)
messages = st.one_of(
    st.builds(VoteRequest, votes, log_ids, st.booleans()),
    st.builds(VoteResponse, votes, st.booleans(), votes, log_ids, st.booleans()),
    st.builds(AppendRequest, votes, log_ids, entries, small, small, st.just(0.0)),
    st.builds(AppendResponse, votes, st.booleans(), log_ids, small, log_ids, small, st.just(0.0)),
)


def _state(e: Engine) -> tuple[Any, ...]:
    return (e.metrics(), e.log.all_entries(), e.io.issued, e.io.flushed, len(e.gated))


def _running_cluster(mode: LeaderIdMode) -> LoopbackCluster:
    c = LoopbackCluster([1, 2, 3], Config(leader_id_mode=mode))
    c.initialize(1)
    leader = c.elect()
    c.handle(leader, ClientWrite("w", b"x"))
    c.advance(0.05)
    return c


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(list(LeaderIdMode)),
    target=st.integers(min_value=1, max_value=3),
    inputs=st.lists(st.tuples(node, messages), min_size=1, max_size=8),
)
def test_arbitrary_messages_never_corrupt_state(
    mode: LeaderIdMode, target: int, inputs: list[tuple[int, Any]]
) -> None:
    c = _running_cluster(mode)
    e = c.nodes[target].engine
    now = c.now
    for sender, msg in inputs:
        before = _state(e)
        try:
            cmds = e.handle(MessageReceived(sender, msg), now)
        except RemoteProtocolError as err:
            assert str(err)
            assert _state(e) == before, "a rejected message changed the engine's state"
            continue
        assert isinstance(cmds, list)
        if e.io.issued > e.io.flushed:
            e.handle(IoFlushed(e.io.issued), now)
        # Committed never runs ahead of the log.
        assert e.committed.index <= e.log.last_index
