"""The asyncio client (``minibroker.aio``): what is specific to it.

The client-level behaviour shared with the other clients (ping, errors,
pipelining, auth, shutdown, pushes, TLS) is tested in test_clients_common.py.
These tests are plain functions that run their own event loop: pytest-trio
owns ``async def`` tests in this suite.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from fake_broker import FakeBroker, items_parser, script

import minibroker
import minibroker.aio
from minibroker.client.protocol import Call
from minibroker.errors import BadFrame, ConnectionClosed, Unauthorized
from minibroker.testing import ThreadedBroker, run_in_thread

SAFETY = 30.0


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run one test body on a fresh event loop, with a safety timeout."""

    async def guarded() -> None:
        await asyncio.wait_for(body(), SAFETY)

    asyncio.run(guarded())


def test_the_public_entry_points() -> None:
    assert minibroker.aio.connect is minibroker.aio.__dict__["connect"]
    assert minibroker.aio.Client.__name__ == "Client"
    assert callable(minibroker.connect_sync)


def test_connect_as_context_manager_and_as_awaitable(minibroker_server: ThreadedBroker) -> None:
    async def body() -> None:
        async with minibroker.aio.connect(minibroker_server.url, namespace="aio-ctx") as mb:
            assert await mb.ping(b"ctx") == b"ctx"
            assert mb.server_info["namespace"] == "aio-ctx"
        assert mb.closed
        mb2 = await minibroker.aio.connect(minibroker_server.url)
        try:
            assert await mb2.ping(b"await") == b"await"
        finally:
            await mb2.aclose()
        await mb2.aclose()  # idempotent
        with pytest.raises(ConnectionClosed):
            await mb2.ping()

    run(body)


def test_token_and_namespace_from_the_url() -> None:
    with run_in_thread(tokens={"s3cret": "alice"}) as server:
        url = f"minibroker://s3cret@127.0.0.1:{server.port}?namespace=from-url"

        async def body() -> None:
            async with minibroker.aio.connect(url) as mb:
                assert mb.server_info["namespace"] == "from-url"
            with pytest.raises(Unauthorized):
                await minibroker.aio.connect(url, token="nope")

        run(body)


def test_an_unreachable_broker_raises_oserror() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]  # bound, not listening: refused

        async def body() -> None:
            with pytest.raises(OSError):
                await minibroker.aio.connect(f"minibroker://127.0.0.1:{port}")

        run(body)


def test_calls_queued_in_one_loop_iteration_leave_in_one_write(
    minibroker_server: ThreadedBroker,
) -> None:
    async def body() -> None:
        async with minibroker.aio.connect(minibroker_server.url) as mb:
            transport = mb._transport
            assert transport is not None
            writes: list[int] = []
            original = transport.write

            def counting_write(data: Any) -> None:
                writes.append(len(data))
                original(data)

            transport.write = counting_write  # type: ignore[method-assign]
            payloads = [b"%d" % i for i in range(200)]
            assert await asyncio.gather(*(mb.ping(p) for p in payloads)) == payloads
            assert len(writes) == 1

    run(body)


def test_calls_wait_while_the_transport_is_over_its_high_water_mark(
    minibroker_server: ThreadedBroker,
) -> None:
    async def body() -> None:
        async with minibroker.aio.connect(minibroker_server.url) as mb:
            mb._writable.clear()  # what asyncio's pause_writing() does
            task = asyncio.ensure_future(mb.ping(b"later"))
            await asyncio.sleep(0)
            assert not task.done() and not mb._outbox and not mb._conn.pending
            mb._writable.set()  # what asyncio's resume_writing() does
            assert await task == b"later"

    run(body)


def test_a_cancelled_call_leaves_the_connection_usable(fake_broker: FakeBroker) -> None:
    async def body() -> None:
        async with minibroker.aio.connect(fake_broker.url) as mb:
            task = asyncio.ensure_future(mb._call(Call("hold", {})))
            await asyncio.get_running_loop().run_in_executor(None, fake_broker.wait_for, "hold")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not mb._conn.pending
            # The late answer to the cancelled call is ignored.
            request_id = fake_broker.received("hold")[0]["id"]
            fake_broker.send({"op": "ok", "id": request_id, "result": "late"})
            assert await mb.ping(b"alive") == b"alive"

    run(body)


def test_a_subscribe_cancelled_before_its_reply_is_undone(fake_broker: FakeBroker) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        async with minibroker.aio.connect(fake_broker.url) as mb:

            async def subscribe() -> None:
                async with mb._subscription(Call("hold-sub", {}), items_parser):
                    pytest.fail("the subscription should never start")

            task = asyncio.ensure_future(subscribe())
            await loop.run_in_executor(None, fake_broker.wait_for, "hold-sub")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            request_id = fake_broker.received("hold-sub")[0]["id"]
            fake_broker.send({"op": "ok", "id": request_id, "result": {"sub": 9}})
            unsubscribes = await loop.run_in_executor(None, fake_broker.wait_for, "unsubscribe")
            assert unsubscribes[0]["sub"] == 9
            assert not mb._conn.subscriptions

    run(body)


def test_subscription_iteration_batches_and_close(fake_broker: FakeBroker) -> None:
    pushes = [{"op": "msg", "sub": 1, "items": list(range(10))}]

    async def body() -> None:
        call = Call("script", script({"sub": 1}, pushes))
        async with minibroker.aio.connect(fake_broker.url) as mb:
            async with mb._subscription(call, items_parser) as sub:
                assert await sub.__anext__() == 0
                assert await sub.get_batch(4) == [1, 2, 3, 4]
                assert sub.get_nowait() == 5
                rest = []
                async for item in sub:
                    rest.append(item)
                    if item == 9:
                        break
                assert rest == [6, 7, 8, 9]
                assert sub.get_nowait() is None
                await sub.aclose()
                await sub.aclose()  # idempotent
                with pytest.raises(StopAsyncIteration):
                    await sub.__anext__()
            assert len(fake_broker.received("unsubscribe")) == 1

    run(body)


def test_a_full_tail_buffer_pauses_its_subscription_not_the_socket(
    fake_broker: FakeBroker,
) -> None:
    """A subscription without an overflow policy (a tail, a responder) that
    fills ``max_pending`` sends ``pause`` and keeps reading the socket, then
    ``resume`` once drained to half (issue 14: stopping reading wedged the
    calls of its own connection)."""
    pushes = [{"op": "msg", "sub": 1, "items": list(range(i, i + 5))} for i in (0, 5, 10)]

    async def body() -> None:
        loop = asyncio.get_running_loop()
        async with minibroker.aio.connect(fake_broker.url, max_pending=10) as mb:
            call = Call("script", script({"sub": 1}, pushes))
            async with mb._subscription(call, items_parser) as sub:
                assert await sub.__anext__() == 0
                # 15 buffered, past max_pending: the answer to a call still comes.
                assert await mb.ping(b"flowing") == b"flowing"
                assert [f["sub"] for f in fake_broker.received("pause")] == [1]
                taken = [await sub.__anext__() for _ in range(8)]  # 14 -> 6 buffered
                assert taken == list(range(1, 9))
                assert fake_broker.received("resume") == []
                assert await sub.__anext__() == 9  # 5 left: at half, it resumes
                resumed = await loop.run_in_executor(None, fake_broker.wait_for, "resume")
                assert [f["sub"] for f in resumed] == [1]
                assert await sub.get_batch() == [10, 11, 12, 13, 14]
                assert len(fake_broker.received("pause")) == 1

    run(body)


def test_undecodable_bytes_from_the_server_fail_the_connection(fake_broker: FakeBroker) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        async with minibroker.aio.connect(fake_broker.url) as mb:
            task = asyncio.ensure_future(mb._call(Call("hold", {})))
            await loop.run_in_executor(None, fake_broker.wait_for, "hold")
            fake_broker.send_raw(b"\x00\x00\x00\x02\xc1\xc1")  # 0xc1 is never valid msgpack
            with pytest.raises(ConnectionClosed) as info:
                await task
            assert "msgpack" in str(info.value)
            assert isinstance(mb._conn.closed, BadFrame)
            with pytest.raises(ConnectionClosed):
                await mb.ping()

    run(body)
