"""The journal of a durable queue: an append-only log of what happened to its messages.

A durable queue keeps its messages in memory, like any queue, and also
appends every change that must survive a restart to a
:class:`~minibroker.log_store.LogStore` (the same segmented, CRC-framed
log that the log model uses). Replaying the journal rebuilds the queue.

Records
-------

Each record is a storage ``(key, headers, body)`` entry; the key's first byte
says what it is. Integers are packed big-endian (``>q`` is a signed 64-bit,
``>i`` a signed 32-bit).

==================  ===============================  ====================================
key                 headers / body                   meaning
==================  ===============================  ====================================
nil                 message headers / message body   a message was put (the common case,
                                                     no overhead); its offset is its
                                                     journal id (jid) and its publish
                                                     order, its publish time the
                                                     record's timestamp
``P`` + priority   message headers / message body   a put, as nil, of a message with a
                                                     priority (one octet, 1 to 255; only
                                                     queues with ``max_priority`` keep one)
``X`` + ``>qqqqi``  message headers / message body   a message with explicit metadata:
                                                     ``replaces`` (the jid this record
                                                     supersedes, or -1), ``seq``
                                                     (publish order, -1 = own offset),
                                                     ``published_at`` ms, ``expires_at``
                                                     ms (0 = never), ``delivery_count``,
                                                     then its priority octet if it has
                                                     one. Written for dead letters
                                                     entering a queue and for messages
                                                     moved by compaction
``S``               nil / jids, ``>q`` each          these messages left the queue (ack,
                                                     expiry, dead-letter, drop, purge)
``R``               nil / (jid, count) ``>qq`` each  these messages went back to the queue
                                                     after ``count`` deliveries
``O``               nil / JSON                       the declaration:
                                                     ``{"v": 1, "options": {...}}``
==================  ===============================  ====================================

All records written by one operation go in one ``append`` (one write, one
batch of CRC'd frames), and every append tells the broker (``on_write``), so
the server holds the operation's confirm until the group commit has fsynced
it.

Under group commit (``fsync=batch``, ``defer=True``) the small ``S`` and
``R`` records (acks, nacks, expiry, requeue counts) are not written at once:
their ids wait in memory and go out as one append per queue when the group
commit syncs (:meth:`QueueJournal.sync`), just before its fsync. The
operation still calls ``on_write``, so its confirm is held until that fsync,
and what a confirmed ack promises is unchanged; what changes is the cost: a
consumer acking one message per frame made one journal write per ack, now
one per commit. A crash before the commit loses only unconfirmed acks, and
their messages come back (at least once). ``S`` and ``R`` records may end
up after puts of newer messages; replay does not care, because an id always
names a message whose record was written before it.

Replay (:func:`recover`) walks the records in order: puts add, ``S`` removes,
``R`` raises delivery counts, ``X`` adds and removes what it replaces, the
last ``O`` gives the options. What remains is the queue; it becomes ready in
publish order (``seq``). Deliveries are not journaled (that would cost a
write per fetch), so messages in flight at a crash come back ready, with the
delivery count of their last *finished* delivery: that is the at-least-once
promise, and a consumer never sees a count go down.

Compaction
----------

Without care the journal grows forever. Retention does most of the work for
free: the store is cut into segments, and a segment whose records all precede
both the oldest live message and the newest ``O`` record holds nothing replay
needs, so it is deleted whole. To tell the store which segments those are
with its own retention rule ("delete the oldest segment while the rest still
holds at least N bytes"), the journal keeps, for every record it writes or
replays, an *upper bound* of its framed size (computed from the field sizes,
without encoding anything) and so of the position where each live message's
record starts. N = the upper bound of the bytes from the oldest needed
record to the end: never less than the truth, so retention can only keep a
little too much, never delete a needed record.

In a queue consumed roughly in order this keeps the journal at a segment or
two. When an old message pins the front (a poison message redelivered for
hours, a consumer that holds one message forever) while most of the journal
is dead, the oldest live messages are *moved*: re-appended as ``X`` records
that replace their old jid, a bounded batch per compaction step, after which
the front segments can go. A crash between the move and the deletion is
harmless: replay sees both copies and the ``X`` record's ``replaces`` drops
the old one.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from minibroker.core.journaled import report_unsynced
from minibroker.core.queue_message import NEVER, Message
from minibroker.core.queue_options import QueueOptions
from minibroker.errors import StorageError, StorageFailed
from minibroker.log_store import Entry, LogStore
from minibroker.value_class import Value, field

log = logging.getLogger("minibroker.queues")

JOURNAL_FORMAT: Final = 1

TAG_FULL: Final = b"X"
TAG_SETTLE: Final = b"S"
TAG_REQUEUE: Final = b"R"
TAG_OPTIONS: Final = b"O"
TAG_PRIORITY: Final = b"P"

_FULL: Final = struct.Struct(">qqqqi")
_FULL_KEY_SIZE: Final = 1 + _FULL.size

#: Segment size of a queue journal: small, so dead segments are freed early.
JOURNAL_SEGMENT_BYTES: Final = 8 * 1024 * 1024
#: Compaction is considered after this many journal bytes were written.
COMPACT_CHECK_BYTES: Final = 1024 * 1024
#: Messages are moved only when the journal is at least this big ...
COMPACT_MIN_BYTES: Final = 2 * JOURNAL_SEGMENT_BYTES
#: ... and live messages are less than this share of it.
COMPACT_LIVE_RATIO: Final = 0.5
#: Most bytes of live messages moved in one compaction step (bounds write amplification).
COMPACT_MOVE_BYTES: Final = COMPACT_CHECK_BYTES
#: Most ids in one ``S`` or ``R`` record (bounds a record's size).
IDS_PER_RECORD: Final = 65536

# Upper bounds of a frame's size (see record_format.py): u32 length + u32 CRC,
# then msgpack [offset, timestamp, key, headers, body]: array header 1, two
# ints of at most 9, a bin/str/map header of at most 5.
_FRAME_FIXED: Final = 8 + 1 + 9 + 9 + 5
_NIL: Final = 1


def _key_bound(key_size: int) -> int:
    return 5 + key_size


def _headers_bound(headers: dict[str, str] | None) -> int:
    """Upper bound of the msgpack size of a header map (UTF-8: at most 4 bytes a character)."""
    if not headers:
        return _NIL
    return 5 + sum(10 + 4 * (len(k) + len(v)) for k, v in headers.items())


def record_bound(key_size: int | None, headers: dict[str, str] | None, body_size: int) -> int:
    """Upper bound of the framed size of a record with these fields."""
    key = _NIL if key_size is None else _key_bound(key_size)
    return _FRAME_FIXED + key + _headers_bound(headers) + body_size


#: What a ``P`` key adds to a plain put's bound (a nil key).
_PRIORITY_EXTRA: Final = _key_bound(2) - _NIL
#: ``P`` keys by priority (index 0 is the nil key of a plain put).
_PUT_KEYS: Final = [None] + [TAG_PRIORITY + bytes((p,)) for p in range(1, 256)]


def _live_size(m: Message) -> int:
    """What a live message counts for in ``live_bytes`` (its plain-put record's bound)."""
    headers = m.headers
    size = _FRAME_FIXED + _NIL + len(m.body) + (_headers_bound(headers) if headers else _NIL)
    return size + _PRIORITY_EXTRA if m.priority else size


def _ids_body(ids: Sequence[int]) -> bytes:
    return struct.pack(f">{len(ids)}q", *ids)


def _unpack_ids(body: bytes) -> tuple[int, ...]:
    if len(body) % 8:
        raise StorageError("journal record holds a partial id")
    return struct.unpack(f">{len(body) // 8}q", body)


class CompactionSettings(Value):
    """Journal segment size and the knobs of :meth:`QueueJournal.compact` (tests shrink them)."""

    segment_bytes: int = JOURNAL_SEGMENT_BYTES
    check_bytes: int = COMPACT_CHECK_BYTES
    min_bytes: int = COMPACT_MIN_BYTES
    live_ratio: float = COMPACT_LIVE_RATIO
    move_bytes: int = COMPACT_MOVE_BYTES


class JournalStats(Value):
    records_written: int = 0
    #: Upper-bound bytes of the records written (see the module docstring).
    bytes_written: int = 0
    messages_moved: int = 0
    compactions: int = 0
    records_deleted: int = 0


class QueueJournal:
    """Writes a durable queue's records and keeps its journal small.

    ``live`` maps jid -> message for every message the journal holds as in
    the queue, in increasing jid order (dict insertion order: new records
    always get higher offsets). The queue calls one method per operation;
    each raises StorageFull/StorageError with nothing written, or succeeds.
    """

    def __init__(
        self,
        store: LogStore,
        options: QueueOptions,
        *,
        epoch_offset: float,
        on_write: Callable[[], None],
        settings: CompactionSettings | None = None,
        defer: bool = False,
    ) -> None:
        self.store = store
        self.options = options
        self.epoch_offset = epoch_offset
        self.on_write = on_write
        #: Hold ``S``/``R`` ids until :meth:`sync` (group commit) instead of writing each.
        self.defer = defer
        #: Ids of settled messages, and (jid, count) pairs of requeued ones,
        #: waiting for the next :meth:`flush`; with the newest timestamp given.
        self._pending_settled: list[int] = []
        self._pending_requeued: list[int] = []
        self._pending_ms = 0
        self.settings = settings or CompactionSettings()
        self.stats = JournalStats()
        self.live: dict[int, Message] = {}
        #: Upper-bound bytes of the live messages' records.
        self.live_bytes = 0
        #: Upper-bound position of the end of the journal (where the next record starts).
        self.end_position = 0
        #: Offset and position of the newest ``O`` record (-1: none yet).
        self.meta_offset = -1
        self.meta_position = 0
        self._since_check = 0

    # ------------------------------------------------------------ writing

    def _append(
        self, entries: Sequence[Entry], timestamp_ms: int, size: int, *, notify: bool = True
    ) -> int:
        first = self.store.append(entries, timestamp_ms)
        if notify:
            self.on_write()
        stats = self.stats
        stats.records_written += len(entries)
        stats.bytes_written += size
        self.end_position += size
        self._since_check += size
        return first

    def write_options(self, timestamp_ms: int) -> None:
        import json  # here and in recovery: only durable queues need it (issue 19)

        body = json.dumps(
            {"v": JOURNAL_FORMAT, "options": self.options.to_dict()}, sort_keys=True
        ).encode()
        position = self.end_position
        size = record_bound(1, None, len(body))
        self.meta_offset = self._append([(TAG_OPTIONS, None, body)], timestamp_ms, size)
        self.meta_position = position

    def put(self, messages: Sequence[Message], timestamp_ms: int) -> None:
        """Journal freshly published messages (all stamped ``timestamp_ms``).

        The messages are new: if the append fails they are thrown away, so
        their jids can be set before it (from ``next_offset``) in one loop.
        """
        entries: list[Entry] = []
        add = entries.append
        fixed = _FRAME_FIXED + _NIL
        start = position = self.end_position
        first = jid = self.store.next_offset
        for m in messages:
            headers = m.headers
            add((_PUT_KEYS[m.priority], headers, m.body))
            m.jid = m.seq = jid
            m.jpos = position
            jid += 1
            position += fixed + len(m.body) + (_headers_bound(headers) if headers else _NIL)
            if m.priority:
                position += _PRIORITY_EXTRA
        if self._append(entries, timestamp_ms, position - start) != first:
            raise StorageError("the journal store assigned unexpected offsets")
        self.live.update(zip(range(first, jid), messages, strict=True))
        self.live_bytes += position - start

    def put_full(self, messages: Sequence[Message], timestamp_ms: int, *, replace: bool) -> None:
        """Journal messages with their metadata: dead letters entering, or moved messages.

        With ``replace`` each record supersedes the message's current jid
        (compaction); otherwise the messages are new to this queue.
        """
        entries: list[Entry] = []
        sizes: list[int] = []
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
            if m.priority:
                key += bytes((m.priority,))
            entries.append((key, m.headers, m.body))
            sizes.append(record_bound(len(key), m.headers, len(m.body)))
        position = self.end_position
        total = sum(sizes)
        jid = self._append(entries, timestamp_ms, total)
        live = self.live
        for m, size in zip(messages, sizes, strict=True):
            if replace:
                live.pop(m.jid, None)
            else:
                self.live_bytes += _live_size(m)
                m.seq = jid
            m.jid = jid
            m.jpos = position
            live[jid] = m
            jid += 1
            position += size

    def settle(self, messages: Iterable[Message], timestamp_ms: int) -> None:
        """Journal that these messages left the queue for good (deferred: at the next sync)."""
        ids = [m.jid for m in messages]
        if not ids:
            return
        if self.defer:
            self._check_writable()
            self._pending_settled.extend(ids)
            self._defer(timestamp_ms)
        else:
            self._write_ids(TAG_SETTLE, ids, IDS_PER_RECORD, timestamp_ms)
        pop = self.live.pop
        freed = 0
        for jid in ids:
            m = pop(jid, None)
            if m is not None:  # _live_size(m), inlined: this runs once per message acked
                freed += _FRAME_FIXED + _NIL + len(m.body)
                headers = m.headers
                freed += _headers_bound(headers) if headers else _NIL
                if m.priority:
                    freed += _PRIORITY_EXTRA
        self.live_bytes -= freed

    def requeued(self, messages: Sequence[Message], timestamp_ms: int) -> None:
        """Journal the delivery counts of messages going back to the queue."""
        pairs: list[int] = []
        for m in messages:
            pairs.append(m.jid)
            pairs.append(m.delivery_count)
        if not pairs:
            return
        if self.defer:
            self._check_writable()
            self._pending_requeued.extend(pairs)
            self._defer(timestamp_ms)
        else:
            self._write_ids(TAG_REQUEUE, pairs, 2 * IDS_PER_RECORD, timestamp_ms)

    def _defer(self, timestamp_ms: int) -> None:
        """Ids were queued for the next flush: the operation's confirm must wait for it."""
        if timestamp_ms > self._pending_ms:
            self._pending_ms = timestamp_ms
        self.on_write()

    def _id_entries(self, tag: bytes, ids: Sequence[int], step: int) -> tuple[list[Entry], int]:
        """``ids`` as records of ``tag`` of at most ``step`` ids each, and their size bound."""
        entries: list[Entry] = []
        size = 0
        for i in range(0, len(ids), step):
            body = _ids_body(ids[i : i + step])
            entries.append((tag, None, body))
            size += record_bound(1, None, len(body))
        return entries, size

    def _write_ids(self, tag: bytes, ids: Sequence[int], step: int, timestamp_ms: int) -> None:
        entries, size = self._id_entries(tag, ids, step)
        self._append(entries, timestamp_ms, size)

    @property
    def pending(self) -> int:
        """Ids (settled) and pairs (requeued) waiting for the next flush."""
        return len(self._pending_settled) + len(self._pending_requeued) // 2

    def flush(self) -> None:
        """Write the deferred ``S`` and ``R`` ids as one append.

        Raises StorageFull/StorageError with nothing written; the ids then
        stay pending, so the next group commit tries again. The broker was
        told about these writes when they were deferred, so the append does
        not tell it again (that would only wake the group commit for an
        empty round).
        """
        if not self._pending_settled and not self._pending_requeued:
            return
        entries, size = self._id_entries(TAG_REQUEUE, self._pending_requeued, 2 * IDS_PER_RECORD)
        settled, settled_size = self._id_entries(TAG_SETTLE, self._pending_settled, IDS_PER_RECORD)
        entries += settled
        self._append(entries, self._pending_ms, size + settled_size, notify=False)
        self._pending_settled = []
        self._pending_requeued = []

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
        """Delete dead segments at the front; move a bounded batch of old live messages first
        when they pin a journal that is mostly dead."""
        store = self.store
        settings = self.settings
        self.stats.compactions += 1
        # Records in the newest two segments' worth of bytes are never worth moving.
        old = self.end_position - 2 * settings.segment_bytes
        size = store.size_bytes
        if size >= settings.min_bytes and self.live_bytes < size * settings.live_ratio:
            moved: list[Message] = []
            budget = settings.move_bytes
            for m in self.live.values():
                if m.jpos >= old or budget <= 0:
                    break
                moved.append(m)
                budget -= _live_size(m)
            if moved:
                self.put_full(moved, timestamp_ms, replace=True)
                self.stats.messages_moved += len(moved)
        if self.meta_position < old and self.meta_position < self._oldest_live_position():
            # The declaration is the oldest record still needed: restate it.
            self.write_options(timestamp_ms)
        self._delete_dead_segments()

    def _oldest_live_position(self) -> int:
        for m in self.live.values():
            return m.jpos
        return self.end_position

    def _delete_dead_segments(self) -> None:
        store = self.store
        if store.segment_count < 2:
            return
        keep_from = min(self._oldest_live_position(), self.meta_position)
        needed = self.end_position - keep_from  # >= the true bytes from there to the end
        if 0 < needed < store.size_bytes:
            # "Delete the oldest segment while the others hold >= needed bytes":
            # exactly the segments that end before the oldest needed record.
            self.stats.records_deleted += store.enforce_retention(0, needed, None)

    # ---------------------------------------------------------- lifecycle

    def report_unsynced(self) -> None:
        """Report a write if the store holds unsynced ones: the queue is
        re-declared, and "it exists" must wait for them to be on disk; raise
        ``storage_failed`` if an fsync of the journal failed (as
        :meth:`minibroker.core.journaled.StoreJournal.report_unsynced`)."""
        report_unsynced(self.store, self.on_write)

    def sync(self) -> None:
        """Write what is deferred, then fsync: the group commit's step for this queue.

        Once an fsync of the journal failed nothing can be written any more:
        the ids deferred before it are dropped (the confirmations waiting on
        them fail with the store, ``LogStore.group_sync``), and the queue
        refuses to defer more (:meth:`_check_writable`).
        """
        if self.store.failed is not None:
            self._pending_settled = []
            self._pending_requeued = []
        else:
            self.flush()
        self.store.group_sync()

    def _check_writable(self) -> None:
        """Deferred records are written by the next sync: refuse them up front
        when the journal can never be written again, as a direct write is."""
        failed = self.store.failed
        if failed is not None:
            raise StorageFailed(failed.message, **failed.details)

    def close(self) -> None:
        try:
            if self.store.failed is None:  # a failed journal writes nothing more
                self.flush()
        finally:
            self.store.close()

    def destroy(self) -> None:
        self._pending_settled = []
        self._pending_requeued = []
        self.store.destroy()


class Recovered(Value):
    """What replaying a journal found."""

    options: QueueOptions | None
    meta_offset: int = -1
    meta_position: int = 0
    #: jid -> message, in jid order; delivery counts as last journaled.
    live: dict[int, Message] = field(default_factory=dict)
    live_bytes: int = 0
    end_position: int = 0
    records: int = 0


def recover(store: LogStore, epoch_offset: float) -> Recovered:
    """Replay a journal (see the module docstring) into live messages and options.

    Expiry times of plain puts depend on the options, which may come last
    (compaction restates them), so they are filled in at the end.
    """
    found = Recovered(None)
    live = found.live
    plain: list[Message] = []
    full_unpack = _FULL.unpack_from
    position = 0
    for rec in store.iter_records():
        found.records += 1
        key = rec.key
        size = record_bound(None if key is None else len(key), rec.headers, len(rec.body))
        if key is None or (len(key) == 2 and key[:1] == TAG_PRIORITY):
            priority = 0 if key is None else key[1]
            m = Message(
                rec.body, rec.headers, rec.timestamp_ms, NEVER, 0, rec.offset, rec.offset, priority
            )
            m.jpos = position
            live[rec.offset] = m
            plain.append(m)
            position += size
            continue
        tag = key[:1]
        if tag == TAG_SETTLE:
            for jid in _unpack_ids(rec.body):
                live.pop(jid, None)
        elif tag == TAG_FULL:
            if len(key) not in (_FULL_KEY_SIZE, _FULL_KEY_SIZE + 1):
                raise StorageError(f"journal record {rec.offset} has a malformed key")
            replaces, seq, published, expires_ms, count = full_unpack(key, 1)
            if replaces >= 0:
                live.pop(replaces, None)
            expires = NEVER if expires_ms <= 0 else expires_ms / 1000 - epoch_offset
            m = Message(
                rec.body,
                rec.headers,
                published,
                expires,
                count,
                seq if seq >= 0 else rec.offset,
                rec.offset,
                key[_FULL_KEY_SIZE] if len(key) > _FULL_KEY_SIZE else 0,
            )
            m.jpos = position
            live[rec.offset] = m
        elif tag == TAG_REQUEUE:
            pairs = _unpack_ids(rec.body)
            for i in range(0, len(pairs) - 1, 2):
                held = live.get(pairs[i])
                if held is not None and pairs[i + 1] > held.delivery_count:
                    held.delivery_count = pairs[i + 1]
        elif tag == TAG_OPTIONS:
            import json

            try:
                raw = json.loads(rec.body)
                found.options = QueueOptions.from_dict(raw["options"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(f"journal record {rec.offset} holds unreadable options") from exc
            found.meta_offset = rec.offset
            found.meta_position = position
        else:
            raise StorageError(f"journal record {rec.offset} has an unknown type {tag!r}")
        position += size
    found.end_position = position
    options = found.options
    if options is not None and options.message_ttl is not None:
        ttl = options.message_ttl
        for m in plain:
            m.expires_at = m.published_at / 1000 + ttl - epoch_offset
    found.live_bytes = sum(map(_live_size, live.values()))
    return found


def reopen(
    store: LogStore,
    found: Recovered,
    *,
    epoch_offset: float,
    on_write: Callable[[], None],
    settings: CompactionSettings | None = None,
    defer: bool = False,
) -> QueueJournal:
    """A journal that continues a replayed store."""
    assert found.options is not None
    journal = QueueJournal(
        store,
        found.options,
        epoch_offset=epoch_offset,
        on_write=on_write,
        settings=settings,
        defer=defer,
    )
    journal.live = found.live
    journal.live_bytes = found.live_bytes
    journal.end_position = found.end_position
    journal.meta_offset = found.meta_offset
    journal.meta_position = found.meta_position
    # What the last process wrote since its last compaction check is unknown:
    # check at the first write. Otherwise a broker restarted (or killed) before
    # any one run wrote check_bytes never compacts, and every restart replays
    # the whole history (a crash campaign saw 608,029 records replayed, 6 s,
    # for 41 live messages).
    journal._since_check = journal.settings.check_bytes
    return journal
