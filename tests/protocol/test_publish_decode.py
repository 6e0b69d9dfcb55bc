"""The ``publish`` fast-path decoder agrees with the generic schema decoder on any input.

protocol/handlers/topics.py replaces the generic decoder of ``publish`` with
one that keeps bare bodies as they are and builds ``MessageIn`` items without
``__init__``. It must accept exactly what the generic decoder accepts,
produce the same messages, and leave every error message to the generic decoder.
"""

from __future__ import annotations

from typing import Any

from helpers import Net, assert_decoders_agree
from hypothesis import given
from hypothesis import strategies as st

from minibroker.protocol import frames
from minibroker.protocol.codec import InvalidFrame, decode_request
from minibroker.protocol.handlers.topics import decode_publish
from minibroker.protocol.ops import OPS, REQUEST_DECODERS
from minibroker.protocol.schema import compile_decoder

generic = compile_decoder(frames.Publish)

scalars = (
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3) | st.binary(max_size=3)
)
headers = (
    st.none() | st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2) | scalars
)
message = (
    st.dictionaries(
        st.sampled_from(["body", "headers", "other"]),
        st.one_of(scalars, headers, st.binary(max_size=5)),
    )
    | scalars
)
request = st.fixed_dictionaries(
    {"op": st.just("publish"), "id": st.integers(0, 5)},
    optional={
        "topic": st.text(max_size=3) | scalars,
        "messages": st.lists(message, max_size=4) | scalars,
    },
)


@given(request)
def test_fast_decoder_agrees_with_the_generic_one(raw: dict[str, Any]) -> None:
    got = assert_decoders_agree(decode_publish, generic, raw)
    if got is not None:
        assert type(got) is frames.Publish
        assert all(type(m) in (frames.MessageIn, bytes) for m in got.messages)


def test_the_codec_decodes_bare_bodies_with_the_fast_decoder() -> None:
    assert OPS["publish"].decode is decode_publish
    raw = {"op": "publish", "id": 1, "topic": "a.b", "messages": [b"x", {"body": b"y"}]}
    decoded = decode_request(raw, REQUEST_DECODERS)
    assert decoded == frames.Publish(1, "a.b", [b"x", frames.MessageIn(b"y")])
    error = decode_request({**raw, "messages": [b"a", 7]}, REQUEST_DECODERS)
    assert isinstance(error, InvalidFrame)
    assert error.error.message == "field 'messages[1]' must be a map or binary, got int"


def test_bare_and_mapped_messages_reach_subscribers_alike() -> None:
    net = Net()
    publisher, plain, compact = net.connect(), net.connect(), net.connect()
    plain.call("subscribe", pattern="t.*")
    compact.call("subscribe", pattern="t.*", compact=True)
    result = publisher.call(
        "publish", topic="t.a", messages=[b"one", {"body": b"two", "headers": {"k": "v"}}]
    )
    assert result == {"subscriptions": 4, "queues": 0}
    plain.pump()
    compact.pump()
    # A plain subscription gets maps, as before compact pushes existed.
    (old,) = [frame for frame in plain.other if frame["op"] == "msg"]
    assert "topic" not in old
    assert old["messages"] == [
        {"topic": "t.a", "body": b"one"},
        {"topic": "t.a", "body": b"two", "headers": {"k": "v"}},
    ]
    # A compact one gets the body alone where topic and (no) headers allow.
    (new,) = [frame for frame in compact.other if frame["op"] == "msg"]
    assert new["topic"] == "t.a"
    assert new["messages"] == [b"one", {"topic": "t.a", "body": b"two", "headers": {"k": "v"}}]
