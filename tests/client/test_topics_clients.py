"""Topics through every client: Trio, asyncio, blocking and in-process (see conftest.py).

The same API, names and results in each: ``publish`` / ``publish_many`` return
a ``PublishResult``, ``subscribe`` yields ``TopicMessage`` items, ``bind`` /
``unbind`` return booleans, and errors come back as the same exceptions.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio
from client_facades import SAFETY, ClientFacade

from minibroker.client.protocol import Call
from minibroker.client.topics import PublishResult, TopicMessage
from minibroker.client.trio_client import DEFAULT_MAX_PENDING
from minibroker.errors import BadRequest, InvalidName, NotFound, SlowConsumer


async def test_publish_and_subscribe(client: ClientFacade) -> None:
    async with client.subscription("subscribe", "orders.*") as sub:
        result = await client.call("publish", "orders.created", b"one", headers={"k": "v"})
        assert result == PublishResult(subscriptions=1, queues=0)
        await client.call("publish", "orders.eu.created", b"not for us")
        await client.call("publish", "orders.paid", b"two")
        with trio.fail_after(SAFETY):
            first, second = await sub.take(2)
    assert first == TopicMessage("orders.created", b"one", {"k": "v"})
    assert second == TopicMessage("orders.paid", b"two", None)
    assert isinstance(first, TopicMessage)


async def test_publish_many_takes_bodies_pairs_and_messages(client: ClientFacade) -> None:
    async with client.subscription("subscribe", "#") as sub:
        items: list[Any] = [
            b"plain",
            (b"with headers", {"h": "1"}),
            TopicMessage("ignored.topic", b"a received message", {"h": "2"}),
        ]
        result = await client.call("publish_many", "batch.topic", items)
        assert result == PublishResult(3, 0)
        with trio.fail_after(SAFETY):
            got = await sub.take(3)
    assert [(m.topic, m.body, m.headers) for m in got] == [
        ("batch.topic", b"plain", None),
        ("batch.topic", b"with headers", {"h": "1"}),
        ("batch.topic", b"a received message", {"h": "2"}),
    ]


async def test_nobody_listening_reaches_nobody(client: ClientFacade) -> None:
    assert await client.call("publish", "quiet", b"x") == PublishResult(0, 0)
    assert await client.call("publish_many", "quiet", []) == PublishResult(0, 0)


async def test_group_members_share_the_stream(client: ClientFacade) -> None:
    async with (
        client.subscription("subscribe", "jobs.#", group="workers") as one,
        client.subscription("subscribe", "jobs.#", group="workers") as two,
    ):
        result = await client.call("publish_many", "jobs.new", [b"%d" % i for i in range(10)])
        assert result == PublishResult(10, 0)
        with trio.fail_after(SAFETY):
            shares = [await one.take(5), await two.take(5)]
    got = sorted(int(m.body) for share in shares for m in share)
    assert got == list(range(10))
    for share in shares:
        assert [int(m.body) for m in share] == sorted(int(m.body) for m in share)


async def test_drops_are_counted_and_the_newest_kept(client: ClientFacade) -> None:
    async with client.subscription("subscribe", "t", buffer=2) as sub:
        # One publish routes all five at once: the buffer of 2 keeps the newest.
        await client.call("publish_many", "t", [b"1", b"2", b"3", b"4", b"5"])
        with trio.fail_after(SAFETY):
            assert [m.body for m in await sub.take(2)] == [b"4", b"5"]
        assert sub.dropped == 3


#: Messages published past what a client buffers per subscription (10,000).
PAST_THE_CLIENT_BUFFER = 3 * DEFAULT_MAX_PENDING


async def publish_many_within_safety(client: ClientFacade, topic: str, bodies: list[bytes]) -> Any:
    """``publish_many`` that fails, never hangs, if its answer does not come back."""
    if client.kind == "blocking":  # a thread Trio cannot cancel: bound the call itself
        bounded = client.client.with_timeout(SAFETY)
        return await trio.to_thread.run_sync(bounded.publish_many, topic, bodies)
    with trio.fail_after(SAFETY):
        return await client.call("publish_many", topic, bodies)


async def publish_numbered(client: ClientFacade, topic: str, count: int) -> None:
    """Publish bodies b"0" .. b"count-1" in batches of 1,000, each answered."""
    for start in range(0, count, 1000):
        bodies = [b"%d" % i for i in range(start, min(start + 1000, count))]
        assert isinstance(await publish_many_within_safety(client, topic, bodies), PublishResult)


async def test_publishing_past_the_client_buffer_on_the_subscribing_connection(
    client: ClientFacade,
) -> None:
    """Regression: a full subscription buffer stopped the client reading its
    socket, so the answers to its own publishes (behind the pushes) never came."""
    async with client.subscription("subscribe", "t.x", buffer=PAST_THE_CLIENT_BUFFER):
        for _ in range(0, PAST_THE_CLIENT_BUFFER, 1000):
            result = await publish_many_within_safety(client, "t.x", [b"x" * 100] * 1000)
            assert result == PublishResult(1000, 0)


async def test_a_subscriber_loses_nothing_within_the_buffer_it_asked_for(
    client: ClientFacade,
) -> None:
    """Regression: ``buffer`` bounded the broker's side only; the client dropped
    past its own ``max_pending`` (10,000), so a slow subscriber asking for
    ``buffer=30000`` lost 20,000 messages (the benchmark harness raised both)."""
    async with client.subscription("subscribe", "t.x", buffer=PAST_THE_CLIENT_BUFFER) as sub:
        await publish_numbered(client, "t.x", PAST_THE_CLIENT_BUFFER)
        # Every publish is answered: every push is in the client's buffer now.
        received: list[bytes] = []
        with trio.fail_after(SAFETY):
            while len(received) < PAST_THE_CLIENT_BUFFER:
                received += [m.body for m in await sub.batch(1000)]
    assert [int(body) for body in received] == list(range(PAST_THE_CLIENT_BUFFER))
    assert sub.dropped == 0


#: A subscription asking the broker for more than its client holds (``max_pending``).
BELOW_THE_BUFFER = {"buffer": PAST_THE_CLIENT_BUFFER, "max_pending": DEFAULT_MAX_PENDING}


async def test_a_full_client_buffer_drops_the_oldest_and_counts_them(
    client: ClientFacade,
) -> None:
    async with client.subscription("subscribe", "t.x", **BELOW_THE_BUFFER) as sub:
        await publish_numbered(client, "t.x", PAST_THE_CLIENT_BUFFER)
        await publish_many_within_safety(client, "t.x", [b"last"])
        received: list[bytes] = []
        with trio.fail_after(SAFETY):
            while not received or received[-1] != b"last":
                received.append((await sub.next()).body)
    numbers = [int(body) for body in received[:-1]]
    # The newest survive, in order; everything else is counted as dropped.
    assert numbers == list(range(PAST_THE_CLIENT_BUFFER - len(numbers), PAST_THE_CLIENT_BUFFER))
    assert sub.dropped == PAST_THE_CLIENT_BUFFER - len(numbers)
    assert sub.dropped > 0


async def test_a_full_client_buffer_ends_a_disconnect_subscription(
    client: ClientFacade,
) -> None:
    async with client.subscription(
        "subscribe", "t.x", **BELOW_THE_BUFFER, on_overflow="disconnect"
    ) as sub:
        await publish_numbered(client, "t.x", PAST_THE_CLIENT_BUFFER)
        received: list[int] = []
        with trio.fail_after(SAFETY), pytest.raises(SlowConsumer):
            while True:
                received.append(int((await sub.next()).body))
        # What arrived before the overflow is delivered first, in order.
        assert received == list(range(len(received)))
        assert 0 < len(received) < PAST_THE_CLIENT_BUFFER
        # Only the subscription ended: the connection works, and the broker
        # was told to unsubscribe before this publish.
        assert await publish_many_within_safety(client, "t.x", [b"after"]) == PublishResult(0, 0)
        assert sub.dropped == 0


async def test_buffer_bytes_bounds_what_the_broker_keeps(client: ClientFacade) -> None:
    async with client.subscription("subscribe", "t", buffer_bytes=2500) as sub:
        # One batch routed at once: 10 messages of 1000 bytes (1041 counted
        # each, with topic and envelope) in a buffer of 2500 bytes leave the newest two.
        await client.call("publish_many", "t", [bytes([i]) * 1000 for i in range(10)])
        with trio.fail_after(SAFETY):
            assert [m.body[0] for m in await sub.take(2)] == [8, 9]
        assert sub.dropped == 8
    with pytest.raises(BadRequest):
        async with client.subscription("subscribe", "ok", buffer_bytes=0):
            pass


async def test_invalid_names_raise_invalid_name(client: ClientFacade) -> None:
    with pytest.raises(InvalidName):
        await client.call("publish", "orders.*", b"x")
    with pytest.raises(InvalidName):
        await client.call("publish_many", "a..b", [b"x"])
    with pytest.raises(InvalidName):
        async with client.subscription("subscribe", "orders.*x"):
            pass
    with pytest.raises(BadRequest):
        async with client.subscription("subscribe", "ok", buffer=0):
            pass
    assert await client.call("ping", b"still usable") == b"still usable"


async def test_bind_and_unbind(client: ClientFacade) -> None:
    with pytest.raises(NotFound):
        await client.call("bind", "audit", "orders.#")
    await client.raw(Call("queue.declare", {"queue": "audit"}))
    assert await client.call("bind", "audit", "orders.#") is True
    assert await client.call("bind", "audit", "orders.#") is False
    assert await client.call("publish", "orders.x", b"kept") == PublishResult(0, 1)
    fetched = await client.raw(Call("fetch", {"queue": "audit", "max_messages": 10}))
    assert [d["body"] for d in fetched] == [b"kept"]
    assert await client.call("unbind", "audit", "orders.#") is True
    assert await client.call("unbind", "audit", "orders.#") is False
    assert await client.call("publish", "orders.x", b"lost") == PublishResult(0, 0)


@pytest.mark.parametrize("client_kind", ["blocking"])
async def test_blocking_client_callback_mode(client: ClientFacade) -> None:
    received: list[TopicMessage] = []
    done = threading.Event()

    def on_message(message: TopicMessage) -> None:
        received.append(message)
        if len(received) == 3:
            done.set()

    def run() -> None:
        with client.client.subscribe("cb.*", callback=on_message):
            client.client.publish_many("cb.x", [b"1", b"2", b"3"])
            assert done.wait(SAFETY)

    await trio.to_thread.run_sync(run)
    assert [m.body for m in received] == [b"1", b"2", b"3"]


@pytest.mark.parametrize("client_kind", ["trio", "in-process"])
async def test_async_client_callback_mode(client: ClientFacade) -> None:
    """``callback=`` works on every client: on the async ones it runs on the
    reader, and the subscription stays empty."""
    received: list[TopicMessage] = []
    done = trio.Event()

    def on_message(message: TopicMessage) -> None:
        received.append(message)
        if len(received) == 3:
            done.set()

    async with client.client.subscribe("cb.*", callback=on_message) as sub:
        await client.call("publish_many", "cb.x", [b"1", b"2", b"3"])
        with trio.fail_after(SAFETY):
            await done.wait()
        assert sub.get_nowait() is None
    assert [m.body for m in received] == [b"1", b"2", b"3"]


async def test_publish_many_takes_what_put_many_takes(client: ClientFacade) -> None:
    # One encoder for every method that sends messages: maps and 1-tuples too.
    async with client.subscription("subscribe", "same.items") as sub:
        items: list[Any] = [{"body": b"map", "headers": {"h": "1"}}, (b"alone",)]
        assert await client.call("publish_many", "same.items", items) == PublishResult(2, 0)
        with trio.fail_after(SAFETY):
            got = await sub.take(2)
    assert [(m.body, m.headers) for m in got] == [(b"map", {"h": "1"}), (b"alone", None)]
    with pytest.raises(TypeError, match="publish_many takes an iterable of messages"):
        await client.call("publish_many", "same.items", bytearray(b"one body"))
