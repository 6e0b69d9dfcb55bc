"""The one task that drives every deadline in the broker.

It sleeps until the core's earliest deadline (visibility timeouts, TTLs,
nack delays, long-poll waits, request deadlines, retention) and then lets the
core fire what is due. It never polls: when a connection arms a deadline
earlier than the one being slept on, ``poke()`` wakes the task to re-read it.
Because the sleep is on the Trio clock, MockClock makes every timeout in the
broker instant in tests.
"""

from __future__ import annotations

import logging
import math

import trio

from minibroker.core.broker import Broker

log = logging.getLogger("minibroker.server")


class TimerService:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._sleeping_until = math.inf
        self._rearm = trio.Event()

    def poke(self) -> None:
        """Call after anything that may have armed an earlier deadline."""
        deadline = self._broker.next_deadline()
        if deadline is not None and deadline < self._sleeping_until:
            self._rearm.set()

    def poke_now(self) -> None:
        """Wake the timer task unconditionally (after the clock jumped in tests)."""
        self._rearm.set()

    async def run(self) -> None:
        broker = self._broker
        while True:
            deadline = broker.next_deadline()
            self._sleeping_until = math.inf if deadline is None else deadline
            with trio.move_on_at(self._sleeping_until):
                await self._rearm.wait()
            self._rearm = trio.Event()
            self._sleeping_until = math.inf
            try:
                broker.on_time(trio.current_time())
            except Exception:
                # A bug in one model's timer must not take the broker down;
                # the failed timer is already off the heap, so it won't repeat.
                log.exception("a broker timer failed")
