"""The sparse offset index of one segment (Kafka's ``.index`` file).

Finding offset N in a segment file means finding the byte where its frame
starts. Keeping the position of *every* record would cost memory per record;
the sparse index keeps one ``(relative offset, position)`` pair roughly every
``interval_bytes`` of log instead. A lookup takes the last entry at or before
N (bisect) and then steps over at most about ``interval_bytes`` of frames by
their length fields, which is cheap.

File format: a flat array of 8-byte entries, each ``u32 relative offset``
(offset minus the segment's base offset) then ``u32 byte position`` in the
segment file, both big-endian, sorted, both strictly increasing. The entry for
the first record, (0, 0), is implicit and never stored (in the batch format
position 0 holds the first batch header, which a read steps over).

The index is derived data: it can always be rebuilt by scanning the segment,
and is validated (sizes, ordering, bounds) before it is trusted.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from itertools import accumulate, pairwise
from typing import Final

ENTRY_SIZE: Final = 8

_U32 = "I" if array("I").itemsize == 4 else "L"
assert array(_U32).itemsize == 4, "no 4-byte unsigned array type on this platform"


class SparseIndex:
    """In-memory sparse index of one segment, serialisable to the ``.index`` format."""

    __slots__ = ("_positions", "_relative_offsets", "interval_bytes")

    def __init__(self, interval_bytes: int) -> None:
        if interval_bytes < 1:
            raise ValueError("index interval must be at least one byte")
        self.interval_bytes = interval_bytes
        self._relative_offsets = array(_U32)
        self._positions = array(_U32)

    def __len__(self) -> int:
        return len(self._positions)

    def entry(self, i: int) -> tuple[int, int]:
        """The i-th stored entry as ``(relative offset, position)``."""
        return self._relative_offsets[i], self._positions[i]

    def add_batch(
        self, first_relative: int, first_position: int, frame_sizes: Sequence[int]
    ) -> None:
        """Index a batch of frames written at ``first_position``.

        An entry is added for the first record that starts at least
        ``interval_bytes`` after the previous entry. Instead of looking at every
        record, this bisects the list of record starts once per new entry.
        """
        starts = list(accumulate(frame_sizes, initial=first_position))
        count = len(frame_sizes)
        last_position = self._positions[-1] if self._positions else 0
        # The first record is the implicit entry (0, 0), even when a batch
        # header puts its frame further in: reads step over the header.
        i = 1 if first_relative == 0 else 0
        while True:
            i = bisect_left(starts, last_position + self.interval_bytes, i, count)
            if i >= count:
                return
            last_position = starts[i]
            self._relative_offsets.append(first_relative + i)
            self._positions.append(last_position)
            i += 1

    def add_unit(self, first_relative: int, position: int) -> None:
        """Index a Kafka batch whose header is at ``position``.

        Its records have no positions of their own: an entry points at the
        header, and a read steps over the batch whole. Same spacing rule as
        :meth:`add_batch`.
        """
        last_position = self._positions[-1] if self._positions else 0
        if first_relative and position >= last_position + self.interval_bytes:
            self._relative_offsets.append(first_relative)
            self._positions.append(position)

    def floor(self, relative_offset: int) -> tuple[int, int]:
        """The last entry at or before ``relative_offset`` (the implicit (0, 0) if none)."""
        i = bisect_right(self._relative_offsets, relative_offset)
        if i == 0:
            return 0, 0
        return self._relative_offsets[i - 1], self._positions[i - 1]

    def to_bytes(self) -> bytes:
        """Serialise to the ``.index`` file format."""
        interleaved = array(_U32, bytes(ENTRY_SIZE * len(self)))
        interleaved[0::2] = self._relative_offsets
        interleaved[1::2] = self._positions
        if sys.byteorder == "little":
            interleaved.byteswap()
        return interleaved.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, interval_bytes: int, log_size: int) -> SparseIndex | None:
        """Parse an ``.index`` file; None if it cannot be right for a log of ``log_size`` bytes.

        Checks what a crash or bit flip would most likely break: a length that
        is not a whole number of entries, entries out of order (zero-filled
        pages after a crash show up as repeated zeros), and positions outside
        the log. The caller also checks that the last entry points at the
        record it claims to.
        """
        if len(data) % ENTRY_SIZE:
            return None
        interleaved = array(_U32, data)
        if sys.byteorder == "little":
            interleaved.byteswap()
        index = cls(interval_bytes)
        index._relative_offsets = interleaved[0::2]
        index._positions = interleaved[1::2]
        if not _strictly_increasing(index._relative_offsets):
            return None
        if not _strictly_increasing(index._positions):
            return None
        if index._positions and (
            index._relative_offsets[0] == 0
            or index._positions[0] == 0
            or index._positions[-1] >= log_size
        ):
            return None
        return index


def _strictly_increasing(values: array[int]) -> bool:
    return all(a < b for a, b in pairwise(values))
