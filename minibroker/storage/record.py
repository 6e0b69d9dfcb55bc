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
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

import msgpack

#: One entry handed to ``append``: ``(key, headers, body)``.
Entry = tuple[bytes | None, dict[str, str] | None, bytes]

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


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded log record."""

    offset: int
    timestamp_ms: int
    key: bytes | None
    headers: dict[str, str] | None
    body: bytes


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


class FrameInfo(NamedTuple):
    """Where a valid frame sits in a buffer, and the fields recovery needs."""

    position: int
    size: int
    offset: int
    timestamp_ms: int


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
    for key, headers, body in entries:
        payload = pack((offset, timestamp_ms, key, headers, body))
        append(header(len(payload) + 4, crc32(payload)) + payload)
        offset += 1
    data = b"".join(frames)
    sizes = list(map(len, frames))
    if len(data) > MAX_FRAME_SIZE and max(sizes) > MAX_FRAME_SIZE:
        raise ValueError(f"a record is larger than the {MAX_FRAME_SIZE}-byte limit")
    return EncodedBatch(data, sizes)


def encode_records(first_offset: int, timestamp_ms: int, entries: Sequence[Entry]) -> bytes:
    """Frame ``entries`` as one buffer of records (see :func:`encode_batch`)."""
    return encode_batch(first_offset, timestamp_ms, entries).data


def _record_from_payload(payload: bytes | memoryview) -> Record:
    """Unpack and type-check one payload; anything unexpected is :class:`CorruptRecord`."""
    try:
        offset, timestamp_ms, key, headers, body = msgpack.unpackb(payload)
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise CorruptRecord(f"undecodable record payload: {exc}") from None
    if (
        type(offset) is not int
        or type(timestamp_ms) is not int
        or offset < 0
        or timestamp_ms < 0
        or not (key is None or type(key) is bytes)
        or type(body) is not bytes
        or not (headers is None or _is_str_map(headers))
    ):
        raise CorruptRecord("record payload has the wrong shape")
    return Record(offset, timestamp_ms, key, headers, body)


def _is_str_map(value: object) -> bool:
    return type(value) is dict and all(type(k) is str and type(v) is str for k, v in value.items())


def _payload_at(buf: bytes | memoryview, pos: int) -> memoryview | None:
    """The payload of the frame at ``pos`` if it is complete and its CRC matches, else None."""
    end_of_buffer = len(buf)
    if pos + FRAME_HEADER_SIZE > end_of_buffer:
        return None
    length, crc = FRAME_HEADER.unpack_from(buf, pos)
    end = pos + 4 + length
    if length < MIN_FRAME_LENGTH or length + 4 > MAX_FRAME_SIZE or end > end_of_buffer:
        return None
    payload = memoryview(buf)[pos + FRAME_HEADER_SIZE : end]
    if zlib.crc32(payload) != crc:
        return None
    return payload


def decode_records(blob: bytes | memoryview) -> list[Record]:
    """Decode a buffer of whole frames, verifying every CRC.

    Raises :class:`CorruptRecord` on a CRC mismatch, a truncated frame or a
    malformed payload. This is what a client runs on the bytes of a log read.
    """
    records: list[Record] = []
    pos = 0
    end = len(blob)
    while pos < end:
        payload = _payload_at(blob, pos)
        if payload is None:
            raise CorruptRecord(f"bad or truncated frame at byte {pos}")
        records.append(_record_from_payload(payload))
        pos += FRAME_HEADER_SIZE + len(payload)
    return records


def walk_valid_frames(
    buf: bytes | memoryview,
    first_offset: int | None = None,
    min_timestamp_ms: int = 0,
) -> Iterator[FrameInfo]:
    """Yield the frames of the longest valid prefix of ``buf``; stop silently at the first bad one.

    A frame is valid when it is complete, its length is within bounds, its CRC
    matches, its payload has the record shape, its offset is one more than the
    previous one (the first must equal ``first_offset`` when given) and its
    timestamp is not below the previous one. Recovery builds on this.
    """
    pos = 0
    expected = first_offset
    last_timestamp = min_timestamp_ms
    while True:
        payload = _payload_at(buf, pos)
        if payload is None:
            return
        try:
            record = _record_from_payload(payload)
        except CorruptRecord:
            return
        if expected is not None and record.offset != expected:
            return
        if record.timestamp_ms < last_timestamp:
            return
        size = FRAME_HEADER_SIZE + len(payload)
        yield FrameInfo(pos, size, record.offset, record.timestamp_ms)
        pos += size
        expected = record.offset + 1
        last_timestamp = record.timestamp_ms


def scan_valid_prefix(buf: bytes | memoryview, first_offset: int | None = None) -> ScanResult:
    """Measure the longest valid prefix of ``buf`` (see :func:`walk_valid_frames`)."""
    valid_bytes = 0
    count = 0
    last_offset: int | None = None
    for frame in walk_valid_frames(buf, first_offset):
        valid_bytes = frame.position + frame.size
        count += 1
        last_offset = frame.offset
    return ScanResult(valid_bytes, count, last_offset)


def span_frames(
    buf: bytes | memoryview,
    pos: int,
    max_records: int,
    max_bytes: int,
    at_least_one: bool,
) -> tuple[int, int]:
    """Step over whole frames from ``pos`` by their length fields: ``(end, count)``.

    Stops before ``max_records`` frames, before the span would exceed
    ``max_bytes`` (unless ``at_least_one`` and no frame was taken yet), and
    before a frame that is not entirely inside ``buf``. Payloads are not looked
    at: this is the cheap loop that cuts log reads on record boundaries.
    """
    unpack_length = _LENGTH.unpack_from
    limit = pos + max_bytes
    buffer_end = len(buf)
    end = pos
    count = 0
    while count < max_records and end + 4 <= buffer_end:
        (length,) = unpack_length(buf, end)
        next_end = end + 4 + length
        if next_end > buffer_end or (next_end > limit and (count or not at_least_one)):
            break
        end = next_end
        count += 1
    return end, count


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
