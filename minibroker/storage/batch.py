"""The batch format of segment files: what makes one append one unit on disk.

A segment file in *batch format* (format 2) is a sequence of batches, each a
16-byte header followed by the record frames of one ``append``::

    u8  magic     0xB7
    u8  version   2
    u16 kind      0: record frames follow; 1: a Kafka record batch follows;
                  2: a batch of entries follows (an append, as the client sent it)
    u32 count     number of records in the batch (at least 1)
    u32 length    bytes of those frames (or of the Kafka batch), header excluded
    u32 crc32     zlib.crc32 of the 12 header bytes before it

A batch of kind 1 holds a Kafka producer's record batch (magic 2) as it came,
its base offset set to the offset of its first record
(:mod:`minibroker.storage.kafka_batch`): the Kafka front end appends and
fetches those bytes unchanged, and readers of frames get frames made from
it. Its own CRC-32C (over everything but the base offset) covers its records.

A batch of kind 2 holds one ``append`` as a batch of *entries*
(:func:`~minibroker.record_format.encode_entries`: a CRC-32, the first
offset, the timestamp, then the records as one msgpack array, as the client
sent them). Since issue 19 every append is stored so: framing each record
(a msgpack pack, a CRC and a concatenation per record) was most of the
broker's work per appended record, and Kafka's own broker never touches the
records of a batch either. Readers of frames get the frames
:func:`~minibroker.record_format.encode_batch` would have written, made on
the way (:func:`frames_of`); clients that announce ``read.batches`` get the
batch as stored (:func:`stored_of`) and decode it with one unpack. Its CRC
covers the body, so recovery checks it with one pass and no unpacking.
Segments of kind-0 batches (written before) are read as they always were.

Why: a write can be cut short. A process killed by SIGKILL in the middle of
a large ``pwrite`` leaves the pages already copied in the file (Linux stops a
write at a page boundary when a fatal signal is pending), and a power cut
leaves whatever pages reached the disk. Without a header, recovery saw a
prefix of valid records and kept it: half a batch, which nobody was told was
stored and which the docs promise cannot happen. With the header, recovery
knows how many records and bytes the batch must have and keeps it only when
all of them are there and valid, so after any crash a batch is there whole
or not at all. This is Kafka's record batch, cut down to what is needed here.

Why the CRC covers only the header: every frame inside a kind-0 batch carries its own
CRC (:mod:`minibroker.record_format`), which recovery checks, so a torn,
zero-filled or bit-flipped batch is caught by the record CRCs and the
header's count and length. A second CRC over the records (Kafka has one
because its records have none) would be a second pass over every byte
appended, about 5 % of the cost of an append, for no new protection.

The magic byte can never start a record frame: a frame's length is at most
:data:`~minibroker.record_format.MAX_FRAME_SIZE` (2**28), so a frame's first
byte is at most 0x10. That is what lets a reader stepping over frames by
their length fields recognise a header and skip it, and lets a segment's
first byte tell its format: a segment written before batches existed
(format 1: bare frames) starts with a frame. Format-1 segments are still
read; new batches are only ever appended to format-2 segments (see
:class:`~minibroker.storage.segment.FileSegment`).

Headers of frames never leave the storage: reads strip them, so the bytes a
client gets are the record frames alone, exactly as before. The header of a
batch of entries goes to a client that asked for batches (``read.batches``)
with its body: the data of such a read is the file's bytes, frames and
whole batches of entries, and the client tells one from the other by
the first byte.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Final

from minibroker.log_store import StoredBatch
from minibroker.record_format import (
    BATCH_MAGIC,
    BATCH_VERSION,
    FRAME_HEADER_SIZE,
    KIND_ENTRIES,
    FrameScan,
    entries_facts,
    entries_to_frames,
    scan_frames,
)
from minibroker.storage.kafka_batch import stored_facts, to_frames
from minibroker.value_class import Value, field

__all__ = ["BATCH_MAGIC", "KIND_ENTRIES"]

BATCH_FORMAT_VERSION: Final = BATCH_VERSION
#: The batch holds record frames.
KIND_FRAMES: Final = 0
#: The batch holds one Kafka record batch (see the module docstring).
KIND_KAFKA: Final = 1
#: The kinds of batches stored and read whole (a "unit"), not frame by frame.
_UNIT_KINDS: Final = (KIND_KAFKA, KIND_ENTRIES)
#: magic, version, kind, count, length; then the CRC of those 12 bytes.
_HEADER_FIELDS: Final = struct.Struct(">BBHII")
_CRC: Final = struct.Struct(">I")
BATCH_HEADER_SIZE: Final = _HEADER_FIELDS.size + _CRC.size
_LENGTH: Final = struct.Struct(">I")


def encode_batch_header(count: int, length: int, kind: int = KIND_FRAMES) -> bytes:
    """The header of a batch of ``count`` records taking ``length`` bytes."""
    fields = _HEADER_FIELDS.pack(BATCH_MAGIC, BATCH_FORMAT_VERSION, kind, count, length)
    return fields + _CRC.pack(zlib.crc32(fields))


def parse_batch_header(buf: bytes | memoryview, pos: int) -> tuple[int, int, int] | None:
    """``(count, length, kind)`` of the valid batch header at ``pos``, None if there is none."""
    if pos + BATCH_HEADER_SIZE > len(buf):
        return None
    magic, version, kind, count, length = _HEADER_FIELDS.unpack_from(buf, pos)
    (crc,) = _CRC.unpack_from(buf, pos + _HEADER_FIELDS.size)
    if (
        magic != BATCH_MAGIC
        or version != BATCH_FORMAT_VERSION
        or kind not in (KIND_FRAMES, KIND_KAFKA, KIND_ENTRIES)
        or count < 1
        or zlib.crc32(buf[pos : pos + _HEADER_FIELDS.size]) != crc
    ):
        return None
    return count, length, kind


def is_kafka_header(buf: bytes | memoryview, pos: int) -> bool:
    """Whether the bytes at ``pos`` start the header of a Kafka batch (checked cheaply:
    magic and kind; :func:`parse_batch_header` checks the rest)."""
    return (
        pos + 4 <= len(buf)
        and buf[pos] == BATCH_MAGIC
        and (buf[pos + 2] << 8 | buf[pos + 3]) == KIND_KAFKA
    )


def is_unit_header(buf: bytes | memoryview, pos: int) -> bool:
    """Whether the bytes at ``pos`` start the header of a batch that is read whole
    (a Kafka batch or a batch of entries), checked cheaply like :func:`is_kafka_header`."""
    return (
        pos + 4 <= len(buf)
        and buf[pos] == BATCH_MAGIC
        and (buf[pos + 2] << 8 | buf[pos + 3]) in _UNIT_KINDS
    )


def starts_with_batch(buf: bytes | memoryview) -> bool:
    """True when a segment's bytes begin with a batch header byte (format 2)."""
    return len(buf) > 0 and buf[0] == BATCH_MAGIC


class BatchScan(Value):
    """What :func:`scan_batches` found: the facts recovery rebuilds a segment from."""

    valid_bytes: int = 0
    #: ``(position of the first frame, sizes of the frames)`` of each whole batch of frames.
    batches: list[tuple[int, list[int]]] = field(default_factory=list)
    #: ``(position of the batch header, record count)`` of each whole Kafka batch
    #: or batch of entries (the batches that are read whole).
    units: list[tuple[int, int]] = field(default_factory=list)
    first_offset: int | None = None
    first_timestamp_ms: int | None = None
    last_timestamp_ms: int | None = None
    record_count: int = 0

    @property
    def last_offset(self) -> int | None:
        if self.first_offset is None or not self.record_count:
            return None
        return self.first_offset + self.record_count - 1

    @property
    def next_offset(self) -> int | None:
        """The offset the next batch must start at (None before the first)."""
        return None if self.first_offset is None else self.first_offset + self.record_count

    def take_unit(
        self, start: int, length: int, count: int, first_offset: int, timestamp_ms: int
    ) -> None:
        """Add the batch read whole (Kafka, or entries) of ``length`` bytes at ``start``."""
        self.units.append((start - BATCH_HEADER_SIZE, count))
        self.valid_bytes = start + length
        if not self.record_count:
            self.first_offset = first_offset
            self.first_timestamp_ms = timestamp_ms
        self.last_timestamp_ms = timestamp_ms
        self.record_count += count


def scan_batches(
    buf: bytes | memoryview, first_offset: int | None = None, *, leading_frames: bool = False
) -> BatchScan:
    """Find the longest prefix of ``buf`` made of whole, valid batches.

    A batch is valid when its header is, all ``count`` frames it announces
    are there in exactly ``length`` bytes, and every one of them is valid as
    :func:`~minibroker.record_format.scan_frames` defines it (CRC, shape,
    consecutive offsets, timestamps not decreasing, also across batches). A
    Kafka batch is valid when :func:`~minibroker.storage.kafka_batch.stored_facts`
    says so and its base offset and record count continue the offsets; its
    timestamp, for the log, is the largest ``maxTimestamp`` so far. A batch
    of entries is valid when :func:`~minibroker.record_format.entries_facts`
    says so (its CRC), its count is the header's and its first offset and
    timestamp continue the log's. The
    scan stops at the first batch that is not: that batch and everything
    after it are not part of the prefix, however many of its records are
    intact.

    ``leading_frames`` is for checking the tail of a segment from an index
    entry, which points at a record that may be in the middle of a batch:
    the bare frames before the first header are then accepted one by one.
    """
    view = memoryview(buf)
    scan = BatchScan(first_offset=first_offset)
    if leading_frames:
        lead = _frames_before_header(view)
        frames = scan_frames(view[:lead], first_offset)
        if frames.valid_bytes != lead:
            return scan
        _take(scan, 0, frames)
    end = len(view)
    while True:
        header = parse_batch_header(view, scan.valid_bytes)
        if header is None:
            break
        count, length, kind = header
        start = scan.valid_bytes + BATCH_HEADER_SIZE
        if start + length > end:
            break
        if kind == KIND_KAFKA:
            if not _take_kafka(scan, view, start, length, count):
                break
            continue
        if kind == KIND_ENTRIES:
            if not _take_entries(scan, view, start, length, count):
                break
            continue
        frames = scan_frames(
            view[start : start + length],
            scan.next_offset,
            min_timestamp_ms=scan.last_timestamp_ms or 0,
        )
        if frames.valid_bytes != length or len(frames.frame_sizes) != count:
            break
        _take(scan, start, frames)
    return scan


def _take(scan: BatchScan, position: int, frames: FrameScan) -> None:
    """Add the valid frames found at ``position`` to ``scan``."""
    scan.valid_bytes = position + frames.valid_bytes
    if not frames.frame_sizes:
        return
    scan.batches.append((position, frames.frame_sizes))
    if not scan.record_count:
        scan.first_offset = frames.first_offset
        scan.first_timestamp_ms = frames.first_timestamp_ms
    scan.last_timestamp_ms = frames.last_timestamp_ms
    scan.record_count += len(frames.frame_sizes)


def _take_kafka(scan: BatchScan, view: memoryview, start: int, length: int, count: int) -> bool:
    """Add the Kafka batch at ``start`` to ``scan`` if it is whole and continues the log."""
    facts = stored_facts(view, start, length)
    expected = scan.next_offset
    if (
        facts is None
        or facts.record_count != count
        or (expected is not None and facts.base_offset != expected)
        or facts.base_offset < 0
    ):
        return False
    timestamp = max(scan.last_timestamp_ms or 0, facts.max_timestamp_ms)
    scan.take_unit(start, length, count, facts.base_offset, timestamp)
    return True


def _take_entries(scan: BatchScan, view: memoryview, start: int, length: int, count: int) -> bool:
    """Add the batch of entries at ``start`` to ``scan`` if it is whole and continues the log."""
    facts = entries_facts(view, start, length)
    expected = scan.next_offset
    if (
        facts is None
        or facts.records != count
        or (expected is not None and facts.first_offset != expected)
        or facts.timestamp_ms < (scan.last_timestamp_ms or 0)
    ):
        return False
    scan.take_unit(start, length, count, facts.first_offset, facts.timestamp_ms)
    return True


def _frames_before_header(buf: memoryview) -> int:
    """Bytes of the bare frames at the start of ``buf``, stepped by their length fields."""
    pos = 0
    end = len(buf)
    while pos + FRAME_HEADER_SIZE <= end and buf[pos] != BATCH_MAGIC:
        (length,) = _LENGTH.unpack_from(buf, pos)
        pos += 4 + length
    return min(pos, end)


def span_frames(
    buf: bytes | memoryview,
    pos: int,
    max_records: int,
    max_bytes: int,
    at_least_one: bool,
    headers: list[int] | None = None,
    origin: int = 0,
) -> tuple[int, int]:
    """Step over whole frames from ``pos`` by their length fields: ``(end, count)``.

    Stops before ``max_records`` frames, before the span would exceed
    ``max_bytes`` (unless ``at_least_one`` and no frame was taken yet), and
    before a frame that is not entirely inside ``buf``. Payloads are not looked
    at: this is the cheap loop that cuts log reads on record boundaries.

    With a ``headers`` list, batch headers met on the way are stepped over
    too and their positions (plus ``origin``: where ``buf`` starts in the
    file) appended to it, so that the caller can cut them
    out of the answer (they do not count towards ``max_bytes``, which limits
    the answer); a header only partly inside ``buf`` stops the walk, and so
    does the header of a Kafka batch (its records are not frames). Without
    one, a length field too big for a frame stops it.
    """
    unpack_length = _LENGTH.unpack_from
    limit = pos + max_bytes
    buffer_end = len(buf)
    end = pos
    count = 0
    while True:
        while count < max_records and end + 4 <= buffer_end:
            (length,) = unpack_length(buf, end)
            next_end = end + 4 + length
            if next_end > buffer_end or (next_end > limit and (count or not at_least_one)):
                break  # a limit, the end of buf, or a batch header (its "length" is huge)
            end = next_end
            count += 1
        # Telling a header from a frame here, not per frame, keeps the loop above
        # exactly as cheap as for bare frames.
        if (
            headers is None
            or count >= max_records
            or end + BATCH_HEADER_SIZE > buffer_end
            or buf[end] != BATCH_MAGIC
            or buf[end + 2]
            or buf[end + 3]  # a Kafka batch: not stepped over here
        ):
            return end, count
        headers.append(origin + end)
        end += BATCH_HEADER_SIZE
        limit += BATCH_HEADER_SIZE


def strip_batch_headers(
    data: bytes, header_positions: list[int], origin: int, start: int, end: int
) -> bytes:
    """File bytes ``[start, end)`` without the headers at ``header_positions``.

    ``data`` holds the file's bytes from ``origin`` and covers the range. The
    pieces are views, so the frames are copied once, by the join.
    """
    if not header_positions:
        if start == origin and end == origin + len(data):
            return data
        return data[start - origin : end - origin]
    with memoryview(data) as view:
        pieces = []
        previous = start - origin
        for position in header_positions:
            cut = position - origin
            if cut > previous:
                pieces.append(view[previous:cut])
            previous = cut + BATCH_HEADER_SIZE
        if end - origin > previous:
            pieces.append(view[previous : end - origin])
        joined = b"".join(pieces)
        for piece in pieces:
            piece.release()
    return joined


#: What :func:`frames_through` reads of stored units at a time: at least this many
#: bytes (when ``max_bytes`` allows), and this many per record still wanted.
UNITS_MIN_BYTES = 64 * 1024
UNITS_BYTES_PER_RECORD = 1024


def units_budget(records: int, max_bytes: int) -> int:
    """The bytes of stored units to read for ``records`` more records within ``max_bytes``.

    A read of one record used to fetch ``max_bytes`` (often 1 MiB) of units
    to frame one of them: ten 1000-record batches copied per call. Reading
    for what is wanted (the loop in :func:`frames_through` reads more when
    the frames leave room) keeps a small read small; the floor keeps runs of
    small batches to one fetch.
    """
    return min(max_bytes, max(UNITS_MIN_BYTES, records * UNITS_BYTES_PER_RECORD))


def frames_through(
    read_units: Callable[[int, int, bool], list[StoredBatch]],
    offset: int,
    end_offset: int,
    max_records: int,
    max_bytes: int,
    at_least_one: bool,
) -> tuple[bytes, int]:
    """A read of frames where batches read whole lie: :func:`frames_of` over the units
    ``read_units(offset, max_bytes, True)`` gives, until a limit or ``end_offset``.

    The units are fetched by their stored size, which is not the size of
    their frames (a batch of entries is smaller than its frames, but for a
    few tiny records larger): when the frames made of them leave room,
    more are read, so the answer holds exactly the frames a log of frames
    would give within ``max_records`` and ``max_bytes``.
    """
    parts: list[bytes] = []
    count = 0
    size = 0
    while count < max_records and offset + count < end_offset:
        if count and size >= max_bytes:
            break
        first = at_least_one and not count
        # At least one unit, whatever its stored size: its frames may still fit.
        budget = units_budget(max_records - count, max_bytes - size)
        units = read_units(offset + count, budget, True)
        if not units:
            break
        data, taken = frames_of(units, offset + count, max_records - count, max_bytes - size, first)
        if not taken:
            break
        parts.append(data)
        count += taken
        size += len(data)
        if offset + count < units[-1].first_offset + units[-1].records:
            break  # a limit stopped frames_of inside what was read
    return (parts[0] if len(parts) == 1 else b"".join(parts)), count


def frames_of(
    units: list[StoredBatch], offset: int, max_records: int, max_bytes: int, at_least_one: bool
) -> tuple[bytes, int]:
    """The record frames of ``units`` (a read's stored units) from ``offset``: ``(data, count)``.

    This is how a reader of frames reads through Kafka batches and batches
    of entries: their records are framed on the way
    (:func:`~minibroker.storage.kafka_batch.to_frames`,
    :func:`~minibroker.record_format.entries_to_frames`), within
    ``max_records`` and ``max_bytes`` like any read, at least one record when
    ``at_least_one``.
    """
    parts: list[bytes] = []
    count = 0
    size = 0
    for unit in units:
        if count >= max_records:
            break
        first = at_least_one and not count
        if unit.kind:
            convert = entries_to_frames if unit.kind == KIND_ENTRIES else to_frames
            position = offset + count
            frames = convert(unit.data, position, max_records - count, max_bytes - size, first)
            data, taken = frames.data, len(frames.frame_sizes)
            available = unit.first_offset + unit.records - offset - count
        else:
            available = unit.records
            end, taken = span_frames(unit.data, 0, max_records - count, max_bytes - size, first)
            data = unit.data if end == len(unit.data) else unit.data[:end]
        if not taken:
            break
        parts.append(data)
        count += taken
        size += len(data)
        if taken < available:
            break
    return (parts[0] if len(parts) == 1 else b"".join(parts)), count


def stored_of(
    units: list[StoredBatch],
    offset: int,
    max_records: int,
    max_bytes: int,
    at_least_one: bool,
    first_batch_bytes: int = 0,
) -> tuple[bytes, int]:
    """The data of a read for a client that takes batches of entries (``read.batches``).

    Like :func:`frames_of`, but a batch of entries that starts at ``offset``
    (or where the answer has got to), holds no more records than are still
    wanted and fits what is left of ``max_bytes`` is sent as stored: its
    header (made again: 16 bytes) and its body, no record looked at. One that
    does not is cut into frames when it starts the answer or reaches past
    ``max_records`` (the records wanted, framed, as a read of frames gives
    them); a later one over the byte budget ends the answer instead (the next
    read starts with it, whole). At least one record
    when ``at_least_one``. A batch that starts the answer may take up to
    ``first_batch_bytes`` (a tail's own ``max_bytes``, when the budget of the
    moment is smaller: the room left below the connection's high-water
    mark), so that a tail short of room sends the next batch whole rather
    than frame a part of it.
    """
    parts: list[bytes] = []
    count = 0
    size = 0
    for unit in units:
        if count >= max_records:
            break
        position = offset + count
        if unit.kind == KIND_ENTRIES:
            stored = BATCH_HEADER_SIZE + len(unit.data)
            room = max(max_bytes, first_batch_bytes) if at_least_one and not count else max_bytes
            if (
                unit.first_offset == position
                and unit.records <= max_records - count
                and size + stored <= room
            ):
                header = encode_batch_header(unit.records, len(unit.data), KIND_ENTRIES)
                parts += (header, unit.data)
                count += unit.records
                size += stored
                continue
            if count and size + stored > room:
                break  # over the byte budget: the next read takes it whole
            # (Past max_records: its first records, framed, as a read of frames gives.)
        first = at_least_one and not count
        data, taken = frames_of([unit], position, max_records - count, max_bytes - size, first)
        if not taken:
            break
        parts.append(data)
        count += taken
        size += len(data)
        if position + taken < unit.first_offset + unit.records:
            break
    return (parts[0] if len(parts) == 1 else b"".join(parts)), count

