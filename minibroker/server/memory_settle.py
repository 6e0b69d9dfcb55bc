"""Give memory back once a burst is over: a full collection and a heap trim when idle.

After a burst (the 1,000,000-frame fuzz of benchmarks/frame_fuzz.py, say)
every object of it is freed, yet the server's RSS stayed 20 to 50 MiB above
its idle size. Most of it was pymalloc arenas kept alive by a few objects
each: CPython keeps freed tuples, lists, dicts and floats on free lists (up
to 2,000 tuples of each size) for reuse, and only a full collection
(``gc.collect()``) empties those lists. One object on a free list pins its
whole 1 MiB arena. A full collection plus glibc's ``malloc_trim`` brought
a fuzzed server from 60 MiB back to 40; the rest were arenas pinned by the
few objects a burst leaves alive, gone since small objects come from the C
heap, whose free pages ``malloc_trim`` returns (server/allocator.py).

A full collection walks every tracked object, so it is done only when the
server is idle (a whole ``interval`` brought at most ``idle_bytes`` of traffic,
bytes received and sent, on every port: native, AMQP, Kafka, SQS and HTTP
alike; output counts because a consumer replaying a log is megabytes of
answers to a few small requests), something happened
since the last settle, and the RSS is ``slack`` above the lowest level a
settle ever brought it to (the *floor*; at first the RSS at start).
Idle is a rate, not silence: a health check every 500 ms, a consumer's
long poll or a Kafka client's heartbeats are a few hundred bytes a second
and used to keep the server "busy" for good, so it never settled; a burst
is megabytes. A trickle does not make settles frequent either: after a
settle the RSS is at the floor, and one that gave nothing back backs off.
Measuring from the floor, not from the last settle, matters: a settle while
a backlog was still held used to become the new reference, so once the
backlog was consumed and deleted the memory it left was never handed back.
A settle that gives nothing back (the memory is in use: a backlog, a big
log) makes the next one wait twice as many idle intervals as the last, up
to ``MAX_BACKOFF``, so an idle server that holds a lot pays for a full
collection rarely. A busy server never pauses for it. Only ``minibroker
serve`` runs this (as with the tuning in server/allocator.py): an embedded
broker leaves the garbage collector of the program it runs in alone.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
from typing import Final

import trio

from minibroker.server.allocator import return_free_memory

log = logging.getLogger("minibroker.server")

#: The interval over which traffic is measured; also how often RSS is read.
IDLE_SECONDS: Final = 1.0
#: Most bytes of traffic in an interval that still count as idle: a trickle of
#: pings, health checks and heartbeats (hundreds of bytes a second) is idle,
#: a burst (a client sending as fast as it can: megabytes) is not.
IDLE_INPUT_BYTES: Final = 16 * 1024
#: RSS above the floor that makes the next idle moment settle: under a tenth
#: of an idle server's 32 MiB, so what is left after a burst stays within 10 %.
SLACK_BYTES: Final = 2 * 1024 * 1024
#: Most idle intervals to wait after a settle that gave nothing back.
MAX_BACKOFF: Final = 600


def resident_bytes() -> int | None:
    """This process's RSS from /proc (None where there is no /proc)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def collect_and_trim() -> None:
    """Empty the free lists (a full collection) and trim the C heap."""
    gc.collect()
    return_free_memory()


class MemorySettler:
    """Settles memory at the first idle moment after the RSS rose ``slack`` above its floor."""

    def __init__(
        self,
        traffic_bytes: Callable[[], int],
        *,
        rss: Callable[[], int | None] = resident_bytes,
        settle: Callable[[], None] = collect_and_trim,
        slack: int = SLACK_BYTES,
        idle_bytes: int = IDLE_INPUT_BYTES,
    ) -> None:
        #: Bytes received and sent since start, on every port.
        self._traffic_bytes = traffic_bytes
        self._rss = rss
        self._settle = settle
        self._slack = slack
        self._idle_bytes = idle_bytes
        self._last_traffic = traffic_bytes()
        #: Traffic at the last settle: with none since, there is nothing new to give back.
        self._traffic_at_settle = self._last_traffic
        #: The lowest RSS at start or after a settle: what memory can come back to.
        self._floor = rss()
        #: Idle intervals still to skip, and how many the next fruitless settle adds.
        self._skip = 0
        self._backoff = 1
        self.settled = 0

    def tick(self) -> bool:
        """One check; True if it settled."""
        traffic = self._traffic_bytes()
        busy = traffic - self._last_traffic > self._idle_bytes
        self._last_traffic = traffic
        if busy or self._floor is None or traffic == self._traffic_at_settle:
            return False
        if self._skip:
            self._skip -= 1
            return False
        before = self._rss()
        if before is None or before < self._floor + self._slack:
            return False
        self._settle()
        self._traffic_at_settle = traffic
        after = self._rss()
        after = before if after is None else after
        self._floor = min(self._floor, after)
        if after < self._floor + self._slack:
            self._backoff = 1  # it came back: settle at the next burst's end at once
        else:  # the memory is in use: try again later, and later still if it stays
            self._skip = self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        self.settled += 1
        log.info(
            "settled memory after a burst: RSS %.1f -> %.1f MiB", before / 2**20, after / 2**20
        )
        return True

    async def run(self, interval: float = IDLE_SECONDS) -> None:
        while True:
            await trio.sleep(interval)
            self.tick()
