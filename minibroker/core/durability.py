"""Durability: when a write reaches the disk, and which confirmations wait for it.

One object per broker (``Broker.durability``), with one policy for every
front end and every model (``--fsync``, DESIGN.md "Durability policy"):

* ``batch`` (group commit, the default with a data directory): a model that
  wrote to storage reports it (:meth:`Durability.written`), which bumps the
  write ``generation`` and wakes the shell (``on_dirty``). A front end that
  is about to confirm a request whose handling moved the generation
  (:meth:`Durability.must_hold`) hands the confirmation over instead
  (:meth:`Durability.hold`). The shell's group-commit task calls
  :meth:`Durability.sync` once the burst of writes of one loop iteration is
  in: one fsync of every store with unsynced writes, then every held
  confirmation it covers is sent, in the order they were held. Under load
  many writes share one fsync, which is what makes durable writes fast.
* ``always``: the write is fsynced inside :meth:`written`, before the
  request that made it is confirmed; nothing is held.
* ``never``: nothing is fsynced by the broker (the OS writes it back when it
  pleases) and nothing is held. A broker without a data directory has
  nothing to sync and runs as ``never``.

If an fsync fails, every held confirmation becomes that error (nothing is
confirmed that may not be on disk), and the store it failed on is
fail-stop: a retried fsync could "succeed" without the data (the kernel
may have dropped the pages the failed one was to write), so that store
never syncs again, refuses its writes with ``storage_failed`` until the
broker restarts, and later rounds pass over it (``LogStore.group_sync``):
the other stores' confirmations go on. A write that failed for another
reason (a full disk refusing the deferred records of acks) is retried by
the next round, as nothing of it reached a failed sync.

This module is sans-I/O like the rest of the core: the fsync itself is the
``sync_storage`` function the broker passes in (its models walk their
stores), and the shell owns the only loop that decides *when* to sync
(``server/durability.py``). Holding a confirmation is a callback, so each
front end keeps its answers in its own terms (a native result, an AMQP
Basic.Ack, a Kafka response slot, an HTTP answer) and this object keeps the
one ordered list of what waits for the disk.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from minibroker.core.config import FsyncPolicy
from minibroker.core.histogram import FSYNC_BUCKETS, LatencyHistogram
from minibroker.errors import BrokerError, StorageError, StorageFailed, StorageFull

log = logging.getLogger("minibroker.storage")

#: Told the outcome of the sync it waited for: None once the writes are on
#: disk, else the error that kept them from it.
Confirm = Callable[[BrokerError | None], None]


class Durability:
    """The fsync policy, the write generation, and the confirmations waiting for a sync."""

    __slots__ = (
        "_held",
        "_sync_storage",
        "fsync_seconds",
        "fsyncs",
        "generation",
        "on_dirty",
        "policy",
        "synced_generation",
    )

    def __init__(self, policy: FsyncPolicy, sync_storage: Callable[[], None]) -> None:
        #: The policy in force; ``never`` also stands for "no data directory".
        self.policy: FsyncPolicy = policy
        #: Bumped by every durable write left for a later sync (not under ``always``).
        self.generation = 0
        #: The generation the last finished sync covered (failed syncs included:
        #: their writes' confirmations were failed, nothing waits for them).
        self.synced_generation = 0
        #: The shell's wake-up for its group-commit task (``batch``); None: nobody listens.
        self.on_dirty: Callable[[], None] | None = None
        #: Successful group-commit syncs, and how long each took.
        self.fsyncs = 0
        self.fsync_seconds = LatencyHistogram(FSYNC_BUCKETS)
        self._sync_storage = sync_storage
        #: (generation, confirm), in the order held; generations never decrease.
        self._held: deque[tuple[int, Confirm]] = deque()

    # --------------------------------------------------------- models report

    @property
    def on_disk(self) -> bool:
        """Whether writes are made durable at all (``always`` or ``batch``)."""
        return self.policy != "never"

    def written(self) -> None:
        """A model wrote to storage what must be fsynced before it is confirmed.

        Under ``always`` it is synced here (a failure raises to the request
        that wrote), so nothing waits and the generation stays; otherwise the
        generation moves, and under ``batch`` the shell is woken to sync it soon.
        """
        if self.policy == "always":
            self._sync_storage()
            return
        self.generation += 1
        if self.on_dirty is not None:
            self.on_dirty()

    # ------------------------------------------------- front ends hold confirms

    @property
    def holds_confirms(self) -> bool:
        """Whether confirmations of durable writes wait for a sync (``batch``)."""
        return self.policy == "batch"

    def must_hold(self, since: int) -> bool:
        """Whether a confirmation must wait for the group commit: a durable
        write was made since the generation was ``since`` and ``batch`` is in force."""
        return self.generation != since and self.policy == "batch"

    @property
    def holding(self) -> bool:
        """Whether any confirmation is waiting for a sync."""
        return bool(self._held)

    def hold(self, confirm: Confirm) -> None:
        """Call ``confirm`` once every write made so far is synced (or failed to be).

        Confirmations are released in the order they were held, so a front
        end that must answer in order holds everything behind its first held
        answer (AMQP confirms, the SQS answer of one connection).
        """
        self._held.append((self.generation, confirm))

    # ------------------------------------------------------- the shell syncs

    def sync(self, clock: Callable[[], float] | None = None) -> float | None:
        """fsync every store with unsynced writes, then send (or fail) the
        confirmations this covers. Returns how long the fsync took (by
        ``clock``) when it succeeded, None when there was nothing to do or it failed."""
        generation = self.generation
        if generation == self.synced_generation:
            return None
        started = 0.0 if clock is None else clock()
        try:
            self._sync_storage()
        except (OSError, BrokerError) as exc:
            held = len(self._held)
            log.error("fsync failed; failing %d held confirmations: %s", held, exc)
            self.synced_generation = generation
            if isinstance(exc, StorageFailed):  # its message says what and why
                self.fail(StorageFailed(exc.message, **exc.details))
                return None
            # A full disk keeps its code: deferred journal records (acks,
            # queue_journal.py) are written here, and "full" tells the client why.
            kind = StorageFull if isinstance(exc, StorageFull) else StorageError
            self.fail(kind(f"could not sync to disk: {exc}"))
            return None
        took = 0.0 if clock is None else clock() - started
        self.fsync_seconds.observe(took)
        self.fsyncs += 1
        self.synced_generation = generation
        self.release(generation)
        return took

    def release(self, generation: int) -> None:
        """Send the confirmations held for writes up to ``generation`` (synced)."""
        held = self._held
        while held and held[0][0] <= generation:
            held.popleft()[1](None)

    def fail(self, error: BrokerError) -> None:
        """The sync failed: every held confirmation becomes ``error``."""
        held, self._held = self._held, deque()
        for _, confirm in held:
            confirm(error)
