"""The queue's compact wire forms from the client's side, against new and older brokers.

A client sends a producer's messages as bare bodies only to a broker that
announced ``put.bare`` in hello, and always asks for ``compact`` fetch
answers, reading either form (an older broker ignores the field and
answers with maps). Both brokers are the in-process one; the "older" one
announces no extensions and answers fetches with maps, as a broker from
before these forms does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from minibroker.embedded import open_broker
from minibroker.protocol import frames
from minibroker.protocol.codec import RawFrameDecoder
from minibroker.protocol.handlers import queues as queue_handlers


@contextmanager
def older_broker() -> Iterator[None]:
    """The broker announces no extensions and answers every fetch with maps."""
    with (
        mock.patch.object(frames, "EXTENSIONS", ()),
        mock.patch.object(queue_handlers, "encode_compact", queue_handlers.encode_deliveries),
    ):
        yield


def sent_frames(mb: Any) -> list[dict[str, Any]]:
    """Record every frame the client sends from now on (the list fills as it sends)."""
    decoder = RawFrameDecoder()
    sent: list[dict[str, Any]] = []
    queue = mb._queue

    def recording(data: bytes) -> None:
        decoder.receive_data(bytes(data))
        sent.extend(decoder.values())
        queue(data)

    mb._queue = recording
    return sent


async def produce_and_consume(mb: Any, count: int) -> list[bytes]:
    await mb.declare_queue("jobs")
    async with mb.queue_producer("jobs", max_batch=100) as producer:
        await producer.put_many([b"%d" % i for i in range(count - 1)])
        await producer.put(b"last", {"k": "v"})
    got: list[bytes] = []
    async with mb.consume("jobs", prefetch=50, wait=0, ack_every=10) as deliveries:
        async for d in deliveries:
            got.append(d.body)
            assert d.delivery_count == 1
            assert d.headers == ({"k": "v"} if d.body == b"last" else None)
            await d.ack()
    stats = await mb.queue_stats("jobs")
    assert stats.acked == count and stats.in_flight == 0 and stats.ready == 0
    return got


async def test_a_new_broker_gets_bare_bodies_and_answers_compactly() -> None:
    async with open_broker() as broker, broker.connect() as mb:
        assert {"put.bare", "fetch.compact"} <= mb._conn.protocol.extensions
        sent = sent_frames(mb)
        got = await produce_and_consume(mb, 120)
    assert got == [b"%d" % i for i in range(119)] + [b"last"]
    puts = [f for f in sent if f["op"] == "put"]
    assert puts and all(type(m) is bytes for m in puts[0]["messages"])
    assert {"body": b"last", "headers": {"k": "v"}} in puts[-1]["messages"]
    fetches = [f for f in sent if f["op"] == "fetch"]
    assert fetches and all(f["compact"] is True for f in fetches)


async def test_an_older_broker_gets_maps_and_its_map_answers_are_read() -> None:
    with older_broker():
        async with open_broker() as broker, broker.connect() as mb:
            assert mb._conn.protocol.extensions == frozenset()
            sent = sent_frames(mb)
            got = await produce_and_consume(mb, 120)
    assert got == [b"%d" % i for i in range(119)] + [b"last"]
    puts = [f for f in sent if f["op"] == "put"]
    assert puts and all(type(m) is dict for f in puts for m in f["messages"])


async def test_a_plain_fetch_reads_a_compact_answer() -> None:
    async with open_broker() as broker, broker.connect() as mb:
        await mb.declare_queue("q")
        await mb.put_many("q", [b"a", (b"b", {"k": "v"})])
        batch = await mb.fetch("q", 10)
        assert [(d.body, d.headers, d.delivery_count) for d in batch] == [
            (b"a", None, 1),
            (b"b", {"k": "v"}, 1),
        ]
        assert batch[1].delivery_id == batch[0].delivery_id + 1
        await mb.nack(batch)
        again = await mb.fetch("q", 10)
        assert [(d.body, d.delivery_count) for d in again] == [(b"a", 2), (b"b", 2)]
        assert await mb.ack(again) == 2

