"""The record format: how one log record is framed, on disk and on the wire.

A record is stored as a *frame*::

    u32 length   big-endian; number of bytes after this field (4 + len(payload))
    u32 crc32    big-endian; zlib.crc32 of the payload bytes
    payload      msgpack array [offset, timestamp_ms, key, headers, body]

The same bytes are written to segment files and shipped to clients by log reads,
so the server never re-encodes a record and a client can verify every CRC
itself. docs/storage.md describes the format byte by byte.

Why each part is there:

- the *length* lets a reader step from record to record without decoding
  payloads (reads cut byte ranges on record boundaries this way);
- the *CRC* lets recovery tell a torn or bit-flipped tail from valid data, and
  lets a client detect corruption anywhere between the disk and itself;
- the *offset inside the payload* makes every record self-describing, so
  recovery can check that offsets are consecutive and a client never has to
  trust a position it was told.

This module is pure: bytes in, values out. It knows nothing about files.
A leaf (the standard library, msgpack and the record types of
:mod:`minibroker.log_store`): storage frames with it, the log handlers cut
reads with it, and the clients decode with it, without loading a store.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Final, NamedTuple

import msgpack

from minibroker.log_store import Entry, Record, RecordFields
from minibroker.value_class import Value

#: ``length`` + ``crc32``, both big-endian u32.
FRAME_HEADER: Final = struct.Struct(">II")
FRAME_HEADER_SIZE: Final = FRAME_HEADER.size
_LENGTH: Final = struct.Struct(">I")

#: Bytes of the smallest possible payload (``95 00 00 c0 c0 c4 00``), plus the CRC.
MIN_FRAME_LENGTH: Final = 4 + 7
#: Upper bound on a whole frame (header included). Encoding refuses bigger
#: records and decoding treats a bigger length as corruption, so a damaged
#: length field can never make a reader allocate gigabytes.
MAX_FRAME_SIZE: Final = 256 * 1024 * 1024


class CorruptRecord(ValueError):
    """Bytes that do not form valid records (bad CRC, bad length, bad payload)."""


class EncodedBatch(NamedTuple):
    """A batch of frames in one buffer, plus the size of each frame.

    The stores need the sizes to know where each record starts (for the sparse
    index and the in-memory position table) without walking the buffer again.
    """

    data: bytes
    frame_sizes: list[int]


class ScanResult(NamedTuple):
    """What :func:`scan_valid_prefix` found."""

    valid_bytes: int
    record_count: int
    last_offset: int | None


class FrameScan(Value, frozen=True):
    """What :func:`scan_frames` found: the facts recovery rebuilds a segment from."""

    valid_bytes: int
    #: Size of each valid frame, in order (for rebuilding the sparse index).
    frame_sizes: list[int]
    first_offset: int | None
    first_timestamp_ms: int | None
    last_timestamp_ms: int | None

    @property
    def record_count(self) -> int:
        return len(self.frame_sizes)

    @property
    def last_offset(self) -> int | None:
        if not self.frame_sizes or self.first_offset is None:
            return None
        return self.first_offset + len(self.frame_sizes) - 1


def encode_batch(first_offset: int, timestamp_ms: int, entries: Sequence[Entry]) -> EncodedBatch:
    """Frame ``entries`` with consecutive offsets from ``first_offset``, all at one timestamp.

    This is the append hot path, so it does the least Python work per record:
    one ``Packer.pack`` call, one CRC, one header pack and one concatenation.
    """
    if first_offset < 0 or timestamp_ms < 0:
        raise ValueError("offsets and timestamps must not be negative")
    pack = msgpack.Packer().pack
    header = FRAME_HEADER.pack
    crc32 = zlib.crc32
    frames: list[bytes] = []
    append = frames.append
    offset = first_offset
    for entry in entries:
        if type(entry) is bytes:
            payload = pack((offset, timestamp_ms, None, None, entry))
        else:
            key, headers, body = entry
            payload = pack((offset, timestamp_ms, key, headers, body))
        append(header(len(payload) + 4, crc32(payload)) + payload)
        offset += 1
    data = b"".join(frames)
    sizes = list(map(len, frames))
    if len(data) > MAX_FRAME_SIZE and max(sizes) > MAX_FRAME_SIZE:
        raise ValueError(f"a record is larger than the {MAX_FRAME_SIZE}-byte limit")
    return EncodedBatch(data, sizes)


def encode_fields(records: Sequence[RecordFields]) -> EncodedBatch:
    """Frame whole records, each with its own offset and timestamp.

    For records that were stored in another form (a Kafka batch, see
    :mod:`minibroker.storage.kafka_batch`) and are read by a client of the
    frame format: the frames are exactly what :func:`encode_batch` would
    have written for them.
    """
    pack = msgpack.Packer().pack
    header = FRAME_HEADER.pack
    crc32 = zlib.crc32
    frames: list[bytes] = []
    append = frames.append
    for record in records:
        payload = pack(record)
        append(header(len(payload) + 4, crc32(payload)) + payload)
    return EncodedBatch(b"".join(frames), list(map(len, frames)))


def encode_records(first_offset: int, timestamp_ms: int, entries: Sequence[Entry]) -> bytes:
    """Frame ``entries`` as one buffer of records (see :func:`encode_batch`)."""
    return encode_batch(first_offset, timestamp_ms, entries).data


def _fields_from_payload(payload: bytes | memoryview) -> RecordFields:
    """Unpack and type-check one payload; anything unexpected is :class:`CorruptRecord`."""
    try:
        fields = msgpack.unpackb(payload, use_list=False)
        offset, timestamp_ms, key, headers, body = fields
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise CorruptRecord(f"undecodable record payload: {exc}") from None
    if (
        type(fields) is not tuple
        or type(offset) is not int
        or type(timestamp_ms) is not int
        or offset < 0
        or timestamp_ms < 0
        or not (key is None or type(key) is bytes)
        or type(body) is not bytes
        or not (headers is None or _is_str_map(headers))
    ):
        raise CorruptRecord("record payload has the wrong shape")
    return fields


def _is_str_map(value: object) -> bool:
    return type(value) is dict and all(type(k) is str and type(v) is str for k, v in value.items())


def _payload_at(buf: bytes | memoryview, pos: int) -> bytes | memoryview | None:
    """The payload of the frame at ``pos`` if it is complete and its CRC matches, else None."""
    end_of_buffer = len(buf)
    if pos + FRAME_HEADER_SIZE > end_of_buffer:
        return None
    length, crc = FRAME_HEADER.unpack_from(buf, pos)
    end = pos + 4 + length
    if length < MIN_FRAME_LENGTH or length + 4 > MAX_FRAME_SIZE or end > end_of_buffer:
        return None
    payload = buf[pos + FRAME_HEADER_SIZE : end]
    if zlib.crc32(payload) != crc:
        return None
    return payload


def decode_fields(blob: bytes | memoryview) -> list[RecordFields]:
    """Decode a buffer of whole frames into plain tuples, verifying every CRC.

    Raises :class:`CorruptRecord` on a CRC mismatch, a truncated frame or a
    malformed payload. This is the fast path for code that builds its own
    objects from the fields (a client's record type): it skips constructing a
    :class:`Record`.
    """
    records: list[RecordFields] = []
    pos = 0
    end = len(blob)
    while pos < end:
        payload = _payload_at(blob, pos)
        if payload is None:
            raise CorruptRecord(f"bad or truncated frame at byte {pos}")
        records.append(_fields_from_payload(payload))
        pos += FRAME_HEADER_SIZE + len(payload)
    return records


def decode_records(blob: bytes | memoryview) -> list[Record]:
    """Decode a buffer of whole frames into :class:`Record` objects, verifying every CRC.

    Raises :class:`CorruptRecord` like :func:`decode_fields`. This is what a
    client runs on the bytes of a log read.
    """
    return list(map(Record._make, decode_fields(blob)))


def decode_records_fast(blob: bytes) -> list[Record]:
    """Decode frames the broker produced, checking lengths and CRCs but not field types.

    This is the replay hot path of the clients, about twice as fast as
    :func:`decode_records`: one loop, one ``unpackb`` per record and the
    tuple turned into a :class:`Record` in place. It still raises
    :class:`CorruptRecord` on a bad length, a CRC mismatch, undecodable
    msgpack or a payload that is not a five-element array. It skips the
    per-field type checks, because a matching CRC proves the bytes are the
    ones the broker stored, and the broker checked their shape when it
    encoded them (or, after a crash, when recovery scanned them).
    """
    records: list[Record] = []
    add = records.append
    unpack_header = FRAME_HEADER.unpack_from
    crc32 = zlib.crc32
    unpackb = msgpack.unpackb
    new_record = tuple.__new__
    pos = 0
    end = len(blob)
    try:
        while pos < end:
            if pos + FRAME_HEADER_SIZE > end:
                raise CorruptRecord(f"truncated frame at byte {pos}")
            length, crc = unpack_header(blob, pos)
            stop = pos + 4 + length
            if length < MIN_FRAME_LENGTH or stop > end:
                raise CorruptRecord(f"bad or truncated frame at byte {pos}")
            payload = blob[pos + FRAME_HEADER_SIZE : stop]
            if crc32(payload) != crc:
                raise CorruptRecord(f"CRC mismatch in the frame at byte {pos}")
            fields = unpackb(payload, use_list=False)
            if type(fields) is not tuple or len(fields) != 5:
                raise CorruptRecord(f"the record at byte {pos} is not a five-field array")
            add(new_record(Record, fields))
            pos = stop
    except CorruptRecord:
        raise
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise CorruptRecord(f"undecodable record payload at byte {pos}: {exc}") from None
    return records


def scan_frames(
    buf: bytes | memoryview, first_offset: int | None = None, *, min_timestamp_ms: int = 0
) -> FrameScan:
    """Find the longest valid prefix of ``buf``, stopping silently at the first bad frame.

    A frame is valid when it is complete, its length is within bounds, its CRC
    matches, its payload has the record shape, its offset is one more than the
    previous one (the first must equal ``first_offset`` when given) and its
    timestamp is not below the previous one (the first not below
    ``min_timestamp_ms``). Recovery builds on this, so it is one plain loop:
    about a microsecond per record.
    """
    unpack_header = FRAME_HEADER.unpack_from
    crc32 = zlib.crc32
    buffer_end = len(buf)
    sizes: list[int] = []
    expected = first_offset
    first_timestamp: int | None = None
    timestamp = min_timestamp_ms
    pos = 0
    while pos + FRAME_HEADER_SIZE <= buffer_end:
        length, crc = unpack_header(buf, pos)
        end = pos + 4 + length
        if length < MIN_FRAME_LENGTH or length + 4 > MAX_FRAME_SIZE or end > buffer_end:
            break
        payload = buf[pos + FRAME_HEADER_SIZE : end]
        if crc32(payload) != crc:
            break
        try:
            offset, next_timestamp, _, _, _ = _fields_from_payload(payload)
        except CorruptRecord:
            break
        if (expected is not None and offset != expected) or next_timestamp < timestamp:
            break
        if first_timestamp is None:
            first_timestamp = next_timestamp
            first_offset = offset
        timestamp = next_timestamp
        expected = offset + 1
        sizes.append(end - pos)
        pos = end
    return FrameScan(
        valid_bytes=pos,
        frame_sizes=sizes,
        first_offset=first_offset,
        first_timestamp_ms=first_timestamp,
        last_timestamp_ms=timestamp if sizes else None,
    )


def scan_valid_prefix(buf: bytes | memoryview, first_offset: int | None = None) -> ScanResult:
    """Measure the longest valid prefix of ``buf`` (see :func:`scan_frames`)."""
    scan = scan_frames(buf, first_offset)
    return ScanResult(scan.valid_bytes, len(scan.frame_sizes), scan.last_offset)


def frame_size_at(buf: bytes | memoryview, pos: int) -> int | None:
    """Total size of the frame starting at ``pos`` per its length field (None if cut off)."""
    if pos + 4 > len(buf):
        return None
    (length,) = _LENGTH.unpack_from(buf, pos)
    return 4 + int(length)


def peek_offset(buf: bytes | memoryview, pos: int) -> int | None:
    """The offset of the frame at ``pos`` read straight from the msgpack bytes, or None.

    The payload starts with ``0x95`` (array of 5) and then the offset as a
    msgpack unsigned integer; reading it by hand costs far less than unpacking
    the record, so reads can afford to check that the index led them to the
    right record.
    """
    start = pos + FRAME_HEADER_SIZE
    if start + 2 > len(buf) or buf[start] != 0x95:
        return None
    tag = buf[start + 1]
    if tag < 0x80:  # positive fixint
        return int(tag)
    width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}.get(tag)
    if width is None or start + 2 + width > len(buf):
        return None
    return int.from_bytes(buf[start + 2 : start + 2 + width], "big")
