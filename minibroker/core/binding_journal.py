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
write, as the state journal's (:mod:`minibroker.core.state_journal`): a
namespace that never binds a durable queue gets no file, and making one
needs no room on disk (a client can still say hello to a new namespace when
the disk is full).
"""

from __future__ import annotations

from collections.abc import Callable

from minibroker.core.journaled import Journaled
from minibroker.log_store import LogStore

KIND = "meta"
NAME = "bindings"
SEGMENT_BYTES = 64 * 1024
#: Compact when the store has this many records more than there are live bindings.
COMPACT_SLACK = 1000


class BindingJournal(Journaled[LogStore]):
    """The durable bindings; the store is ``_journal`` (None until the first
    write when none exists yet), so ``sync``/``close``/``destroy`` are
    :class:`~minibroker.core.journaled.Journaled`'s."""

    def __init__(
        self, open_store: Callable[[], LogStore], on_write: Callable[[], None], *, exists: bool
    ) -> None:
        self._open_store = open_store
        self._on_write = on_write
        self._journal: LogStore | None = None
        #: Live durable bindings in binding order: (queue, pattern).
        self.bindings: dict[tuple[str, str], None] = {}
        #: Bindings were forgotten without a ``U`` record: the next write that
        #: succeeds is followed by a snapshot, which leaves them out for good.
        self._snapshot_due = False
        if exists:
            self._journal = open_store()
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
        self._append(b"B", {"queue": queue, "pattern": pattern}, now_ms)
        self.bindings[(queue, pattern)] = None
        self._compact_if_needed(now_ms)

    def record_unbind(self, queue: str, pattern: str, now_ms: int) -> None:
        self._append(b"U", {"queue": queue, "pattern": pattern}, now_ms)
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

    def _append(self, key: bytes, headers: dict[str, str], now_ms: int) -> None:
        if self._journal is None:
            self._journal = self._open_store()
        self._journal.append([(key, headers, b"")], now_ms)
        self._on_write()

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
        store.append([(b"S", snapshot, b"")], now_ms)
        # Keep at least the snapshot's bytes: whole segments before it can go.
        self._snapshot_due = False
        store.enforce_retention(now_ms, store.size_bytes - before, None)
        self._on_write()

    def report_unsynced(self) -> None:
        """A client is about to be told that something this journal holds exists,
        without a new write (a re-declaration): if the store has writes not yet
        fsynced (the group commit has not run, or its fsync failed), report a
        write, so the answer waits for the sync that makes them durable and
        retries a failed one (under ``always`` it runs here, and raises)."""
        if self._journal is not None and self._journal.unsynced:
            self._on_write()
