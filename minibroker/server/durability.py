"""Group commit, the shell's half: the task that decides *when* to fsync.

The policy, the write generation and the confirmations waiting for the
disk live in the core's :class:`~minibroker.core.durability.Durability`
(``broker.durability``): models report writes to it, front ends hold
confirmations through it. Under ``--fsync batch`` this task wakes when a
write is reported, lets the rest of the loop iteration's writes join
(one checkpoint), then syncs once: one fsync covers every durable write
made while the last one ran, and every confirmation it covers goes out.
Under load many publishes share one fsync, which is what makes durable
publishing fast (DESIGN.md, "Durability policy").

The fsync runs on the event-loop thread: it is short on the SSDs and
virtual disks this broker targets (about 0.2 ms here), and running it in a
worker thread would race with appends and segment rolls on the same files.
"""

from __future__ import annotations

import time

import trio

from minibroker.core.broker import Broker
from minibroker.errors import BrokerError


class GroupCommit:
    """Runs ``broker.durability.sync`` after each burst of durable writes."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._durability = broker.durability
        self._dirty = trio.Event()
        # A method, not ``self._dirty.set``: ``run`` replaces the Event after
        # each wake-up, and a bound method of the first Event would wake nobody.
        self._durability.on_dirty = self._mark_dirty

    def _mark_dirty(self) -> None:
        self._dirty.set()

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            # Let the rest of this loop iteration's writes join this commit.
            await trio.lowlevel.checkpoint()
            self.sync_now()

    def sync_now(self) -> None:
        """fsync what is dirty and release (or fail) the confirmations waiting on it."""
        took = self._durability.sync(time.perf_counter)
        xray = self._broker.xray
        if took is not None and xray is not None:
            xray.synced(self._durability.synced_generation, took)


async def wait_synced(broker: Broker) -> None:
    """Return once every write made so far is fsynced; raise the error if
    that fsync failed. For requests answered outside a session's own output
    (the HTTP face): the task waits where a session would hold its answer."""
    done = trio.Event()
    outcome: list[BrokerError | None] = []

    def confirm(error: BrokerError | None) -> None:
        outcome.append(error)
        done.set()

    broker.durability.hold(confirm)
    await done.wait()
    if outcome[0] is not None:
        raise outcome[0]
