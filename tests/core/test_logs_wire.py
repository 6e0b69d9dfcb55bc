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

from minibroker.core.errors import BadRequest
from minibroker.protocol import frames
from minibroker.protocol.codec import decode_request
from minibroker.protocol.handlers.logs import AppendEntries, decode_append
from minibroker.protocol.schema import compile_decoder

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


def as_entries(decoded: Any) -> list[tuple[Any, Any, Any]]:
    if isinstance(decoded, AppendEntries):
        return list(decoded.entries)
    return [(r.key, r.headers, r.body) for r in decoded.records]


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
    assert (got.id, got.log) == (expected.id, expected.log)
    assert as_entries(got) == as_entries(expected)


def test_the_codec_uses_the_fast_decoder_for_the_common_shape() -> None:
    raw = {"op": "append", "id": 1, "log": "ev", "records": [{"body": b"x", "key": b"k"}]}
    decoded = decode_request(raw)
    assert isinstance(decoded, AppendEntries)
    assert decoded.entries == [(b"k", None, b"x")]
    # A text body is converted by the generic decoder, as for every other frame.
    decoded = decode_request({"op": "append", "id": 1, "log": "ev", "records": [{"body": "é"}]})
    assert isinstance(decoded, frames.Append)
    assert decoded.records[0].body == "é".encode()
