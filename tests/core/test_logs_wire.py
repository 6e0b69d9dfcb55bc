"""The ``append`` fast-path decoder agrees with the generic schema decoder on any input.

protocol/handlers/logs.py replaces the generic decoder of ``append`` with one
that builds storage entries directly. It must accept exactly what the
generic decoder accepts, produce the same records, and leave every error
message to the generic decoder.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from minibroker.client.logs import records_from_bytes
from minibroker.core.errors import BadRequest
from minibroker.protocol import frames
from minibroker.protocol.codec import _REQUEST_DECODERS, decode_request
from minibroker.protocol.handlers.logs import decode_append
from minibroker.protocol.schema import compile_decoder
from minibroker.storage import Record, decode_records, encode_records

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
    try:
        expected = generic(raw, "")
    except BadRequest as exc:
        try:
            decode_append(raw)
        except BadRequest as fast_exc:
            assert fast_exc.message == exc.message
        else:
            raise AssertionError("the fast decoder accepted what the generic one refuses") from None
        return
    got = decode_append(raw)
    assert got == expected
    assert type(got) is frames.Append
    assert all(type(r) is frames.RecordIn for r in got.records)


def test_the_codec_uses_the_fast_decoder_for_the_common_shape() -> None:
    raw = {"op": "append", "id": 1, "log": "ev", "records": [{"body": b"x", "key": b"k"}]}
    assert _REQUEST_DECODERS["append"] is decode_append
    decoded = decode_request(raw)
    assert decoded == frames.Append(1, "ev", [frames.RecordIn(b"x", b"k")])
    # A text body is converted by the generic decoder, as for every other frame.
    decoded = decode_request({"op": "append", "id": 1, "log": "ev", "records": [{"body": "é"}]})
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
