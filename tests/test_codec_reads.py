"""The codec of the follower-read messages: round trips and typed errors."""

from __future__ import annotations

import cbor2
import pytest

from raftcore.codec import CodecError, decode_message, encode_message
from raftcore.ids import LogId, Vote
from raftcore.messages import ReadIndexRequest, ReadIndexResponse

V = Vote(3, 2, True)


@pytest.mark.parametrize(
    "msg",
    [
        ReadIndexRequest(V, 0),
        ReadIndexRequest(V, 2**64 - 1),
        ReadIndexResponse(V, 7, LogId(3, 2, 41)),
        ReadIndexResponse(V, 7, None),
    ],
)
def test_round_trip(msg: object) -> None:
    assert decode_message(encode_message(msg)) == msg  # type: ignore[arg-type]


def test_the_layouts_are_flat_arrays() -> None:
    assert cbor2.loads(encode_message(ReadIndexRequest(V, 5))) == [1, 13, 3, 2, True, 5]
    assert cbor2.loads(encode_message(ReadIndexResponse(V, 5, None))) == [
        1, 14, 3, 2, True, 5, None, None, None
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ([1, 13, 3, 2, True], "ReadIndexRequest: expected 6 items"),
        ([1, 13, 3, 2, True, -1], "ReadIndexRequest.seq: expected int >= 0"),
        ([1, 13, 3, 2, True, True], "ReadIndexRequest.seq"),
        ([1, 14, 3, 2, True, 5, None, 2, 9], "ReadIndexResponse.read_point.term"),
        ([1, 14, 3, 2, True, 5, 1, 2, "9"], "ReadIndexResponse.read_point.index"),
        ([1, 14, 3, 2, 1, 5, None, None, None], "ReadIndexResponse.vote"),
    ],
)
def test_malformed_records_are_typed_errors(record: list[object], problem: str) -> None:
    with pytest.raises(CodecError, match=problem.replace(".", r"\.")):
        decode_message(cbor2.dumps(record))
