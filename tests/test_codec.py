"""The wire/storage codec: round trips, the frozen layout, and exactly what
malformed input and unencodable values are told."""

from __future__ import annotations

import datetime
import decimal
import math
import re
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftcore import (
    ZERO_LOG_ID,
    AppendRequest,
    AppendResponse,
    Entry,
    EntryKind,
    LocalProtocolError,
    LogId,
    Membership,
    RemoteProtocolError,
    Vote,
    VoteRequest,
    VoteResponse,
)
from raftcore.codec import (
    FORMAT_VERSION,
    MAX_DATA_DEPTH,
    CodecError,
    EncodeError,
    Hello,
    UnsupportedVersion,
    decode_entry,
    decode_hello,
    decode_log_id,
    decode_membership,
    decode_message,
    decode_vote,
    encode_entry,
    encode_hello,
    encode_log_id,
    encode_membership,
    encode_message,
    encode_vote,
)
from raftcore.entries import blank, membership_entry, normal
from raftcore.testing import strategies as rst

VOTE = Vote(2, 1, True)
LID = LogId(1, 1, 5)
MEMBERS = Membership.of({1: "10.0.0.1:7000", 2: "10.0.0.2:7000", 3: None})
ENTRIES = (
    blank(LogId(2, 1, 6)),
    normal(LogId(2, 1, 7), b"put x 1"),
    membership_entry(LogId(2, 1, 8), MEMBERS),
    normal(LogId(2, 1, 9), {"op": "put", "key": "x", "value": [1, 2.5, None, True]}),
)
APPEND = AppendRequest(VOTE, LID, ENTRIES, 5, 9, 1.5)

Decoder = Callable[[bytes], Any]


def codec_error(decode: Decoder, data: Any) -> str:
    """The message of the ``CodecError`` that decoding ``data`` must raise."""
    with pytest.raises(CodecError) as info:
        decode(data)
    return str(info.value)


def encode_error(encode: Callable[[Any], bytes], value: Any) -> str:
    """The message of the ``EncodeError`` that encoding ``value`` must raise."""
    with pytest.raises(EncodeError) as info:
        encode(value)
    assert isinstance(info.value, LocalProtocolError)
    assert not isinstance(info.value, RemoteProtocolError)
    return str(info.value)


def append_frame(**changes: Any) -> list[Any]:
    """``APPEND`` as its raw CBOR array, with some positions replaced."""
    raw: list[Any] = cbor2.loads(encode_message(APPEND))
    fields = {"vote.term": 2, "entries": 8, "leader_commit": 9, "sent_at": 11}
    for name, v in changes.items():
        raw[fields[name]] = v
    return raw


# ---------------------------------------------------------------------------
# Round trips


def round_trip(encode: Callable[[Any], bytes], decode: Decoder, value: Any) -> None:
    data = encode(value)
    assert type(data) is bytes
    back = decode(data)
    assert back == value
    assert type(back) is type(value)
    assert encode(back) == data  # one encoding per value: re-encoding is stable


@settings(deadline=None)
@given(rst.messages())
def test_messages_round_trip(msg: Any) -> None:
    round_trip(encode_message, decode_message, msg)


@settings(deadline=None)
@given(rst.entries())
def test_entries_round_trip(entry: Entry) -> None:
    round_trip(encode_entry, decode_entry, entry)
    assert type(decode_entry(encode_entry(entry)).kind) is EntryKind


@settings(deadline=None)
@given(rst.votes())
def test_votes_round_trip(vote: Vote) -> None:
    round_trip(encode_vote, decode_vote, vote)


@settings(deadline=None)
@given(rst.log_ids())
def test_log_ids_round_trip(log_id: LogId) -> None:
    round_trip(encode_log_id, decode_log_id, log_id)


@settings(deadline=None)
@given(rst.log_ids(), rst.memberships())
def test_memberships_round_trip(log_id: LogId, m: Membership) -> None:
    round_trip(encode_membership, decode_membership, (log_id, m))


@settings(deadline=None)
@given(rst.hellos())
def test_hellos_round_trip(h: Hello) -> None:
    round_trip(encode_hello, decode_hello, h)


def test_every_message_type_and_entry_kind_round_trips_by_hand() -> None:
    msgs = [
        VoteRequest(VOTE, LID, pre_vote=True),
        VoteResponse(VOTE, True, Vote(2, 1, False), LID, pre_vote=False),
        APPEND,
        AppendRequest(VOTE, LID, (), 5, 10, 2.0),  # a heartbeat
        AppendResponse(VOTE, False, ZERO_LOG_ID, 3, LID, 9, 1.5),
    ]
    for msg in msgs:
        round_trip(encode_message, decode_message, msg)
    decoded = decode_message(encode_message(APPEND))
    assert isinstance(decoded, AppendRequest)
    assert [e.kind for e in decoded.entries] == [e.kind for e in ENTRIES]
    assert decoded.entries[2].membership == MEMBERS
    assert decoded.entries[2].membership.nodes[1] == "10.0.0.1:7000"


def test_arrays_come_back_as_lists_and_int_times_as_floats() -> None:
    e = normal(LogId(1, 1, 1), ("put", "k", (1, 2)))
    assert decode_entry(encode_entry(e)).data == ["put", "k", [1, 2]]
    resp = AppendResponse(VOTE, True, LID, 0, LID, 1, 7)
    back = decode_message(encode_message(resp))
    assert isinstance(back, AppendResponse)
    assert back.sent_at == 7.0
    assert type(back.sent_at) is float


def test_buffers_decode_like_bytes() -> None:
    data = encode_message(APPEND)
    assert decode_message(bytearray(data)) == APPEND  # type: ignore[arg-type]
    assert decode_message(memoryview(data)) == APPEND  # type: ignore[arg-type]


def test_data_nested_exactly_max_depth_round_trips_and_one_more_does_not_encode() -> None:
    def nested(depth: int) -> Any:
        v: Any = "leaf"
        for j in range(depth):
            v = [v] if j % 2 else {"k": v}
        return v

    ok = normal(LogId(1, 1, 1), nested(MAX_DATA_DEPTH))
    round_trip(encode_entry, decode_entry, ok)
    m = Membership.of({1: nested(MAX_DATA_DEPTH)})
    round_trip(
        encode_message,
        decode_message,
        AppendRequest(VOTE, LID, (membership_entry(LID, m),), 0, 0, 0.0),
    )
    msg = encode_error(encode_entry, normal(LogId(1, 1, 1), nested(MAX_DATA_DEPTH + 1)))
    assert msg.startswith("Entry.data[")
    assert msg.endswith(f": nested deeper than {MAX_DATA_DEPTH} arrays/maps")


def test_each_record_is_accepted_by_its_own_decoder_only() -> None:
    frames = {
        "message": encode_message(APPEND),
        "entry": encode_entry(ENTRIES[2]),
        "vote": encode_vote(VOTE),
        "log_id": encode_log_id(LID),
        "membership": encode_membership((LID, MEMBERS)),
        "hello": encode_hello(Hello("prod", 1)),
    }
    decoders: dict[str, Decoder] = {
        "message": decode_message,
        "entry": decode_entry,
        "vote": decode_vote,
        "log_id": decode_log_id,
        "membership": decode_membership,
        "hello": decode_hello,
    }
    for kind, data in frames.items():
        for other, decode in decoders.items():
            if other == kind:
                decode(data)
            else:
                assert "record" in codec_error(decode, data)


# ---------------------------------------------------------------------------
# The layout is frozen: these bytes are what other nodes and old disks hold.


def test_layout_is_frozen() -> None:
    assert FORMAT_VERSION == 1
    assert encode_vote(Vote(1, 2, True)).hex() == "8501060102f5"
    assert encode_log_id(LogId(3, 1, 7)).hex() == "850107030107"
    assert encode_hello(Hello("c", 3)).hex() == "8401096163" + "03"
    # With an identity, three text fields follow (store cluster, incarnation,
    # refusal), then the membership's log id.
    assert encode_hello(Hello("c", 3, 1, "k", "i", "", LogId(2, 1, 5))).hex() == (
        "8a01096163" + "03616b616960" + "020105"
    )
    assert (
        encode_message(VoteRequest(Vote(2, 1, False), LogId(1, 1, 5), True)).hex()
        == "8a01" + "01" + "0201f4" + "010105" + "f5f4"
    )
    one = AppendRequest(VOTE, LID, (normal(LogId(2, 1, 6), b"x"),), 5, 9, 1.5)
    assert encode_message(one).hex() == (
        "8c0103" + "0201f5" + "010105" + "85" + "0201060141" + "78" + "0509" + "fb3ff8000000000000"
    )
    assert encode_entry(blank(LogId(2, 1, 6))).hex() == "870105020106" + "00f6"
    assert encode_membership((LID, Membership.of({1: None}))).hex() == (
        "870108010105" + "8181" + "01" + "8201f6"
    )


# ---------------------------------------------------------------------------
# Malformed input: CodecError, naming the problem.


def test_a_different_version_is_named() -> None:
    raw = append_frame()
    raw[0] = 2
    with pytest.raises(UnsupportedVersion) as info:
        decode_message(cbor2.dumps(raw))
    assert str(info.value) == "unsupported format version 2, this node speaks 1"
    assert info.value.version == 2
    assert isinstance(info.value, CodecError)
    assert isinstance(info.value, RemoteProtocolError)
    future_hello = encode_hello(Hello("prod", 4, version=2))
    with pytest.raises(UnsupportedVersion, match="version 2, this node speaks 1"):
        decode_hello(future_hello)
    assert codec_error(decode_vote, cbor2.dumps([True, 6, 1, 1, False])) == (
        "Vote: expected the format version (int), got bool True"
    )


def test_wrong_tags_are_named() -> None:
    assert codec_error(decode_message, encode_vote(VOTE)) == (
        "message: expected a message record (tags 1-4, 10-11, 13-15), got record tag 6 (Vote)"
    )
    assert codec_error(decode_message, cbor2.dumps([1, 42, 0])) == (
        "message: expected a message record (tags 1-4, 10-11, 13-15), got unknown record tag 42"
    )
    assert codec_error(decode_vote, encode_log_id(LID)) == (
        "Vote: expected record tag 6, got record tag 7 (LogId)"
    )
    assert codec_error(decode_entry, encode_message(APPEND)) == (
        "Entry: expected record tag 5, got record tag 3 (AppendRequest)"
    )
    assert codec_error(decode_log_id, cbor2.dumps([1])) == (
        "LogId: expected a record tag (int) after the version"
    )


def test_wrong_arity_is_named() -> None:
    raw = cbor2.loads(encode_message(VoteRequest(VOTE, LID)))
    assert codec_error(decode_message, cbor2.dumps(raw[:-1])) == (
        "VoteRequest: expected 10 items [version, tag, ...], got 9"
    )
    assert codec_error(decode_vote, cbor2.dumps([1, 6, 1, 1, False, 0])) == (
        "Vote: expected 5 items [version, tag, ...], got 6"
    )
    entries = append_frame()[8][:-1]
    assert codec_error(decode_message, cbor2.dumps(append_frame(entries=entries))) == (
        "AppendRequest.entries: expected 5 items per entry "
        "[term, node_id, index, kind, data], got 19 items"
    )
    assert codec_error(decode_message, cbor2.dumps(["not", "a", "record"])) == (
        "message: expected the format version (int), got 'not'"
    )
    assert codec_error(decode_message, cbor2.dumps({"v": 1})) == (
        "message: expected an array [version, tag, ...], got dict {'v': 1}"
    )


def test_bools_are_not_ints_and_ints_are_not_bools() -> None:
    assert codec_error(decode_message, cbor2.dumps(append_frame(**{"vote.term": True}))) == (
        "AppendRequest.vote.term: expected int >= 0, got bool True"
    )
    raw = cbor2.loads(encode_message(VoteRequest(VOTE, LID)))
    raw[8] = 1
    assert codec_error(decode_message, cbor2.dumps(raw)) == (
        "VoteRequest.pre_vote: expected bool, got 1"
    )
    assert codec_error(decode_vote, cbor2.dumps([1, 6, 1, 1, 0])) == (
        "Vote.committed: expected bool, got 0"
    )


def test_negative_numbers_are_named_down_to_the_entry_field() -> None:
    entries = append_frame()[8] + [-1, 1, 10, 1, b"x"]
    assert codec_error(decode_message, cbor2.dumps(append_frame(entries=entries))) == (
        "AppendRequest.entries[4].log_id.term: expected int >= 0, got -1"
    )
    entries = append_frame()[8]
    entries[3 * 5 + 2] = -7
    assert codec_error(decode_message, cbor2.dumps(append_frame(entries=entries))) == (
        "AppendRequest.entries[3].log_id.index: expected int >= 0, got -7"
    )
    assert codec_error(decode_message, cbor2.dumps(append_frame(leader_commit=-1))) == (
        "AppendRequest.leader_commit: expected int >= 0, got -1"
    )
    assert codec_error(decode_hello, cbor2.dumps([1, 9, "c", 0])) == (
        "Hello.node_id: expected node id (int >= 1), got 0"
    )


def test_sent_at_must_be_a_finite_number() -> None:
    assert codec_error(decode_message, cbor2.dumps(append_frame(sent_at=math.nan))) == (
        "AppendRequest.sent_at: expected a finite number, got nan"
    )
    assert codec_error(decode_message, cbor2.dumps(append_frame(sent_at=-math.inf))) == (
        "AppendRequest.sent_at: expected a finite number, got -inf"
    )
    assert codec_error(decode_message, cbor2.dumps(append_frame(sent_at="now"))) == (
        "AppendRequest.sent_at: expected float or int, got 'now'"
    )
    back = decode_message(cbor2.dumps(append_frame(sent_at=3)))
    assert isinstance(back, AppendRequest)
    assert back.sent_at == 3.0
    assert type(back.sent_at) is float


def test_entry_kinds_and_data_are_checked() -> None:
    assert codec_error(decode_entry, cbor2.dumps([1, 5, 1, 1, 1, 7, None])) == (
        "Entry.kind: expected entry kind 0 (BLANK), 1 (NORMAL) or 2 (MEMBERSHIP), got 7"
    )
    assert codec_error(decode_entry, cbor2.dumps([1, 5, 1, 1, 1, True, b""])) == (
        "Entry.kind: expected entry kind 0 (BLANK), 1 (NORMAL) or 2 (MEMBERSHIP), got bool True"
    )
    assert codec_error(decode_entry, cbor2.dumps([1, 5, 1, 1, 1, 0, b"x"])) == (
        "Entry.data: a BLANK entry carries None, got bytes b'x'"
    )
    bad = [1, 5, 1, 1, 1, 1, {"a": [1, math.nan]}]
    assert codec_error(decode_entry, cbor2.dumps(bad)) == (
        "Entry.data['a'][1]: floats must be finite, got nan"
    )
    # An array as a map key decodes to a tuple in cbor2; not allowed here.
    bad_key = bytes.fromhex("870105010101" + "01" + "a1" + "820102" + "f6")
    assert codec_error(decode_entry, bad_key) == (
        "Entry.data: map keys must be None, bool, int, float, str or bytes, got tuple (1, 2)"
    )
    undefined = bytes.fromhex("870105010101" + "01" + "81f7")
    assert codec_error(decode_entry, undefined).startswith(
        "Entry.data[0]: unsupported type UndefinedType"
    )
    simple = bytes.fromhex("870105010101" + "01" + "f0")
    assert codec_error(decode_entry, simple).startswith(
        "Entry.data: unsupported type CBORSimpleValue"
    )


def test_invalid_memberships_are_named() -> None:
    def with_membership(m: Any) -> bytes:
        entries = [2, 1, 8, 2, m]
        return cbor2.dumps(append_frame(entries=entries))

    assert codec_error(decode_message, with_membership([[[1, 2]], [1, None]])) == (
        "AppendRequest.entries[0].data: invalid membership: voter 2 has no node info"
    )
    assert codec_error(decode_message, with_membership([[], [1, None]])) == (
        "AppendRequest.entries[0].data: invalid membership: needs at least one voter config"
    )
    assert codec_error(decode_message, with_membership([[[1, 1]], [1, None]])) == (
        "AppendRequest.entries[0].data.configs[0]: duplicate node id"
    )
    assert codec_error(decode_message, with_membership([[[1]], [1, None, 1, "x"]])) == (
        "AppendRequest.entries[0].data.nodes: duplicate node id 1"
    )
    assert codec_error(decode_message, with_membership([[[1]], [1]])) == (
        "AppendRequest.entries[0].data.nodes: expected an array [node id, info, ...], got list [1]"
    )
    assert codec_error(decode_message, with_membership("voters")) == (
        "AppendRequest.entries[0].data: expected [configs, nodes] or [configs, nodes, quorums], "
        "got 'voters'"
    )
    # A quorum spec that does not cover its config's voters, or is not a spec.
    assert codec_error(
        decode_message,
        with_membership([[[1, 2]], [1, None, 2, None], [["flexible", [1, 2, 3], 2, 2]]]),
    ) == (
        "AppendRequest.entries[0].data: invalid membership: quorum ('flexible', (1, 2, 3), 2, 2) "
        "is not over voters {1, 2}"
    )
    assert "invalid membership" in codec_error(
        decode_message, with_membership([[[1]], [1, None], [["nonsense"]]])
    )
    stored = cbor2.dumps([1, 8, 1, 1, 5, [[0]], [0, None]])
    assert codec_error(decode_membership, stored) == (
        "Membership.configs[0]: expected node id (int >= 1), got 0"
    )


def test_trailing_bytes_are_refused() -> None:
    data = encode_message(APPEND)
    assert codec_error(decode_message, data + b"\x00") == (
        "message: 1 trailing byte after the record"
    )
    assert codec_error(decode_vote, encode_vote(VOTE) + encode_vote(VOTE)) == (
        "Vote: 6 trailing bytes after the record"
    )


def test_cbor_tags_are_refused_whatever_cbor2_would_make_of_them() -> None:
    stamp = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cases: dict[int, list[Any]] = {
        0: [1, 5, 1, 1, 1, 1, stamp],  # tag 0: an ISO datetime
        2: [1, 6, 1 << 64, 1, False],  # tag 2: a bignum where an int is expected
        4: [1, 5, 1, 1, 1, 1, decimal.Decimal("1.5")],  # tag 4: a decimal
        258: [1, 5, 1, 1, 1, 1, {1, 2}],  # tag 258: a set
    }
    for tag, raw in cases.items():
        msg = codec_error(decode_entry if raw[1] == 5 else decode_vote, cbor2.dumps(raw))
        assert f"CBOR tag {tag} is not allowed" in msg
    self_described = bytes.fromhex("d9d9f7") + encode_vote(VOTE)  # tag 55799
    assert "CBOR tag 55799 is not allowed" in codec_error(decode_vote, self_described)
    shareable = bytes.fromhex("870105010101" + "01" + "d81c01")  # tag 28: value sharing
    assert "CBOR tag 28 is not allowed" in codec_error(decode_entry, shareable)
    cyclic = bytes.fromhex("870105010101" + "01" + "d81c81d81d00")  # a list containing itself
    assert re.search(r"CBOR tag 2[89] is not allowed", codec_error(decode_entry, cyclic))
    unknown = bytes.fromhex("870105010101" + "01" + "d99c4001")  # tag 40000
    assert "CBOR tag 40000 is not allowed" in codec_error(decode_entry, unknown)


def test_non_bytes_empty_and_truncated_input() -> None:
    assert codec_error(decode_message, "8501") == "message: expected bytes, got str"
    assert codec_error(decode_vote, None) == "Vote: expected bytes, got NoneType"
    assert codec_error(decode_log_id, [1, 7, 0, 0, 0]) == "LogId: expected bytes, got list"
    assert codec_error(decode_message, b"") == "message: empty input"
    data = encode_message(APPEND)
    for cut in (1, 2, len(data) // 2, len(data) - 1):
        assert codec_error(decode_message, data[:cut]).startswith("message: truncated input")


def test_other_malformed_cbor() -> None:
    invalid_utf8 = bytes.fromhex("840109" + "62fffe" + "01")
    assert codec_error(decode_hello, invalid_utf8).startswith("Hello: invalid CBOR")
    indefinite = bytes.fromhex("9f010601" + "01f4ff")
    assert codec_error(decode_vote, indefinite).startswith("Vote: invalid CBOR")
    duplicate_keys = bytes.fromhex("870105010101" + "01" + "a2" + "0101" + "0102")
    assert codec_error(decode_entry, duplicate_keys).startswith("Entry: invalid CBOR")
    too_deep = bytes.fromhex("870105010101" + "01") + b"\x81" * 1000 + b"\x01"
    assert codec_error(decode_entry, too_deep).startswith("Entry: invalid CBOR")
    deep_data = bytes.fromhex("870105010101" + "01") + b"\x81" * (MAX_DATA_DEPTH + 1) + b"\x01"
    assert codec_error(decode_entry, deep_data).endswith(
        f": nested deeper than {MAX_DATA_DEPTH} arrays/maps"
    )
    huge_array = bytes.fromhex("9bffffffffffffffff")  # claims 2**64-1 items
    assert codec_error(decode_message, huge_array).startswith("message: ")
    huge_bytes = bytes.fromhex("870105010101015bffffffffffffffff")
    assert codec_error(decode_entry, huge_bytes).startswith("Entry: ")


# ---------------------------------------------------------------------------
# Unencodable values: EncodeError (a LocalProtocolError), naming the problem.


def test_unencodable_payloads_are_local_errors() -> None:
    def append_with(data: Any) -> AppendRequest:
        return AppendRequest(VOTE, LID, (ENTRIES[1], normal(LogId(2, 1, 8), data)), 5, 9, 1.5)

    assert encode_error(encode_message, append_with({"a": {1, 2}})) == (
        "AppendRequest.entries[1].data['a']: unsupported type set "
        "(allowed: None, bool, int, float, str, bytes, list, tuple, dict)"
    )
    assert encode_error(encode_message, append_with(object())).startswith(
        "AppendRequest.entries[1].data: unsupported type object"
    )
    assert encode_error(encode_message, append_with([datetime.date(2024, 1, 1)])).startswith(
        "AppendRequest.entries[1].data[0]: unsupported type date"
    )
    assert encode_error(encode_message, append_with(EntryKind.NORMAL)).startswith(
        "AppendRequest.entries[1].data: unsupported type EntryKind"
    )
    assert encode_error(encode_message, append_with([1 << 64])) == (
        "AppendRequest.entries[1].data[0]: int out of CBOR range -2**64 .. 2**64-1: "
        "18446744073709551616"
    )
    assert encode_error(encode_message, append_with({"x": math.inf})) == (
        "AppendRequest.entries[1].data['x']: floats must be finite, got inf"
    )
    assert encode_error(encode_message, append_with({(1, 2): "v"})) == (
        "AppendRequest.entries[1].data: map keys must be None, bool, int, float, str or bytes, "
        "got tuple (1, 2)"
    )
    assert encode_error(encode_message, append_with("\ud800")).startswith(
        "AppendRequest: cannot encode:"
    )
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    assert encode_error(encode_entry, normal(LID, cyclic)).endswith(
        f": nested deeper than {MAX_DATA_DEPTH} arrays/maps"
    )
    info = Membership.of({1: {"addr": b"x", "tags": {"a", "b"}}})
    assert encode_error(encode_membership, (LID, info)).startswith(
        "Membership.nodes[1]['tags']: unsupported type set"
    )


def test_invalid_structure_is_a_local_error_when_encoding() -> None:
    assert encode_error(encode_vote, Vote(-1, 1, False)) == "Vote.term: expected int >= 0, got -1"
    assert encode_error(encode_log_id, LogId(1, 1, 1 << 64)) == (
        "LogId.index: expected int < 2**64, got 18446744073709551616"
    )
    bad_entry = AppendRequest(VOTE, LID, (normal(LogId(1, True, 1), b""),), 0, 0, 0.0)
    assert encode_error(encode_message, bad_entry) == (
        "AppendRequest.entries[0].log_id.node_id: expected int >= 0, got bool True"
    )
    int_kind = AppendRequest(VOTE, LID, (Entry(LID, 1, b""),), 0, 0, 0.0)  # type: ignore[arg-type]
    assert encode_error(encode_message, int_kind) == (
        "AppendRequest.entries[0].kind: expected EntryKind, got 1"
    )
    blank_with_data = Entry(LID, EntryKind.BLANK, b"x")
    assert encode_error(encode_entry, blank_with_data) == (
        "Entry.data: a BLANK entry carries None, got bytes b'x'"
    )
    not_membership = Entry(LID, EntryKind.MEMBERSHIP, {1: "a"})
    assert encode_error(encode_entry, not_membership) == (
        "Entry.data: expected Membership, got dict {1: 'a'}"
    )
    forever = AppendRequest(VOTE, LID, (), 0, 0, math.inf)
    assert encode_error(encode_message, forever) == (
        "AppendRequest.sent_at: expected a finite number, got inf"
    )
    assert encode_error(encode_message, VOTE) == "cannot encode Vote as a message"
    assert encode_error(encode_hello, Hello("c", 0)) == (
        "Hello.node_id: expected node id (int >= 1), got 0"
    )
    assert encode_error(encode_vote, "vote").startswith("Vote: cannot encode 'vote'")


def test_more_structure_errors_are_named() -> None:
    not_entries = AppendRequest(VOTE, LID, ("x",), 0, 0, 0.0)  # type: ignore[arg-type]
    assert encode_error(encode_message, not_entries) == (
        "AppendRequest.entries[0]: expected Entry, got 'x'"
    )
    plain_log_id = AppendRequest(VOTE, LID, (Entry((1, 1, 1), EntryKind.BLANK),), 0, 0, 0.0)  # type: ignore[arg-type]
    assert encode_error(encode_message, plain_log_id) == (
        "AppendRequest.entries[0].log_id: expected LogId, got tuple (1, 1, 1)"
    )
    assert encode_error(encode_message, AppendRequest(VOTE, LID, (), 0, -2, 0.0)) == (
        "AppendRequest.seq: expected int >= 0, got -2"
    )
    assert encode_error(encode_entry, normal(LID, {math.nan: 1})) == (
        "Entry.data[nan]: floats must be finite, got nan"
    )
    assert encode_error(encode_entry, normal(LID, 10**5000)) == (
        "Entry.data: int out of CBOR range -2**64 .. 2**64-1: ..."
    )
    assert codec_error(decode_hello, cbor2.dumps([1, 9, 5, 1])) == (
        "Hello.cluster_id: expected str, got 5"
    )
    assert codec_error(decode_membership, cbor2.dumps([1, 8, 1, 1, 5, {}, []])) == (
        "Membership.configs: expected an array of voter configs, got dict {}"
    )
    assert codec_error(
        decode_membership, cbor2.dumps([1, 8, 1, 1, 5, [[1]], [1, {"a": math.inf}]])
    ) == ("Membership.nodes[1]['a']: floats must be finite, got inf")


@settings(deadline=None)
@given(st.one_of(st.sets(st.integers()), st.complex_numbers(), st.datetimes(), st.decimals()))
def test_non_cbor_payloads_never_encode(data: Any) -> None:
    with pytest.raises(LocalProtocolError, match=r"^Entry\.data: unsupported type "):
        encode_entry(normal(LID, data))
