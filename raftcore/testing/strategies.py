"""Hypothesis strategies for raftcore's value types.

Every strategy yields values the codec (``raftcore.codec``) can encode and
that decode back equal: entry data is built from lists (never tuples, which
come back as lists), finite floats and scalar map keys. Use them to test
anything that stores or ships raftcore values::

    from hypothesis import given
    from raftcore.codec import decode_message, encode_message
    from raftcore.testing import strategies as rst

    @given(rst.messages())
    def test_round_trip(msg):
        assert decode_message(encode_message(msg)) == msg

Numbers span their whole encodable range by default (Hypothesis shrinks
failures towards small ones); pass ``max_value`` / ``max_term`` /
``max_index`` for engine-sized values. ``entry_data()`` and ``node_infos()``
are the payload strategies the others use; pass your own ``data`` to
``entries()`` to model an application's commands.

Importing this module requires hypothesis (a dev dependency).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from raftcore.codec import FORMAT_VERSION, Hello
from raftcore.entries import Entry, EntryKind
from raftcore.ids import LogId, NodeId, Vote
from raftcore.membership import Membership
from raftcore.messages import (
    AppendRequest,
    AppendResponse,
    Message,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from raftcore.quorum import QuorumSpec

__all__ = [
    "U64",
    "append_requests",
    "append_responses",
    "entries",
    "entry_data",
    "hellos",
    "log_ids",
    "memberships",
    "messages",
    "node_ids",
    "node_infos",
    "timeouts_now",
    "times",
    "vote_requests",
    "vote_responses",
    "votes",
]

#: The largest term, index, node id or sequence number the codec encodes.
U64 = (1 << 64) - 1


def _uints(max_value: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=max_value)


def node_ids(max_value: int = U64) -> st.SearchStrategy[NodeId]:
    """Real node ids: ``1 .. max_value`` (``0`` means nobody and is not one)."""
    return st.integers(min_value=1, max_value=max_value)


def log_ids(
    max_term: int = U64, max_node_id: int = U64, max_index: int = U64
) -> st.SearchStrategy[LogId]:
    """Log ids, including ``ZERO_LOG_ID``-like ones (node id ``0``)."""
    return st.builds(LogId, _uints(max_term), _uints(max_node_id), _uints(max_index))


def votes(max_term: int = U64, max_node_id: int = U64) -> st.SearchStrategy[Vote]:
    """Votes, committed or not, including node id ``0`` (voted for nobody)."""
    return st.builds(Vote, _uints(max_term), _uints(max_node_id), st.booleans())


def times() -> st.SearchStrategy[float]:
    """Clock readings (``sent_at``): any finite float."""
    return st.floats(allow_nan=False, allow_infinity=False)


def _scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-U64 - 1, max_value=U64),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=16),
        st.binary(max_size=16),
    )


def entry_data(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Application payloads: None/bool/int/float/str/bytes, lists and dicts of them."""
    return st.recursive(
        _scalars(),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(_scalars(), inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def node_infos() -> st.SearchStrategy[Any]:
    """Node info in a membership: usually an address or None, sometimes any payload."""
    addresses = st.builds(
        "{}:{}".format, st.sampled_from(["127.0.0.1", "::1", "node-a.local"]), _uints(65535)
    )
    return st.one_of(st.none(), addresses, entry_data(max_leaves=4))


@st.composite
def memberships(
    draw: st.DrawFn,
    max_nodes: int = 7,
    max_configs: int = 2,
    ids: st.SearchStrategy[NodeId] | None = None,
) -> Membership:
    """Uniform and joint memberships (``max_configs`` voter configs at most),
    with learners (members in no config), node info, and configs that are
    flexible or hierarchical quorums as well as majorities."""
    member_ids = ids if ids is not None else node_ids()
    members = sorted(draw(st.sets(member_ids, min_size=1, max_size=max_nodes)))
    configs = draw(
        st.lists(
            st.sets(st.sampled_from(members), min_size=1),
            min_size=1,
            max_size=max_configs,
        )
    )
    quorums = [draw(_quorum_spec(sorted(c))) for c in configs]
    infos = {n: draw(node_infos()) for n in members}
    return Membership(configs, infos, quorums)


@st.composite
def _quorum_spec(draw: st.DrawFn, voters: list[NodeId]) -> QuorumSpec | None:
    """``None`` (a majority), or a flexible or hierarchical spec over ``voters``."""
    kind = draw(st.sampled_from(["majority", "flexible", "hierarchical"]))
    n = len(voters)
    if kind == "flexible":
        election = draw(st.integers(1, n))
        commit = draw(st.integers(n - election + 1, n))  # safe: they must intersect
        return ("flexible", tuple(voters), election, commit)
    if kind == "hierarchical":
        groups = draw(st.integers(1, n))
        return ("hierarchical", tuple(tuple(voters[g::groups]) for g in range(groups)))
    return None


@st.composite
def entries(
    draw: st.DrawFn,
    log_id: st.SearchStrategy[LogId] | None = None,
    data: st.SearchStrategy[Any] | None = None,
) -> Entry:
    """Entries of every kind: ``BLANK`` (data None), ``NORMAL`` (``data``,
    default ``entry_data()``) and ``MEMBERSHIP`` (a ``memberships()``)."""
    lid = draw(log_id if log_id is not None else log_ids())
    kind = draw(st.sampled_from(EntryKind))
    if kind is EntryKind.BLANK:
        return Entry(lid, kind, None)
    if kind is EntryKind.MEMBERSHIP:
        return Entry(lid, kind, draw(memberships()))
    return Entry(lid, kind, draw(data if data is not None else entry_data()))


def vote_requests() -> st.SearchStrategy[VoteRequest]:
    leaders = st.builds(Vote, _uints(U64), _uints(U64), st.just(True))
    return st.builds(VoteRequest, votes(), log_ids(), st.booleans(), st.none() | leaders)


def vote_responses() -> st.SearchStrategy[VoteResponse]:
    return st.builds(VoteResponse, votes(), st.booleans(), votes(), log_ids(), st.booleans())


def append_requests(max_entries: int = 6) -> st.SearchStrategy[AppendRequest]:
    """Append requests; the entries are arbitrary (not necessarily contiguous:
    the codec checks shapes, the engine checks meaning)."""
    return st.builds(
        AppendRequest,
        votes(),
        log_ids(),
        st.lists(entries(), max_size=max_entries).map(tuple),
        _uints(U64),
        _uints(U64),
        times(),
    )


def append_responses() -> st.SearchStrategy[AppendResponse]:
    return st.builds(
        AppendResponse,
        votes(),
        st.booleans(),
        log_ids(),
        _uints(U64),
        log_ids(),
        _uints(U64),
        times(),
    )


def timeouts_now() -> st.SearchStrategy[TimeoutNow]:
    return st.builds(
        TimeoutNow, st.builds(Vote, _uints(U64), _uints(U64), st.just(True)), log_ids()
    )


def messages() -> st.SearchStrategy[Message]:
    """Any peer message."""
    return st.one_of(
        vote_requests(), vote_responses(), append_requests(), append_responses(), timeouts_now()
    )


def hellos() -> st.SearchStrategy[Hello]:
    """Transport handshakes of this node's format version."""
    text = st.text(max_size=32)
    return st.builds(Hello, text, node_ids(), st.just(FORMAT_VERSION), text, text, text, log_ids())
