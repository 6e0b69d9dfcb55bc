"""No frame the server writes is larger than its own ``max_frame_bytes`` (issue 14 item 8).

A property over every op: sessions at the smallest frame limit (1024
bytes), with a queue, a dead-letter queue, a log, a topic subscription, a
tail and a responder already set up, receive generated requests of every
op, with long and multi-byte strings where names go, big bodies and
headers, junk values and unknown op names. Every frame the sessions write
(answers, errors, pushes to the other connection, ``end`` and ``bye``) is
read by a decoder holding the same limit, as a client would: one frame over
the limit fails the test. Before the fix, ``unknown_op`` echoed the whole op
name, so a long enough op made the answer bigger than the request.
"""

from __future__ import annotations

from typing import Any

from helpers import Client, Net
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibroker.config import ServerConfig
from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig
from minibroker.protocol import frames
from minibroker.protocol.codec import MAX_ERROR_TEXT_BYTES, RawFrameDecoder, pack_frame, shorten
from minibroker.protocol.frame_class import fields
from minibroker.protocol.session import SessionSettings
from minibroker.storage import MemoryLog

LIMIT = 1024

#: Short texts, long ones, and ones that nearly fill a frame on their own.
_long_text = st.one_of(
    st.text(max_size=20),
    st.text(min_size=200, max_size=1100),
    st.integers(900, 1010).map(lambda n: "x" * n),
    st.integers(240, 260).map(lambda n: "\U0001f600" * n),
)
_names = st.one_of(st.sampled_from(["q", "dlq", "l", "svc", "t.x"]), _long_text)
_headers = st.dictionaries(_long_text, _long_text, max_size=3)
_message = st.fixed_dictionaries(
    {"body": st.binary(max_size=900)}, optional={"headers": _headers}
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    _long_text,
    st.binary(max_size=900),
)
_plausible: dict[str, Any] = {
    "queue": _names,
    "dead_letter_queue": _names,
    "topic": _names,
    "pattern": _names,
    "log": _names,
    "subject": _names,
    "group": _names,
    "namespace": _names,
    "messages": st.lists(_message, max_size=3),
    "records": st.lists(_message, max_size=3),
    "headers": _headers,
    "body": st.binary(max_size=900),
    "data": st.binary(max_size=1000),
    "error": _long_text,
    "wait": st.sampled_from([0, 0.5]),
    "timeout": st.sampled_from([0.5, 2.0]),
    "max_messages": st.integers(1, 10),
    "start": st.sampled_from(["earliest", "latest", 0]),
}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.one_of(st.sampled_from(sorted(frames.REQUESTS)), _long_text))
    frame: dict[str, Any] = {"op": op, "id": draw(st.integers(100, 2**32))}
    cls = frames.REQUESTS.get(op)
    if cls is not None:
        for name in [f.name for f in fields(cls)]:
            if name == "id" or draw(st.integers(0, 5)) == 0:
                continue
            strategy = _plausible.get(name)
            if strategy is not None and draw(st.integers(0, 3)):
                frame[name] = draw(strategy)
            else:
                frame[name] = draw(_scalars)
    return frame


def limited(client: Client) -> Client:
    """Read ``client``'s frames with a decoder that refuses anything over LIMIT."""
    client.decoder = RawFrameDecoder(LIMIT)
    return client


def small_frame_net() -> tuple[Net, Client, Client]:
    limits = ServerConfig(max_frame_bytes=LIMIT).limits
    net = Net(Broker(CoreConfig(limits=limits), memory_log=MemoryLog))
    settings_ = SessionSettings(max_frame_bytes=LIMIT)
    a = limited(net.connect(settings=settings_))
    b = limited(net.connect(settings=settings_))
    a.call("queue.declare", queue="dlq")
    a.call("queue.declare", queue="q", dead_letter_queue="dlq", max_deliveries=1)
    a.call("log.create", log="l")
    a.call("bind", queue="q", pattern="t.#")
    b.call("subscribe", pattern="#")
    b.call("tail", log="l", start="earliest")
    b.call("respond", subject="svc")
    return net, a, b


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(requests(), min_size=1, max_size=4, unique_by=lambda f: f["id"]))
def test_no_frame_the_server_writes_exceeds_max_frame_bytes(batch: list[dict[str, Any]]) -> None:
    net, a, b = small_frame_net()
    for frame in batch:
        data = pack_frame(frame)
        # Both a request within the limit and one over it (refused from its
        # length prefix, then the connection closes) must be answered small.
        a.send_bytes(data)
        b.pump()
        if not a.session.accepting_input():
            break
    net.advance(5.0)  # deadlines: long polls, request timeouts, redeliveries
    a.pump()
    b.pump()
    if a.session.accepting_input():  # what is left is delivered within the limit too
        a.send("fetch", queue="q", max_messages=10)
        a.send("fetch", queue="dlq", max_messages=10)
        a.send("queue.inspect", queue="q")
        a.send("read", log="l")
        b.pump()


def test_an_unknown_op_of_a_whole_frame_is_answered_within_the_limit() -> None:
    _, a, _ = small_frame_net()
    op = "x" * (LIMIT - 30)
    a.send_bytes(pack_frame({"op": op, "id": 5}))
    error = a.response(5)
    assert error["code"] == "unknown_op"
    assert len(error["message"].encode()) <= MAX_ERROR_TEXT_BYTES
    assert error["message"].endswith("characters, cut)")


def test_shorten_keeps_short_texts_and_cuts_long_ones_at_a_character() -> None:
    assert shorten("queue 'jobs' does not exist") == "queue 'jobs' does not exist"
    for text in ["a" * 5000, "é" * 5000, "\U0001f600" * 5000, "a" + "é" * 300]:
        cut = shorten(text)
        assert len(cut.encode()) <= MAX_ERROR_TEXT_BYTES
        assert text.startswith(cut[: cut.index("...")])
