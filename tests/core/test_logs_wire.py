"""The ``append`` fast-path decoder agrees with the generic schema decoder on any input.

protocol/handlers/logs.py replaces the generic decoder of ``append`` with one
that builds storage entries directly. It must accept exactly what the
generic decoder accepts, produce the same records, and leave every error
message to the generic decoder.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minibroker.client.logs import records_from_bytes
from minibroker.protocol import frames
from minibroker.protocol.codec import InvalidFrame, decode_request
from minibroker.protocol.handlers.logs import decode_append
from minibroker.protocol.ops import OPS, REQUEST_DECODERS
from minibroker.protocol.schema import compile_decoder
from minibroker.storage import CorruptRecord, Record, decode_records, encode_records

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
from helpers import assert_decoders_agree

generic = compile_decoder(frames.Append)

scalars = (
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3) | st.binary(max_size=3)
)
headers = (
    st.none() | st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2) | scalars
)
record = (
    st.dictionaries(
        st.sampled_from(["body", "key", "headers", "other"]),
        st.one_of(scalars, headers, st.binary(max_size=5)),
    )
    | scalars
)
request = st.fixed_dictionaries(
    {"op": st.just("append"), "id": st.integers(0, 5)},
    optional={
        "log": st.text(max_size=3) | scalars,
        "records": st.lists(record, max_size=4) | scalars,
    },
)


@given(request)
def test_fast_decoder_agrees_with_the_generic_one(raw: dict[str, Any]) -> None:
    got = assert_decoders_agree(decode_append, generic, raw)
    if got is not None:
        assert type(got) is frames.Append
        assert all(type(r) in (frames.RecordIn, bytes) for r in got.records)


def test_a_bare_body_is_a_record_without_key_or_headers() -> None:
    raw = {"op": "append", "id": 1, "log": "ev", "records": [b"a", {"body": b"b", "key": b"k"}]}
    assert decode_request(raw) == frames.Append(1, "ev", [b"a", frames.RecordIn(b"b", b"k")])
    # Text is accepted where binary is expected, as everywhere in the protocol.
    assert decode_request({**raw, "records": ["a"]}) == frames.Append(1, "ev", [b"a"])
    error = decode_request({**raw, "records": [b"a", 7]})
    assert isinstance(error, InvalidFrame)
    assert error.error.message == "field 'records[1]' must be a map or binary, got int"


def test_the_codec_uses_the_fast_decoder_for_the_common_shape() -> None:
    raw = {"op": "append", "id": 1, "log": "ev", "records": [{"body": b"x", "key": b"k"}]}
    assert OPS["append"].decode is decode_append
    assert REQUEST_DECODERS["append"] is decode_append
    decoded = decode_request(raw, REQUEST_DECODERS)
    assert decoded == frames.Append(1, "ev", [frames.RecordIn(b"x", b"k")])
    # A text body is converted by the generic decoder, as for every other frame.
    decoded = decode_request(
        {"op": "append", "id": 1, "log": "ev", "records": [{"body": "é"}]}, REQUEST_DECODERS
    )
    assert isinstance(decoded, frames.Append)
    assert decoded.records[0].body == "é".encode()


stored_entries = st.lists(
    st.tuples(
        st.none() | st.binary(max_size=4),
        st.none() | st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2),
        st.binary(max_size=20),
    ),
    max_size=5,
)


@given(stored_entries, st.integers(0, 2**40), st.integers(0, 2**42))
def test_client_record_decoding_matches_decode_records(
    entries: list[Any], first: int, stamp: int
) -> None:
    data = encode_records(first, stamp, entries)
    fast = records_from_bytes(data)
    assert fast == decode_records(data)
    assert all(type(r) is Record for r in fast)
    assert [hash(r) for r in fast if r.headers is None] == [
        hash(r) for r in decode_records(data) if r.headers is None
    ]


@given(st.binary(max_size=200))
def test_client_decoding_of_garbage_raises_only_corrupt_record(garbage: bytes) -> None:
    with contextlib.suppress(CorruptRecord):
        records_from_bytes(garbage)


def test_client_decoding_detects_a_flipped_byte_and_a_cut_frame() -> None:
    data = encode_records(5, 1000, [b"alpha", b"beta"])
    flipped = bytearray(data)
    flipped[-1] ^= 0x01
    with pytest.raises(CorruptRecord, match="CRC"):
        records_from_bytes(bytes(flipped))
    with pytest.raises(CorruptRecord):
        records_from_bytes(data[:-1])
    assert [r.body for r in records_from_bytes(data)] == [b"alpha", b"beta"]
