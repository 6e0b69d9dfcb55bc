"""A deadline that does not move forward cannot freeze the broker (issue 14 item 1).

Whatever arms a timer at ``now`` again and again (a duration too small to
move the float clock, or a bug in a model), the timer task must fire it once
per round and let the connections run in between, not spin in one
synchronous loop with the event loop blocked.
"""

from __future__ import annotations

import trio
import trio.testing

from minibroker.embedded import open_broker

#: Rounds the stuck timer may take before it stops on its own: the unfixed
#: loop runs them all in one synchronous call, before the ping can be answered.
GUARD = 100_000


async def test_a_timer_rearming_at_now_lets_clients_through(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_broker() as broker:
        timers = broker.core.timers
        rounds = 0
        stop = False

        def stuck(now: float) -> None:
            nonlocal rounds
            rounds += 1
            if not stop and rounds < GUARD:
                timers.call_at(now, stuck)

        async with broker.connect() as client:
            timers.call_at(trio.current_time(), stuck)
            broker.server.timers.poke()
            with trio.fail_after(60):
                assert await client.ping(b"alive") == b"alive"
            stop = True
        assert 0 < rounds < GUARD
