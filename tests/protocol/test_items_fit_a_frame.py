"""What cannot be sent in one frame is refused on the way in (issue 14 item 6).

With ``--max-frame-bytes 1024``, a put of a 500-byte body with a big header
was stored; every fetch then took it into flight and answered ``too_large``,
so the client never got a delivery id and ``max_deliveries`` dead-lettered a
message nobody saw. Now each model refuses, with ``too_large`` to the one
who sent it, what it could not send out again, and nothing else changes.
The ``small_frames`` fixture is shared with test_rpc_frame_limit.py.
"""

from __future__ import annotations

from helpers import Client, Net

from minibroker.config import ServerConfig
from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig
from minibroker.protocol.codec import RawFrameDecoder
from minibroker.protocol.session import SessionSettings
from minibroker.storage import MemoryLog

LIMIT = 1024
BIG_HEADER = {"trace": "t" * 400}


def small_frames() -> tuple[Net, Client, Client]:
    limits = ServerConfig(max_frame_bytes=LIMIT).limits
    net = Net(Broker(CoreConfig(limits=limits), memory_log=MemoryLog))
    settings = SessionSettings(max_frame_bytes=LIMIT)
    a, b = net.connect(settings=settings), net.connect(settings=settings)
    for client in (a, b):
        client.decoder = RawFrameDecoder(LIMIT)  # as a client holding the limit reads
    return net, a, b


# ------------------------------------------------------------------ item 6


def test_a_put_that_could_not_be_fetched_is_refused_and_nothing_is_taken() -> None:
    _, a, _ = small_frames()
    a.call("queue.declare", queue="dead")
    a.call("queue.declare", queue="q", max_deliveries=2, dead_letter_queue="dead")
    error = a.error("put", queue="q", messages=[{"body": b"x" * 500, "headers": BIG_HEADER}])
    assert error.code == "too_large" and "x-death" in error.message
    assert error.details["index"] == 0
    a.call("put", queue="q", messages=[{"body": b"small", "headers": {"k": "v"}}])
    for _ in range(3):
        a.call("fetch", queue="q")  # delivered, never acked: redelivered, then dead-lettered
        a.net.advance(30)
    q, dead = a.call("queue.stats", queue="q"), a.call("queue.stats", queue="dead")
    assert (q["published"], q["dead_lettered"], dead["ready"]) == (1, 1, 1)
    [letter] = a.call("fetch", queue="dead")
    assert letter["headers"]["x-death-count"] == "2"


def test_without_a_dead_letter_queue_the_room_is_the_whole_delivery() -> None:
    _, a, _ = small_frames()
    a.call("queue.declare", queue="q")
    body = b"x" * 500
    headers = {"h": "v" * 250}  # fits a delivery, not with x-death headers added
    assert a.call("put", queue="q", messages=[{"body": body, "headers": headers}]) == {"count": 1}
    [delivery] = a.call("fetch", queue="q")
    assert (delivery["body"], delivery["headers"]) == (body, headers)
    a.call("queue.declare", queue="q2", dead_letter_queue="q")
    assert a.error("put", queue="q2", messages=[{"body": body, "headers": headers}]).code == (
        "too_large"
    )


def test_a_batch_with_one_oversized_message_stores_nothing() -> None:
    _, a, _ = small_frames()
    a.call("queue.declare", queue="q")
    batch = [{"body": b"ok"}, {"body": b"x" * 500, "headers": {"h": "y" * 350}}]
    error = a.error("put", queue="q", messages=batch)
    assert (error.code, error.details["index"]) == ("too_large", 1)
    assert a.call("queue.stats", queue="q")["published"] == 0


def test_a_publish_that_no_msg_push_could_carry_is_refused() -> None:
    _, a, b = small_frames()
    b.call("subscribe", pattern="t.#")
    a.call("queue.declare", queue="bound")
    a.call("bind", queue="bound", pattern="t.#")
    error = a.error("publish", topic="t.x", messages=[{"body": b"x" * 500, "headers": BIG_HEADER}])
    assert error.code == "too_large"
    assert a.call("queue.stats", queue="bound")["published"] == 0
    b.pump()
    assert not [f for f in b.other if f["op"] == "end"]  # the subscription lives on
    a.call("publish", topic="t.x", messages=[{"body": b"fits"}])
    assert [m["body"] for f in b.pump() for m in f["messages"]] == [b"fits"]


# ------------------------------------------------------------------ logs


def test_an_append_that_no_read_could_return_is_refused() -> None:
    _, a, _ = small_frames()
    a.call("log.create", log="l")
    record = {"body": b"x" * 400, "key": b"k" * 100, "headers": {"h": "v" * 400}}
    error = a.error("append", log="l", records=[{"body": b"ok"}, record])
    assert (error.code, error.details["index"]) == ("too_large", 1)
    assert a.call("log.stats", log="l")["next_offset"] == 0
    a.call("append", log="l", records=[{"body": b"x" * 400, "key": b"k" * 100}])
    assert a.call("read", log="l")["count"] == 1


def test_an_empty_batch_is_accepted_by_every_batch_op_and_changes_nothing() -> None:
    _, a, _ = small_frames()
    a.call("queue.declare", queue="q")
    a.call("log.create", log="l")
    a.call("append", log="l", records=[b"one"])
    assert a.call("put", queue="q", messages=[]) == {"count": 0}
    assert a.call("publish", topic="t", messages=[]) == {"subscriptions": 0, "queues": 0}
    assert a.call("append", log="l", records=[]) == {"offset": 1, "count": 0}
    assert a.call("ack", queue="q", deliveries=[]) == {"count": 0}
    assert a.call("nack", queue="q", deliveries=[]) == {"count": 0}
    assert a.call("log.stats", log="l")["next_offset"] == 1
