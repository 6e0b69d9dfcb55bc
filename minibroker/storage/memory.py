"""The in-memory log store: the embedded broker's default.

It keeps the very same frames a segment file would hold, so a read returns raw
record bytes exactly like the disk store and everything above storage (the
server, the clients' decoders) cannot tell the two apart. Segments are
emulated by size with the same roll rule as on disk, so retention removes the
same records at the same moments in tests as in production. For that, a
segment's ``size_bytes`` counts the batch header every batch has on disk (see
:mod:`minibroker.storage.batch`), although memory, which no crash can tear,
does not store one.

Memory has no seek cost, so instead of a sparse index each segment keeps the
start position of every record: a read is two bisects and one slice, with no
per-record work at all. A Kafka batch (:meth:`MemorySegment.append_kafka`)
and a batch of entries (:meth:`MemorySegment.append_entries`, what every
append stores) are kept as their bytes, like on disk; their records all
"start" where the batch starts, and reads of frames make frames of them.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from itertools import accumulate

from minibroker.errors import StorageFailed
from minibroker.log_store import StoredBatch
from minibroker.record_format import EncodedBatch, EncodedEntries
from minibroker.storage.batch import (
    BATCH_HEADER_SIZE,
    KIND_ENTRIES,
    KIND_FRAMES,
    KIND_KAFKA,
    frames_through,
    stored_of,
)
from minibroker.storage.chain import DEFAULT_SEGMENT_BYTES, SegmentChain
from minibroker.storage.kafka_batch import STORED_HEAD_SIZE, first_at_or_after, stored_head


class MemorySegment:
    """One segment's frames in a bytearray, with the position of every record."""

    __slots__ = (
        "_batch_first_offsets",
        "_batch_kinds",
        "_batch_positions",
        "_batch_timestamps",
        "_data",
        "_starts",
        "_unit_batches",
        "base_offset",
        "first_timestamp_ms",
        "last_timestamp_ms",
        "next_offset",
        "size_bytes",
    )

    def __init__(self, base_offset: int) -> None:
        self.base_offset = base_offset
        self.next_offset = base_offset
        self.size_bytes = 0
        self.first_timestamp_ms: int | None = None
        self.last_timestamp_ms: int | None = None
        self._data = bytearray()
        #: Start position of record ``base_offset + i`` in ``_data``.
        self._starts = array("q")
        #: One entry per appended batch (all records of a batch share a timestamp).
        self._batch_first_offsets = array("q")
        self._batch_timestamps = array("q")
        #: Where each batch starts in ``_data``, and its kind (storage/batch.py).
        self._batch_positions = array("q")
        self._batch_kinds = bytearray()
        #: Batches that are read whole (Kafka batches, batches of entries).
        self._unit_batches = 0

    def append(self, batch: EncodedBatch, timestamp_ms: int) -> None:
        starts = list(accumulate(batch.frame_sizes, initial=len(self._data)))
        starts.pop()  # the last value is where the *next* record will start
        self._starts.extend(starts)
        self._add_batch(batch.data, len(batch.frame_sizes), timestamp_ms, KIND_FRAMES)

    def append_kafka(self, batch: bytes, count: int, timestamp_ms: int) -> None:
        start = len(self._data)
        self._unit_starts(count)
        self._add_batch(batch, count, timestamp_ms, KIND_KAFKA)
        # The base offset and leader epoch, written in place: no copy of the batch.
        self._data[start : start + STORED_HEAD_SIZE] = stored_head(batch, self.next_offset - count)

    def append_entries(self, batch: EncodedEntries, count: int, timestamp_ms: int) -> None:
        self._unit_starts(count)
        self._data += batch.head
        self._add_batch(batch.entries, count, timestamp_ms, KIND_ENTRIES, len(batch.head))

    def _unit_starts(self, count: int) -> None:
        """Every record of a batch read whole "starts" where the batch does.

        Repeating a one-item array is a memory fill; extending by a list of
        ``count`` ints converted each one (30 ns a record, 6 % of a Kafka append).
        """
        self._starts.extend(array("q", (len(self._data),)) * count)
        self._unit_batches += 1

    def _add_batch(
        self, data: bytes, count: int, timestamp_ms: int, kind: int, written: int = 0
    ) -> None:
        """Bookkeeping of a batch whose bytes are ``data``, after ``written`` bytes of
        it already added to ``_data``."""
        self._batch_positions.append(len(self._data) - written)
        self._batch_kinds.append(kind)
        self._data += data
        self._batch_first_offsets.append(self.next_offset)
        self._batch_timestamps.append(timestamp_ms)
        self.size_bytes += BATCH_HEADER_SIZE + written + len(data)  # as on disk
        self.next_offset += count
        if self.first_timestamp_ms is None:
            self.first_timestamp_ms = timestamp_ms
        self.last_timestamp_ms = timestamp_ms

    def read(
        self, offset: int, max_records: int, max_bytes: int, at_least_one: bool
    ) -> tuple[bytes, int]:
        if self._unit_batches:
            return frames_through(
                self._units_from, offset, self.next_offset, max_records, max_bytes, at_least_one
            )
        return self._frames(offset, max_records, max_bytes, at_least_one)

    def _units_from(self, offset: int, max_bytes: int, at_least_one: bool) -> list[StoredBatch]:
        return self.read_batches(offset, self.next_offset, max_bytes, at_least_one)

    def read_stored(
        self,
        offset: int,
        max_records: int,
        max_bytes: int,
        at_least_one: bool,
        first_batch_bytes: int = 0,
    ) -> tuple[bytes, int]:
        if self._unit_batches:
            units = self.read_batches(offset, self.next_offset, max_bytes, at_least_one)
            return stored_of(units, offset, max_records, max_bytes, at_least_one, first_batch_bytes)
        return self._frames(offset, max_records, max_bytes, at_least_one)

    def _frames(
        self, offset: int, max_records: int, max_bytes: int, at_least_one: bool
    ) -> tuple[bytes, int]:
        """Frames from ``offset``, all inside one batch of frames or a segment of frames only."""
        first = offset - self.base_offset
        stop = min(first + max_records, len(self._starts))
        start = self._starts[first]
        end = self._starts[stop] if stop < len(self._starts) else len(self._data)
        if end - start > max_bytes:
            # The last record boundary that keeps the span within max_bytes.
            stop = bisect_right(self._starts, start + max_bytes, first + 1, stop) - 1
            if stop <= first:
                if not at_least_one:
                    return b"", 0
                stop = first + 1
            end = self._starts[stop] if stop < len(self._starts) else len(self._data)
        with memoryview(self._data) as view:
            return bytes(view[start:end]), stop - first

    def read_batches(
        self, offset: int, end_offset: int, max_bytes: int, at_least_one: bool
    ) -> list[StoredBatch]:
        firsts = self._batch_first_offsets
        batches = len(firsts)
        i = bisect_right(firsts, offset) - 1
        found: list[StoredBatch] = []
        size = 0
        while i < batches and offset < end_offset:
            following = firsts[i + 1] if i + 1 < batches else self.next_offset
            kind = self._batch_kinds[i]
            if kind:
                start, stop = self._batch_span(i)
                if following > end_offset or (
                    size + stop - start > max_bytes and (found or not at_least_one)
                ):
                    break
                with memoryview(self._data) as view:
                    data = bytes(view[start:stop])
                found.append(StoredBatch(kind, data, firsts[i], following - firsts[i]))
                size += len(data)
                offset = following
            else:
                wanted = min(following, end_offset) - offset
                data, count = self._frames(
                    offset, wanted, max_bytes - size, at_least_one and not found
                )
                if count:
                    found.append(StoredBatch(KIND_FRAMES, data, offset, count))
                    size += len(data)
                    offset += count
                if count < wanted:
                    break
            i += 1
        return found

    def _batch_span(self, i: int) -> tuple[int, int]:
        positions = self._batch_positions
        return positions[i], positions[i + 1] if i + 1 < len(positions) else len(self._data)

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """The first batch stamped ``timestamp_ms`` or later (a batch's time is the
        largest so far); inside a Kafka batch, its first record stamped so (the
        records of any other batch all have its time)."""
        i = bisect_left(self._batch_timestamps, timestamp_ms)
        while i < len(self._batch_timestamps):
            if self._batch_kinds[i] != KIND_KAFKA:
                return self._batch_first_offsets[i]
            start, stop = self._batch_span(i)
            found = first_at_or_after(bytes(self._data[start:stop]), timestamp_ms)
            if found is not None:
                return found
            i += 1
        return None


class MemoryLog(SegmentChain[MemorySegment]):
    """A :class:`~minibroker.log_store.LogStore` that lives in memory only."""

    def __init__(self, segment_bytes: int | None = None, start_offset: int = 0) -> None:
        """``segment_bytes=None`` means :data:`DEFAULT_SEGMENT_BYTES`, so the class itself is
        the ``memory_log`` factory the shell hands the core (core/namespace.py)."""
        if segment_bytes is None:
            segment_bytes = DEFAULT_SEGMENT_BYTES
        super().__init__([MemorySegment(start_offset)], segment_bytes)

    def _create_segment(self, base_offset: int) -> MemorySegment:
        return MemorySegment(base_offset)

    def _seal_segment(self, segment: MemorySegment) -> None:
        pass  # nothing to flush

    def _delete_segment(self, segment: MemorySegment) -> None:
        pass  # dropping the last reference frees it

    @property
    def unsynced(self) -> bool:
        return False  # nothing here is ever on disk

    @property
    def failed(self) -> StorageFailed | None:
        return None  # no fsync, so none fails

    def sync(self) -> None:
        self._check_open()

    def group_sync(self) -> None:
        self._check_open()

    def close(self) -> None:
        self._closed = True

    def destroy(self) -> None:
        self.close()
        self._segments = [MemorySegment(self.next_offset)]
        self._bases = [self.next_offset]
