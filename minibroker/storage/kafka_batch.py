"""Kafka record batches (magic 2) as the storage keeps them: the producer's bytes.

A Kafka producer's batch is stored as it came, as one unit of a segment
(:mod:`minibroker.storage.batch`, kind :data:`~minibroker.storage.batch.KIND_KAFKA`),
so a Kafka Fetch sends the stored bytes back without decoding or encoding a
record. Only the ``baseOffset`` and the ``partitionLeaderEpoch`` (always 0
here: one broker, one leader) are written by the broker: they are outside
the batch's CRC, exactly as in Kafka, so assigning them costs twelve bytes
and no checksum. The layout::

    baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
    attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
    producerId i64 | producerEpoch i16 | baseSequence i32 | recordsCount i32 | records

The CRC is CRC-32C over everything from ``attributes`` on. A record inside is
``length varint | attributes i8 | timestampDelta varlong | offsetDelta varint |
key (varint length, -1 = null) | value | header count | headers``, all varints
zig-zag encoded; the records part may be compressed (``attributes & 7``).

Why the storage knows this format at all: a Kafka partition is a minibroker
log, so the other doors (a msgpack ``read`` or ``tail``) read the same
records. They get record frames (:mod:`minibroker.record_format`), which
:func:`to_frames` makes from a stored batch when such a reader reaches it:
the decoding cost moves from every Kafka produce and fetch to the reads
that need it. Recovery checks a stored batch with :func:`stored_facts`
(length, magic, CRC-32C, base offset, record count), as it checks frames.

A leaf of the storage layer: bytes in, values out.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from minibroker.errors import StorageError
from minibroker.log_store import RecordFields
from minibroker.record_format import (
    MAX_FRAME_SIZE,
    CorruptRecord,
    EncodedBatch,
    cut_frames,
    encode_fields,
)
from minibroker.storage import kafka_compression as compression

HEADER: Final = struct.Struct(">qiibIhiqqqhii")
#: Bytes of a batch header (up to and including ``recordsCount``).
HEADER_SIZE: Final = HEADER.size
#: ``baseOffset`` + ``batchLength``: the part outside ``batchLength``'s count.
LOG_OVERHEAD: Final = 12
#: Where ``attributes`` starts, and with it the part the CRC covers.
CRC_START: Final = 21
_BASE_OFFSET: Final = struct.Struct(">q")
#: The partition leader epoch of every stored batch (as in Fetch answers of native records).
LEADER_EPOCH: Final = 0
_LEADER_EPOCH: Final = struct.pack(">i", LEADER_EPOCH)

CODEC_MASK: Final = 0x07
#: Attribute bit: the batch's timestamps are the broker's append time.
LOG_APPEND_TIME: Final = 0x08
TRANSACTIONAL: Final = 0x10
CONTROL: Final = 0x20


class BatchFacts(NamedTuple):
    """What the storage needs from a batch's header."""

    base_offset: int
    record_count: int
    max_timestamp_ms: int


def stored_facts(buf: bytes | memoryview, pos: int, length: int) -> BatchFacts | None:
    """The facts of the valid batch of ``length`` bytes at ``pos``, None if it is not one.

    Valid means what recovery can check without decoding records: the
    length agrees with ``batchLength``, the leader epoch is the broker's
    (0), magic 2, the CRC-32C matches, and ``recordsCount`` is
    ``lastOffsetDelta + 1`` and at least one. (The caller checks the base
    offset, the one other field outside the CRC.)
    """
    if length < HEADER_SIZE or pos + length > len(buf):
        return None
    (
        base_offset,
        batch_length,
        leader_epoch,
        magic,
        crc,
        _attributes,
        last_offset_delta,
        _base_ts,
        max_ts,
        _pid,
        _epoch2,
        _seq,
        count,
    ) = HEADER.unpack_from(buf, pos)
    if (
        magic != 2
        or leader_epoch != LEADER_EPOCH
        or batch_length + LOG_OVERHEAD != length
        or count < 1
        or count != last_offset_delta + 1
        or _crc32c(memoryview(buf)[pos + CRC_START : pos + length]) != crc
    ):
        return None
    return BatchFacts(base_offset, count, max_ts)


def _crc32c(data: memoryview) -> int:
    """CRC-32C of ``data``, the crc32c package imported on first use.

    Importing crc32c looks its own version up among the installed
    distributions (``importlib.metadata``, which loads ``email`` and
    ``zipfile``): about a fifth of what ``minibroker serve`` spends above
    ``import trio`` (issue 19), for a check only recovery of a data
    directory holding Kafka batches makes. It comes with the ``kafka`` extra
    (kio needs it), so a broker installed without that extra serves; one
    that finds Kafka batches written before the extra was removed says so.
    """
    try:
        from crc32c import crc32c
    except ImportError as exc:
        raise StorageError(
            "this data directory holds Kafka record batches, and checking them needs "
            "the crc32c package: pip install 'minibroker[kafka]'"
        ) from exc

    return int(crc32c(data))


def stored_head(batch: bytes, base_offset: int) -> bytes:
    """The first 16 bytes of ``batch`` as stored: ``baseOffset`` set, and the
    leader epoch the broker's; the rest of the batch is stored as it is.

    Both fields are outside the CRC; producers send epoch -1, and Kafka's
    broker writes its own there too.
    """
    return _BASE_OFFSET.pack(base_offset) + batch[8:12] + _LEADER_EPOCH


#: Bytes at the start of a batch that :func:`stored_head` rewrites.
STORED_HEAD_SIZE: Final = 16


def with_base_offset(batch: bytes, base_offset: int) -> bytes:
    """``batch`` as stored at ``base_offset`` (see :func:`stored_head`), as one buffer."""
    return stored_head(batch, base_offset) + batch[STORED_HEAD_SIZE:]


def base_offset_of(batch: bytes | memoryview) -> int:
    (offset,) = _BASE_OFFSET.unpack_from(batch, 0)
    return int(offset)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint at ``pos``: ``(value, next position)``.

    Shared with the produce check (``minibroker/kafka/records.py``), which
    turns :class:`CorruptRecord` into Kafka's CORRUPT_MESSAGE.
    """
    byte = buf[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    result = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise CorruptRecord("a varint is longer than 10 bytes")


def records_part(batch: bytes, max_uncompressed: int = MAX_FRAME_SIZE) -> bytes:
    """The records of ``batch``, inflated when it is compressed.

    Raises the errors of :mod:`~minibroker.storage.kafka_compression`.
    """
    (attributes,) = struct.unpack_from(">h", batch, CRC_START)
    body = batch[HEADER_SIZE:]
    codec = attributes & CODEC_MASK
    if codec:
        body = compression.inflate(codec, body, max_uncompressed)
    return body


class _Opened(NamedTuple):
    """A stored batch's header facts and its records part, inflated."""

    base_offset: int
    base_timestamp_ms: int
    #: ``maxTimestamp`` when the batch is ``LogAppendTime`` (every record's time), else None.
    append_time: int | None
    records: int
    body: bytes


def _open(batch: bytes) -> _Opened:
    """The facts and records part of ``batch``; :class:`CorruptRecord` if it does not inflate."""
    (
        base_offset,
        _length,
        _epoch,
        _magic,
        _crc,
        attributes,
        _delta,
        base_ts,
        max_ts,
        _pid,
        _epoch2,
        _seq,
        count,
    ) = HEADER.unpack_from(batch, 0)
    try:
        body = records_part(batch)
    except (compression.Unsupported, compression.Corrupt, compression.TooLarge) as exc:
        raise CorruptRecord(f"the stored Kafka batch cannot be inflated: {exc}") from None
    append_time = max_ts if attributes & LOG_APPEND_TIME else None
    return _Opened(base_offset, base_ts, append_time, count, body)


def _skip(body: bytes, pos: int, records: int) -> int:
    """The position ``records`` records after ``pos``, stepped by their length fields.

    No field is decoded and nothing is built: a read that starts deep in a
    batch (a reader stepping through it) pays one varint per record skipped,
    not a decoded record (issue: a read of one record used to decode all of
    a batch of 100,000).
    """
    varint = read_varint
    end = len(body)
    try:
        for _ in range(records):
            length, pos = varint(body, pos)
            pos += length
            if length < 1 or pos > end:
                raise CorruptRecord("a record runs past the end of its batch")
    except IndexError:
        raise CorruptRecord("a record runs past the end of its batch") from None
    return pos


#: Added to a record's length in the batch to estimate its frame's size: the
#: frame header (8) and the smallest payload's framing (7). (The deltas and
#: varints of the Kafka record are about the frame's offset, timestamp and
#: msgpack lengths.)
_FRAME_FLOOR: Final = 15


def _decode_run(
    opened: _Opened, pos: int, index: int, max_records: int, max_bytes: int
) -> tuple[list[RecordFields], int]:
    """Records ``index``, ``index + 1``, ... of ``opened`` (the first at ``pos``):
    ``(records, position after the last)``.

    Stops after ``max_records`` records, at the end of the batch, or after
    the record that brings an estimate of their frames' size (each record's
    length plus :data:`_FRAME_FLOOR`) past ``max_bytes``: decoding more would
    mostly build records a read of ``max_bytes`` cannot take. The estimate
    only sizes the run: :func:`to_frames` measures the frames made and asks
    for another run while they leave room. At least one record is decoded.
    """
    body = opened.body
    base_offset = opened.base_offset
    base_ts = opened.base_timestamp_ms
    append_time = opened.append_time
    out: list[RecordFields] = []
    add = out.append
    varint = read_varint
    end = len(body)
    stop = min(opened.records, index + max_records)
    floor = _FRAME_FLOOR
    size = 0
    try:
        while index < stop:
            length, pos = varint(body, pos)
            record_end = pos + length
            if length < 1 or record_end > end:
                raise CorruptRecord("a record runs past the end of its batch")
            pos += 1  # attributes (unused in magic 2)
            delta_ts, pos = varint(body, pos)
            delta, pos = varint(body, pos)
            key_length, pos = varint(body, pos)
            key = None
            if key_length >= 0:
                key = body[pos : pos + key_length]
                pos += key_length
            value_length, pos = varint(body, pos)
            value = b""
            if value_length >= 0:
                value = body[pos : pos + value_length]
                pos += value_length
            headers: dict[str, str] | None = None
            header_count, pos = varint(body, pos)
            for _h in range(header_count):
                if headers is None:
                    headers = {}
                name_length, pos = varint(body, pos)
                name = body[pos : pos + name_length].decode(errors="replace")
                pos += name_length
                text_length, pos = varint(body, pos)
                text = ""
                if text_length >= 0:
                    text = body[pos : pos + text_length].decode(errors="replace")
                    pos += text_length
                headers[name] = text
            if pos != record_end:
                raise CorruptRecord("a record's length does not match its fields")
            timestamp = append_time if append_time is not None else base_ts + delta_ts
            add((base_offset + delta, max(timestamp, 0), key, headers, value))
            index += 1
            size += floor + length
            if size > max_bytes:
                break
    except IndexError:
        raise CorruptRecord("a record runs past the end of its batch") from None
    return out, pos


def decode(batch: bytes) -> list[RecordFields]:
    """Every record of a stored batch as ``(offset, timestamp_ms, key, headers, value)``.

    Offsets and timestamps are the batch's base plus each record's deltas
    (with ``LogAppendTime`` every record has the batch's ``maxTimestamp``,
    as Kafka's clients report it); a negative timestamp (none given) reads
    as 0. Header values are minibroker's ``str``: bytes that are not UTF-8
    are replaced (U+FFFD) and a null value reads as ``""``; Kafka readers
    get the exact bytes. Raises :class:`CorruptRecord` when the records do
    not parse. (Reads use :func:`to_frames`, which decodes only what they take.)
    """
    opened = _open(batch)
    records, _ = _decode_run(opened, 0, 0, opened.records, _UNBOUNDED)
    return records


_UNBOUNDED: Final = 1 << 62
#: Records decoded and framed at a time by :func:`to_frames`: the Python
#: objects a read holds at once, whatever its ``max_records``.
FRAME_RUN: Final = 1024


def to_frames(
    batch: bytes, from_offset: int, max_records: int, max_bytes: int, at_least_one: bool
) -> EncodedBatch:
    """The records of ``batch`` from ``from_offset`` as record frames, for a native reader.

    At most ``max_records`` and ``max_bytes`` of frames (at least one frame
    when ``at_least_one``), like a log read. Only what the read can take is
    decoded: the records before ``from_offset`` are stepped over by their
    lengths (a produced batch's offset deltas are its record indexes:
    ``minibroker/kafka/records.py`` checks it), and the rest are decoded and
    framed :data:`FRAME_RUN` at a time until the frames fill ``max_bytes``
    or ``max_records``. So the memory a read builds is its answer plus one
    run, not every record of the batch as objects and frames (a read of one
    record from a batch of 100,000 empty records, a 700 KiB produce, raised
    the broker's peak RSS by 17 MiB; tests/storage/test_kafka_read_memory.py).
    """
    opened = _open(batch)
    index = min(max(0, from_offset - opened.base_offset), opened.records)
    pos = _skip(opened.body, 0, index)
    parts: list[bytes] = []
    sizes: list[int] = []
    total = 0
    wanted = min(max_records, opened.records - index)
    while len(sizes) < wanted and total < max_bytes:
        run = min(FRAME_RUN, wanted - len(sizes))
        fields, pos = _decode_run(opened, pos, index, run, max_bytes - total)
        index += len(fields)
        frames = encode_fields(fields)
        parts.append(frames.data)
        sizes += frames.frame_sizes
        total += len(frames.data)
    if not sizes and at_least_one and wanted > 0:
        frames = encode_fields(_decode_run(opened, pos, index, 1, 0)[0])
        parts.append(frames.data)
        sizes += frames.frame_sizes
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    return cut_frames(EncodedBatch(data, sizes), max_bytes, at_least_one)


def first_at_or_after(batch: bytes, timestamp_ms: int) -> int | None:
    """Offset of the first record of ``batch`` stamped ``timestamp_ms`` or later, if any.

    Reads each record's length and timestamp delta only (a lookup by time
    builds no record).
    """
    opened = _open(batch)
    if opened.append_time is not None:
        return opened.base_offset if max(opened.append_time, 0) >= timestamp_ms else None
    body = opened.body
    varint = read_varint
    base_ts = opened.base_timestamp_ms
    pos = 0
    end = len(body)
    try:
        for index in range(opened.records):
            length, pos = varint(body, pos)
            record_end = pos + length
            if length < 1 or record_end > end:
                raise CorruptRecord("a record runs past the end of its batch")
            delta_ts, _ = varint(body, pos + 1)
            if max(base_ts + delta_ts, 0) >= timestamp_ms:
                return opened.base_offset + index
            pos = record_end
    except IndexError:
        raise CorruptRecord("a record runs past the end of its batch") from None
    return None
