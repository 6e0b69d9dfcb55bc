"""``--busy-poll-us``: the broker keeps polling after input, then goes back to sleep.

The latency effect is measured in benchmarks/ (docs/operations.md); what a
test can pin is the behaviour users rely on: everything works the same with
it on, and a broker with nothing to do stops spinning once the window has
passed (so an idle broker costs no CPU).
"""

from __future__ import annotations

import trio
import trio.testing
from raw_wire import StartServer

import minibroker
from minibroker.server.busy_poll import BusyPoll


async def test_requests_and_replies_work_with_busy_polling(start_server: StartServer) -> None:
    server = await start_server(busy_poll_us=5000)
    url = f"minibroker://127.0.0.1:{server.port}"
    async with (
        minibroker.connect(url) as responder,
        minibroker.connect(url) as requester,
        trio.open_nursery() as nursery,
    ):

        async def echo() -> None:
            async with responder.respond("svc.echo") as requests:
                async for request in requests:
                    await request.reply(request.body.upper())

        nursery.start_soon(echo)
        await trio.testing.wait_all_tasks_blocked()
        for word in (b"one", b"two", b"three"):
            reply = await requester.request("svc.echo", word, timeout=5)
            assert reply.body == word.upper()
        nursery.cancel_scope.cancel()


async def test_the_poller_sleeps_once_the_window_has_passed() -> None:
    poll = BusyPoll(window_us=2000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll.run)
        poll.poke()
        # While it spins it is never blocked; this returns only once it sleeps.
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()
        poll.poke()  # and it wakes (and sleeps) again on the next input
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


def test_zero_turns_it_off() -> None:
    assert not BusyPoll(window_us=0).enabled
    assert BusyPoll(window_us=1).enabled
