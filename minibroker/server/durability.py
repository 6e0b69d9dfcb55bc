"""Group commit: one fsync covers every durable write made while the last one ran.

Models call ``broker.note_durable_write()`` after writing to storage, which
bumps ``broker.write_generation``; the session holds the confirm of that
request until the generation is synced (``hold_until_synced``). This task
wakes when the generation moves, fsyncs everything dirty once, then releases
every confirm up to the generation it saw before syncing. Under load many
publishes share one fsync, which is what makes durable publishing fast
(DESIGN.md, "Durability policy").

The fsync runs on the event-loop thread: it is short on the SSDs and
virtual disks this broker targets (about 0.2 ms here), and running it in a
worker thread would race with appends and segment rolls on the same files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import trio

from minibroker.core.broker import Broker
from minibroker.errors import BrokerError, StorageError, StorageFull
from minibroker.server.log_metrics import fsync_histogram
from minibroker.server.wire_session import WireSession

log = logging.getLogger("minibroker.storage")


class GroupCommit:
    def __init__(self, broker: Broker, sessions: Callable[[], Iterable[WireSession]]) -> None:
        self._broker = broker
        self._sessions = sessions
        self._dirty = trio.Event()
        self.synced_generation = broker.write_generation
        #: Set (and replaced) after every sync, for requests that wait outside a
        #: session (the HTTP front ends): see ``wait_synced``.
        self._synced = trio.Event()
        self._failure: tuple[int, BrokerError] | None = None
        self.fsyncs = 0
        self._fsync_seconds = fsync_histogram(broker)
        # A method, not ``self._dirty.set``: ``run`` replaces the Event after
        # each wake-up, and a bound method of the first Event would wake nobody.
        broker.on_durable_write = self._mark_dirty

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
        """fsync what is dirty and release (or fail) the confirms waiting on it."""
        generation = self._broker.write_generation
        if generation == self.synced_generation:
            return
        started = time.perf_counter()
        try:
            self._broker.sync_storage()
        except (OSError, BrokerError) as exc:
            log.error("fsync failed; failing %s held confirms: %s", "the", exc)
            # A full disk keeps its code: deferred journal records (acks,
            # queue_journal.py) are written here, and "full" tells the client why.
            kind = StorageFull if isinstance(exc, StorageFull) else StorageError
            error = kind(f"could not sync to disk: {exc}")
            for session in self._sessions():
                session.fail_held(error)
            self.synced_generation = generation
            self._failure = (generation, error)
            self._wake_waiters()
            return
        took = time.perf_counter() - started
        self._fsync_seconds.observe(took)
        if self._broker.xray is not None:
            self._broker.xray.synced(generation, took)
        self.fsyncs += 1
        self.synced_generation = generation
        for session in self._sessions():
            session.release_synced(generation)
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        self._synced.set()
        self._synced = trio.Event()

    async def wait_synced(self, generation: int) -> None:
        """Return once the writes up to ``generation`` are fsynced; StorageError if
        the fsync that covered them failed. The confirm of a request that made a
        durable write outside a session waits here (group commit)."""
        while self.synced_generation < generation:
            await self._synced.wait()
        failure = self._failure
        if failure is not None and failure[0] >= generation:
            raise failure[1]
