"""A full log tail or responder buffer never wedges its own connection (issue 14).

A client buffers at most ``max_pending`` items per subscription. Tails and
responders must lose nothing, so a full buffer used to stop the client
reading its socket until the application took items: the answers to that
connection's own calls, queued behind the pushes, then never arrived, and a
client that tailed a log (or served requests) and appended (or put) on the
same connection waited forever. Now the client keeps reading and asks the
broker to ``pause`` that one subscription, and to ``resume`` it once the
application has taken half of the buffer: nothing is lost or reordered, and
every other call on the connection carries on.

Every kind of client runs each scenario; ``SAFETY`` turns a regression into a
failure instead of a hang.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from client_facades import SAFETY, ClientFacade

import minibroker
from minibroker.client.trio_client import DEFAULT_MAX_PENDING
from minibroker.embedded import EmbeddedBroker
from minibroker.testing import ThreadedBroker

#: Items sent past what a client buffers per subscription (10,000).
PAST_THE_CLIENT_BUFFER = 3 * DEFAULT_MAX_PENDING


async def call_within_safety(client: ClientFacade, method: str, *args: Any) -> Any:
    """``client.method(*args)`` that fails, never hangs, if its answer does not come back."""
    if client.kind == "blocking":  # a thread Trio cannot cancel: bound the call itself
        bounded = client.client.with_timeout(SAFETY)
        return await trio.to_thread.run_sync(lambda: getattr(bounded, method)(*args))
    with trio.fail_after(SAFETY):
        return await client.call(method, *args)


async def take_all(sub: Any, count: int) -> list[Any]:
    """``count`` items of a subscription facade, in batches."""
    items: list[Any] = []
    with trio.fail_after(SAFETY):
        while len(items) < count:
            items += await sub.batch(1000)
    return items


async def test_appending_past_the_client_buffer_on_the_tailing_connection(
    client: ClientFacade,
) -> None:
    """Regression: with a full tail buffer the appends' answers never came back."""
    await client.call("create_log", "ev")
    async with client.subscription("tail", "ev", start="earliest") as tail:
        for start in range(0, PAST_THE_CLIENT_BUFFER, 1000):
            bodies = [b"%d" % i for i in range(start, start + 1000)]
            assert await call_within_safety(client, "append_many", "ev", bodies) == start
        # The tail paused and resumed: every record, once, in order.
        records = await take_all(tail, PAST_THE_CLIENT_BUFFER)
        assert [r.offset for r in records] == list(range(PAST_THE_CLIENT_BUFFER))
        assert [int(r.body) for r in records] == list(range(PAST_THE_CLIENT_BUFFER))
        # And it still follows the log.
        await call_within_safety(client, "append", "ev", b"live")
        live = await take_all(tail, 1)
        assert [(r.offset, r.body) for r in live] == [(PAST_THE_CLIENT_BUFFER, b"live")]


@asynccontextmanager
async def trio_client_beside(
    client: ClientFacade,
    client_kind: str,
    embedded_broker: EmbeddedBroker | None,
    minibroker_server: ThreadedBroker,
) -> AsyncIterator[minibroker.Client]:
    """A Trio client in ``client``'s namespace on the same broker: it can keep
    thousands of requests waiting at once, which a blocking client cannot."""
    namespace = client.server_info["namespace"]
    if client_kind == "in-process":
        assert embedded_broker is not None
        async with embedded_broker.connect(namespace=namespace) as other:
            yield other
    else:
        async with minibroker.connect(minibroker_server.url, namespace=namespace) as other:
            yield other


#: Requests routed to a responder that does not take them: past its client buffer.
WAITING_REQUESTS = DEFAULT_MAX_PENDING + 2000


async def test_putting_past_the_client_buffer_on_the_responding_connection(
    client: ClientFacade,
    client_kind: str,
    embedded_broker: EmbeddedBroker | None,
    minibroker_server: ThreadedBroker,
) -> None:
    """Regression: with a full responder buffer the puts' answers never came back."""
    await client.call("declare_queue", "jobs")
    replies: list[bytes] = []
    answered = trio.Event()
    async with (
        trio_client_beside(client, client_kind, embedded_broker, minibroker_server) as other,
        client.subscription("respond", "svc.x") as responder,
        trio.open_nursery() as nursery,
    ):

        async def ask(number: int) -> None:
            reply = await other.request("svc.x", b"%d" % number, timeout=4 * SAFETY)
            replies.append(reply.body)
            answered.set()

        for number in range(WAITING_REQUESTS):
            nursery.start_soon(ask, number)
        # Every request is routed before the puts (one connection, in order).
        with trio.fail_after(SAFETY):
            await other.ping()
        for start in range(0, 3000, 1000):
            bodies = [b"job %d" % i for i in range(start, start + 1000)]
            await call_within_safety(client, "put_many", "jobs", bodies)
        # Nothing was lost while the responder was paused, and it still answers.
        requests = await take_all(responder, WAITING_REQUESTS)
        assert sorted(int(r.body) for r in requests) == list(range(WAITING_REQUESTS))
        await reply_within_safety(client, requests[-1], b"answered")
        with trio.fail_after(SAFETY):
            await answered.wait()
        assert replies == [b"answered"]
        nursery.cancel_scope.cancel()
    stats = await client.call("queue_stats", "jobs")
    assert stats.ready == 3000


async def reply_within_safety(client: ClientFacade, request: Any, body: bytes) -> None:
    if client.kind == "blocking":
        await trio.to_thread.run_sync(request.reply, body)
    elif client.kind == "asyncio":
        await client._loop.run(request.reply(body))  # type: ignore[attr-defined]
    else:
        with trio.fail_after(SAFETY):
            await request.reply(body)


@asynccontextmanager
async def trio_client_with(
    max_pending: int, over: str, minibroker_url: str
) -> AsyncIterator[minibroker.Client]:
    """A Trio client over TCP or in-process, opened the documented way with ``max_pending``."""
    if over == "tcp":
        async with minibroker.connect(minibroker_url, max_pending=max_pending) as mb:
            yield mb
    else:
        async with (
            minibroker.open_broker() as broker,
            broker.connect(max_pending=max_pending) as mb,
        ):
            yield mb


@pytest.mark.parametrize("over", ["tcp", "in-process"])
async def test_the_trio_clients_take_max_pending(over: str, minibroker_url: str) -> None:
    """Regression: ``connect`` and ``broker.connect`` took no ``max_pending``
    (the asyncio and blocking clients did), so a Trio subscriber could not
    bound its buffer. With 10, a batch of 15 keeps the newest 10."""
    async with (
        trio_client_with(10, over, minibroker_url) as mb,
        mb.subscribe("ticks") as sub,
    ):
        await mb.publish_many("ticks", [b"%d" % i for i in range(15)])
        with trio.fail_after(SAFETY):
            first = await sub.__anext__()
        assert (first.body, sub.dropped) == (b"5", 5)
        assert [m.body for m in await sub.get_batch()] == [b"%d" % i for i in range(6, 15)]


async def test_an_async_subscription_not_entered_refuses_to_wait() -> None:
    # Without ``async with`` nothing subscribed: ``async for`` would wait for ever.
    async with minibroker.open_broker() as broker, broker.connect() as mb:
        sub = mb.subscribe("never.entered")
        with pytest.raises(RuntimeError, match="enter the subscription first"):
            await sub.__anext__()
        async with sub:
            await mb.publish("never.entered", b"now")
            with trio.fail_after(SAFETY):
                assert (await sub.__anext__()).body == b"now"
