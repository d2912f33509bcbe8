"""Hypothesis fuzzing of the codec's decoders with hostile bytes.

Random bytes, valid frames mutated at the byte level (bit flips, truncation,
splices, insertions, deletions) and at the CBOR level (one item anywhere in
the record replaced by an arbitrary CBOR value) go to every ``decode_*``
function. Whatever the input, a decoder either raises ``CodecError`` or
returns a value that encodes again and decodes back equal.

``HYPOTHESIS_PROFILE=ci`` (the default) keeps this to a few seconds;
``make fuzz`` runs the ``long`` profile.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftcore.codec import (
    CodecError,
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
from raftcore.testing import strategies as rst

settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("long", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CODECS: list[tuple[str, Callable[[Any], bytes], Callable[[bytes], Any]]] = [
    ("message", encode_message, decode_message),
    ("entry", encode_entry, decode_entry),
    ("vote", encode_vote, decode_vote),
    ("log_id", encode_log_id, decode_log_id),
    ("membership", encode_membership, decode_membership),
    ("hello", encode_hello, decode_hello),
]

# Valid encodings of every record type: the seeds of the mutations.
# Kept small: mutations, not the seeds' size, find the bugs.
valid_frames = st.one_of(
    rst.vote_requests().map(encode_message),
    rst.vote_responses().map(encode_message),
    rst.append_requests(max_entries=3).map(encode_message),
    rst.append_responses().map(encode_message),
    rst.entries(data=rst.entry_data(max_leaves=4)).map(encode_entry),
    rst.votes().map(encode_vote),
    rst.log_ids().map(encode_log_id),
    st.tuples(rst.log_ids(), rst.memberships(max_nodes=4)).map(encode_membership),
    rst.hellos().map(encode_hello),
)

# Bytes that mean something to a CBOR parser: headers of every major type
# with long or indefinite lengths, tags, simple values, floats, break.
interesting_bytes = st.sampled_from(
    [
        *(0x00, 0x17, 0x18, 0x1B, 0x20, 0x3B, 0x40, 0x5B, 0x5F, 0x60, 0x7B, 0x7F, 0x80, 0x9B),
        *(0x9F, 0xA0, 0xBB, 0xBF, 0xC0, 0xC1, 0xC2, 0xD8, 0xD9, 0xF4, 0xF5, 0xF6, 0xF7, 0xF9),
        *(0xFB, 0xFF),
    ]
)
single_bytes = interesting_bytes.map(lambda b: bytes([b]))


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid frame with one to four byte-level mutations."""
    data = bytearray(draw(valid_frames))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["flip", "byte", "truncate", "splice", "insert", "delete"]))
        pos = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "byte" and data:
            data[pos] = draw(interesting_bytes)
        elif op == "truncate":
            del data[pos:]
        elif op == "splice":  # this frame's head, another frame's tail
            other = draw(valid_frames)
            cut = draw(st.integers(min_value=0, max_value=len(other)))
            data[pos:] = other[cut:]
        elif op == "insert":
            extra = draw(
                st.binary(min_size=1, max_size=9) | interesting_bytes.map(lambda b: bytes([b]))
            )
            data[pos:pos] = extra
        elif op == "delete":
            del data[pos : pos + draw(st.integers(min_value=1, max_value=9))]
    return bytes(data)


cbor_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1),
        st.floats(),  # NaN and infinities included
        st.text(max_size=8),
        st.binary(max_size=8),
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(v: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position inside a decoded CBOR value, as index/key paths."""
    out = [path]
    if isinstance(v, list):
        for j, x in enumerate(v):
            out += _paths(x, (*path, j))
    elif isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, (*path, k))
    return out


@st.composite
def field_mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid frame with one item somewhere inside it replaced by an arbitrary
    CBOR value (or removed): well-formed CBOR that must fail validation, or
    decode to something valid."""
    raw = cbor2.loads(draw(valid_frames))
    # Not the whole record, its version or its tag: byte mutations cover those.
    path = draw(st.sampled_from(_paths(raw)[3:]))
    parent = raw
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, list) and draw(st.booleans()) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(cbor_values)
    return cbor2.dumps(raw)


def check_every_decoder(data: Any) -> None:
    for name, encode, decode in CODECS:
        try:
            value = decode(data)
        except CodecError:
            continue
        # Anything a decoder accepts is a valid value: it encodes, and the
        # encoding decodes to an equal value.
        again = encode(value)
        assert decode(again) == value, name


fuzz_settings = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@fuzz_settings
@given(st.binary(max_size=256))
def test_random_bytes(data: bytes) -> None:
    check_every_decoder(data)


@fuzz_settings
@given(mutated_frames())
def test_mutated_frames(data: bytes) -> None:
    check_every_decoder(data)


@fuzz_settings
@given(field_mutated_frames())
def test_field_mutated_frames(data: bytes) -> None:
    check_every_decoder(data)


@fuzz_settings
@given(st.one_of(cbor_values, st.lists(cbor_values, min_size=2).map(lambda v: [1, *v])))
def test_arbitrary_cbor_records(value: Any) -> None:
    # Well-formed CBOR of any shape, often with the right version in front.
    check_every_decoder(cbor2.dumps(value))


@fuzz_settings
@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers()), st.floats()))
def test_non_bytes_input(data: Any) -> None:
    for _, _, decode in CODECS:
        try:
            decode(data)
        except CodecError as e:
            assert "expected bytes" in str(e)
        else:
            raise AssertionError(f"{decode.__name__} accepted {data!r}")
