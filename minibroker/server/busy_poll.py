"""Busy polling: after input, keep the scheduler polling for a short while instead of sleeping.

Why: on these machines a process that sleeps in ``epoll_wait`` takes 25-35 µs
to wake when data arrives, and runs its first microseconds on a cold CPU. A
request/reply crosses the broker twice, so two of those wake-ups are the
broker's. For ``busy_poll_us`` microseconds after each chunk of input, a
task here yields to the scheduler in a loop; every yield is a non-blocking
``epoll_wait``, so the next request is seen within a few microseconds, on a
warm CPU. It is the same trade Go's scheduler (and so the NATS server)
makes, spinning briefly before parking a thread: CPU time spent while busy
buys latency. A broker with no input for longer than the window sleeps as
before, so an idle broker costs nothing. Off by default; ``serve
--busy-poll-us N`` turns it on (docs/operations.md, "Latency: busy polling").
"""

from __future__ import annotations

import time

import trio


class BusyPoll:
    """Spins the Trio scheduler for ``window_us`` after every ``poke``."""

    __slots__ = ("_active_until", "_activity", "_window")

    def __init__(self, window_us: float) -> None:
        self._window = window_us / 1e6
        self._active_until = 0.0
        self._activity = trio.Event()

    @property
    def enabled(self) -> bool:
        return self._window > 0

    def poke(self) -> None:
        """Input arrived: poll until ``window_us`` from now."""
        self._active_until = time.perf_counter() + self._window
        self._activity.set()

    async def run(self) -> None:
        clock = time.perf_counter
        checkpoint = trio.lowlevel.checkpoint
        while True:
            await self._activity.wait()
            self._activity = trio.Event()
            while clock() < self._active_until:
                await checkpoint()
