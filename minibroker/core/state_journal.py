"""A front end's durable state in a namespace: a small map from names to bytes on disk.

A front end keeps some state of its own per namespace beside the core's
models (AMQP: durable exchanges, their bindings, queue arguments). The core
opens storage, not the front ends (the import contracts keep storage below
the core), so a front end asks its namespace for a ``StateJournal``
(``Namespace.state_journal``) and keeps ``name -> bytes`` entries in it; what
the bytes mean is the front end's business.

It is the binding journal's design (:mod:`minibroker.core.binding_journal`)
for arbitrary entries: one small append-only store per namespace and front
end (kind ``meta``), written through the same CRC-framed storage layer:

===========  =====================  =====================================
key          headers                meaning
===========  =====================  =====================================
``P``        ``{"name": n}``        entry ``n`` is the record's body
``D``        ``{"name": n}``        entry ``n`` was removed
``S``        none                   snapshot: the ``P`` records that follow
                                    in the same batch are all the entries
===========  =====================  =====================================

A batch is stored whole or not at all, so a snapshot (``S`` and its ``P``
records, one append) never half-replaces the state. When the store holds
many more records than live entries, a snapshot is appended and retention
drops the segments before it. The store is created on the first write: a
namespace whose front end never wrote anything gets no file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from minibroker.core.journaled import StoreJournal
from minibroker.errors import StorageError, StorageFull
from minibroker.log_store import Entry, LogStore

log = logging.getLogger("minibroker.storage")

KIND = "meta"
SEGMENT_BYTES = 64 * 1024
#: Compact when the store has this many records more than there are live entries.
COMPACT_SLACK = 1000


class StateJournal(StoreJournal):
    """Entries ``name -> bytes``, replayed on open; writes raise StorageFull/StorageError."""

    def __init__(
        self,
        open_store: Callable[[], LogStore],
        on_write: Callable[[], None],
        *,
        exists: bool,
    ) -> None:
        super().__init__(open_store, on_write, exists=exists)
        #: The live entries, in the order they were first written.
        self.entries: dict[str, bytes] = {}
        if self._journal is not None:
            self._replay(self._journal)

    def _replay(self, store: LogStore) -> None:
        entries = self.entries
        for record in store.iter_records():
            name = (record.headers or {}).get("name")
            if record.key == b"S":
                entries.clear()
            elif record.key == b"P" and name is not None:
                entries[name] = bytes(record.body)
            elif record.key == b"D" and name is not None:
                entries.pop(name, None)

    def put(self, name: str, value: bytes, now_ms: int) -> None:
        """Write ``name`` down (on failure it raises and nothing changed)."""
        if self.entries.get(name) == value:
            self.report_unsynced()
            return
        self._append([(b"P", {"name": name}, value)], now_ms)
        self.entries[name] = value
        self._compact_if_needed(now_ms)

    def delete(self, name: str, now_ms: int) -> None:
        if name not in self.entries:
            return
        self._append([(b"D", {"name": name}, b"")], now_ms)
        del self.entries[name]
        self._compact_if_needed(now_ms)

    def _compact_if_needed(self, now_ms: int) -> None:
        store = self._journal
        assert store is not None
        if store.next_offset - store.first_offset < len(self.entries) + COMPACT_SLACK:
            return
        snapshot: list[Entry] = [(b"S", None, b"")]
        snapshot += [(b"P", {"name": name}, value) for name, value in self.entries.items()]
        before = store.size_bytes
        try:
            store.append(snapshot, now_ms)
        except (StorageFull, StorageError) as exc:
            # The entry before it is written: only the compaction waits (the
            # next write tries again), the entry's write does not fail for it.
            log.warning("could not compact the state journal: %s", exc.message)
            return
        # Keep at least the snapshot's bytes: whole segments before it can go.
        store.enforce_retention(now_ms, store.size_bytes - before, None)
        self._on_write()
