"""Logs: append-only, offset-addressed, replayable streams (a Kafka topic partition).

A log is a :class:`~minibroker.log_store.LogStore` (segments on disk with
``--data-dir``, in memory otherwise) plus what the broker adds around it:

* **offsets** are dense and never change meaning: ``append`` gives a batch
  consecutive offsets and one broker timestamp; retention deletes whole old
  segments, and :meth:`Logs.delete_records` moves the log's start up to
  any offset (Kafka's DeleteRecords), so ``first_offset`` only moves forward;
* **the high watermark** is the end of what readers see. Records below it
  are stored per the fsync policy: with group commit (``fsync=batch``) a
  record becomes readable when the fsync that covers it is done, at the same
  moment its append is confirmed. So no reader ever sees a record that a
  crash could take back, and an offset a consumer has seen is never reused;
* **reads** start at an offset, "earliest", "latest", a group's committed
  offset or a timestamp, and return the store's raw record bytes: the
  server never decodes or re-encodes a record on the read path;
* **long-poll reads** wait (parked at the session) until the high
  watermark passes their offset or their deadline comes;
* **tails** are push sources that read the next chunk from the store at
  their cursor only when the connection has room to send it, so a slow
  reader costs the broker a cursor, never a buffer of the log;
* **consumer groups** commit the next offset to read (Kafka's convention);
  on disk the offsets and the log's options live in a small metadata
  journal next to the log (:mod:`minibroker.core.log_meta`).

See docs/logs.md for the semantics as users see them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from minibroker.core.config import Limits
from minibroker.core.durations import check_seconds
from minibroker.core.log_meta import KIND as META_KIND
from minibroker.core.log_meta import SEGMENT_BYTES as META_SEGMENT_BYTES
from minibroker.core.log_meta import LogMeta
from minibroker.core.log_options import GroupStatistics, LogOptions, LogStatistics
from minibroker.core.log_readers import Attachment, LogTail, ReadWaiter, empty_batch
from minibroker.core.names import check_name
from minibroker.core.peer import Peer, Requester
from minibroker.core.sizes import headers_size
from minibroker.core.timers import Timer
from minibroker.errors import (
    BadRequest,
    BrokerError,
    Conflict,
    LimitExceeded,
    NotFound,
    OffsetOutOfRange,
    StorageError,
    StorageFull,
    TooLarge,
)
from minibroker.log_store import Entry, LogStore, RecordBatch, StoredBatch

if TYPE_CHECKING:
    from minibroker.core.broker import Broker
    from minibroker.core.namespace import Namespace

log = logging.getLogger("minibroker.logs")

#: The StorageOpener kind of log stores.
KIND: Final = "log"
#: Most seconds between two checks of age-based retention.
RETENTION_CHECK_SECONDS: Final = 30.0
#: Bytes of one stored record frame besides its body, key and headers: length
#: and CRC (8), the array of five, two 64-bit integers and the msgpack headers
#: of key, headers map and body at their widest (see docs/protocol.md).
RECORD_OVERHEAD: Final = 48

Start = int | str
START_NAMES: Final = ("earliest", "latest", "committed")


def check_read_limits(max_records: int, max_bytes: int, limits: Limits) -> None:
    if type(max_records) is not int or not 1 <= max_records <= limits.max_fetch:
        raise BadRequest(
            f"max_records must be between 1 and {limits.max_fetch}, got {max_records!r}"
        )
    _check_max_bytes(max_bytes)


def _check_max_bytes(max_bytes: int) -> None:
    """``max_bytes`` is a budget: any positive size is accepted.

    There is no upper bound here because the ceiling is a property of the
    connection, not of the log: the front end caps ``max_bytes`` at what
    fits one frame of that connection before calling in (see
    protocol/handlers/logs.py), so a read never builds an answer the client
    could not receive, and asking for more is never an error.
    """
    if type(max_bytes) is not int or max_bytes < 1:
        raise BadRequest(f"max_bytes must be a positive integer, got {max_bytes!r}")


def _checked_size(entries: Sequence[Entry], limit: int, max_item: int | None) -> int:
    """The body bytes of an append's ``entries``, or TooLarge for the first record
    over ``limit`` (body or key) or too big for one frame of records with its key
    and headers (``max_item``).

    Bare bodies, what the clients send for records without key or headers, are
    checked with a few calls over the whole batch (their lengths, a sum and a
    max) instead of a Python loop: this runs on every append.
    """
    room = None if max_item is None else max_item - RECORD_OVERHEAD
    if set(map(type, entries)) == {bytes}:
        lengths = list(map(len, entries))
        if max(lengths) <= (limit if room is None else min(limit, room)):
            return sum(lengths)
    size = 0
    for index, entry in enumerate(entries):
        key: bytes | None = None
        if isinstance(entry, bytes):
            length = item = len(entry)
        else:
            key, headers, body = entry
            length = len(body)
            item = length + (0 if key is None else len(key)) + headers_size(headers)
        size += length
        if length > limit or (key is not None and len(key) > limit):
            raise TooLarge(
                f"a record body or key is larger than the limit of {limit} bytes",
                limit=limit,
            )
        if room is not None and item > room:
            raise TooLarge(
                f"record {index} would take {item + RECORD_OVERHEAD} bytes with its key "
                f"and headers; one frame of records holds {max_item}: nothing was appended",
                limit=max_item,
                index=index,
            )
    return size


class Log:
    """One log: its store, metadata, readers and counters."""

    def __init__(
        self,
        logs: Logs,
        name: str,
        options: LogOptions,
        store: LogStore,
        meta: LogMeta | None,
    ) -> None:
        self.logs = logs
        self.name = name
        self.options = options
        self.store = store
        self.meta = meta
        #: group -> next offset to read (shared with the metadata journal on disk).
        self.groups: dict[str, int] = meta.groups if meta is not None else {}
        #: End of what readers see (see the module docstring).
        self.high_watermark = store.next_offset
        #: Where the log starts as deleting records left it (Kafka's log start
        #: offset): it may fall inside a segment, whose records below it stay
        #: stored but are never read. Journalled on disk (``meta.start_offset``).
        self.start_offset = meta.start_offset if meta is not None else 0
        self.tails: dict[LogTail, None] = {}
        self.idle_tails: dict[LogTail, None] = {}
        self.waiters: dict[ReadWaiter, None] = {}
        self.retention_timer: Timer | None = None
        self.appended_records = 0
        self.appended_bytes = 0
        self.retained_away = 0
        self.closed = False
        #: Unsynced writes, for group commit.
        self.data_dirty = False
        self.meta_dirty = False

    # --------------------------------------------------------------- reading

    @property
    def first_offset(self) -> int:
        """The first offset readers may read: the store's first, or the start
        offset records were deleted up to, whichever is higher."""
        first = self.store.first_offset
        start = self.start_offset
        return start if start > first else first

    def check_offset(self, offset: int) -> None:
        first = self.first_offset
        if offset < first or offset > self.high_watermark:
            where = "below the first retained offset" if offset < first else "past the end"
            raise OffsetOutOfRange(
                f"offset {offset} of log {self.name!r} is {where}; the log holds "
                f"[{first}, {self.high_watermark})",
                first_offset=first,
                next_offset=self.high_watermark,
            )

    def read_at(
        self, offset: int, max_records: int, max_bytes: int, stored: bool = False
    ) -> RecordBatch:
        """Raw records from ``offset``, never past the high watermark; with ``stored``,
        batches of entries as stored among the frames (``LogStore.read_stored``)."""
        if self.closed:
            raise NotFound(f"log {self.name!r} was deleted", log=self.name)
        self.check_offset(offset)
        available = self.high_watermark - offset
        if available <= 0:
            return empty_batch(offset)
        read = self.store.read_stored if stored else self.store.read
        return read(offset, min(max_records, available), max_bytes)

    def read_batches_at(self, offset: int, max_bytes: int) -> list[StoredBatch]:
        """The stored units from ``offset``, never past the high watermark (the Kafka
        front end's read: its batches as stored; see ``LogStore.read_batches``)."""
        if self.closed:
            raise NotFound(f"log {self.name!r} was deleted", log=self.name)
        self.check_offset(offset)
        if offset >= self.high_watermark:
            return []
        return self.store.read_batches(offset, self.high_watermark, max_bytes)

    def resolve_start(self, start: Start, timestamp_ms: int | None, group: str | None) -> int:
        """The offset a read or tail begins at (``timestamp_ms`` wins over ``start``)."""
        if timestamp_ms is not None:
            if type(timestamp_ms) is not int or timestamp_ms < 0:
                raise BadRequest(
                    f"timestamp_ms must be a non-negative integer, got {timestamp_ms!r}"
                )
            found = max(self.store.offset_for_timestamp(timestamp_ms), self.first_offset)
            return min(found, self.high_watermark)
        if type(start) is int:
            if start < 0:
                raise BadRequest(f"start offset must not be negative, got {start}")
            return start
        if start == "earliest":
            return self.first_offset
        if start == "latest":
            return self.high_watermark
        if start == "committed":
            if group is None:
                raise BadRequest("start='committed' needs a group")
            # A group that never committed starts at the beginning (documented).
            return self.groups.get(group, self.first_offset)
        raise BadRequest(
            f"start must be an offset or one of {', '.join(START_NAMES)}, got {start!r}"
        )

    # ------------------------------------------------------------ progress

    def advance(self) -> None:
        """Raise the high watermark to the store's end and wake who waits for it."""
        end = self.store.next_offset
        if end == self.high_watermark:
            return
        self.high_watermark = end
        if self.waiters:
            for waiter in list(self.waiters):
                waiter.wake()
        if self.idle_tails:
            tails = list(self.idle_tails)
            self.idle_tails.clear()
            for tail in tails:
                tail.wake()

    def statistics(self) -> LogStatistics:
        store = self.store
        end = self.high_watermark
        return LogStatistics(
            name=self.name,
            first_offset=self.first_offset,
            next_offset=store.next_offset,
            high_watermark=end,
            bytes=store.size_bytes,
            segments=store.segment_count,
            groups={
                group: GroupStatistics(offset, max(0, end - offset))
                for group, offset in self.groups.items()
            },
            options=self.options,
            appended_records=self.appended_records,
            appended_bytes=self.appended_bytes,
            retained_away=self.retained_away,
            tails=len(self.tails),
            waiting_reads=len(self.waiters),
        )

    def shut(self, error: BrokerError | None) -> None:
        """Stop serving: end tails and parked reads with ``error`` (None: quietly)."""
        self.closed = True
        if self.retention_timer is not None:
            self.retention_timer.cancel()
            self.retention_timer = None
        for waiter in list(self.waiters):
            waiter.detach()
            if error is not None:
                waiter.peer.reject(waiter.token, error)
        for tail in list(self.tails):
            if error is not None:
                tail.end(error)
            else:
                tail.detach()


class Logs:
    """The logs of one namespace (the namespace's ``logs`` model)."""

    def __init__(self, namespace: Namespace) -> None:
        self.namespace = namespace
        self.broker: Broker = namespace.broker
        self._logs: dict[str, Log] = {}
        #: conn id -> tails and parked reads of that connection.
        self._attached: dict[int, dict[Attachment, None]] = {}
        #: Logs with writes waiting for the group commit's fsync.
        self._dirty: dict[Log, None] = {}
        #: Store syncs done (group commit and fsync=always), for metrics.
        self.fsyncs = 0
        #: Consumer group -> how many of these logs hold an offset it committed:
        #: the groups ``max_groups_per_namespace`` counts.
        self._group_logs: dict[str, int] = {}
        self._recover()

    @property
    def limits(self) -> Limits:
        return self.broker.config.limits

    # --------------------------------------------------------------- lookup

    def get(self, name: str) -> Log:
        found = self._logs.get(name)
        if found is None:
            check_name("log", name)
            raise NotFound(f"log {name!r} does not exist", log=name)
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._logs

    def __len__(self) -> int:
        return len(self._logs)

    def names(self) -> list[str]:
        return sorted(self._logs)

    def statistics(self, name: str) -> LogStatistics:
        return self.get(name).statistics()

    def all_statistics(self) -> list[LogStatistics]:
        return [self._logs[name].statistics() for name in sorted(self._logs)]

    # -------------------------------------------------------- create/delete

    def create(self, name: str, options: LogOptions, now: float) -> bool:
        """Create the log, or check that it exists with the same options.

        Returns True when it was created; Conflict when it exists with other
        options. On disk the options are synced before this returns, whatever
        the fsync policy: creating a log is rare and must survive a crash.
        """
        check_name("log", name)
        options.check()
        existing = self._logs.get(name)
        if existing is not None:
            if existing.options != options:
                ours, theirs = existing.options.to_dict(), options.to_dict()
                differ = sorted(k for k in ours if ours[k] != theirs[k])
                raise Conflict(
                    f"log {name!r} already exists with different options "
                    f"({', '.join(f'{k}={ours[k]!r}' for k in differ)})",
                    log=name,
                    options=ours,
                )
            return False
        self._check_room(name)
        storage = self.broker.storage
        if storage is None:
            store = self.broker.new_memory_log(options.segment_bytes)
            self._logs[name] = Log(self, name, options, store, None)
            self.broker.log_total += 1
            return True
        ns = self.namespace.name
        meta_store = storage.open(ns, META_KIND, name, segment_bytes=META_SEGMENT_BYTES)
        opened: list[LogStore] = []  # the log's own store, once open
        try:
            if meta_store.next_offset != meta_store.first_offset:
                # Leftovers of a create or delete that did not finish: start afresh.
                meta_store.destroy()
                meta_store = storage.open(ns, META_KIND, name, segment_bytes=META_SEGMENT_BYTES)
            meta = LogMeta(meta_store)
            meta.write_options(options, self.broker.clock.wall_ms(now))
            meta_store.sync()
            store = storage.open(ns, KIND, name, segment_bytes=options.segment_bytes)
            if store.next_offset != store.first_offset:
                store.destroy()
                store = storage.open(ns, KIND, name, segment_bytes=options.segment_bytes)
            opened.append(store)
            # The log exists on disk by its directory (recovery lists them):
            # its first sync makes that directory's name durable too.
            store.sync()
        except BaseException:
            for leftover in opened:
                leftover.destroy()
            meta_store.destroy()
            raise
        self._logs[name] = Log(self, name, options, store, meta)
        self.broker.log_total += 1
        return True

    def _check_room(self, name: str) -> None:
        """LimitExceeded when the namespace holds ``max_logs_per_namespace`` logs
        (on creation only: recovery opens every log it finds)."""
        LimitExceeded.check_room(
            f"cannot create log {name!r}",
            "log",
            self.namespace.name,
            (len(self._logs), self.broker.log_total),
            (self.limits.max_logs_per_namespace, self.limits.max_logs_total),
            log=name,
        )

    def room(self) -> tuple[int, str]:
        """How many more logs this namespace may create, and the limit that says
        so (Kafka checks a topic's partitions against it before making any)."""
        limits = self.limits
        here = limits.max_logs_per_namespace - len(self._logs)
        overall = limits.max_logs_total - self.broker.log_total
        if overall < here:
            return max(0, overall), f"of the broker ({limits.max_logs_total})"
        per_namespace = limits.max_logs_per_namespace
        return max(0, here), f"in namespace {self.namespace.name!r} ({per_namespace})"

    def delete(self, name: str, now: float) -> int:
        """Delete the log and its files; return how many records it held.

        Its tails end with NotFound and its parked reads fail with NotFound.
        """
        target = self.get(name)
        del self._logs[name]
        self.broker.log_total -= 1
        for group in target.groups:
            self._group_gone(group)
        self._dirty.pop(target, None)
        records = target.store.next_offset - target.first_offset
        target.shut(NotFound(f"log {name!r} was deleted", log=name))
        self._destroy_stores(target)
        return records

    def _destroy_stores(self, target: Log) -> None:
        # The log first, its metadata second: a crash in between leaves only
        # an orphan metadata journal, which recovery removes.
        target.store.destroy()
        if target.meta is not None:
            target.meta.store.destroy()
        storage = self.broker.storage
        if storage is not None:
            ns = self.namespace.name
            storage.remove(ns, KIND, target.name)
            storage.remove(ns, META_KIND, target.name)

    # ---------------------------------------------------------------- append

    def append(self, name: str, entries: Sequence[Entry], now: float) -> int:
        """Append a batch of ``(key, headers, body)`` entries; return the first offset.

        The whole batch is stored as one buffer with one timestamp, or (on a
        storage error) none of it. Durability follows the fsync policy: with
        group commit the caller's confirm is held until the fsync (the
        broker's write generation moves); with ``always`` the store is synced
        before this returns.
        """
        target = self.get(name)
        count = len(entries)
        limits = self.limits
        if not count:
            # The rule of every batch op (put, publish, ack, nack): an empty
            # batch is accepted and changes nothing. Its "first offset" is
            # where the next record will go.
            return target.store.next_offset
        if count > limits.max_batch:
            raise BadRequest(f"an append holds at most {limits.max_batch} records, got {count}")
        size = _checked_size(entries, limits.max_message_bytes, limits.max_item_bytes)
        first = target.store.append(entries, self.broker.clock.wall_ms(now))
        target.appended_records += count
        target.appended_bytes += size
        self._written(target, data=True)
        if target.options.has_retention:
            self._check_retention(target, now)
        return first

    def append_kafka(
        self, name: str, batch: bytes, count: int, largest: int, timestamp_ms: int, now: float
    ) -> int:
        """Append a Kafka record batch of ``count`` records as it is; return its first offset.

        The front end has checked the batch (magic, CRC, record framing) and
        measured its ``largest`` record, which the same limits as
        :meth:`append` apply to. ``timestamp_ms`` is the batch's largest
        timestamp (the producer's clock): the log's time for it, raised to
        the last stored one. Durability and visibility as for :meth:`append`.
        """
        target = self.get(name)
        limits = self.limits
        if count > limits.max_batch:
            raise BadRequest(f"an append holds at most {limits.max_batch} records, got {count}")
        limit = limits.max_message_bytes
        max_item = limits.max_item_bytes
        if largest > limit or (max_item is not None and largest > max_item - RECORD_OVERHEAD):
            bound = limit if max_item is None else min(limit, max_item - RECORD_OVERHEAD)
            raise TooLarge(
                f"a record of {largest} bytes is larger than the limit of {bound} bytes: "
                "nothing was appended",
                limit=bound,
            )
        first = target.store.append_kafka(batch, count, timestamp_ms)
        target.appended_records += count
        target.appended_bytes += len(batch)
        self._written(target, data=True)
        if target.options.has_retention:
            self._check_retention(target, now)
        return first

    def _written(self, target: Log, *, data: bool) -> None:
        """Report a write to the broker's durability (core/durability.py).

        Appended records become visible once synced: at the group commit's
        fsync (``batch``), inside this call (``always``), or at once when
        nothing is synced (``never``, no data directory)."""
        durability = self.broker.durability
        if not durability.on_disk:
            if data:
                target.advance()
            return
        if data:
            target.data_dirty = True
        else:
            target.meta_dirty = True
        self._dirty[target] = None
        durability.written()

    # ------------------------------------------------------------------ read

    def read(
        self,
        name: str,
        start: Start = "earliest",
        timestamp_ms: int | None = None,
        group: str | None = None,
        max_records: int = 1000,
        max_bytes: int = 1024 * 1024,
        wait: float = 0.0,
        stored: bool = False,
    ) -> RecordBatch:
        """Raw records from the resolved start; empty (at that offset) when none are there.

        ``wait`` is only checked here; a caller that wants to long-poll an
        empty answer parks the request and calls :meth:`wait_for_records`.
        ``stored``: for a client that decodes batches of entries itself (see
        :meth:`Log.read_at`).
        """
        target = self.get(name)
        check_read_limits(max_records, max_bytes, self.limits)
        self._check_wait(wait)
        if group is not None:
            check_name("group", group)
        offset = target.resolve_start(start, timestamp_ms, group)
        return target.read_at(offset, max_records, max_bytes, stored)

    def _check_wait(self, wait: float) -> None:
        check_seconds("wait", wait, self.limits.max_wait_seconds, allow_zero=True)

    def wait_for_records(
        self,
        peer: Requester,
        token: int,
        name: str,
        offset: int,
        max_records: int,
        max_bytes: int,
        wait: float,
        now: float,
        stored: bool = False,
    ) -> ReadWaiter | None:
        """Park a read at ``offset`` until records are readable there or ``wait`` passes.

        The answer goes to ``peer.resolve(token, RecordBatch)`` (empty at the
        deadline, or when records come while ``peer`` is not reading: see
        ``ReadWaiter.wake``) or ``peer.reject(token, error)`` (the log was deleted, or
        retention overtook the offset). Returns the parked waiter, or None
        when records were already there and the answer went out at once: a
        front end that waits on several logs for one request (a Kafka Fetch)
        withdraws the other waiters with ``detach()`` once one answers.
        """
        target = self.get(name)
        check_read_limits(max_records, max_bytes, self.limits)
        self._check_wait(wait)
        target.check_offset(offset)
        waiter = ReadWaiter(target, peer, token, offset, max_records, max_bytes, stored)
        if offset < target.high_watermark:
            waiter.wake()
            return None
        target.waiters[waiter] = None
        self._track(peer.conn_id, waiter)
        waiter.timer = self.broker.timers.call_at(now + wait, waiter.expire)
        return waiter

    # ------------------------------------------------------------------ tail

    def tail(
        self,
        peer: Peer,
        sub_id: int,
        name: str,
        on_end: Callable[[BrokerError], None],
        start: Start = "latest",
        timestamp_ms: int | None = None,
        group: str | None = None,
        max_bytes: int = 1024 * 1024,
        stored: bool = False,
    ) -> LogTail:
        """Start a tail subscription for ``peer``; records go out as ``records`` pushes.

        ``on_end(error)`` is called if the broker ends the tail (log deleted,
        or the tail fell behind retention). ``stored``: the pushes may hold
        batches of entries as stored (see :meth:`Log.read_at`).
        """
        target = self.get(name)
        _check_max_bytes(max_bytes)
        if group is not None:
            check_name("group", group)
        offset = target.resolve_start(start, timestamp_ms, group)
        target.check_offset(offset)
        source = LogTail(target, peer, sub_id, offset, max_bytes, on_end, stored)
        target.tails[source] = None
        self._track(peer.conn_id, source)
        if offset < target.high_watermark:
            peer.push_ready(source)
        else:
            source._go_idle()
        return source

    # ------------------------------------------------------- consumer groups

    def commit(self, name: str, group: str, offset: int, now: float) -> None:
        """Record that ``group`` will read from ``offset`` next (durable on disk)."""
        target = self.get(name)
        check_name("group", group)
        if type(offset) is not int or offset < 0 or offset > target.high_watermark:
            raise OffsetOutOfRange(
                f"cannot commit offset {offset!r} for log {name!r}: it ends at "
                f"{target.high_watermark}",
                first_offset=target.first_offset,
                next_offset=target.high_watermark,
            )
        previous = target.groups.get(group)
        if previous == offset:
            return
        if previous is None:
            self._check_group_room(group)
        if target.meta is None:
            target.groups[group] = offset
        else:
            target.meta.write_commit(group, offset, self.broker.clock.wall_ms(now))
            self._written(target, data=False)
        if previous is None:
            self._group_logs[group] = self._group_logs.get(group, 0) + 1

    def _check_group_room(self, group: str) -> None:
        """LimitExceeded for a group new to this namespace past ``max_groups_per_namespace``."""
        limit = self.limits.max_groups_per_namespace
        if group not in self._group_logs and len(self._group_logs) >= limit:
            raise LimitExceeded.reached(
                f"cannot commit for group {group!r}",
                "consumer group",
                f"in namespace {self.namespace.name!r}",
                limit,
                group=group,
            )

    def _group_gone(self, group: str) -> None:
        """One log less holds an offset of ``group``."""
        left = self._group_logs.get(group, 0) - 1
        if left > 0:
            self._group_logs[group] = left
        else:
            self._group_logs.pop(group, None)

    @property
    def group_count(self) -> int:
        """Consumer groups with a committed offset on any log of this namespace."""
        return len(self._group_logs)

    def committed(self, name: str, group: str) -> int | None:
        """The offset ``group`` committed, or None if it never did."""
        target = self.get(name)
        check_name("group", group)
        return target.groups.get(group)

    def forget_group(self, name: str, group: str, now: float) -> bool:
        """Delete ``group``'s committed offset (durable on disk); False if it had none.

        The Kafka port's DeleteGroups and OffsetDelete: the group reads from
        its reset position next time, and ``log stats`` no longer lists it.
        """
        target = self.get(name)
        if group not in target.groups:
            return False
        if target.meta is None:
            del target.groups[group]
        else:
            target.meta.write_forget(group, self.broker.clock.wall_ms(now))
            self._written(target, data=False)
        self._group_gone(group)
        return True

    def delete_records(self, name: str, offset: int, now: float) -> int:
        """Make the log start at ``offset`` (Kafka's DeleteRecords); return its first offset.

        Readers get OffsetOutOfRange below it from now on, "earliest" is it,
        and the whole segments below it are deleted. ``offset`` may be
        anywhere up to the high watermark (deleting every record readers
        see); at or below the current start nothing changes. On disk the new
        start is journalled and synced before this returns, as a change of
        options is, so a restart never brings the records back.
        """
        target = self.get(name)
        if type(offset) is not int or offset < 0 or offset > target.high_watermark:
            raise OffsetOutOfRange(
                f"cannot delete the records of log {name!r} below {offset!r}: it holds "
                f"[{target.first_offset}, {target.high_watermark})",
                first_offset=target.first_offset,
                next_offset=target.high_watermark,
            )
        if offset <= target.first_offset:
            return target.first_offset
        if target.meta is not None:
            target.meta.write_start(offset, self.broker.clock.wall_ms(now))
            target.meta.store.sync()
        target.start_offset = offset
        self._delete_segments_below(target)
        # A tail whose cursor is now below the start is not idle (the cursor
        # is below the high watermark): its next read ends it with
        # OffsetOutOfRange, as when retention overtakes it.
        return offset

    @staticmethod
    def _delete_segments_below(target: Log) -> None:
        """Free the whole segments below the log's start. A failure only leaves
        them on disk: they are never read, and the next call or restart retries."""
        try:
            target.store.delete_before(target.start_offset)
        except (StorageError, StorageFull) as exc:
            log.error("deleting old segments of log %r failed: %s", target.name, exc)

    def change_options(self, name: str, options: LogOptions, now: float) -> None:
        """Give the log new options: retention, ``append_time`` (``segment_bytes``
        stays as created).

        Synced before this returns, as a creation is; a tighter retention
        applies at once. BadRequest for options out of range or a different
        segment size (the segments on disk were cut to it).
        """
        target = self.get(name)
        options.check()
        if options.segment_bytes != target.options.segment_bytes:
            raise BadRequest(f"the segment size of log {name!r} is fixed when it is created")
        if options == target.options:
            return
        if target.meta is not None:
            target.meta.write_options(options, self.broker.clock.wall_ms(now))
            target.meta.store.sync()
        target.options = options
        if target.retention_timer is not None:
            target.retention_timer.cancel()
            target.retention_timer = None
        if options.has_retention:
            self._retention_due(target, now)

    # ------------------------------------------------------------- retention

    def _check_retention(self, target: Log, now: float) -> None:
        """After an append: enforce size retention at once, keep age retention armed."""
        store = target.store
        if store.segment_count < 2:
            return  # only the active segment: nothing could go
        limit = target.options.retention_bytes
        if limit is not None and store.size_bytes > limit:
            self._arm_retention(target, now)
        elif target.options.retention_seconds is not None:
            self._arm_retention(target, now + self._retention_interval(target))

    @staticmethod
    def _retention_interval(target: Log) -> float:
        seconds = target.options.retention_seconds
        return RETENTION_CHECK_SECONDS if seconds is None else min(RETENTION_CHECK_SECONDS, seconds)

    def _arm_retention(self, target: Log, when: float) -> None:
        timer = target.retention_timer
        if timer is not None:
            if timer.when <= when:
                return
            timer.cancel()
        target.retention_timer = self.broker.timers.call_at(
            when, lambda now: self._retention_due(target, now)
        )

    def _retention_due(self, target: Log, now: float) -> None:
        target.retention_timer = None
        if target.closed:
            return
        options = target.options
        try:
            removed = target.store.enforce_retention(
                self.broker.clock.wall_ms(now), options.retention_bytes, options.retention_ms
            )
        except (StorageError, StorageFull) as exc:
            log.error("retention of log %r failed: %s", target.name, exc)
            removed = 0
        if removed:
            target.retained_away += removed
            log.info(
                "retention removed %d records from log %r; it now starts at %d",
                removed,
                target.name,
                target.first_offset,
            )
        if options.retention_seconds is not None and target.store.segment_count > 1:
            self._arm_retention(target, now + self._retention_interval(target))

    def enforce_retention(self, now: float) -> int:
        """Apply retention to every log now (test hook and admin); records removed."""
        before = sum(t.retained_away for t in self._logs.values())
        for target in list(self._logs.values()):
            if target.options.has_retention:
                self._retention_due(target, now)
        return sum(t.retained_away for t in self._logs.values()) - before

    # ----------------------------------------------------- connection tracking

    def _track(self, conn_id: int, item: Attachment) -> None:
        held = self._attached.get(conn_id)
        if held is None:
            self._attached[conn_id] = {item: None}
        else:
            held[item] = None

    def _untrack(self, conn_id: int, item: Attachment) -> None:
        held = self._attached.get(conn_id)
        if held is not None:
            held.pop(item, None)
            if not held:
                del self._attached[conn_id]

    # ---------------------------------------------------------- Model protocol

    def disconnect(self, peer: Peer, now: float) -> None:
        held = self._attached.pop(peer.conn_id, None)
        if held:
            for item in list(held):
                item.detach()

    def sync(self) -> None:
        """Group commit: fsync every store written since the last sync, then let
        readers see the records it covered (raise the high watermarks).

        A store whose fsync failed (``LogStore.group_sync``) raises that to
        one round and is passed over by later ones; its log's high
        watermark never moves past what a good sync covered."""
        dirty = self._dirty
        if not dirty:
            return
        logs = list(dirty)
        dirty.clear()
        synced: list[Log] = []
        try:
            for target in logs:
                if target.closed:
                    continue
                if target.data_dirty:
                    target.store.group_sync()
                    self.fsyncs += 1
                    target.data_dirty = False
                    if target.store.failed is None:
                        synced.append(target)
                if target.meta_dirty and target.meta is not None:
                    target.meta.store.group_sync()
                    self.fsyncs += 1
                    target.meta_dirty = False
        except BaseException:
            # Keep what failed dirty, so the next group commit tries again.
            for target in logs:
                if not target.closed and (target.data_dirty or target.meta_dirty):
                    dirty[target] = None
            raise
        finally:
            for target in synced:
                target.advance()

    def close(self) -> None:
        for target in list(self._logs.values()):
            target.shut(None)
            target.store.close()
            if target.meta is not None:
                target.meta.store.close()
        self.broker.log_total -= len(self._logs)
        self._logs.clear()
        self._dirty.clear()

    def destroy(self) -> None:
        for target in list(self._logs.values()):
            target.shut(NotFound(f"log {target.name!r} was deleted", log=target.name))
            self._destroy_stores(target)
        self.broker.log_total -= len(self._logs)
        self._logs.clear()
        self._dirty.clear()

    # ---------------------------------------------------------------- recovery

    def _recover(self) -> None:
        """Reopen every log of this namespace found on disk, with its options and groups."""
        storage = self.broker.storage
        if storage is None:
            return
        ns = self.namespace.name
        for name in storage.existing(ns, KIND):
            meta_store = storage.open(ns, META_KIND, name, segment_bytes=META_SEGMENT_BYTES)
            try:
                meta = LogMeta.load(meta_store)
                if meta.options is None:
                    log.warning("log %r has no recorded options; using the defaults", name)
                    meta.write_options(LogOptions(), 0)
                    meta_store.sync()
                assert meta.options is not None
                store = storage.open(ns, KIND, name, segment_bytes=meta.options.segment_bytes)
            except BaseException:
                meta_store.close()
                raise
            if meta.start_offset > store.next_offset:
                log.warning(
                    "log %r starts at %d, past the recovered end %d; moving it back",
                    name,
                    meta.start_offset,
                    store.next_offset,
                )
            recovered = Log(self, name, meta.options, store, meta)
            recovered.start_offset = min(meta.start_offset, store.next_offset)
            if recovered.start_offset > store.first_offset:
                self._delete_segments_below(recovered)
            for group, offset in list(recovered.groups.items()):
                if offset > store.next_offset:
                    log.warning(
                        "group %r of log %r committed %d, past the recovered end %d; "
                        "moving it back",
                        group,
                        name,
                        offset,
                        store.next_offset,
                    )
                    recovered.groups[group] = store.next_offset
            self._logs[name] = recovered
            self.broker.log_total += 1
            for group in recovered.groups:
                self._group_logs[group] = self._group_logs.get(group, 0) + 1
            if meta.options.has_retention:
                # Fires at the first timer run, with the real time.
                self._arm_retention(recovered, 0.0)
            log.info(
                "recovered log %r: offsets [%d, %d), %d groups",
                name,
                recovered.first_offset,
                store.next_offset,
                len(recovered.groups),
            )
        for name in storage.existing(ns, META_KIND):
            if name not in self._logs:
                storage.remove(ns, META_KIND, name)
