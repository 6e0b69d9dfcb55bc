"""Topic ops through a protocol Session: frames in, frames out (no sockets, no Trio)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from helpers import Client, Net
from hypothesis import given
from hypothesis import strategies as st

from minibroker.client.protocol import decode_msg
from minibroker.core.topics import TopicMessage, TopicSubscription
from minibroker.errors import BadRequest, InvalidName, NotFound
from minibroker.protocol import frames
from minibroker.protocol.codec import _array_header
from minibroker.protocol.handlers.topics import encode_messages
from minibroker.protocol.session import SessionSettings


def msgs(client: Client) -> list[dict[str, Any]]:
    """Pump the client and return (and forget) the push frames it received."""
    client.pump()
    pushed, client.other = client.other, []
    return pushed


def bodies(pushed: list[dict[str, Any]]) -> list[bytes]:
    return [m["body"] for frame in pushed if frame["op"] == "msg" for m in frame["messages"]]


def test_publish_reaches_a_subscriber_as_one_msg_frame() -> None:
    net = Net()
    pub, sub = net.connect(), net.connect()
    sid = sub.call("subscribe", pattern="orders.*")["sub"]
    assert pub.call("publish", topic="orders.new", messages=[{"body": b"1"}]) == {
        "subscriptions": 1,
        "queues": 0,
    }
    pub.call(
        "publish",
        topic="orders.old",
        messages=[{"body": b"2", "headers": {"k": "v"}}, {"body": b"3"}],
    )
    pushed = msgs(sub)
    assert pushed == [
        {
            "op": "msg",
            "sub": sid,
            "messages": [
                {"topic": "orders.new", "body": b"1"},
                {"topic": "orders.old", "body": b"2", "headers": {"k": "v"}},
                {"topic": "orders.old", "body": b"3"},
            ],
        }
    ]
    # The hand-built frame is exactly what the schema describes.
    decoded = frames.DECODERS["msg"](pushed[0], "")
    assert decoded.messages[1] == frames.TopicMessage("orders.old", b"2", {"k": "v"})


def test_publish_result_counts_groups_once() -> None:
    net = Net()
    pub = net.connect()
    members = [net.connect() for _ in range(3)]
    for member in members:
        member.call("subscribe", pattern="jobs.#", group="workers")
    solo = net.connect()
    solo.call("subscribe", pattern="#")
    result = pub.call("publish", topic="jobs.a", messages=[{"body": b"%d" % i} for i in range(6)])
    assert result == {"subscriptions": 12, "queues": 0}
    shares = [bodies(msgs(member)) for member in members]
    assert sorted(b for share in shares for b in share) == sorted(b"%d" % i for i in range(6))
    assert [len(share) for share in shares] == [2, 2, 2]
    assert len(bodies(msgs(solo))) == 6


def test_outbound_budget_splits_frames_and_keeps_order() -> None:
    net = Net()
    pub = net.connect()
    sub = net.connect(settings=SessionSettings(outbound_high_water=500))
    sub.call("subscribe", pattern="t")
    pub.call("publish", topic="t", messages=[{"body": b"%03d" % i + b"x" * 97} for i in range(50)])
    frames_seen = 0
    received: list[bytes] = []
    while True:
        pushed = msgs(sub)
        if not pushed:
            break
        frames_seen += len(pushed)
        received += bodies(pushed)
    assert [int(b[:3]) for b in received] == list(range(50))
    assert frames_seen > 5  # ~120 bytes a message, 500-byte budget


def test_a_message_bigger_than_the_budget_still_goes_out() -> None:
    net = Net()
    pub = net.connect()
    sub = net.connect(settings=SessionSettings(outbound_high_water=100))
    sub.call("subscribe", pattern="t")
    pub.call("publish", topic="t", messages=[{"body": b"x" * 1000}, {"body": b"y"}])
    assert bodies(msgs(sub)) == [b"x" * 1000]
    assert bodies(msgs(sub)) == [b"y"]


def test_dropped_messages_are_announced_before_the_next_batch() -> None:
    net = Net()
    pub, sub = net.connect(), net.connect()
    sid = sub.call("subscribe", pattern="t", buffer=2)["sub"]
    for i in range(5):
        pub.call("publish", topic="t", messages=[{"body": b"%d" % i}])
    pushed = msgs(sub)
    assert pushed[0] == {"op": "notice", "sub": sid, "dropped": 3}
    assert bodies(pushed[1:]) == [b"3", b"4"]
    pub.call("publish", topic="t", messages=[{"body": b"5"}])
    assert [f["op"] for f in msgs(sub)] == ["msg"]


def test_disconnect_policy_says_bye_and_closes() -> None:
    net = Net()
    pub, slow, fast = net.connect(), net.connect(), net.connect()
    slow.call("subscribe", pattern="t", buffer=2, on_overflow="disconnect")
    fast.call("subscribe", pattern="t")
    pub.call("publish", topic="t", messages=[{"body": b"%d" % i} for i in range(3)])
    pushed = msgs(slow)
    assert pushed[0]["op"] == "bye"
    assert pushed[0]["code"] == "slow_consumer"
    assert slow.session.closing is not None
    assert len(bodies(msgs(fast))) == 3


def test_unsubscribe_stops_pushes() -> None:
    net = Net()
    pub, sub = net.connect(), net.connect()
    sid = sub.call("subscribe", pattern="t")["sub"]
    pub.call("publish", topic="t", messages=[{"body": b"buffered"}])
    assert sub.call("unsubscribe", sub=sid) is None
    pub.call("publish", topic="t", messages=[{"body": b"after"}])
    assert msgs(sub) == []
    assert sub.error("unsubscribe", sub=sid).code == "not_found"
    assert net.broker.namespace("").topics.subscription_count == 0


def test_connection_close_removes_its_subscriptions() -> None:
    net = Net()
    sub = net.connect()
    sub.call("subscribe", pattern="a.#")
    sub.call("subscribe", pattern="b", group="g")
    topics = net.broker.namespace("").topics
    assert topics.subscription_count == 2
    sub.close()
    assert topics.subscription_count == 0
    assert topics.trie_nodes == 1


@pytest.mark.parametrize(
    ("op", "fields", "error"),
    [
        ("publish", {"topic": "a.*", "messages": [{"body": b"x"}]}, InvalidName),
        ("publish", {"topic": "a..b", "messages": [{"body": b"x"}]}, InvalidName),
        ("publish", {"topic": "", "messages": []}, InvalidName),
        ("publish", {"topic": "a", "messages": [{"headers": {}}]}, BadRequest),
        ("subscribe", {"pattern": "a.b*"}, InvalidName),
        ("subscribe", {"pattern": "a", "group": "x y"}, InvalidName),
        ("subscribe", {"pattern": "a", "buffer": 0}, BadRequest),
        ("subscribe", {"pattern": "a", "on_overflow": "block"}, BadRequest),
        ("bind", {"queue": "missing", "pattern": "a"}, NotFound),
        ("bind", {"queue": "q", "pattern": "#x"}, InvalidName),
        ("unbind", {"queue": "q*", "pattern": "a"}, InvalidName),
    ],
)
def test_bad_requests_get_clear_errors_and_the_connection_stays_usable(
    op: str, fields: dict[str, Any], error: type[Exception]
) -> None:
    net = Net()
    client = net.connect()
    client.call("queue.declare", queue="q")
    failure = client.error(op, **fields)
    assert isinstance(failure, error)
    assert failure.message
    assert client.call("ping", data=b"still here") == b"still here"
    topics = net.broker.namespace("").topics
    assert topics.subscription_count == 0
    assert topics.binding_count == 0


def test_bind_and_unbind() -> None:
    net = Net()
    client = net.connect()
    client.call("queue.declare", queue="audit")
    assert client.call("bind", queue="audit", pattern="orders.#") == {"created": True}
    assert client.call("bind", queue="audit", pattern="orders.#") == {"created": False}
    result = client.call("publish", topic="orders.x", messages=[{"body": b"1"}, {"body": b"2"}])
    assert result == {"subscriptions": 0, "queues": 2}
    fetched = client.call("fetch", queue="audit", max_messages=10)
    assert [d["body"] for d in fetched] == [b"1", b"2"]
    assert client.call("unbind", queue="audit", pattern="orders.#") == {"removed": True}
    assert client.call("unbind", queue="audit", pattern="orders.#") == {"removed": False}
    result = client.call("publish", topic="orders.x", messages=[{"body": b"3"}])
    assert result == {"subscriptions": 0, "queues": 0}


def test_namespaces_are_isolated() -> None:
    net = Net()
    sub = net.connect(namespace="one")
    pub = net.connect(namespace="two")
    sub.call("subscribe", pattern="#")
    assert pub.call("publish", topic="t", messages=[{"body": b"x"}])["subscriptions"] == 0
    assert msgs(sub) == []


# ------------------------------------------------------------ the encoder


@pytest.mark.parametrize("count", [0, 1, 15, 16, 65535, 65536])
def test_array_header_sizes(count: int) -> None:
    assert _array_header(count) == msgpack.packb([None] * count)[: len(_array_header(count))]


class _Source:
    """Just enough of a TopicSubscription for the encoder."""

    def __init__(self, sub_id: int, messages: list[TopicMessage], compact: bool = False) -> None:
        from collections import deque

        from minibroker.core.topics import TopicStats

        self.sub_id = sub_id
        self.items = deque(messages)
        self.pending_dropped = 0
        self.stats = TopicStats()
        self.held_bytes = sum(m.size for m in messages)
        self.bare_bodies = compact

    def taken(self, size: int) -> None:
        self.held_bytes -= size


headers_st = st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.text(max_size=5)))
messages_st = st.lists(
    st.tuples(st.sampled_from(["a", "b.c", "ü.x"]), st.binary(max_size=300), headers_st),
    min_size=1,
    max_size=40,
)


@given(
    sub_id=st.integers(0, 2**63),
    messages=messages_st,
    budget=st.integers(1, 5000),
    compact=st.booleans(),
)
def test_encoded_frames_decode_to_the_messages(
    sub_id: int,
    messages: list[tuple[str, bytes, dict[str, str] | None]],
    budget: int,
    compact: bool,
) -> None:
    items = [TopicMessage(topic, body, headers) for topic, body, headers in messages]
    source: Any = _Source(sub_id, items, compact)
    decoded: list[tuple[str, bytes, dict[str, str] | None]] = []
    while True:
        data, more = encode_messages(source, budget)
        if not data:
            assert not more
            break
        length = int.from_bytes(data[:4], "big")
        assert length == len(data) - 4
        frame = msgpack.unpackb(data[4:], raw=False)
        assert frame["op"] == "msg" and frame["sub"] == sub_id
        assert len(frame["messages"]) == 1 or length <= budget + 400
        # A compact frame names its topic once and carries bare bodies.
        assert ("topic" in frame) == compact
        assert compact or all(type(m) is dict for m in frame["messages"])
        decoded += [(m.topic, m.body, m.headers) for m in decode_msg(frame).messages]
        if not more:
            break
    expected = [(t, b, h or None) for t, b, h in messages]
    assert decoded == expected
    assert source.stats.delivered == len(messages)
    assert source.held_bytes == 0


def test_push_encoder_is_registered_for_subscriptions() -> None:
    from minibroker.protocol.ops import PUSH_ENCODERS

    assert PUSH_ENCODERS[TopicSubscription] is encode_messages
