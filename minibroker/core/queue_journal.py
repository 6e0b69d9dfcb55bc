"""The journal of a durable queue: an append-only log of what happened to its messages.

A durable queue keeps its messages in memory, like any queue, and also
appends every change that must survive a restart to a
:class:`~minibroker.storage.store.LogStore` (the same segmented, CRC-framed
log that the log model uses). Replaying the journal rebuilds the queue.

Records
-------

Each record is a storage ``(key, headers, body)`` entry; the key's first byte
says what it is. Integers are packed big-endian (``>q`` is a signed 64-bit).

=======  =====================================  =================================
key      headers / body                         meaning
=======  =====================================  =================================
nil      message headers / message body         a message was put (the common
                                                case: 0 bytes of overhead); its
                                                offset is its journal id (jid),
                                                its publish time the record's
                                                timestamp
``X`` +  message headers / message body         a message with explicit metadata:
``>qqqqi``                                      ``replaces`` (jid this record
                                                supersedes, or -1), ``seq``
                                                (publish order, -1 = own
                                                offset), ``published_at`` ms,
                                                ``expires_at`` ms (0 = never),
                                                ``delivery_count``. Written for
                                                dead-lettered messages entering
                                                a queue and for messages moved
                                                by compaction
``S``    nil / jids, ``>q`` each                these messages left the queue
                                                (ack, expiry, dead-letter, drop,
                                                purge)
``R``    nil / (jid, count) pairs, ``>qq``      these messages went back to the
                                                queue after ``count`` deliveries
``O``    nil / JSON ``{"v": 1, "options":…}``   the queue's declaration
=======  =====================================  =================================

All records written by one operation go in one ``append`` (one write, one
CRC'd batch), and every append tells the broker (``on_write``) so the server
holds the operation's confirm until the group commit has fsynced it.

Replay (:func:`recover`) walks the records in order: puts add, ``S`` removes,
``R`` raises delivery counts, ``X`` adds and removes what it replaces, the
last ``O`` gives the options. What remains is the queue; it becomes ready in
publish order (``seq``). Deliveries are not journaled (that would cost a
write per fetch), so messages in flight at a crash come back ready: that is
the at-least-once promise.

Compaction
----------

Without care the journal grows forever. Retention does most of the work for
free: the store is cut into segments, and a segment whose records all
precede the oldest live message (and the newest ``O`` record) holds nothing
replay needs, so it is deleted whole (:meth:`QueueJournal.compact`, using the
store's time-based retention with the timestamp of the oldest live record as
"now": timestamps never decrease, so exactly the older segments go). In a
queue that is consumed roughly in order this keeps the journal at a segment
or two. When an old message pins the front (a poison message redelivered
for hours, say) while most of the journal is dead, the oldest live messages
are *moved*: re-appended as ``X`` records that replace their old jid, a
bounded batch per step, so the front segments become deletable. A crash in
the middle is harmless: replay sees both copies and the ``X`` record's
``replaces`` drops the old one.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from minibroker.core.errors import StorageError
from minibroker.core.queue_message import NEVER, Message
from minibroker.core.queue_options import QueueOptions
from minibroker.storage.record import Entry, decode_records
from minibroker.storage.store import LogStore

log = logging.getLogger("minibroker.queues")

JOURNAL_FORMAT: Final = 1

TAG_FULL: Final = b"X"
TAG_SETTLE: Final = b"S"
TAG_REQUEUE: Final = b"R"
TAG_OPTIONS: Final = b"O"

_FULL: Final = struct.Struct(">qqqqi")

#: Segment size of a queue journal: small, so dead segments are freed early.
JOURNAL_SEGMENT_BYTES: Final = 8 * 1024 * 1024
#: Compaction is considered after this many journal bytes were written.
COMPACT_CHECK_BYTES: Final = 1024 * 1024
#: Messages are moved only when the journal is at least this big ...
COMPACT_MIN_BYTES: Final = 2 * JOURNAL_SEGMENT_BYTES
#: ... and live messages are less than this share of it.
COMPACT_LIVE_RATIO: Final = 0.5
#: Most bytes of live messages moved in one compaction step.
COMPACT_MOVE_BYTES: Final = JOURNAL_SEGMENT_BYTES
#: Rough bytes of framing per record (length, CRC, msgpack array, offset, timestamp).
RECORD_OVERHEAD: Final = 24
#: Most ids in one ``S`` or ``R`` record (bounds a record's size).
IDS_PER_RECORD: Final = 65536


def _ids_body(ids: Sequence[int]) -> bytes:
    return struct.pack(f">{len(ids)}q", *ids)


def _unpack_ids(body: bytes) -> tuple[int, ...]:
    if len(body) % 8:
        raise StorageError("journal record holds a partial id")
    return struct.unpack(f">{len(body) // 8}q", body)


@dataclass(slots=True)
class CompactionSettings:
    """Journal sizes and the knobs of :meth:`QueueJournal.compact` (tests shrink them)."""

    segment_bytes: int = JOURNAL_SEGMENT_BYTES
    check_bytes: int = COMPACT_CHECK_BYTES
    min_bytes: int = COMPACT_MIN_BYTES
    live_ratio: float = COMPACT_LIVE_RATIO
    move_bytes: int = COMPACT_MOVE_BYTES


@dataclass(slots=True)
class JournalStats:
    records_written: int = 0
    bytes_written: int = 0
    messages_moved: int = 0
    compactions: int = 0
    segments_dropped_records: int = 0


class QueueJournal:
    """Writes a durable queue's records and keeps its journal small.

    ``live`` maps jid -> message for every message the journal says is in
    the queue, in increasing jid order (dict insertion order: new records
    always get higher offsets). The queue calls one method per operation.
    """

    def __init__(
        self,
        store: LogStore,
        options: QueueOptions,
        *,
        epoch_offset: float,
        on_write: Callable[[], None],
        meta_offset: int = -1,
        settings: CompactionSettings | None = None,
    ) -> None:
        self.store = store
        self.options = options
        self.epoch_offset = epoch_offset
        self.on_write = on_write
        self.settings = settings or CompactionSettings()
        self.stats = JournalStats()
        self.live: dict[int, Message] = {}
        #: Approximate bytes the live messages take in the journal.
        self.live_bytes = 0
        self.meta_offset = meta_offset
        self._since_check = 0

    # ------------------------------------------------------------ writing

    def _append(self, entries: Sequence[Entry], timestamp_ms: int, size: int) -> int:
        first = self.store.append(entries, timestamp_ms)
        self.on_write()
        stats = self.stats
        stats.records_written += len(entries)
        stats.bytes_written += size
        self._since_check += size
        return first

    def write_options(self, timestamp_ms: int) -> None:
        body = json.dumps(
            {"v": JOURNAL_FORMAT, "options": self.options.to_dict()}, sort_keys=True
        ).encode()
        self.meta_offset = self._append([(TAG_OPTIONS, None, body)], timestamp_ms, len(body))

    def put(self, messages: Sequence[Message], timestamp_ms: int) -> None:
        """Journal freshly published messages (all stamped ``timestamp_ms``)."""
        size = 0
        entries: list[Entry] = []
        add = entries.append
        for m in messages:
            add((None, m.headers, m.body))
            size += len(m.body)
        size += RECORD_OVERHEAD * len(entries)
        jid = self._append(entries, timestamp_ms, size)
        live = self.live
        for m in messages:
            m.jid = m.seq = jid
            live[jid] = m
            jid += 1
        self.live_bytes += size

    def put_full(self, messages: Sequence[Message], timestamp_ms: int, *, replace: bool) -> None:
        """Journal messages with their metadata: dead letters entering, or moved messages.

        With ``replace`` each record supersedes the message's current jid
        (compaction); otherwise the messages are new to this queue.
        """
        entries: list[Entry] = []
        size = 0
        to_ms = self.wall_ms
        for m in messages:
            key = TAG_FULL + _FULL.pack(
                m.jid if replace else -1,
                m.seq if replace else -1,
                m.published_at,
                to_ms(m.expires_at),
                # deliveries that ended: an in-flight delivery may still be acked
                m.delivery_count - 1 if m.lease is not None else m.delivery_count,
            )
            entries.append((key, m.headers, m.body))
            size += len(m.body)
        size += (RECORD_OVERHEAD + 1 + _FULL.size) * len(entries)
        jid = self._append(entries, timestamp_ms, size)
        live = self.live
        for m in messages:
            if replace:
                live.pop(m.jid, None)
            else:
                m.seq = jid
            m.jid = jid
            live[jid] = m
            jid += 1
        if not replace:
            self.live_bytes += size

    def settle(self, messages: Iterable[Message], timestamp_ms: int) -> None:
        """Journal that these messages left the queue for good."""
        live = self.live
        ids = [m.jid for m in messages]
        if not ids:
            return
        entries: list[Entry] = [
            (TAG_SETTLE, None, _ids_body(ids[i : i + IDS_PER_RECORD]))
            for i in range(0, len(ids), IDS_PER_RECORD)
        ]
        self._append(entries, timestamp_ms, 8 * len(ids) + RECORD_OVERHEAD * len(entries))
        freed = 0
        for jid in ids:
            m = live.pop(jid, None)
            if m is not None:
                freed += len(m.body) + RECORD_OVERHEAD
        self.live_bytes -= freed

    def requeued(self, messages: Sequence[Message], timestamp_ms: int) -> None:
        """Journal the delivery counts of messages going back to the queue."""
        pairs: list[int] = []
        for m in messages:
            pairs.append(m.jid)
            pairs.append(m.delivery_count)
        if not pairs:
            return
        step = 2 * IDS_PER_RECORD
        entries: list[Entry] = [
            (TAG_REQUEUE, None, _ids_body(pairs[i : i + step])) for i in range(0, len(pairs), step)
        ]
        self._append(entries, timestamp_ms, 8 * len(pairs) + RECORD_OVERHEAD * len(entries))

    def wall_ms(self, expires_at: float) -> int:
        """``expires_at`` on the ``now`` clock -> epoch milliseconds (0 = never)."""
        if expires_at == NEVER:
            return 0
        return max(1, int((expires_at + self.epoch_offset) * 1000))

    # --------------------------------------------------------- compaction

    def maybe_compact(self, timestamp_ms: int) -> None:
        """Cheap check after each write; compacts once enough was written since the last."""
        if self._since_check >= self.settings.check_bytes:
            self._since_check = 0
            self.compact(timestamp_ms)

    def compact(self, timestamp_ms: int) -> None:
        """Drop dead segments at the front; move a bounded batch of old live messages if needed."""
        store = self.store
        settings = self.settings
        self.stats.compactions += 1
        if store.segment_count > 1 and self.meta_offset < self._oldest_live():
            # The declaration is the oldest record still needed: restate it.
            self.write_options(timestamp_ms)
        self._drop_dead_prefix()
        size = store.size_bytes
        if size < settings.min_bytes or self.live_bytes >= size * settings.live_ratio:
            return
        moved: list[Message] = []
        budget = settings.move_bytes
        for m in self.live.values():
            moved.append(m)
            budget -= len(m.body) + RECORD_OVERHEAD
            if budget <= 0:
                break
        if moved:
            self.put_full(moved, timestamp_ms, replace=True)
            self.stats.messages_moved += len(moved)
        if self.meta_offset < self._oldest_live():
            self.write_options(timestamp_ms)
        self._drop_dead_prefix()

    def _oldest_live(self) -> int:
        return next(iter(self.live), self.store.next_offset)

    def _drop_dead_prefix(self) -> None:
        store = self.store
        keep_from = min(self._oldest_live(), self.meta_offset)
        if keep_from <= store.first_offset or store.segment_count < 2:
            return
        batch = store.read(keep_from, 1, 1)
        if not batch.count:
            return
        timestamp = decode_records(batch.data)[0].timestamp_ms
        # Retention deletes segments whose newest record is older than
        # ``now_ms - retention_ms`` = ``timestamp``: with timestamps never
        # decreasing, those hold only records before ``keep_from``.
        self.stats.segments_dropped_records += store.enforce_retention(timestamp, None, 0)

    # ---------------------------------------------------------- lifecycle

    def sync(self) -> None:
        self.store.sync()

    def close(self) -> None:
        self.store.close()

    def destroy(self) -> None:
        self.store.destroy()


@dataclass(slots=True)
class Recovered:
    """What replaying a journal found."""

    options: QueueOptions | None
    meta_offset: int
    #: jid -> message, in jid order; delivery counts as last journaled.
    live: dict[int, Message] = field(default_factory=dict)
    records: int = 0


def recover(store: LogStore, epoch_offset: float) -> Recovered:
    """Replay a journal (see the module docstring) into live messages and options.

    Expiry times of plain puts depend on the options, which may come last
    (compaction restates them), so they are filled in at the end.
    """
    live: dict[int, Message] = {}
    options: QueueOptions | None = None
    meta_offset = -1
    records = 0
    plain: list[Message] = []
    full_unpack = _FULL.unpack_from
    for rec in store.iter_records():
        records += 1
        key = rec.key
        if key is None:
            m = Message(rec.body, rec.headers, rec.timestamp_ms, NEVER, 0, rec.offset, rec.offset)
            live[rec.offset] = m
            plain.append(m)
            continue
        tag = key[:1]
        if tag == TAG_SETTLE:
            for jid in _unpack_ids(rec.body):
                live.pop(jid, None)
        elif tag == TAG_FULL:
            if len(key) != 1 + _FULL.size:
                raise StorageError(f"journal record {rec.offset} has a malformed key")
            replaces, seq, published, expires_ms, count = full_unpack(key, 1)
            if replaces >= 0:
                live.pop(replaces, None)
            expires = NEVER if expires_ms <= 0 else expires_ms / 1000 - epoch_offset
            live[rec.offset] = Message(
                rec.body,
                rec.headers,
                published,
                expires,
                count,
                seq if seq >= 0 else rec.offset,
                rec.offset,
            )
        elif tag == TAG_REQUEUE:
            pairs = _unpack_ids(rec.body)
            for i in range(0, len(pairs) - 1, 2):
                found = live.get(pairs[i])
                if found is not None and pairs[i + 1] > found.delivery_count:
                    found.delivery_count = pairs[i + 1]
        elif tag == TAG_OPTIONS:
            try:
                raw = json.loads(rec.body)
                options = QueueOptions.from_dict(raw["options"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(f"journal record {rec.offset} holds unreadable options") from exc
            meta_offset = rec.offset
        else:
            raise StorageError(f"journal record {rec.offset} has an unknown type {tag!r}")
    if options is not None and options.message_ttl is not None:
        ttl = options.message_ttl
        for m in plain:
            m.expires_at = m.published_at / 1000 + ttl - epoch_offset
    return Recovered(options, meta_offset, live, records)

