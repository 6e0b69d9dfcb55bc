"""The broker never sends a frame above the ``max_frame_bytes`` it advertises in hello.

Two halves. The budget math: ``ENVELOPE_BYTES`` and the per-item sizes the
core counts (``delivery_size``, ``request_size``) are upper bounds of what
the encoders really produce, at the widest msgpack encodings, so a batch cut
to ``frame_payload_budget`` always fits. Then sessions with a small frame
limit, read by a decoder that refuses anything above it, the way a client
holding that limit would: big reads, tails, fetches, topic and ``req``
pushes arrive in frames within the limit and nothing is lost; the rare
single item that cannot fit any frame costs one request or one
subscription, never the connection.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from helpers import Client, Net
from hypothesis import given
from hypothesis import strategies as st

from minibroker.core.queue_message import Message, delivery_size
from minibroker.core.rpc import request_size
from minibroker.protocol.codec import (
    ENVELOPE_BYTES,
    HEADER_SIZE,
    RawFrameDecoder,
    frame_payload_budget,
    message_limit_for,
    pack_frame,
)
from minibroker.protocol.handlers.queues import encode_deliveries
from minibroker.protocol.session import SessionSettings
from minibroker.record_format import encode_records
from minibroker.storage import decode_records

LIMIT = 64 * 1024
BIG_INT = 2**64 - 1
#: More items than a 16-bit msgpack array header holds, so the widest one is used.
MANY = 0x10000


def envelope_of(frame: dict[str, Any], items_bytes: int) -> int:
    """Bytes of ``frame`` on the wire (prefix excluded) besides ``items_bytes`` of items."""
    return len(pack_frame(frame)) - HEADER_SIZE - items_bytes


# ------------------------------------------------------------ budget math


def test_the_envelope_reserve_covers_every_frame_that_carries_a_batch() -> None:
    data = b"x" * (MANY + 1)  # a bin 32 header
    nils = [None] * MANY  # an array 32 header; each nil is 1 byte
    frames = [
        # read answer
        envelope_of(
            {
                "op": "ok",
                "id": BIG_INT,
                "result": {"records": data, "count": BIG_INT, "next_offset": BIG_INT},
            },
            len(data),
        ),
        # records push
        envelope_of(
            {"op": "records", "sub": BIG_INT, "data": data, "count": BIG_INT, "next_offset": 1},
            len(data),
        ),
        # fetch answer
        envelope_of({"op": "ok", "id": BIG_INT, "result": nils}, MANY),
        # msg and req pushes
        envelope_of({"op": "msg", "sub": BIG_INT, "messages": nils}, MANY),
        envelope_of({"op": "req", "sub": BIG_INT, "requests": nils}, MANY),
    ]
    assert max(frames) <= ENVELOPE_BYTES


def test_budget_and_message_limit_leave_room_for_the_envelope() -> None:
    assert frame_payload_budget(LIMIT) == LIMIT - ENVELOPE_BYTES
    assert frame_payload_budget(16) == 1  # a batch always holds one item
    assert message_limit_for(16 * 1024 * 1024) == 16 * 1024 * 1024 - 4096
    assert message_limit_for(LIMIT) == LIMIT - 4096
    assert message_limit_for(1024) == 512


headers = st.none() | st.dictionaries(st.text(max_size=40), st.text(max_size=300), max_size=5)


@given(
    body=st.binary(max_size=300),
    headers=headers,
    delivery_id=st.integers(0, BIG_INT),
    count=st.integers(0, BIG_INT),
    published_at=st.integers(0, BIG_INT),
)
def test_delivery_size_bounds_the_encoded_delivery(
    body: bytes,
    headers: dict[str, str] | None,
    delivery_id: int,
    count: int,
    published_at: int,
) -> None:
    message = Message(body, headers or None, published_at)
    message.delivery_id = delivery_id
    message.delivery_count = count
    (encoded,) = encode_deliveries([message])
    assert len(msgpack.packb(encoded, use_bin_type=True)) <= delivery_size(message)


@given(
    subject=st.text(min_size=1, max_size=60),
    body=st.binary(max_size=300),
    headers=headers,
    rid=st.integers(0, BIG_INT),
    timeout=st.floats(0, 3600),
)
def test_request_size_bounds_the_encoded_request(
    subject: str, body: bytes, headers: dict[str, str] | None, rid: int, timeout: float
) -> None:
    item: dict[str, Any] = {"rid": rid, "subject": subject, "body": body, "timeout": timeout}
    if headers:
        item["headers"] = headers
    assert len(msgpack.packb(item, use_bin_type=True)) <= request_size(subject, body, headers)


# ------------------------------------------------------ sessions, strictly read


def strict(client: Client) -> Client:
    """Read ``client``'s frames as a client holding the advertised limit would."""
    client.decoder = RawFrameDecoder(client.session.settings.max_frame_bytes)
    return client


def small_frames(net: Net, **settings: Any) -> Client:
    return strict(net.connect(settings=SessionSettings(max_frame_bytes=LIMIT, **settings)))


def test_a_read_asking_for_10_mib_gets_what_fits_and_the_rest_next_time() -> None:
    net = Net()
    a = small_frames(net)
    a.call("log.create", log="ev")
    for i in range(20):  # 200 records of 1000 bytes: three frames' worth
        records = [bytes([i]) * 1000] * 10
        a.call("append", log="ev", records=records)
    got: list[bytes] = []
    offset = 0
    answers = 0
    while offset < 200:
        result = a.call("read", log="ev", start=offset, max_records=1000, max_bytes=10 << 20)
        assert 0 < len(result["records"]) <= frame_payload_budget(LIMIT)
        got += [r.body for r in decode_records(result["records"])]
        offset = result["next_offset"]
        answers += 1
    assert got == [bytes([i]) * 1000 for i in range(20) for _ in range(10)]
    assert answers >= 3
    assert a.call("ping", data=b"still here") == b"still here"


def test_a_tail_with_a_high_water_mark_above_the_frame_limit_pushes_frames_within_it() -> None:
    net = Net()
    a = small_frames(net, outbound_high_water=4 << 20)
    a.call("log.create", log="ev")
    for i in range(20):
        a.call("append", log="ev", records=[bytes([i]) * 1000] * 10)
    a.call("tail", log="ev", start=0, max_bytes=10 << 20)
    pushes = [f for f in a.other if f["op"] == "records"]
    assert len(pushes) >= 3
    bodies = [r.body for f in pushes for r in decode_records(f["data"])]
    assert bodies == [bytes([i]) * 1000 for i in range(20) for _ in range(10)]


def test_a_parked_fetch_fed_by_one_big_put_answers_within_the_limit() -> None:
    # 2000 tiny messages fit one put frame, but not one fetch answer: each
    # delivery carries an id, a count and a timestamp its put did not.
    net = Net()
    a, b = small_frames(net), net.connect()
    a.call("queue.declare", queue="jobs")
    rid = a.send("fetch", queue="jobs", max_messages=5000, wait=10.0)
    b.call("put", queue="jobs", messages=[{"body": b"%04d" % i} for i in range(2000)])
    first = a.result(rid)
    assert 0 < len(first) < 2000
    rest: list[dict[str, Any]] = []
    while len(first) + len(rest) < 2000:
        batch = a.call("fetch", queue="jobs", max_messages=5000)
        assert batch
        rest += batch
    assert [d["body"] for d in first + rest] == [b"%04d" % i for i in range(2000)]


def test_topic_pushes_are_split_to_fit_the_frame_limit() -> None:
    net = Net()
    a, b = small_frames(net, outbound_high_water=4 << 20), net.connect()
    a.call("subscribe", pattern="orders.#")
    topic = "orders.eu.paid.with.card"
    b.call("publish", topic=topic, messages=[{"body": b"%04d" % i} for i in range(2000)])
    a.pump()
    pushes = [f for f in a.other if f["op"] == "msg"]
    assert len(pushes) >= 2
    assert [m["body"] for f in pushes for m in f["messages"]] == [b"%04d" % i for i in range(2000)]


def test_req_pushes_are_split_to_fit_the_frame_limit() -> None:
    net = Net()
    responder, requester = small_frames(net, outbound_high_water=4 << 20), net.connect()
    responder.call("respond", subject="svc.echo")
    rids = [
        requester.send("request", subject="svc.echo", body=b"r" * 5000, timeout=30.0)
        for _ in range(40)
    ]
    responder.pump()
    pushes = [f for f in responder.other if f["op"] == "req"]
    assert len(pushes) >= 3
    requests = [r for f in pushes for r in f["requests"]]
    assert len(requests) == 40
    for r in requests:
        responder.send("reply", rid=r["rid"], body=b"ok")
    assert [requester.result(rid)["body"] for rid in rids] == [b"ok"] * 40


# ------------------------------------------------------- what cannot fit at all

#: A record body at the limit's max_message_bytes plus a key that fits the
#: append frame but not the read answer (whose record frame and envelope are
#: bigger than the append's per-record fields): the one case batching cannot
#: help, because the item alone does not fit.
BODY = message_limit_for(LIMIT)
KEY = 4040
UNFIT = {"body": b"b" * BODY, "key": b"k" * KEY}


def test_the_unfit_record_fits_an_append_but_not_a_read_answer() -> None:
    append = pack_frame({"op": "append", "id": 3, "log": "ev", "records": [UNFIT]})
    record = encode_records(0, 1_700_000_000_000, [(UNFIT["key"], None, UNFIT["body"])])
    answer = pack_frame(
        {"op": "ok", "id": 4, "result": {"records": record, "count": 1, "next_offset": 1}}
    )
    assert len(append) - HEADER_SIZE <= LIMIT < len(answer) - HEADER_SIZE


def test_an_answer_that_cannot_fit_is_refused_and_the_connection_stays() -> None:
    net = Net()
    a = small_frames(net)
    a.call("log.create", log="ev")
    a.call("append", log="ev", records=[UNFIT])
    a.call("append", log="ev", records=[b"next"])
    error = a.error("read", log="ev", start=0)
    assert error.code == "too_large"
    assert error.details == {"limit": LIMIT}
    assert [r.body for r in decode_records(a.call("read", log="ev", start=1)["records"])] == [
        b"next"
    ]


def test_a_push_that_cannot_fit_ends_its_subscription_only() -> None:
    net = Net()
    a, b = small_frames(net), net.connect()
    a.call("log.create", log="ev")
    sub = a.call("tail", log="ev", start="latest")["sub"]
    other = a.call("tail", log="ev", start="latest")["sub"]
    b.call("append", log="ev", records=[UNFIT])
    a.pump()
    ends = [f for f in a.other if f["op"] == "end"]
    assert [(f["sub"], f["code"]) for f in ends] == [(sub, "too_large"), (other, "too_large")]
    assert a.session.subscriptions == {}
    assert a.call("ping", data=b"alive") == b"alive"
    # A tail that starts after the record works as before.
    a.call("tail", log="ev", start="latest")
    b.call("append", log="ev", records=[b"small"])
    a.pump()
    assert [r.body for r in decode_records(a.other[-1]["data"])] == [b"small"]


@pytest.mark.parametrize("high_water", [1024, 4 << 20])
def test_pushes_never_pass_the_limit_whatever_the_high_water_mark(high_water: int) -> None:
    net = Net()
    a, b = small_frames(net, outbound_high_water=high_water), net.connect()
    a.call("log.create", log="ev")
    a.call("tail", log="ev", start=0)
    for _ in range(5):
        b.call("append", log="ev", records=[b"x" * 20_000] * 3)
        while a.session.has_output():
            a.pump()  # strict: raises FrameTooLarge on any frame above the limit
    bodies = [r.body for f in a.other if f["op"] == "records" for r in decode_records(f["data"])]
    assert bodies == [b"x" * 20_000] * 15
