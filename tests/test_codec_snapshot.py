"""The codec's snapshot records: ``InstallSnapshotRequest``/``Response`` and a
stored ``SnapshotMeta``: round trips, the frozen layout, and exactly what
malformed input and unencodable values are told."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftcore import ZERO_LOG_ID, LocalProtocolError, LogId, Membership, RemoteProtocolError, Vote
from raftcore.codec import (
    MAX_SNAPSHOT_ID_LEN,
    TAG_INSTALL_SNAPSHOT_REQUEST,
    TAG_INSTALL_SNAPSHOT_RESPONSE,
    TAG_SNAPSHOT_META,
    CodecError,
    EncodeError,
    decode_log_id,
    decode_membership,
    decode_message,
    decode_snapshot_meta,
    encode_log_id,
    encode_membership,
    encode_message,
    encode_snapshot_meta,
)
from raftcore.messages import InstallSnapshotRequest, InstallSnapshotResponse
from raftcore.snapshots import SnapshotMeta
from raftcore.testing import strategies as rst

VOTE = Vote(3, 1, True)
LID = LogId(3, 1, 100)
JOINT = Membership([{1, 2, 3}, {3, 4, 5}], {n: f"10.0.0.{n}:7000" for n in range(1, 7)})
META = SnapshotMeta(LID, (LogId(2, 1, 50), JOINT), "snap-100", 10)
REQUEST = InstallSnapshotRequest(VOTE, META, 0, b"0123456789", 7, 1.5)
RESPONSE = InstallSnapshotResponse(VOTE, "snap-100", 10, True, LID, 7, 1.5)

Decoder = Callable[[bytes], Any]


def codec_error(decode: Decoder, data: Any) -> str:
    """The message of the ``CodecError`` that decoding ``data`` must raise."""
    with pytest.raises(CodecError) as info:
        decode(data)
    assert isinstance(info.value, RemoteProtocolError)
    return str(info.value)


def encode_error(encode: Callable[[Any], bytes], value: Any) -> str:
    """The message of the ``EncodeError`` that encoding ``value`` must raise."""
    with pytest.raises(EncodeError) as info:
        encode(value)
    assert isinstance(info.value, LocalProtocolError)
    assert not isinstance(info.value, RemoteProtocolError)
    return str(info.value)


def round_trip(encode: Callable[[Any], bytes], decode: Decoder, value: Any) -> None:
    data = encode(value)
    assert type(data) is bytes
    back = decode(data)
    assert back == value
    assert type(back) is type(value)
    assert encode(back) == data  # one encoding per value: re-encoding is stable


# Positions in the raw CBOR arrays.
REQ = {
    "vote.term": 2,
    "vote.committed": 4,
    "meta.last_log_id.index": 7,
    "meta.membership": 8,
    "meta.snapshot_id": 9,
    "meta.size": 10,
    "offset": 11,
    "data": 12,
    "seq": 13,
    "sent_at": 14,
}
RESP = {
    "vote.node_id": 3,
    "snapshot_id": 5,
    "next_offset": 6,
    "done": 7,
    "matching.term": 8,
    "seq": 11,
    "sent_at": 12,
}
META_AT = {"last_log_id.term": 2, "membership": 5, "snapshot_id": 6, "size": 7}


def frame(value: Any, positions: dict[str, int], **changes: Any) -> bytes:
    """``value``'s encoding as its raw CBOR array, with some positions replaced."""
    encode = encode_snapshot_meta if type(value) is SnapshotMeta else encode_message
    raw: list[Any] = cbor2.loads(encode(value))
    for name, v in changes.items():
        raw[positions[name.replace("__", ".")]] = v
    return cbor2.dumps(raw)


def request_frame(**changes: Any) -> bytes:
    return frame(REQUEST, REQ, **changes)


def response_frame(**changes: Any) -> bytes:
    return frame(RESPONSE, RESP, **changes)


def meta_frame(**changes: Any) -> bytes:
    return frame(META, META_AT, **changes)


# ---------------------------------------------------------------------------
# Round trips


def test_requests_responses_and_metas_round_trip_by_hand() -> None:
    uniform = Membership.of({1: None, 2: "b", 3: {"zone": "a", "port": 7000}})
    metas = [
        META,  # a joint membership
        SnapshotMeta(LID, (LogId(1, 1, 1), uniform), "s", 0),
        SnapshotMeta(ZERO_LOG_ID, None, "x" * MAX_SNAPSHOT_ID_LEN, 0),  # no membership
        SnapshotMeta(LogId(rst.U64, rst.U64, rst.U64), None, "ünïcode-id", rst.U64),
    ]
    for meta in metas:
        round_trip(encode_snapshot_meta, decode_snapshot_meta, meta)
        for data in (b"", b"\x00\xff" * 3):
            request = InstallSnapshotRequest(VOTE, meta, 5, data, 1, 2.5)
            round_trip(encode_message, decode_message, request)
    for done in (True, False):
        response = InstallSnapshotResponse(Vote(0, 0, False), "s", 0, done, ZERO_LOG_ID, 0, 0.0)
        round_trip(encode_message, decode_message, response)
    round_trip(encode_message, decode_message, RESPONSE)


def test_the_joint_membership_comes_back_whole() -> None:
    back = decode_message(encode_message(REQUEST))
    assert isinstance(back, InstallSnapshotRequest)
    assert type(back.meta) is SnapshotMeta
    assert back.meta.membership is not None
    log_id, membership = back.meta.membership
    assert type(log_id) is LogId
    assert log_id == LogId(2, 1, 50)
    assert membership == JOINT
    assert len(membership.configs) == 2
    assert membership.nodes[4] == "10.0.0.4:7000"


def test_quorum_specs_in_the_meta_round_trip() -> None:
    flexible = Membership([{1, 2, 3}], {1: None, 2: None, 3: None}, [("flexible", (1, 2, 3), 2, 2)])
    meta = SnapshotMeta(LID, (LID, flexible), "q", 1)
    round_trip(encode_snapshot_meta, decode_snapshot_meta, meta)
    assert len(cbor2.loads(encode_snapshot_meta(meta))[5]) == 6  # ..., configs, nodes, quorums


def test_a_large_chunk_round_trips() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    meta = SnapshotMeta(LID, (LID, JOINT), "big", 3 << 20)
    request = InstallSnapshotRequest(VOTE, meta, 1 << 20, data, 3, 4.0)
    encoded = encode_message(request)
    assert len(encoded) < len(data) + 200  # the bytes travel as they are
    back = decode_message(encoded)
    assert back == request
    assert isinstance(back, InstallSnapshotRequest)
    assert type(back.data) is bytes


def test_int_times_decode_as_floats() -> None:
    back = decode_message(request_frame(sent_at=7))
    assert isinstance(back, InstallSnapshotRequest)
    assert type(back.sent_at) is float
    assert back.sent_at == 7.0
    back_resp = decode_message(response_frame(sent_at=7))
    assert isinstance(back_resp, InstallSnapshotResponse)
    assert type(back_resp.sent_at) is float


# Hypothesis text never holds lone surrogates (not UTF-8, so not encodable).
snapshot_ids = st.text(min_size=1, max_size=MAX_SNAPSHOT_ID_LEN)
snapshot_metas = st.builds(
    SnapshotMeta,
    rst.log_ids(),
    st.none() | st.tuples(rst.log_ids(), rst.memberships(max_nodes=5)),
    snapshot_ids,
    st.integers(0, rst.U64),
)
install_snapshot_requests = st.builds(
    InstallSnapshotRequest,
    rst.votes(),
    snapshot_metas,
    st.integers(0, rst.U64),
    st.binary(max_size=64),
    st.integers(0, rst.U64),
    rst.times(),
)
install_snapshot_responses = st.builds(
    InstallSnapshotResponse,
    rst.votes(),
    snapshot_ids,
    st.integers(0, rst.U64),
    st.booleans(),
    rst.log_ids(),
    st.integers(0, rst.U64),
    rst.times(),
)


@settings(deadline=None)
@given(st.one_of(install_snapshot_requests, install_snapshot_responses))
def test_snapshot_messages_round_trip(msg: Any) -> None:
    round_trip(encode_message, decode_message, msg)


@settings(deadline=None)
@given(snapshot_metas)
def test_snapshot_metas_round_trip(meta: SnapshotMeta) -> None:
    round_trip(encode_snapshot_meta, decode_snapshot_meta, meta)


# ---------------------------------------------------------------------------
# The layout is frozen.


def test_layout_is_frozen() -> None:
    assert (TAG_INSTALL_SNAPSHOT_REQUEST, TAG_INSTALL_SNAPSHOT_RESPONSE) == (10, 11)
    assert TAG_SNAPSHOT_META == 12
    meta = SnapshotMeta(LogId(3, 1, 9), (LogId(2, 1, 5), Membership.of({1: None})), "s", 4)
    request = InstallSnapshotRequest(Vote(3, 1, True), meta, 0, b"ab", 7, 1.5)
    assert encode_message(request).hex() == (
        "8f010a"
        + "0301f5"  # vote
        + "030109"  # meta.last_log_id
        + "850201058181018201f6"  # meta.membership: [2, 1, 5, [[1]], [1, null]]
        + "6173"  # meta.snapshot_id
        + "04"  # meta.size
        + "00"  # offset
        + "426162"  # data
        + "07"  # seq
        + "fb3ff8000000000000"  # sent_at
    )
    no_membership = SnapshotMeta(LogId(3, 1, 9), None, "s", 4)
    assert encode_snapshot_meta(no_membership).hex() == "88010c" + "030109" + "f6" + "6173" + "04"
    response = InstallSnapshotResponse(Vote(3, 1, True), "s", 2, False, LogId(3, 1, 9), 7, 1.5)
    assert encode_message(response).hex() == (
        "8d010b" + "0301f5" + "6173" + "02" + "f4" + "030109" + "07" + "fb3ff8000000000000"
    )


def test_each_snapshot_record_is_accepted_by_its_own_decoder_only() -> None:
    assert "record tag 12 (SnapshotMeta)" in codec_error(decode_message, encode_snapshot_meta(META))
    for data in (encode_message(REQUEST), encode_message(RESPONSE)):
        for decode in (decode_snapshot_meta, decode_log_id, decode_membership):
            assert "record tag 1" in codec_error(decode, data)
    assert codec_error(decode_snapshot_meta, encode_log_id(LID)) == (
        "SnapshotMeta: expected record tag 12, got record tag 7 (LogId)"
    )
    assert codec_error(decode_snapshot_meta, encode_membership((LID, JOINT))) == (
        "SnapshotMeta: expected record tag 12, got record tag 8 (Membership)"
    )


# ---------------------------------------------------------------------------
# Malformed input: CodecError, naming the record and the field.


def test_wrong_arity_is_named() -> None:
    raw = cbor2.loads(encode_message(REQUEST))
    assert codec_error(decode_message, cbor2.dumps(raw[:-1])) == (
        "InstallSnapshotRequest: expected 15 items [version, tag, ...], got 14"
    )
    assert codec_error(decode_message, cbor2.dumps([*raw, 0])) == (
        "InstallSnapshotRequest: expected 15 items [version, tag, ...], got 16"
    )
    raw = cbor2.loads(encode_message(RESPONSE))
    assert codec_error(decode_message, cbor2.dumps(raw[:-1])) == (
        "InstallSnapshotResponse: expected 13 items [version, tag, ...], got 12"
    )
    assert codec_error(decode_message, cbor2.dumps([1, 11])) == (
        "InstallSnapshotResponse: expected 13 items [version, tag, ...], got 2"
    )
    raw = cbor2.loads(encode_snapshot_meta(META))
    assert codec_error(decode_snapshot_meta, cbor2.dumps(raw[:-1])) == (
        "SnapshotMeta: expected 8 items [version, tag, ...], got 7"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": "0123456789"}, "data: expected bytes, got '0123456789'"),
        ({"data": None}, "data: expected bytes, got NoneType None"),
        ({"data": [1, 2]}, "data: expected bytes, got list [1, 2]"),
        ({"offset": -1}, "offset: expected int >= 0, got -1"),
        ({"offset": True}, "offset: expected int >= 0, got bool True"),
        ({"offset": 1.0}, "offset: expected int >= 0, got 1.0"),
        ({"seq": -3}, "seq: expected int >= 0, got -3"),
        ({"seq": False}, "seq: expected int >= 0, got bool False"),
        ({"sent_at": math.nan}, "sent_at: expected a finite number, got nan"),
        ({"sent_at": "now"}, "sent_at: expected float or int, got 'now'"),
        ({"vote__term": True}, "vote.term: expected int >= 0, got bool True"),
        ({"vote__committed": 1}, "vote.committed: expected bool, got 1"),
        ({"meta__last_log_id__index": -1}, "meta.last_log_id.index: expected int >= 0, got -1"),
        ({"meta__size": -10}, "meta.size: expected int >= 0, got -10"),
        ({"meta__size": True}, "meta.size: expected int >= 0, got bool True"),
        ({"meta__snapshot_id": 100}, "meta.snapshot_id: expected str, got 100"),
        ({"meta__snapshot_id": b"snap"}, "meta.snapshot_id: expected str, got bytes b'snap'"),
        ({"meta__snapshot_id": ""}, "meta.snapshot_id: expected 1 to 128 characters, got 0"),
        (
            {"meta__snapshot_id": "x" * (MAX_SNAPSHOT_ID_LEN + 1)},
            "meta.snapshot_id: expected 1 to 128 characters, got 129",
        ),
    ],
)
def test_bad_request_fields_are_named(change: dict[str, Any], message: str) -> None:
    assert codec_error(decode_message, request_frame(**change)) == (
        f"InstallSnapshotRequest.{message}"
    )


@pytest.mark.parametrize(
    ("membership", "message"),
    [
        (
            "voters",
            "meta.membership: expected null or [term, node_id, index, configs, nodes(, quorums)], "
            "got 'voters'",
        ),
        (
            [2, 1, 5, [[1]]],
            "meta.membership: expected null or [term, node_id, index, configs, nodes(, quorums)], "
            "got list [2, 1, 5, [[1]]]",
        ),
        (
            [[[1]], [1, None]],  # the bare membership, without its log id
            "meta.membership: expected null or [term, node_id, index, configs, nodes(, quorums)], "
            "got list [[[1]], [1, None]]",
        ),
        (
            [-2, 1, 5, [[1]], [1, None]],
            "meta.membership.log_id.term: expected int >= 0, got -2",
        ),
        (
            [2, 1, 5, [[0]], [0, None]],
            "meta.membership.configs[0]: expected node id (int >= 1), got 0",
        ),
        (
            [2, 1, 5, [[1, 1]], [1, None]],
            "meta.membership.configs[0]: duplicate node id",
        ),
        (
            [2, 1, 5, [[1, 2]], [1, None]],
            "meta.membership: invalid membership: voter 2 has no node info",
        ),
        (
            [2, 1, 5, [], [1, None]],
            "meta.membership: invalid membership: needs at least one voter config",
        ),
        (
            [2, 1, 5, [[1]], [1, {"a": math.inf}]],
            "meta.membership.nodes[1]['a']: floats must be finite, got inf",
        ),
        (
            [2, 1, 5, [[1]], [1, None], "quorums"],
            "meta.membership.quorums: expected an array of quorum specs, got 'quorums'",
        ),
    ],
)
def test_bad_memberships_in_the_meta_are_named(membership: Any, message: str) -> None:
    assert codec_error(decode_message, request_frame(meta__membership=membership)) == (
        f"InstallSnapshotRequest.{message}"
    )
    stored = message.removeprefix("meta.")
    assert codec_error(decode_snapshot_meta, meta_frame(membership=membership)) == (
        f"SnapshotMeta.{stored}"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"snapshot_id": 7}, "snapshot_id: expected str, got 7"),
        ({"snapshot_id": None}, "snapshot_id: expected str, got NoneType None"),
        ({"snapshot_id": ""}, "snapshot_id: expected 1 to 128 characters, got 0"),
        ({"next_offset": -1}, "next_offset: expected int >= 0, got -1"),
        ({"next_offset": True}, "next_offset: expected int >= 0, got bool True"),
        ({"done": 1}, "done: expected bool, got 1"),
        ({"done": None}, "done: expected bool, got NoneType None"),
        ({"matching__term": "3"}, "matching.term: expected int >= 0, got '3'"),
        ({"vote__node_id": -1}, "vote.node_id: expected int >= 0, got -1"),
        ({"seq": 1.5}, "seq: expected int >= 0, got 1.5"),
        ({"sent_at": -math.inf}, "sent_at: expected a finite number, got -inf"),
    ],
)
def test_bad_response_fields_are_named(change: dict[str, Any], message: str) -> None:
    assert codec_error(decode_message, response_frame(**change)) == (
        f"InstallSnapshotResponse.{message}"
    )


def test_bad_stored_meta_fields_are_named() -> None:
    assert codec_error(decode_snapshot_meta, meta_frame(last_log_id__term=True)) == (
        "SnapshotMeta.last_log_id.term: expected int >= 0, got bool True"
    )
    assert codec_error(decode_snapshot_meta, meta_frame(snapshot_id=["s"])) == (
        "SnapshotMeta.snapshot_id: expected str, got list ['s']"
    )
    assert codec_error(decode_snapshot_meta, meta_frame(size=-1)) == (
        "SnapshotMeta.size: expected int >= 0, got -1"
    )
    assert codec_error(decode_snapshot_meta, meta_frame(size=1 << 64)).startswith(
        "SnapshotMeta: CBOR tag 2 is not allowed"  # a bignum
    )


def test_truncated_and_otherwise_malformed_input() -> None:
    for record in (encode_message(REQUEST), encode_message(RESPONSE)):
        for cut in (1, 2, len(record) // 2, len(record) - 1):
            assert codec_error(decode_message, record[:cut]).startswith("message: truncated input")
        assert codec_error(decode_message, record + b"\x00") == (
            "message: 1 trailing byte after the record"
        )
    big = encode_message(REQUEST._replace(data=b"x" * 100_000))
    assert codec_error(decode_message, big[:-50_000]).startswith("message: truncated input")
    stored = encode_snapshot_meta(META)
    for cut in (1, len(stored) // 2, len(stored) - 1):
        assert codec_error(decode_snapshot_meta, stored[:cut]).startswith(
            "SnapshotMeta: truncated input"
        )
    assert codec_error(decode_snapshot_meta, b"") == "SnapshotMeta: empty input"
    assert codec_error(decode_snapshot_meta, "88010c") == "SnapshotMeta: expected bytes, got str"
    indefinite_data = request_frame().replace(bytes.fromhex("4a") + b"0123456789", b"\x5f\xff")
    assert codec_error(decode_message, indefinite_data).startswith("message: invalid CBOR")


# ---------------------------------------------------------------------------
# Unencodable values: EncodeError (a LocalProtocolError), naming the field.


def test_unencodable_values_are_local_errors() -> None:
    def request(**changes: Any) -> InstallSnapshotRequest:
        return REQUEST._replace(**changes)

    def meta(**changes: Any) -> SnapshotMeta:
        fields = {
            "last_log_id": META.last_log_id,
            "membership": META.membership,
            "snapshot_id": META.snapshot_id,
            "size": META.size,
            **changes,
        }
        return SnapshotMeta(**fields)

    assert encode_error(encode_message, request(data="text")) == (
        "InstallSnapshotRequest.data: expected bytes, got 'text'"
    )
    assert encode_error(encode_message, request(data=bytearray(b"x"))) == (
        "InstallSnapshotRequest.data: expected bytes, got bytearray bytearray(b'x')"
    )
    assert encode_error(encode_message, request(offset=-1)) == (
        "InstallSnapshotRequest.offset: expected int >= 0, got -1"
    )
    assert encode_error(encode_message, request(sent_at=math.inf)) == (
        "InstallSnapshotRequest.sent_at: expected a finite number, got inf"
    )
    assert encode_error(encode_message, request(meta="meta")) == (
        "InstallSnapshotRequest.meta: expected SnapshotMeta, got 'meta'"
    )
    assert encode_error(encode_message, request(meta=meta(snapshot_id=""))) == (
        "InstallSnapshotRequest.meta.snapshot_id: expected 1 to 128 characters, got 0"
    )
    assert encode_error(encode_message, request(meta=meta(size=True))) == (
        "InstallSnapshotRequest.meta.size: expected int >= 0, got bool True"
    )
    assert encode_error(encode_message, request(meta=meta(last_log_id=(1, 1, 1)))) == (
        "InstallSnapshotRequest.meta.last_log_id: expected LogId, got tuple (1, 1, 1)"
    )
    assert encode_error(encode_message, request(meta=meta(membership=JOINT))).startswith(
        "InstallSnapshotRequest.meta.membership: expected (LogId, Membership) or None, "
        "got Membership Membership("
    )
    assert encode_error(encode_snapshot_meta, meta(membership=(LID, "m"))) == (
        "SnapshotMeta.membership: expected Membership, got 'm'"
    )
    assert encode_error(encode_snapshot_meta, meta(membership=(LogId(-1, 1, 1), JOINT))) == (
        "SnapshotMeta.membership.log_id.term: expected int >= 0, got -1"
    )
    info = Membership.of({1: {"tags": {"a"}}})
    assert encode_error(encode_snapshot_meta, meta(membership=(LID, info))).startswith(
        "SnapshotMeta.membership.nodes[1]['tags']: unsupported type set"
    )
    assert encode_error(encode_snapshot_meta, meta(snapshot_id="\ud800")).startswith(
        "SnapshotMeta: cannot encode:"
    )
    assert encode_error(encode_snapshot_meta, LID) == (
        "SnapshotMeta: expected SnapshotMeta, got LogId 3-1-100"
    )

    def response(**changes: Any) -> InstallSnapshotResponse:
        return RESPONSE._replace(**changes)

    assert encode_error(encode_message, response(done=1)) == (
        "InstallSnapshotResponse.done: expected bool, got 1"
    )
    assert encode_error(encode_message, response(snapshot_id=b"s")) == (
        "InstallSnapshotResponse.snapshot_id: expected str, got bytes b's'"
    )
    assert encode_error(encode_message, response(next_offset=1 << 64)) == (
        "InstallSnapshotResponse.next_offset: expected int < 2**64, got 18446744073709551616"
    )
