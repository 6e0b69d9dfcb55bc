"""The encoder's fast paths give the bytes the generic ``encode`` gives, on any frame.

Every frame the server sends is built in protocol/codec.py; the functions
for the frames sent per request or per message are hand-shaped, and must
stay byte-for-byte what ``encode(frame)`` (the frame class's schema) builds.
"""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from minibroker.errors import BadRequest, LimitExceeded, NotFound
from minibroker.protocol import codec, frames
from minibroker.protocol.codec import HEADER_SIZE
from minibroker.protocol.ops import OPS, PUSH_ENCODERS

texts = st.text(max_size=20)
ids = st.integers(0, 2**64 - 1)
headers = st.none() | st.dictionaries(texts, texts, min_size=1, max_size=3)
results: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | texts | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


@given(ids, results)
def test_ok(request_id: int, result: object) -> None:
    frame = frames.Ok(request_id, result)
    assert codec.ok(frame) == codec.encode(frame)
    assert codec.ok_of(request_id, result) == codec.encode(frame)


@given(ids, st.binary(max_size=50), st.integers(0, 2**32), st.integers(0, 2**63))
def test_records(sub: int, data: bytes, count: int, next_offset: int) -> None:
    frame = frames.Records(sub, data, count, next_offset)
    assert codec.records(frame) == codec.encode(frame)


request_out = st.builds(
    frames.RequestOut,
    ids,
    texts,
    st.binary(max_size=20),
    headers,
    st.floats(0, 1e6, allow_nan=False),
)


@given(ids, st.lists(request_out, max_size=5))
def test_req(sub: int, requests: list[frames.RequestOut]) -> None:
    frame = frames.Req(sub, requests)
    assert codec.req(frame) == codec.encode(frame)


@given(ids, st.lists(request_out, max_size=5), st.lists(st.booleans(), max_size=5))
def test_req_rows(sub: int, requests: list[frames.RequestOut], empty: list[bool]) -> None:
    # The rows the router hands out: headers None or a map (an empty map
    # travels as no headers, as ``RequestOut(..., headers or None, ...)``).
    rows = [
        (r.rid, r.subject, r.body, {} if r.headers is None and e else r.headers, r.timeout)
        for r, e in zip(requests, empty + [False] * len(requests), strict=False)
    ]
    assert codec.req_rows(sub, rows) == codec.encode(frames.Req(sub, requests))


topic_message = st.builds(frames.TopicMessage, texts, st.binary(max_size=30), headers)


@given(ids, st.lists(topic_message, min_size=1, max_size=40))
def test_msg_from_messages_packed_once(sub: int, messages: list[frames.TopicMessage]) -> None:
    packed = [codec.topic_message(m) for m in messages]
    fast = codec.msg(sub, packed, sum(len(p) for p in packed))
    assert fast == codec.encode(frames.Msg(sub, messages))


def test_errors_keep_their_shape_and_fit_the_limit() -> None:
    error = LimitExceeded("too many", limit=3)
    data = codec.error_frame(7, error, 1024)
    assert msgpack.unpackb(data[HEADER_SIZE:]) == {
        "op": "error",
        "code": "limit_exceeded",
        "message": "too many",
        "id": 7,
        "details": {"limit": 3},
    }
    # Details that do not fit are left out; the code and message stay.
    big = BadRequest("bad", names=["x" * 300] * 10)
    decoded = msgpack.unpackb(codec.error_frame(None, big, 1024)[HEADER_SIZE:])
    assert decoded == {"op": "error", "code": "bad_request", "message": "bad"}
    assert msgpack.unpackb(codec.bye_frame(NotFound("gone"))[HEADER_SIZE:]) == {
        "op": "bye",
        "code": "not_found",
        "message": "gone",
    }
    assert msgpack.unpackb(codec.end_frame(4, NotFound("gone"))[HEADER_SIZE:]) == {
        "op": "end",
        "sub": 4,
        "code": "not_found",
        "message": "gone",
    }


def test_the_op_table_serves_every_request_op_and_nothing_else() -> None:
    assert set(OPS) == set(frames.REQUESTS)
    for name, op in OPS.items():
        assert op.frame is frames.REQUESTS[name]
        assert op.permission != "unclassified", name
    assert len(PUSH_ENCODERS) == 3


@given(
    ids,
    st.sampled_from([0, 255, 256, 65535, 65536, 1 << 20]),
    st.integers(0, 2**32),
    st.integers(0, 2**63),
)
def test_records_at_every_bin_width(sub: int, size: int, count: int, next_offset: int) -> None:
    """The hand-built ``records`` push writes bin 8, 16 and 32 headers as msgpack does."""
    frame = frames.Records(sub, bytes([size % 251]) * size, count, next_offset)
    assert codec.records(frame) == codec.encode(frame)
