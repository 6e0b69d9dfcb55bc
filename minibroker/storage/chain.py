"""A log as an ordered chain of segments: the logic both stores share.

A log is cut into *segments*, each holding a contiguous run of offsets and
named by the first of them (its *base offset*). Only the newest, the *active*
segment, is appended to. This is what makes the rest cheap:

- finding an offset is a bisect over base offsets, then a lookup inside one
  segment;
- retention deletes whole old segments, so it never rewrites data and an
  offset never changes meaning (the first offset just moves forward);
- recovery only has to distrust the active segment.

:class:`SegmentChain` holds the segments and implements append, read, time
lookup and retention once, over the small :class:`Segment` protocol. The
memory and disk stores differ only in their segments and in how a segment is
created, sealed and deleted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from typing import Final, Generic, Protocol, TypeVar

from minibroker.errors import OffsetOutOfRange, StorageError
from minibroker.log_store import MAX_SEGMENT_BYTES, Entry, Record, RecordBatch, StoredBatch
from minibroker.record_format import (
    EncodedBatch,
    EncodedEntries,
    decode_records,
    decode_stored,
    encode_batch,
    encode_entries,
)
from minibroker.storage.batch import BATCH_HEADER_SIZE

#: Default size at which a new segment is started (Kafka's default is 1 GiB).
DEFAULT_SEGMENT_BYTES: Final = 64 * 1024 * 1024
#: How much :meth:`SegmentChain.iter_records` decodes at a time.
_ITER_CHUNK_BYTES: Final = 1024 * 1024


class Segment(Protocol):
    """What the chain needs from one segment, in memory or on disk."""

    base_offset: int
    next_offset: int
    size_bytes: int
    first_timestamp_ms: int | None
    last_timestamp_ms: int | None

    def append(self, batch: EncodedBatch, timestamp_ms: int) -> None:
        """Store a batch whose first offset is ``next_offset``; all or nothing."""
        ...

    def append_kafka(self, batch: bytes, count: int, timestamp_ms: int) -> None:
        """Store a Kafka batch at ``next_offset`` (written into it: see
        :func:`~minibroker.storage.kafka_batch.stored_head`); all or nothing."""
        ...

    def append_entries(self, batch: EncodedEntries, count: int, timestamp_ms: int) -> None:
        """Store a batch of ``count`` entries made for ``next_offset``; all or nothing."""
        ...

    def read(
        self, offset: int, max_records: int, max_bytes: int, at_least_one: bool
    ) -> tuple[bytes, int]:
        """Whole frames from ``offset`` (which is in this segment): ``(data, count)``."""
        ...

    def read_batches(
        self, offset: int, end_offset: int, max_bytes: int, at_least_one: bool
    ) -> list[StoredBatch]:
        """Stored units from ``offset`` (in this segment) as ``LogStore.read_batches``."""
        ...

    def read_stored(
        self,
        offset: int,
        max_records: int,
        max_bytes: int,
        at_least_one: bool,
        first_batch_bytes: int = 0,
    ) -> tuple[bytes, int]:
        """:meth:`read`, whole batches of entries as stored (``LogStore.read_stored``)."""
        ...

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """First offset here with a timestamp >= ``timestamp_ms``, None if there is none."""
        ...


S = TypeVar("S", bound=Segment)


class SegmentChain(ABC, Generic[S]):
    """Ordered segments with append, read, lookup by time and retention."""

    #: How :meth:`append` stores a batch: as a batch of entries (True, since
    #: issue 19), or as record frames, one per record (False: the format
    #: before, which every reader still reads; tests write mixed segments with it).
    entries_format: bool = True

    def __init__(self, segments: list[S], segment_bytes: int) -> None:
        if not segments:
            raise ValueError("a log always has at least its active segment")
        check_segment_bytes(segment_bytes)
        self._segments = segments
        self._bases = [segment.base_offset for segment in segments]
        self.segment_bytes = segment_bytes
        self._closed = False

    # -- what a concrete store provides -----------------------------------

    @abstractmethod
    def _create_segment(self, base_offset: int) -> S:
        """Make a new, empty active segment starting at ``base_offset``."""

    @abstractmethod
    def _seal_segment(self, segment: S) -> None:
        """Finish a segment that stops being the active one (disk: index + fsync)."""

    @abstractmethod
    def _delete_segment(self, segment: S) -> None:
        """Drop an old segment that retention removed."""

    def _after_deletions(self) -> None:
        """Hook run once after retention deleted segments (disk: fsync the directory)."""

    def _after_roll(self, sealed: S) -> None:
        """Hook run once a new active segment has replaced ``sealed``.

        Disk: the sealed segment closes its write descriptor. This waits for
        the new segment to exist so that a failed roll leaves the old one
        active and writable.
        """

    # -- sizes and bounds ----------------------------------------------------

    @property
    def first_offset(self) -> int:
        return self._segments[0].base_offset

    @property
    def next_offset(self) -> int:
        return self._segments[-1].next_offset

    @property
    def size_bytes(self) -> int:
        return sum(segment.size_bytes for segment in self._segments)

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def closed(self) -> bool:
        return self._closed

    def timestamp_range(self) -> tuple[int, int] | None:
        first = next(
            (s.first_timestamp_ms for s in self._segments if s.first_timestamp_ms is not None), None
        )
        last = self._last_timestamp()
        if first is None or last is None:
            return None
        return first, last

    def _last_timestamp(self) -> int | None:
        for segment in reversed(self._segments):
            if segment.last_timestamp_ms is not None:
                return segment.last_timestamp_ms
        return None

    # -- append ------------------------------------------------------------------

    def append(self, entries: Sequence[Entry], timestamp_ms: int) -> int:
        self._check_open()
        first = self.next_offset
        if timestamp_ms < 0:
            raise ValueError("timestamps must not be negative")
        if not entries:
            return first
        timestamp_ms = max(timestamp_ms, self._last_timestamp() or 0)
        if self.entries_format:
            entries_batch = encode_entries(first, timestamp_ms, entries)
            active = self._active_for(BATCH_HEADER_SIZE + entries_batch.size)
            active.append_entries(entries_batch, len(entries), timestamp_ms)
            return first
        batch = encode_batch(first, timestamp_ms, entries)
        active = self._active_for(BATCH_HEADER_SIZE + len(batch.data))
        active.append(batch, timestamp_ms)
        return first

    def _active_for(self, stored_bytes: int) -> S:
        """The segment a batch of ``stored_bytes`` goes to: the active one, or a new
        one when it would grow past ``segment_bytes``."""
        if stored_bytes > MAX_SEGMENT_BYTES:
            raise ValueError(f"a batch of {stored_bytes} bytes is larger than a segment may be")
        active = self._segments[-1]
        if active.size_bytes and active.size_bytes + stored_bytes > self.segment_bytes:
            active = self._roll()
        return active

    def append_kafka(self, batch: bytes, count: int, timestamp_ms: int) -> int:
        self._check_open()
        first = self.next_offset
        timestamp_ms = max(timestamp_ms, self._last_timestamp() or 0, 0)
        active = self._active_for(BATCH_HEADER_SIZE + len(batch))
        active.append_kafka(batch, count, timestamp_ms)
        return first

    def _roll(self) -> S:
        """Seal the active segment and start a new one at the next offset."""
        sealed = self._segments[-1]
        self._seal_segment(sealed)
        segment = self._create_segment(self.next_offset)
        self._segments.append(segment)
        self._bases.append(segment.base_offset)
        self._after_roll(sealed)
        return segment

    # -- read ----------------------------------------------------------------------

    def read(self, offset: int, max_records: int, max_bytes: int) -> RecordBatch:
        return self._read(offset, max_records, max_bytes, stored=False)

    def read_stored(
        self, offset: int, max_records: int, max_bytes: int, first_batch_bytes: int = 0
    ) -> RecordBatch:
        return self._read(offset, max_records, max_bytes, stored=True, first=first_batch_bytes)

    def _read(
        self, offset: int, max_records: int, max_bytes: int, *, stored: bool, first: int = 0
    ) -> RecordBatch:
        self._check_open()
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self._check_offset(offset)
        parts: list[bytes] = []
        count = 0
        size = 0
        i = bisect_right(self._bases, offset) - 1
        for segment in self._segments[i:]:
            position = offset + count
            if position >= segment.next_offset:
                continue  # an empty segment (only ever the active one)
            if stored:
                data, n = segment.read_stored(
                    position, max_records - count, max_bytes - size, not count, first
                )
            else:
                data, n = segment.read(position, max_records - count, max_bytes - size, not count)
            if n:
                parts.append(data)
                count += n
                size += len(data)
            if position + n < segment.next_offset or count >= max_records or size >= max_bytes:
                break  # a limit stopped us
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return RecordBatch(data, count, offset + count)

    def read_batches(self, offset: int, end_offset: int, max_bytes: int) -> list[StoredBatch]:
        self._check_open()
        self._check_offset(offset)
        end_offset = min(end_offset, self.next_offset)
        found: list[StoredBatch] = []
        size = 0
        i = bisect_right(self._bases, offset) - 1
        for segment in self._segments[i:]:
            if offset >= end_offset or size >= max_bytes:
                break
            if offset >= segment.next_offset:
                continue  # an empty segment (only ever the active one)
            got = segment.read_batches(offset, end_offset, max_bytes - size, not found)
            if not got:
                break
            found += got
            size += sum(len(unit.data) for unit in got)
            offset = got[-1].first_offset + got[-1].records
            if offset < segment.next_offset:
                break  # a limit stopped us
        return found

    def iter_records(self, start_offset: int | None = None) -> Iterator[Record]:
        self._check_open()
        offset = self.first_offset if start_offset is None else start_offset
        self._check_offset(offset)  # now, not at the first next()
        return self._iter_records(offset)

    def _iter_records(self, offset: int) -> Iterator[Record]:
        # Batches of entries are decoded as stored (one unpack each, their CRC
        # checked), not framed first: the journals replay so when they open.
        while offset < self.next_offset:
            batch = self.read_stored(
                offset, 1 << 30, _ITER_CHUNK_BYTES, first_batch_bytes=MAX_SEGMENT_BYTES
            )
            yield from decode_stored(batch.data, decode_records)
            offset = batch.next_offset

    def _check_offset(self, offset: int) -> None:
        if not self.first_offset <= offset <= self.next_offset:
            raise OffsetOutOfRange(
                f"offset {offset} is outside the log [{self.first_offset}, {self.next_offset}]",
                first_offset=self.first_offset,
                next_offset=self.next_offset,
            )

    # -- time ----------------------------------------------------------------------

    def offset_for_timestamp(self, timestamp_ms: int) -> int:
        self._check_open()
        for segment in self._segments:
            last = segment.last_timestamp_ms
            if last is not None and last >= timestamp_ms:
                found = segment.offset_for_timestamp(timestamp_ms)
                if found is not None:
                    return found
        return self.next_offset

    # -- retention -----------------------------------------------------------------

    def enforce_retention(
        self, now_ms: int, retention_bytes: int | None, retention_ms: int | None
    ) -> int:
        self._check_open()
        size = self.size_bytes

        def goes(oldest: S) -> bool:
            nonlocal size
            newest_ms = oldest.last_timestamp_ms
            too_old = (
                retention_ms is not None
                and newest_ms is not None
                and now_ms - newest_ms > retention_ms
            )
            too_big = retention_bytes is not None and size - oldest.size_bytes >= retention_bytes
            if too_old or too_big:
                size -= oldest.size_bytes
                return True
            return False

        return self._drop_oldest(goes)

    def delete_before(self, offset: int) -> int:
        self._check_open()
        return self._drop_oldest(lambda oldest: oldest.next_offset <= offset)

    def _drop_oldest(self, goes: Callable[[S], bool]) -> int:
        """Delete old segments from the front while ``goes`` says so, never the
        active one; return how many records went."""
        removed = 0
        try:
            while len(self._segments) > 1:
                oldest = self._segments[0]
                if not goes(oldest):
                    break
                self._delete_segment(oldest)
                del self._segments[0]
                del self._bases[0]
                removed += oldest.next_offset - oldest.base_offset
        finally:
            if removed:
                self._after_deletions()
        return removed

    # -- lifecycle ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the log is closed")


def check_segment_bytes(segment_bytes: int) -> None:
    if not 1 <= segment_bytes <= MAX_SEGMENT_BYTES:
        raise ValueError(f"segment_bytes must be between 1 and {MAX_SEGMENT_BYTES}")
