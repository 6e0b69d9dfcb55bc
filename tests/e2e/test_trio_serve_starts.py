"""The Trio ``serve`` starts handler tasks from the client's reader.

A request that finds a free slot gets its handler task in the scheduler
round that read it; one that finds every slot busy waits in the buffer and
is started, in arrival order, as slots free up. These tests pin the limits
and the order either way, over TCP.
"""

from __future__ import annotations

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
