"""The client decodes what the server sends through the same frame classes.

``decode_msg`` is the client's fast path for ``msg`` pushes; it must give
what the generic schema decoder gives, errors included, on arbitrary input,
once bare bodies (compact pushes) are turned into their ``TopicMessage``.
"""

from __future__ import annotations

from typing import Any

import msgpack
from helpers import assert_decoders_agree
from hypothesis import given
from hypothesis import strategies as st

from minibroker.client.protocol import (
    _SERVER_DECODERS,
    Goodbye,
    Push,
    Reply,
    _to_event,
    decode_msg,
    decode_req,
)
from minibroker.errors import BadRequest, NotFound
from minibroker.protocol import codec, frames
from minibroker.protocol.codec import HEADER_SIZE
from minibroker.protocol.schema import compile_decoder

schema_decoder = compile_decoder(frames.Msg)


def generic(raw: dict[str, Any], path: str) -> frames.Msg:
    """The schema decoder's frame, each bare body expanded with the frame's topic."""
    decoded: frames.Msg = schema_decoder(raw, path)
    for index, item in enumerate(decoded.messages):
        if type(item) is bytes:
            if decoded.topic is None:
                raise BadRequest(
                    f"field '{path}messages[{index}]' is a bare body, but the frame has no 'topic'"
                )
            decoded.messages[index] = frames.TopicMessage(decoded.topic, item, None)
    return decoded


scalars = (
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3) | st.binary(max_size=3)
)
headers = st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2) | scalars
message = (
    st.dictionaries(
        st.sampled_from(["topic", "body", "headers", "other"]),
        st.one_of(scalars, headers),
    )
    | scalars
)
raw_msg = st.fixed_dictionaries(
    {"op": st.just("msg")},
    optional={
        "sub": st.integers(0, 5) | scalars,
        "messages": st.lists(message | st.binary(max_size=3), max_size=4) | scalars,
        "topic": st.text(max_size=3) | scalars,
    },
)


@given(raw_msg)
def test_fast_msg_decoder_agrees_with_the_generic_one(raw: dict[str, Any]) -> None:
    got = assert_decoders_agree(decode_msg, generic, raw)
    if got is not None:
        assert all(type(m) is frames.TopicMessage for m in got.messages)


request_out = st.fixed_dictionaries(
    {},
    optional={
        "rid": st.integers(-2, 2**40) | scalars,
        "subject": st.text(max_size=3) | scalars,
        "body": st.binary(max_size=3) | scalars,
        "headers": headers,
        "timeout": st.floats(allow_nan=False) | scalars,
        "other": scalars,
    },
)
raw_req = st.fixed_dictionaries(
    {"op": st.just("req")},
    optional={
        "sub": st.integers(0, 5) | scalars,
        "requests": st.lists(request_out | scalars, max_size=3) | scalars,
    },
)


@given(raw_req)
def test_fast_req_decoder_agrees_with_the_generic_one(raw: dict[str, Any]) -> None:
    """``decode_req``, the fast path of a responder's pushes (Python's float and
    int compare equal, so the types are checked too)."""
    got = assert_decoders_agree(decode_req, frames.DECODERS["req"], raw)
    if got is not None:
        expected = frames.DECODERS["req"](raw, "")
        assert [type(r.timeout) for r in got.requests] == [
            type(r.timeout) for r in expected.requests
        ]


def test_the_client_decodes_req_pushes_with_the_fast_decoder() -> None:
    assert _SERVER_DECODERS["req"] is decode_req
    raw = {"op": "req", "sub": 2, "requests": [{"rid": 7, "subject": "s", "body": b"x"}]}
    event = _to_event(raw)
    assert type(event) is Push
    assert event.frame == frames.Req(2, [frames.RequestOut(7, "s", b"x", None, 0.0)])


def _generic_ok_event(raw: dict[str, Any]) -> Reply | Goodbye:
    """The event the ``Ok`` frame class's decoder gives (the generic way)."""
    try:
        frame = frames.DECODERS["ok"](raw, "")
    except BadRequest as exc:
        return Goodbye(BadRequest(f"server sent an invalid 'ok' frame: {exc.message}"))
    return Reply(frame.id, frame.result)


raw_ok = st.fixed_dictionaries(
    {"op": st.just("ok")},
    optional={
        "id": st.integers(-3, 2**64 - 1) | scalars,
        "result": scalars | headers,
        "other": scalars,
    },
)


@given(raw_ok)
def test_fast_ok_path_agrees_with_the_generic_one(raw: dict[str, Any]) -> None:
    event = _to_event(raw)
    expected = _generic_ok_event(raw)
    if type(expected) is Goodbye:
        assert type(event) is Goodbye
        assert str(event.error) == str(expected.error)
    else:
        assert event == expected


def _wire(frame: frames.Frame | bytes) -> dict[str, Any]:
    data = frame if isinstance(frame, bytes) else codec.encode(frame)
    decoded: dict[str, Any] = msgpack.unpackb(data[HEADER_SIZE:])
    return decoded


def test_server_frames_become_typed_events() -> None:
    assert _to_event(_wire(codec.ok(frames.Ok(3, None)))) == Reply(3, None)
    event = _to_event(_wire(codec.error_frame(4, NotFound("gone"), 1024)))
    assert type(event) is Reply and isinstance(event.error, NotFound)
    assert type(_to_event(_wire(codec.bye_frame(NotFound("bye"))))) is Goodbye
    records = frames.Records(2, b"data", 1, 8)
    assert _to_event(_wire(records)) == Push(2, "records", records)
    msg = frames.Msg(1, [frames.TopicMessage("t", b"b", {"k": "v"})])
    assert _to_event(_wire(msg)) == Push(1, "msg", msg)


def test_a_compact_msg_becomes_topic_messages() -> None:
    packed = [codec.bare_message(b"one"), codec.topic_message(frames.TopicMessage("u", b"2"))]
    data = codec.compact_msg(4, "t", packed, sum(map(len, packed)))
    assert data == codec.encode(frames.Msg(4, [b"one", frames.TopicMessage("u", b"2")], "t"))
    event = _to_event(_wire(data))
    assert type(event) is Push
    assert event.frame.messages == [
        frames.TopicMessage("t", b"one"),
        frames.TopicMessage("u", b"2"),
    ]


def test_a_bare_body_without_a_topic_is_refused() -> None:
    event = _to_event({"op": "msg", "sub": 1, "messages": [b"x"]})
    assert type(event) is Goodbye
    assert "bare body" in event.error.message


def test_a_frame_that_breaks_the_schema_ends_the_connection_clearly() -> None:
    event = _to_event({"op": "records", "sub": 1, "data": 5})
    assert type(event) is Goodbye
    assert "invalid 'records' frame" in event.error.message
    assert type(_to_event({"op": "surprise"})) is Goodbye
    assert type(_to_event([1, 2])) is Goodbye
