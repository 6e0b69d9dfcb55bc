"""The contract between the core and storage: what a record is, what a store offers.

The log model (a Kafka-like partition) and the durable-queue journal are
written against :class:`LogStore` only, so they run unchanged on the
in-memory store (:class:`~minibroker.storage.memory.MemoryLog`, the embedded
default) and on disk (:class:`~minibroker.storage.commitlog.SegmentedLog`).
The core never names either: the shell hands it a factory
(``Broker(memory_log=...)``) and a ``StorageOpener`` (core/namespace.py).

A leaf: standard library only. The core imports it, so it must not pull in
msgpack or a store; how a record becomes bytes is
:mod:`minibroker.record_format`.

Stores are synchronous and single-threaded: the Trio server calls them from
its one thread, and decides *when* to call :meth:`LogStore.sync` (group
commit), because only it knows which appends are waiting for a confirmation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol

from minibroker.value_class import Value

if TYPE_CHECKING:
    from minibroker.errors import StorageFailed

#: One entry handed to ``append``: ``(key, headers, body)``, or a bare body
#: (a record without key and headers: the common case, and the cheapest).
Entry = tuple[bytes | None, dict[str, str] | None, bytes] | bytes
#: A decoded record as a plain tuple: ``(offset, timestamp_ms, key, headers, body)``.
RecordFields = tuple[int, int, bytes | None, dict[str, str] | None, bytes]

#: Largest segment a store accepts: segment files hold u32 positions, and
#: this keeps well clear of that limit. The log options check it up front.
MAX_SEGMENT_BYTES: Final = 2 * 1024 * 1024 * 1024


class Record(NamedTuple):
    """One decoded log record.

    A NamedTuple rather than a frozen dataclass: replay decodes hundreds of
    thousands of these per second, and building a tuple costs a fifth of
    what a frozen dataclass's ``__init__`` does.
    """

    offset: int
    timestamp_ms: int
    key: bytes | None
    headers: dict[str, str] | None
    body: bytes


class RecordBatch(Value, frozen=True):
    """The answer to a read: raw frames, ready to ship to a client as they are.

    ``data`` holds ``count`` whole frames (see :mod:`minibroker.record_format`)
    with consecutive offsets; ``next_offset`` is the offset to read next.
    """

    data: bytes
    count: int
    next_offset: int


class StoredBatch(NamedTuple):
    """One stored unit of a log, as :meth:`LogStore.read_batches` returns it.

    ``kind`` is the batch kind of minibroker/storage/batch.py: record frames
    (0: ``records`` frames from ``first_offset``, possibly part of what one
    append stored), one Kafka record batch exactly as its producer sent it,
    its base offset set to ``first_offset`` (1; always whole), or one
    append's batch of entries (2: the body of minibroker/record_format.py's
    batch of entries; always whole).
    """

    kind: int
    data: bytes
    first_offset: int
    records: int


class LogStore(Protocol):
    """An append-only sequence of records addressed by dense, increasing offsets."""

    @property
    def first_offset(self) -> int:
        """First retained offset; equals :attr:`next_offset` when the log is empty."""
        ...

    @property
    def next_offset(self) -> int:
        """The offset the next appended record gets."""
        ...

    @property
    def size_bytes(self) -> int:
        """Bytes the retained batches take on disk: frames and batch headers (not index files)."""
        ...

    @property
    def segment_count(self) -> int:
        """Number of segments, the active one included (always at least 1)."""
        ...

    def append(self, entries: Sequence[Entry], timestamp_ms: int) -> int:
        """Append ``entries`` as one batch stamped ``timestamp_ms``; return the first offset.

        The timestamp is raised to the last stored one if it is older, so
        timestamps never decrease. Either the whole batch is stored or, on
        :class:`~minibroker.errors.StorageFull` /
        :class:`~minibroker.errors.StorageError`, none of it is.
        An empty batch stores nothing and returns :attr:`next_offset`.
        """
        ...

    def append_kafka(self, batch: bytes, count: int, timestamp_ms: int) -> int:
        """Append one Kafka record batch (magic 2) of ``count`` records as it is; return
        the first offset, which the store writes into the batch's ``baseOffset``.

        ``timestamp_ms`` is the batch's time for the log (retention, lookups by
        time): raised to the last stored one like :meth:`append`'s. All or
        nothing, like :meth:`append`; the caller has checked the batch.
        """
        ...

    def read_batches(self, offset: int, end_offset: int, max_bytes: int) -> list[StoredBatch]:
        """The stored units holding the records from ``offset`` up to ``end_offset``.

        A Kafka batch or a batch of entries comes whole, so the first may start before ``offset``;
        one reaching past ``end_offset`` is left out. Frames are cut at
        ``offset`` and ``end_offset``. The units total at most ``max_bytes``,
        except that the first is returned whatever its size.
        """
        ...

    def read(self, offset: int, max_records: int, max_bytes: int) -> RecordBatch:
        """Raw frames from ``offset``: at most ``max_records`` and ``max_bytes``.

        At least one record is returned when one exists at ``offset``, even if
        it alone exceeds ``max_bytes``. Reading at :attr:`next_offset` returns
        an empty batch. An offset below :attr:`first_offset` or above
        :attr:`next_offset` raises
        :class:`~minibroker.errors.OffsetOutOfRange` with ``first_offset``
        and ``next_offset`` in its details.
        """
        ...

    def read_stored(
        self, offset: int, max_records: int, max_bytes: int, first_batch_bytes: int = 0
    ) -> RecordBatch:
        """:meth:`read` for a client that decodes batches of entries itself
        (the ``read.batches`` extension): whole batches of entries that start
        at or after ``offset`` come as stored, batch header included, beside
        frames; everything else as :meth:`read` gives it.

        A batch of entries is only ever sent whole: one that starts before
        ``offset``, reaches past ``max_records`` or alone exceeds
        ``max_bytes`` is cut into frames, so the limits hold as for
        :meth:`read`, ``max_bytes`` counting the bytes sent. A batch that
        starts the answer may take up to ``first_batch_bytes`` when that is
        more than ``max_bytes`` (a tail's own limit, when the room of the
        moment is smaller), so that it goes whole instead of cut into frames.
        """
        ...

    def iter_records(self, start_offset: int | None = None) -> Iterator[Record]:
        """Decode every record from ``start_offset`` (default: the first) to the end."""
        ...

    def offset_for_timestamp(self, timestamp_ms: int) -> int:
        """First retained offset whose timestamp is >= ``timestamp_ms``; next_offset if none."""
        ...

    def timestamp_range(self) -> tuple[int, int] | None:
        """Timestamps of the first and last retained records, or None when empty."""
        ...

    def enforce_retention(
        self, now_ms: int, retention_bytes: int | None, retention_ms: int | None
    ) -> int:
        """Delete whole old segments (never the active one); return how many records went.

        A segment goes when its newest record is older than ``retention_ms``,
        or when the log would still hold at least ``retention_bytes`` without
        it (Kafka's rule: size-based retention never cuts below the limit).
        """
        ...

    def delete_before(self, offset: int) -> int:
        """Delete the whole old segments that end at or below ``offset`` (never the
        active one); return how many records went.

        What is left of the records below ``offset`` (in the segment that holds
        it) stays stored: a log that starts inside a segment keeps that start
        itself (the core's log start offset, Kafka's DeleteRecords).
        """
        ...

    @property
    def unsynced(self) -> bool:
        """Whether :meth:`sync` has anything to make durable: appended records,
        or a new directory's name, not fsynced yet. Always False in memory,
        and once the store failed (it never syncs again)."""
        ...

    @property
    def failed(self) -> StorageFailed | None:
        """The failed fsync that stopped the store, None while it is healthy.

        A failed store refuses every write and sync with this error until
        it is opened again (a restart): docs/storage.md, "A failed fsync".
        Always None in memory.
        """
        ...

    def sync(self) -> None:
        """Make every appended record durable (fsync); a no-op in memory.

        Raises :class:`~minibroker.errors.StorageFailed` if an fsync fails
        (now or before: it is never retried)."""
        ...

    def group_sync(self) -> None:
        """The group commit's :meth:`sync`: a failed store raises its failure
        to the first round after it failed (when writes were waiting on it)
        and is passed over by later rounds."""
        ...

    def close(self) -> None:
        """Flush and release resources; the store is unusable afterwards."""
        ...

    def destroy(self) -> None:
        """Close and delete everything the store kept."""
        ...
