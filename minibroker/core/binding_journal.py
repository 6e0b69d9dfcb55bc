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
small whatever the bind/unbind churn.
"""

from __future__ import annotations

from collections.abc import Callable

from minibroker.log_store import LogStore

KIND = "meta"
NAME = "bindings"
SEGMENT_BYTES = 64 * 1024
#: Compact when the store has this many records more than there are live bindings.
COMPACT_SLACK = 1000


class BindingJournal:
    def __init__(self, store: LogStore, on_write: Callable[[], None]) -> None:
        self._store = store
        self._on_write = on_write
        #: Live durable bindings in binding order: (queue, pattern).
        self.bindings: dict[tuple[str, str], None] = {}
        self._replay()

    def _replay(self) -> None:
        bindings = self.bindings
        for record in self._store.iter_records():
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

    def _append(self, key: bytes, headers: dict[str, str], now_ms: int) -> None:
        self._store.append([(key, headers, b"")], now_ms)
        self._on_write()

    def _compact_if_needed(self, now_ms: int) -> None:
        store = self._store
        if store.next_offset - store.first_offset < len(self.bindings) + COMPACT_SLACK:
            return
        snapshot = {
            str(i): f"{queue}\n{pattern}" for i, (queue, pattern) in enumerate(self.bindings)
        }
        before = store.size_bytes
        store.append([(b"S", snapshot, b"")], now_ms)
        # Keep at least the snapshot's bytes: whole segments before it can go.
        store.enforce_retention(now_ms, store.size_bytes - before, None)
        self._on_write()

    def sync(self) -> None:
        self._store.sync()

    def close(self) -> None:
        self._store.close()

    def destroy(self) -> None:
        self._store.destroy()
