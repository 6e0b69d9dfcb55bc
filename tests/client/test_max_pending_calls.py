"""``max_pending`` per call for tails and responders, as for ``subscribe``.

A log tail or a responder (``respond``, ``serve``, ``serving``) holds at most
``max_pending`` items the application has not taken: its own, else the
client's (``connect(max_pending=...)``), else 10,000. Past it the client
pauses that subscription in the broker, which keeps the rest, so nothing is
lost. The Node client took ``maxPending`` on ``tail`` and ``respond``; the
Python ones took it only on ``subscribe`` and ``connect``.
"""

from __future__ import annotations

import asyncio

import pytest
import trio
import trio.testing
from client_facades import SAFETY, ClientFacade

import minibroker
import minibroker.aio
from minibroker import IncomingRequest, SyncIncomingRequest
from minibroker.client.pushes import DEFAULT_MAX_PENDING
from minibroker.embedded import EmbeddedBroker

#: Records appended before the tail opens: its first push carries them all.
RECORDS = 50


async def test_a_tail_pauses_at_its_own_max_pending(client: ClientFacade) -> None:
    await client.call("create_log", "ev")
    await client.call("append_many", "ev", [b"%d" % i for i in range(RECORDS)])
    async with client.subscription("tail", "ev", start="earliest", max_pending=10) as tail:
        first = await tail.next()
        pushes = tail.sub.subscription
        assert pushes._max_pending == 10
        # 49 records held, past 10: paused in the broker (the default holds 10,000).
        assert pushes._paused
        records = [first]
        with trio.fail_after(SAFETY):
            while len(records) < RECORDS:
                records += await tail.batch(7)
        assert [r.offset for r in records] == list(range(RECORDS))
        assert not pushes._paused  # taken down to half: resumed
        await client.call("append", "ev", b"live")
        assert (await tail.next()).body == b"live"


async def test_respond_takes_its_own_max_pending(client: ClientFacade) -> None:
    async with client.subscription("respond", "svc.x", max_pending=3) as requests:
        assert requests.sub._max_pending == 3
    async with client.subscription("respond", "svc.y") as requests:
        assert requests.sub._max_pending == DEFAULT_MAX_PENDING


async def test_a_limit_below_one_is_refused(client: ClientFacade) -> None:
    for method, args in (("tail", ("ev",)), ("respond", ("svc.x",)), ("subscribe", ("t",))):
        with pytest.raises(ValueError, match="max_pending"):
            async with client.subscription(method, *args, max_pending=0):
                pytest.fail("opened with max_pending=0")


# ------------------------------------------- paused in the broker (Trio, in-process)
#
# In one Trio run with the in-process broker, ``wait_all_tasks_blocked`` means
# the broker has pushed all it would and the client has read it: exactly
# what a limit changes can be checked, with no timing.


async def test_the_own_limit_beats_the_clients(minibroker_broker: EmbeddedBroker) -> None:
    async with minibroker_broker.connect(max_pending=100) as mb:
        async with mb.respond("svc.a") as inherited, mb.respond("svc.b", max_pending=3) as own:
            assert (inherited._max_pending, own._max_pending) == (100, 3)
        await mb.create_log("ev")
        async with mb.tail("ev", max_pending=4) as tail:
            assert tail.subscription._max_pending == 4


async def test_a_responder_pauses_at_its_own_max_pending(
    minibroker_broker: EmbeddedBroker,
) -> None:
    replies: list[bytes] = []
    with trio.fail_after(SAFETY):
        async with (
            minibroker_broker.connect() as mb,
            minibroker_broker.connect() as asker,
            mb.respond("svc.x", max_pending=3) as requests,
            trio.open_nursery() as nursery,
        ):

            async def ask(n: int) -> None:
                replies.append((await asker.request("svc.x", b"%d" % n, timeout=SAFETY)).body)

            for n in range(8):
                nursery.start_soon(ask, n)
            await trio.testing.wait_all_tasks_blocked()
            # Paused at 3 (what was on its way when it paused still arrives);
            # the broker keeps the rest for it, and nothing is lost.
            assert requests._paused
            assert len(requests._items) >= 3
            for _ in range(8):
                req = await requests.__anext__()
                await req.reply(req.body)
    assert sorted(replies) == sorted(b"%d" % n for n in range(8))


async def test_serving_takes_max_pending(minibroker_broker: EmbeddedBroker) -> None:
    """``serve``/``serving`` pass ``max_pending`` to their responder: with one
    handler busy, the requests behind it pause it at 2."""
    release = trio.Event()
    replies: list[bytes] = []

    async def slow(req: IncomingRequest) -> bytes:
        await release.wait()
        return req.body

    with trio.fail_after(SAFETY):
        async with (
            minibroker_broker.connect() as mb,
            minibroker_broker.connect() as asker,
            mb.serving("svc.x", slow, concurrency=1, max_pending=2),
            trio.open_nursery() as nursery,
        ):
            [responder] = mb._conn.subscriptions.values()
            assert responder._max_pending == 2

            async def ask(n: int) -> None:
                replies.append((await asker.request("svc.x", b"%d" % n, timeout=SAFETY)).body)

            for n in range(6):
                nursery.start_soon(ask, n)
            await trio.testing.wait_all_tasks_blocked()
            assert responder._paused
            release.set()
    assert sorted(replies) == sorted(b"%d" % n for n in range(6))


def test_asyncio_serving_takes_max_pending(minibroker_url: str) -> None:
    async def echo(req: IncomingRequest) -> bytes:
        return req.body

    async def main() -> None:
        async with (
            minibroker.aio.connect(minibroker_url) as mb,
            mb.serving("svc.x", echo, max_pending=5),
        ):
            [responder] = mb._conn.subscriptions.values()
            assert responder._max_pending == 5
            assert (await mb.request("svc.x", b"hi")).body == b"hi"
        async with minibroker.aio.connect(minibroker_url) as mb:
            with pytest.raises(ValueError, match="max_pending"):
                async with mb.serving("svc.x", echo, max_pending=0):
                    pytest.fail("served with max_pending=0")

    asyncio.run(main())


def test_blocking_serving_takes_max_pending(minibroker_url: str) -> None:
    def echo(req: SyncIncomingRequest) -> bytes:
        return req.body

    with minibroker.connect_sync(minibroker_url) as mb:
        with mb.serving("svc.x", echo, max_pending=5):
            [responder] = mb._conn.subscriptions.values()
            assert responder._max_pending == 5
            assert mb.request("svc.x", b"hi").body == b"hi"
        with (
            pytest.raises(ValueError, match="max_pending"),
            mb.serving("svc.x", echo, max_pending=0),
        ):
            pytest.fail("served with max_pending=0")
