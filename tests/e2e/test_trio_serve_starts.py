"""The Trio ``serve`` starts handler tasks from the client's reader.

A request that finds a free slot gets its handler task in the scheduler
round that read it; one that finds every slot busy waits in the buffer and
is started, in arrival order, as slots free up. These tests pin the limits
and the order either way, over TCP.
"""

from __future__ import annotations

from typing import Any

import trio

import minibroker
from minibroker.client.rpc import IncomingRequest


async def test_serve_runs_at_most_concurrency_handlers_and_answers_all(
    minibroker_url: str,
) -> None:
    running = 0
    peak = 0
    both_running = trio.Event()

    async def handler(req: IncomingRequest) -> bytes:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 2:
            both_running.set()
        await both_running.wait()  # the first two wait for each other
        await trio.sleep(0)
        running -= 1
        return b"re:" + req.body

    async with (
        minibroker.connect(minibroker_url) as responder,
        minibroker.connect(minibroker_url) as mb,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(
            lambda task_status: responder.serve(
                "svc.slots", handler, concurrency=2, task_status=task_status
            )
        )
        replies: dict[int, bytes] = {}

        async def one(i: int) -> None:
            replies[i] = (await mb.request("svc.slots", b"%d" % i, timeout=30)).body

        async with trio.open_nursery() as requests:
            for i in range(40):
                requests.start_soon(one, i)
        assert replies == {i: b"re:%d" % i for i in range(40)}
        assert peak == 2
        nursery.cancel_scope.cancel()


async def test_requests_waiting_for_a_slot_start_in_arrival_order(minibroker_url: str) -> None:
    # One slot: the first handler holds it while more requests arrive; they
    # wait in the buffer and must then run one by one in the order they came.
    order: list[bytes] = []
    first_running = trio.Event()
    release = trio.Event()

    async def handler(req: IncomingRequest) -> bytes:
        order.append(req.body)
        if req.body == b"first":
            first_running.set()
            await release.wait()
        return req.body

    async with (
        minibroker.connect(minibroker_url) as responder,
        minibroker.connect(minibroker_url) as mb,
        trio.open_nursery() as nursery,
    ):
        await nursery.start(
            lambda task_status: responder.serve(
                "svc.order", handler, concurrency=1, task_status=task_status
            )
        )
        async with trio.open_nursery() as requests:
            requests.start_soon(mb.request, "svc.order", b"first", None, 30)
            await first_running.wait()
            for i in range(5):
                # Sent one after another, answered by the broker in that order.
                requests.start_soon(mb.request, "svc.order", b"%d" % i, None, 30)
                await mb.ping()
            # Wait until every one of them reached the responder: the serve
            # loop holds the first and waits for the slot, the rest are buffered.
            (requests_in,) = responder._conn.subscriptions.values()
            with trio.fail_after(30):
                while len(requests_in._items) < 4:
                    await trio.sleep(0.001)
            release.set()
        assert order == [b"first", b"0", b"1", b"2", b"3", b"4"]
        nursery.cancel_scope.cancel()


async def test_parked_workers_leave_when_serve_is_cancelled(minibroker_url: str) -> None:
    # After a burst, the serve's workers are parked waiting for requests;
    # cancelling serve must end them (and serve) at once.
    async def handler(req: IncomingRequest) -> bytes:
        await trio.sleep(0)
        return req.body

    async with (
        minibroker.connect(minibroker_url) as responder,
        minibroker.connect(minibroker_url) as mb,
    ):
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: responder.serve(
                        "svc.park", handler, concurrency=4, task_status=task_status
                    )
                )
                async with trio.open_nursery() as requests:
                    for i in range(12):
                        requests.start_soon(mb.request, "svc.park", b"%d" % i, None, 30)
                nursery.cancel_scope.cancel()


async def test_serve_raises_connection_closed_with_workers_parked(minibroker_url: str) -> None:
    async def handler(req: IncomingRequest) -> bytes:
        return req.body

    async with (
        minibroker.connect(minibroker_url) as responder,
        minibroker.connect(minibroker_url) as mb,
    ):
        failure: list[BaseException] = []

        async def serve(task_status: Any) -> None:
            try:
                await responder.serve("svc.drop", handler, concurrency=3, task_status=task_status)
            except minibroker.ConnectionClosed as exc:
                failure.append(exc)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(serve)
                async with trio.open_nursery() as requests:
                    for i in range(6):
                        requests.start_soon(mb.request, "svc.drop", b"%d" % i, None, 30)
                await responder._stream.aclose()  # the connection drops under serve
        assert len(failure) == 1


async def test_serve_returns_when_its_subscription_ends_with_workers_parked(
    minibroker_url: str,
) -> None:
    # An ``end`` push (the broker ending the subscription) stops serve
    # cleanly: parked workers leave, and serve returns instead of waiting
    # for requests that cannot come.
    from minibroker.client.pushes import SubscriptionEnded

    async def handler(req: IncomingRequest) -> bytes:
        return req.body

    async with (
        minibroker.connect(minibroker_url) as responder,
        minibroker.connect(minibroker_url) as mb,
    ):
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: responder.serve(
                        "svc.end", handler, concurrency=3, task_status=task_status
                    )
                )
                async with trio.open_nursery() as requests:
                    for i in range(6):
                        requests.start_soon(mb.request, "svc.end", b"%d" % i, None, 30)
                (requests_in,) = responder._conn.subscriptions.values()
                requests_in._end(SubscriptionEnded("ended by the broker"))
