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
per-record work at all.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from itertools import accumulate

from minibroker.record_format import EncodedBatch
from minibroker.storage.batch import BATCH_HEADER_SIZE
from minibroker.storage.chain import DEFAULT_SEGMENT_BYTES, SegmentChain


class MemorySegment:
    """One segment's frames in a bytearray, with the position of every record."""

    __slots__ = (
        "_batch_first_offsets",
        "_batch_timestamps",
        "_data",
        "_starts",
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

    def append(self, batch: EncodedBatch, timestamp_ms: int) -> None:
        starts = list(accumulate(batch.frame_sizes, initial=len(self._data)))
        starts.pop()  # the last value is where the *next* record will start
        self._starts.extend(starts)
        self._data += batch.data
        self._batch_first_offsets.append(self.next_offset)
        self._batch_timestamps.append(timestamp_ms)
        self.size_bytes += BATCH_HEADER_SIZE + len(batch.data)  # as on disk
        self.next_offset += len(batch.frame_sizes)
        if self.first_timestamp_ms is None:
            self.first_timestamp_ms = timestamp_ms
        self.last_timestamp_ms = timestamp_ms

    def read(
        self, offset: int, max_records: int, max_bytes: int, at_least_one: bool
    ) -> tuple[bytes, int]:
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

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        i = bisect_left(self._batch_timestamps, timestamp_ms)
        if i == len(self._batch_timestamps):
            return None
        return self._batch_first_offsets[i]


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

    def sync(self) -> None:
        self._check_open()

    def close(self) -> None:
        self._closed = True

    def destroy(self) -> None:
        self.close()
        self._segments = [MemorySegment(self.next_offset)]
        self._bases = [self.next_offset]
