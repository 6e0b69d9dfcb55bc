"""The protocol session, sans-I/O: bytes in, bytes out, no sockets and no Trio.

These are the connection-level rules of docs/protocol.md: hello first,
version and token checks that close the connection, pipelined requests
answered by id, a bad request that leaves the connection usable, and a
broken stream answered with an id-less error before the connection closes.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from helpers import Net
from hypothesis import given
from hypothesis import strategies as st

from minibroker import __version__
from minibroker.access.auth import Authenticator
from minibroker.core.broker import Broker
from minibroker.errors import ShuttingDown
from minibroker.protocol.codec import RawFrameDecoder, pack_frame
from minibroker.protocol.frames import PROTOCOL_VERSION
from minibroker.protocol.session import Session, SessionSettings
from minibroker.storage import MemoryLog

HELLO = {"op": "hello", "id": 1, "version": PROTOCOL_VERSION, "client": "test"}


class Wire:
    """One session plus a decoder for what it sends back."""

    def __init__(
        self,
        *,
        auth: Authenticator | None = None,
        settings: SessionSettings | None = None,
        broker: Broker | None = None,
    ) -> None:
        self.broker = broker or Broker(memory_log=MemoryLog)
        self.session = Session(self.broker, 7, settings=settings, auth=auth, peer_name="test")
        self.decoder = RawFrameDecoder()
        self.wakeups = 0
        self.session.wakeup = self._wake

    def _wake(self) -> None:
        self.wakeups += 1

    def send(self, *frames: dict[str, Any]) -> list[dict[str, Any]]:
        return self.send_bytes(b"".join(pack_frame(f) for f in frames))

    def send_bytes(self, data: bytes) -> list[dict[str, Any]]:
        self.session.receive_data(data, 0.0)
        return self.receive()

    def receive(self) -> list[dict[str, Any]]:
        self.decoder.receive_data(self.session.data_to_send())
        return list(self.decoder.values())

    def hello(self, **fields: Any) -> dict[str, Any]:
        (reply,) = self.send({**HELLO, **fields})
        return reply


def ping(request_id: int, data: object = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"op": "ping", "id": request_id}
    if data is not None:
        frame["data"] = data
    return frame


# ------------------------------------------------------------- handshake


def test_hello_result_shape() -> None:
    wire = Wire()
    reply = wire.hello(namespace="tenant-a")
    assert reply["op"] == "ok"
    assert reply["id"] == 1
    result = reply["result"]
    assert result == {
        "server": "minibroker",
        "version": __version__,
        "protocol": PROTOCOL_VERSION,
        "connection": 7,
        "namespace": "tenant-a",
        "features": ["queues", "topics", "logs", "request_reply"],
        "extensions": ["put.bare", "fetch.compact", "request.cancel", "read.batches"],
        "fsync": "batch",
        "limits": result["limits"],
    }
    assert set(result["limits"]) == {
        "max_frame_bytes",
        "max_message_bytes",
        "max_batch",
        "max_subscriptions",
        "max_pending_requests",
    }
    assert all(type(v) is int and v > 0 for v in result["limits"].values())
    assert wire.session.client_name == "test"
    assert wire.session.namespace is wire.broker.namespace("tenant-a")


def test_default_namespace_is_the_empty_string() -> None:
    wire = Wire()
    assert wire.hello()["result"]["namespace"] == ""


def test_hello_is_required_first() -> None:
    wire = Wire()
    (reply,) = wire.send(ping(5))
    assert reply["op"] == "error"
    assert reply["id"] == 5
    assert reply["code"] == "unauthorized"
    assert "hello" in reply["message"]
    # The connection stays open: hello now works, then so does ping.
    assert wire.session.closing is None
    assert wire.hello()["op"] == "ok"
    assert wire.send(ping(6, b"x")) == [{"op": "ok", "id": 6, "result": b"x"}]


def test_hello_only_once() -> None:
    wire = Wire()
    wire.hello()
    (reply,) = wire.send({**HELLO, "id": 2})
    assert reply["code"] == "unauthorized"
    assert reply["id"] == 2
    assert wire.session.closing is None


@pytest.mark.parametrize("version", [0, 2, 99])
def test_wrong_version_is_refused_and_closes(version: int) -> None:
    wire = Wire()
    (reply,) = wire.send({**HELLO, "version": version}, ping(2))
    assert reply["op"] == "error"
    assert reply["id"] == 1
    assert reply["code"] == "unsupported_version"
    assert reply["details"] == {"supported": [PROTOCOL_VERSION]}
    assert wire.session.closing is not None
    # The pipelined ping after it is never answered, nor is later input.
    assert wire.send(ping(3)) == []


def test_missing_version_is_a_bad_request() -> None:
    wire = Wire()
    (reply,) = wire.send({"op": "hello", "id": 1})
    assert reply["code"] == "bad_request"
    assert "'version'" in reply["message"]


@pytest.mark.parametrize("token", [None, "wrong", ""])
def test_bad_token_is_refused_and_closes(token: str | None) -> None:
    wire = Wire(auth=Authenticator({"s3cret": "ci"}))
    fields = {} if token is None else {"token": token}
    (reply,) = wire.send({**HELLO, **fields}, ping(2))
    assert reply["code"] == "unauthorized"
    assert reply["id"] == 1
    assert wire.session.closing is not None
    assert wire.session.namespace is None
    assert wire.send(ping(3)) == []


def test_good_token_is_accepted() -> None:
    wire = Wire(auth=Authenticator({"s3cret": "ci", "other": "ops"}))
    assert wire.hello(token="other")["op"] == "ok"
    assert wire.session.principal is not None
    assert wire.session.principal.name == "ops"


def test_token_is_ignored_without_auth() -> None:
    wire = Wire()
    assert wire.hello(token="anything")["op"] == "ok"


def test_invalid_namespace_is_an_error_and_hello_can_be_retried() -> None:
    wire = Wire()
    reply = wire.hello(namespace="no spaces")
    assert reply["code"] == "invalid_name"
    assert wire.session.closing is None
    assert wire.hello(namespace="ok")["op"] == "ok"


# ------------------------------------------------------------- requests


def test_pipelined_requests_are_answered_with_their_ids() -> None:
    wire = Wire()
    ids = [10, 3, 2**64 - 1, 0, 3]  # ids are the client's business, even repeated
    replies = wire.send(HELLO, *(ping(i, str(i).encode()) for i in ids))
    assert [r["id"] for r in replies] == [1, *ids]
    assert [r.get("result") for r in replies[1:]] == [str(i).encode() for i in ids]


@given(count=st.integers(1, 30), cuts=st.lists(st.integers(min_value=0), max_size=10))
def test_pipelining_under_any_chunking(count: int, cuts: list[int]) -> None:
    wire = Wire()
    stream = b"".join(pack_frame(f) for f in [HELLO, *(ping(i + 2, b"p") for i in range(count))])
    points = sorted({c % (len(stream) + 1) for c in cuts})
    replies = []
    for a, b in zip([0, *points], [*points, len(stream)], strict=True):
        replies += wire.send_bytes(stream[a:b])
    assert [r["id"] for r in replies] == list(range(1, count + 2))


def test_a_bad_request_gets_an_error_and_the_session_stays_usable() -> None:
    wire = Wire()
    replies = wire.send(
        HELLO,
        ping(2),
        ping(3, data=17),  # wrong type
        {"op": "no.such.op", "id": 4},
        {"op": "ping"},  # no id
        {"id": 6},  # no op
        ping(7),
    )
    assert [(r["op"], r.get("id"), r.get("code")) for r in replies] == [
        ("ok", 1, None),
        ("ok", 2, None),
        ("error", 3, "bad_request"),
        ("error", 4, "unknown_op"),
        ("error", None, "bad_request"),
        ("error", 6, "bad_request"),
        ("ok", 7, None),
    ]
    assert "'data'" in replies[2]["message"]
    assert wire.session.closing is None
    assert wire.session.stats.errors == {"bad_request": 3, "unknown_op": 1}


@pytest.mark.parametrize(
    ("garbage", "code"),
    [
        (struct.pack(">I", 2) + b"\xc1\xc1", "bad_frame"),  # not msgpack
        (struct.pack(">I", 3) + b"\x92\x01\x02", "bad_frame"),  # not a map
        (struct.pack(">I", 0), "bad_frame"),  # empty frame
        (b"GET / HTTP/1.1\r\n\r\n", "too_large"),  # "GET " read as a length
        (struct.pack(">I", 2**32 - 1), "too_large"),
    ],
)
def test_garbage_gets_an_error_without_id_and_closes(garbage: bytes, code: str) -> None:
    wire = Wire()
    wire.hello()
    replies = wire.send_bytes(garbage + pack_frame(ping(9)))
    assert len(replies) == 1
    (reply,) = replies
    assert reply["op"] == "error"
    assert "id" not in reply
    assert reply["code"] == code
    assert wire.session.closing is not None
    assert not wire.session.accepting_input()
    assert wire.send(ping(10)) == []


def test_oversized_frame_reports_the_limit() -> None:
    # 1024 is the smallest limit a server accepts (the hello answer must fit it).
    wire = Wire(settings=SessionSettings(max_frame_bytes=1024))
    assert wire.hello()["result"]["limits"]["max_frame_bytes"] == 1024
    (reply,) = wire.send(ping(2, b"x" * 1100))
    assert reply["code"] == "too_large"
    assert reply["details"] == {"limit": 1024}
    assert "id" not in reply


def test_requests_before_garbage_in_the_same_chunk_are_answered() -> None:
    wire = Wire()
    replies = wire.send_bytes(pack_frame(HELLO) + pack_frame(ping(2)) + b"\x00\x00\x00\x01\xc1")
    assert [(r["op"], r.get("id")) for r in replies] == [("ok", 1), ("ok", 2), ("error", None)]


# ------------------------------------------------------------- lifecycle


def test_shutdown_says_bye_and_closes() -> None:
    wire = Wire()
    wire.hello()
    wire.session.shutdown()
    assert wire.receive() == [
        {"op": "bye", "code": "shutting_down", "message": "the server is shutting down"}
    ]
    assert wire.session.closing is not None
    assert wire.send(ping(2)) == []


def test_connection_lost_ignores_further_input() -> None:
    wire = Wire()
    wire.hello()
    wire.session.connection_lost(0.0)
    wire.session.connection_lost(0.0)  # idempotent
    assert wire.session.closed
    assert wire.send(ping(2)) == []


def test_counters() -> None:
    wire = Wire()
    data = pack_frame(HELLO) + pack_frame(ping(2)) + pack_frame({"op": "nope", "id": 3})
    wire.send_bytes(data)
    stats = wire.session.stats
    assert stats.frames_in == 3
    assert stats.frames_out == 3
    assert stats.bytes_in == len(data)
    assert stats.bytes_out > 0
    assert stats.errors == {"unknown_op": 1}


def test_output_is_joined_and_announced() -> None:
    wire = Wire()
    wire.session.receive_data(pack_frame(HELLO) + pack_frame(ping(2)), 0.0)
    assert wire.session.has_output()
    assert wire.session.outbound_bytes > 0
    data = wire.session.data_to_send()
    assert wire.session.outbound_bytes == 0
    assert not wire.session.has_output()
    assert wire.session.data_to_send() == b""
    wire.decoder.receive_data(data)
    assert [f["id"] for f in wire.decoder.values()] == [1, 2]


def test_high_water_mark() -> None:
    wire = Wire(settings=SessionSettings(outbound_high_water=1000))
    wire.hello()
    wire.session.receive_data(pack_frame(ping(2, b"x" * 600)), 0.0)
    assert not wire.session.over_high_water
    wire.session.receive_data(pack_frame(ping(3, b"x" * 600)), 0.0)
    assert wire.session.over_high_water
    assert len(wire.receive()) == 2
    assert not wire.session.over_high_water


def test_nothing_follows_bye() -> None:
    """A parked request finishing after the goodbye is not answered: bye is last."""
    wire = Wire()
    wire.hello()
    token = wire.session.park(5, lambda result: result)
    wire.session.kick(ShuttingDown("going away"))
    wire.session.resolve(token, "late")
    wire.session.reject(token, ShuttingDown("late too"))
    assert wire.receive() == [{"op": "bye", "code": "shutting_down", "message": "going away"}]
    wire.session.kick(ShuttingDown("again"))  # idempotent
    assert wire.receive() == []


def test_shutdown_fails_parked_requests_before_bye() -> None:
    wire = Wire()
    wire.hello()
    wire.session.park(5, lambda result: result)
    wire.session.shutdown()
    error, bye = wire.receive()
    assert (error["op"], error["id"], error["code"]) == ("error", 5, "shutting_down")
    assert (bye["op"], bye["code"]) == ("bye", "shutting_down")


def test_a_closing_connection_pushes_nothing_more() -> None:
    """After a frame that ends the connection only what was answered goes out.

    Pushes kept flowing to a connection closing on a bad frame, so a busy
    subscription could keep its writer sending until the close deadline
    (benchmarks/frame_fuzz.py saw fuzzers wait over 10 s for the EOF).
    """
    net = Net()
    a, b = net.connect(), net.connect()
    a.call("subscribe", pattern="t")
    b.call("publish", topic="t", messages=[{"body": b"before"}])
    a.pump()
    body = b"\xc1" * 8  # never valid msgpack
    a.send_bytes(len(body).to_bytes(4, "big") + body)
    assert a.session.closing is not None
    b.call("publish", topic="t", messages=[{"body": b"after"}])
    a.pump()
    pushed = [m["body"] for f in a.other if f["op"] == "msg" for m in f["messages"]]
    assert pushed == [b"before"]
    assert [f.get("code") for f in a.other if f["op"] == "error"] == ["bad_frame"]
