"""Topics end to end over TCP: fan-out, groups, slow consumers, bindings, metrics.

An embedded broker listens on a free port and Trio clients connect to it
through real sockets, so the whole path runs: the client's encoder, the
server's reader, the session's routing, the per-connection outbound buffer
and its high-water mark, the writer, and the client's push decoding.

The slow subscriber is a raw socket with a tiny receive buffer that simply
stops reading: TCP pushes back, the broker's writer blocks, the outbound
buffer passes its high-water mark, and only then does the subscription's
own buffer fill and its overflow policy apply. Nothing waits on the wall
clock: every wait is for an event, bounded by a generous ``fail_after``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from prometheus_client.exposition import generate_latest

import minibroker
from minibroker.client.protocol import Call
from minibroker.client.topics import PublishResult, TopicMessage
from minibroker.config import ServerConfig
from minibroker.embedded import EmbeddedBroker, open_broker
from minibroker.errors import InvalidName, SlowConsumer
from minibroker.protocol.codec import RawFrameDecoder, pack_frame
from minibroker.protocol.frames import PROTOCOL_VERSION

SAFETY = 60.0


@pytest.fixture
async def tcp_broker() -> AsyncIterator[EmbeddedBroker]:
    """A broker on a free TCP port, with a small outbound high-water mark."""
    config = ServerConfig(outbound_high_water=64 * 1024)
    async with open_broker(listen=True, config=config) as broker:
        yield broker


def url_of(broker: EmbeddedBroker) -> str:
    return f"minibroker://127.0.0.1:{broker.port}"


def seq(message: TopicMessage) -> int:
    return int.from_bytes(message.body[:4], "big")


def body(i: int, size: int = 16) -> bytes:
    return i.to_bytes(4, "big") + b"x" * (size - 4)


async def publish_numbered(mb: minibroker.Client, topic: str, count: int, size: int = 16) -> None:
    """Publish messages 0..count-1: singles and batches of varying size, all confirmed."""
    i = 0
    while i < count:
        n = min(count - i, 1 + i % 37)
        if n == 1:
            await mb.publish(topic, body(i, size))
        else:
            await mb.publish_many(topic, [body(j, size) for j in range(i, i + n)])
        i += n


async def collect(sub: Any, count: int) -> list[int]:
    got: list[int] = []
    with trio.fail_after(SAFETY):
        while len(got) < count:
            got += [seq(m) for m in await sub.get_batch(count - len(got))]
    return got


# ------------------------------------------------------------------ fan-out


async def test_fan_out_to_many_subscribers_in_order(tcp_broker: EmbeddedBroker) -> None:
    count, subscribers = 3000, 8
    results: dict[int, list[int]] = {}
    ready = trio.Semaphore(0)

    async def subscriber(index: int) -> None:
        async with minibroker.connect(url_of(tcp_broker)) as mb, mb.subscribe("fan.*") as sub:
            ready.release()
            results[index] = await collect(sub, count)

    async with trio.open_nursery() as nursery:
        for index in range(subscribers):
            nursery.start_soon(subscriber, index)
        for _ in range(subscribers):
            await ready.acquire()
        async with minibroker.connect(url_of(tcp_broker)) as pub:
            await publish_numbered(pub, "fan.out", count)
    assert len(results) == subscribers
    for got in results.values():
        assert got == list(range(count))


async def test_groups_split_the_stream_with_no_duplicates_and_no_gaps(
    tcp_broker: EmbeddedBroker,
) -> None:
    count, members = 2000, 4
    shares: dict[int, list[int]] = {}
    subscribed = trio.Semaphore(0)
    published = trio.Event()

    async def member(index: int) -> None:
        async with (
            minibroker.connect(url_of(tcp_broker)) as mb,
            mb.subscribe("work.#", group="workers") as sub,
        ):
            subscribed.release()
            await published.wait()
            shares[index] = await collect(sub, count // members)

    async with trio.open_nursery() as nursery:
        for index in range(members):
            nursery.start_soon(member, index)
        for _ in range(members):
            await subscribed.acquire()
        async with minibroker.connect(url_of(tcp_broker)) as pub:
            await publish_numbered(pub, "work.item", count)
            # An ungrouped subscription next to the group gets its own full copy.
            result = await pub.publish("work.item", b"extra")
            assert result == PublishResult(subscriptions=1, queues=0)
        published.set()
    everything = sorted(i for share in shares.values() for i in share)
    assert everything == list(range(count))  # no duplicates, no gaps
    for share in shares.values():
        assert share == sorted(share)  # each member sees publish order
        assert len(share) == count // members  # round robin is exact


# ------------------------------------------------------------ slow consumers


class RawSubscriber:
    """A hand-driven connection with a small receive buffer that can stop reading."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.decoder = RawFrameDecoder()
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, port: int) -> RawSubscriber:
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", port))
        return cls(trio.SocketStream(sock))

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        await self.stream.send_all(pack_frame({"op": op, "id": 1, **fields}))
        while True:
            frame = await self.next_frame()
            if frame is not None and frame["op"] in ("ok", "error"):
                return frame

    async def next_frame(self) -> dict[str, Any] | None:
        """The next frame, or None at end of stream."""
        while not self.frames:
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.decoder.receive_data(data)
            self.frames.extend(self.decoder.values())
        return self.frames.pop(0)


@pytest.mark.parametrize("policy", ["drop_oldest", "disconnect"])
async def test_a_subscriber_that_stops_reading_meets_its_overflow_policy(
    tcp_broker: EmbeddedBroker, policy: str
) -> None:
    count, size, buffer = 1000, 16 * 1024, 100  # 16 MB: far more than socket buffers hold
    slow = await RawSubscriber.connect(tcp_broker.port or 0)
    hello = await slow.request("hello", version=PROTOCOL_VERSION)
    assert hello["op"] == "ok"
    subscribed = await slow.request("subscribe", pattern="big.*", buffer=buffer, on_overflow=policy)
    assert subscribed["op"] == "ok"

    async with (
        minibroker.connect(url_of(tcp_broker)) as fast,
        fast.subscribe("big.*") as fast_sub,
        minibroker.connect(url_of(tcp_broker)) as pub,
    ):
        # The slow subscriber reads nothing while all of this is published.
        await publish_numbered(pub, "big.data", count, size)
        assert await collect(fast_sub, count) == list(range(count))
        assert fast_sub.dropped == 0

    # Now the slow one reads what the broker kept for it.
    received: list[int] = []
    dropped = 0
    ending: dict[str, Any] | None = None
    with trio.fail_after(SAFETY):
        while True:
            frame = await slow.next_frame()
            if frame is None or frame["op"] == "bye":
                ending = frame
                break
            if frame["op"] == "notice":
                dropped += frame["dropped"]
            elif frame["op"] == "msg":
                received += [int.from_bytes(m["body"][:4], "big") for m in frame["messages"]]
            if policy == "drop_oldest" and received and received[-1] == count - 1:
                break
    assert received == sorted(received)
    assert len(set(received)) == len(received)
    if policy == "drop_oldest":
        assert dropped > 0
        assert len(received) + dropped == count  # every message either arrived or was counted
        assert received[-buffer:] == list(range(count - buffer, count))  # the newest are kept
        assert await slow.request("ping") == {"op": "ok", "id": 1, "result": None}
    else:
        assert ending is not None and ending["code"] == "slow_consumer"
        assert len(received) < count
        assert received == list(range(len(received)))  # a prefix, then the goodbye
        assert await slow.next_frame() is None  # the broker closed the connection
    await slow.stream.aclose()


# ---------------------------------------------------------------- bindings


async def test_bindings_keep_messages_for_offline_consumers(tcp_broker: EmbeddedBroker) -> None:
    async with minibroker.connect(url_of(tcp_broker)) as mb:
        await mb._call(Call("queue.declare", {"queue": "orders.audit"}))
        assert await mb.bind("orders.audit", "orders.#") is True
        result = await mb.publish_many("orders.eu.created", [b"1", b"2", b"3"])
        assert result == PublishResult(subscriptions=0, queues=3)
        await mb.publish("payments.created", b"not bound")
        fetched = await mb._call(Call("fetch", {"queue": "orders.audit", "max_messages": 10}))
        assert [d["body"] for d in fetched] == [b"1", b"2", b"3"]
        await mb._call(Call("queue.delete", {"queue": "orders.audit"}))
        assert tcp_broker.core.namespace().topics.binding_count == 0
        assert await mb.publish("orders.x", b"y") == PublishResult(0, 0)


async def test_invalid_names_over_tcp(tcp_broker: EmbeddedBroker) -> None:
    async with minibroker.connect(url_of(tcp_broker)) as mb:
        with pytest.raises(InvalidName, match="wildcard"):
            await mb.publish("orders.#", b"x")
        with pytest.raises(InvalidName, match="empty word"):
            async with mb.subscribe("orders..x"):
                pass
        with pytest.raises(InvalidName):
            await mb.bind("jobs", "a.b#")
        assert await mb.ping(b"ok") == b"ok"


# ----------------------------------------------------------------- metrics


async def test_metrics_count_published_delivered_dropped_and_trie_size(
    minibroker_broker: EmbeddedBroker,
) -> None:
    async with (
        minibroker_broker.connect() as mb,
        mb.subscribe("m.*") as sub,
        mb.subscribe("m.#", buffer=1) as tiny,
    ):
        await mb.publish_many("m.x", [b"1", b"2", b"3"])
        assert [m.body for m in await sub.get_batch(3)] == [b"1", b"2", b"3"]
        assert [m.body for m in await tiny.get_batch(3)] == [b"3"]
        text = generate_latest(minibroker_broker.server.registry).decode()
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("minibroker_topic_")
    }
    assert values["minibroker_topic_published_total"] == 3
    assert values["minibroker_topic_routed_total"] == 6
    assert values["minibroker_topic_delivered_total"] == 4
    assert values["minibroker_topic_dropped_total"] == 2
    assert values["minibroker_topic_subscriptions"] == 2
    assert values["minibroker_topic_trie_nodes"] == 4  # root, m, *, #


async def test_a_kicked_subscriber_sees_slow_consumer(minibroker_broker: EmbeddedBroker) -> None:
    async with minibroker_broker.connect() as pub, minibroker_broker.connect() as mb:
        async with mb.subscribe("t", buffer=2, on_overflow="disconnect") as sub:
            await pub.publish_many("t", [b"1", b"2", b"3"])  # overflows at once
            with pytest.raises(SlowConsumer), trio.fail_after(SAFETY):
                async for _ in sub:
                    pass
        assert mb.closed
        assert minibroker_broker.core.namespace().topics.subscription_count == 0
