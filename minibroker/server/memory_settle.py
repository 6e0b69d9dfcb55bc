"""Give memory back once a burst is over: a full collection and a heap trim when idle.

After a burst (the 1,000,000-frame fuzz of benchmarks/frame_fuzz.py, say)
every object of it is freed, yet the server's RSS stayed 20 to 50 MiB above
its idle size. Most of it was pymalloc arenas kept alive by a few objects
each: CPython keeps freed tuples, lists, dicts and floats on free lists (up
to 2,000 tuples of each size) for reuse, and only a full collection
(``gc.collect()``) empties those lists. One object on a free list pins its
whole 1 MiB arena. A full collection plus glibc's ``malloc_trim`` brought
a fuzzed server from 60 MiB back to 40 (and with the cycle of a closed
connection broken, see server/connection.py, to its idle size).

A full collection walks every tracked object, so it is done only when the
server is idle (no frame came in for a whole ``interval``) and its RSS grew
by ``slack`` since the last time: a busy server never pauses for it, and a
quiet one pays once per burst. Only ``minibroker serve`` runs this (as with
``keep_large_blocks_mapped``): an embedded broker leaves the garbage collector
of the program it runs in alone.
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

#: Seconds without a frame in that count as idle; also how often RSS is read.
IDLE_SECONDS: Final = 1.0
#: Growth of the RSS since the last settle that makes the next idle moment settle.
SLACK_BYTES: Final = 8 * 1024 * 1024


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
    """Settles memory at the first idle moment after the RSS grew by ``slack``."""

    def __init__(
        self,
        frames_in: Callable[[], int],
        *,
        rss: Callable[[], int | None] = resident_bytes,
        settle: Callable[[], None] = collect_and_trim,
        slack: int = SLACK_BYTES,
    ) -> None:
        self._frames_in = frames_in
        self._rss = rss
        self._settle = settle
        self._slack = slack
        self._last_frames = frames_in()
        #: RSS after the last settle (or at start): the level growth is measured from.
        self._baseline = rss()
        self.settled = 0

    def tick(self) -> bool:
        """One check; True if it settled."""
        frames = self._frames_in()
        busy = frames != self._last_frames
        self._last_frames = frames
        if busy or self._baseline is None:
            return False
        before = self._rss()
        if before is None or before < self._baseline + self._slack:
            return False
        self._settle()
        after = self._rss()
        self._baseline = after if after is not None else before
        self.settled += 1
        log.debug("settled memory after a burst: RSS %d -> %s bytes", before, after)
        return True

    async def run(self, interval: float = IDLE_SECONDS) -> None:
        while True:
            await trio.sleep(interval)
            self.tick()
