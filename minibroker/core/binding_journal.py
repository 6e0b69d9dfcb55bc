"""Bindings of durable queues, kept on disk so durable subscriptions survive restarts.

``bind(queue, pattern)`` makes a topic's messages land in a queue even while
its consumers are offline; for a durable queue that promise has to outlive
the broker process too (RabbitMQ keeps bindings between durable exchanges and
queues the same way). Bindings change rarely, so they live in one small
append-only store per namespace (kind ``meta``, name ``bindings``), written
through the same CRC-framed storage layer as everything else:

===========  ===================================  ============================
key          headers                              meaning
===========  ===================================  ============================
``B``        ``{"queue": q, "pattern": p}``       q was bound to p
``U``        ``{"queue": q, "pattern": p}``       that binding was removed
``S``        ``{"<n>": "<queue>\\n<pattern>"...}``   snapshot: exactly these bindings
===========  ===================================  ============================

On open the records are replayed in order (a snapshot resets the state).
When the store holds many more records than live bindings, a snapshot is
appended and retention drops the whole segments before it, so the file stays
small whatever the bind/unbind churn. The store is created by the first
write (:class:`~minibroker.core.journaled.StoreJournal`): a namespace that
never binds a durable queue gets no file, and making one needs no room on
disk (a client can still say hello to a new namespace when the disk is full).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from minibroker.core.journaled import StoreJournal
from minibroker.errors import StorageError, StorageFull
from minibroker.log_store import LogStore

log = logging.getLogger("minibroker.topics")

KIND = "meta"
NAME = "bindings"
SEGMENT_BYTES = 64 * 1024
#: Compact when the store has this many records more than there are live bindings.
COMPACT_SLACK = 1000


class BindingJournal(StoreJournal):
    """The durable bindings, replayed on open; writes raise StorageFull/StorageError."""

    def __init__(
        self, open_store: Callable[[], LogStore], on_write: Callable[[], None], *, exists: bool
    ) -> None:
        super().__init__(open_store, on_write, exists=exists)
        #: Live durable bindings in binding order: (queue, pattern).
        self.bindings: dict[tuple[str, str], None] = {}
        #: Bindings were forgotten without a ``U`` record: the next write that
        #: succeeds is followed by a snapshot, which leaves them out for good.
        self._snapshot_due = False
        if self._journal is not None:
            self._replay(self._journal)

    def _replay(self, store: LogStore) -> None:
        bindings = self.bindings
        for record in store.iter_records():
            headers = record.headers or {}
            if record.key == b"S":
                bindings.clear()
                for _, packed in sorted(headers.items(), key=lambda item: int(item[0])):
                    queue, _, pattern = packed.partition("\n")
                    bindings[(queue, pattern)] = None
            elif record.key == b"B":
                bindings[(headers["queue"], headers["pattern"])] = None
            elif record.key == b"U":
                bindings.pop((headers["queue"], headers["pattern"]), None)

    def record_bind(self, queue: str, pattern: str, now_ms: int) -> None:
        """Write the binding down (raises StorageFull/StorageError and changes nothing)."""
        self._append([(b"B", {"queue": queue, "pattern": pattern}, b"")], now_ms)
        self.bindings[(queue, pattern)] = None
        self._compact_if_needed(now_ms)

    def record_unbind(self, queue: str, pattern: str, now_ms: int) -> None:
        self._append([(b"U", {"queue": queue, "pattern": pattern}, b"")], now_ms)
        self.bindings.pop((queue, pattern), None)
        self._compact_if_needed(now_ms)

    def forget_unwritten(self, queue: str, pattern: str) -> None:
        """Forget a binding whose ``U`` record was not (or cannot be) written:
        its queue is gone (deleted on a full disk, or missing at recovery).
        A replay would still find its ``B`` record and bind a later durable
        queue of that name, so the next snapshot, due at the next successful
        write, leaves it out."""
        if (queue, pattern) in self.bindings:
            del self.bindings[(queue, pattern)]
            self._snapshot_due = True

    def _compact_if_needed(self, now_ms: int) -> None:
        store = self._journal
        assert store is not None
        slack = store.next_offset - store.first_offset - len(self.bindings)
        if slack < COMPACT_SLACK and not self._snapshot_due:
            return
        snapshot = {
            str(i): f"{queue}\n{pattern}" for i, (queue, pattern) in enumerate(self.bindings)
        }
        before = store.size_bytes
        try:
            store.append([(b"S", snapshot, b"")], now_ms)
        except (StorageFull, StorageError) as exc:
            # The record before it is written: only the compaction waits (the
            # next write tries again), the binding does not fail for it.
            log.warning("could not compact the durable bindings: %s", exc.message)
            return
        self._snapshot_due = False
        # Keep at least the snapshot's bytes: whole segments before it can go.
        store.enforce_retention(now_ms, store.size_bytes - before, None)
        self._on_write()
