"""Kafka record batches (magic 2): checking what a producer sends, packing what a fetch sends.

A Kafka partition is a minibroker log, record for record: offset *n* in the
topic partition is offset *n* in the log, so lag, retention, ``log stats``
and the other doors (a msgpack ``read`` or ``tail``) see the same records.

Produce stores a producer's batch as it came (Kafka does the same): it is
checked here (:func:`check_produced`: magic, length, CRC-32C, every record's
framing) and appended whole; the storage writes its base offset, which is
outside the CRC (:mod:`minibroker.storage.kafka_batch` has the layout). So
the producer's timestamps, headers and compression are kept, and a Fetch
sends the stored bytes back. Records appended through another door are
stored as record frames; a Fetch packs those into a fresh batch
(:func:`encode_batch`).

This module is pure: bytes in, values out.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from crc32c import crc32c

from minibroker.log_store import Record
from minibroker.record_format import CorruptRecord
from minibroker.storage import kafka_compression as compression
from minibroker.storage.kafka_batch import (
    CODEC_MASK,
    CONTROL,
    CRC_START,
    HEADER,
    HEADER_SIZE,
    LOG_APPEND_TIME,
    LOG_OVERHEAD,
    TRANSACTIONAL,
    read_varint,
)

BATCH_HEADER: Final = HEADER
#: Bytes of a batch header (up to and including ``recordsCount``).
BATCH_HEADER_SIZE: Final = HEADER_SIZE
_COUNT: Final = struct.Struct(">i")
_LOG_OVERHEAD: Final = LOG_OVERHEAD
_CRC_START: Final = CRC_START
_AFTER_CRC: Final = struct.Struct(">hiqqqhii")
_BEFORE_CRC: Final = struct.Struct(">qiibI")


class InvalidBatch(ValueError):
    """The Produce data is not one valid magic-2 batch; ``error`` is Kafka's code."""

    def __init__(self, message: str, error: int) -> None:
        super().__init__(message)
        self.error = error


# Kafka error codes this module reports.
CORRUPT_MESSAGE: Final = 2
UNSUPPORTED_FOR_MESSAGE_FORMAT: Final = 43
UNSUPPORTED_COMPRESSION_TYPE: Final = 76
INVALID_RECORD: Final = 87
MESSAGE_TOO_LARGE: Final = 10

#: Most headers one produced record may carry; a record with more is refused
#: with INVALID_RECORD (Kafka itself has no such bound). Every reader of a
#: stored batch (a native ``read`` or ``tail``, a lookup by time) decodes
#: each header in Python, about a microsecond apiece, and a record cannot be
#: split across reads: one record of 200,000 headers cost 0.2 s of broker
#: CPU to decode per native read (0.4 s with the rest of the read), and
#: stalled every other client meanwhile. Ten thousand is
#: far more than any use of headers needs (tracing, routing, schema ids: a
#: few dozen) and costs a reader under 10 ms.
MAX_RECORD_HEADERS: Final = 10_000

#: Most bytes the records of one compressed batch may inflate to; a batch
#: that inflates to more is refused with MESSAGE_TOO_LARGE (the Java
#: producer then splits the batch and sends the halves again). Kafka has no
#: such bound: its broker and clients inflate a batch as a stream. Here a
#: native reader of the partition (``read``, ``tail``, the HTTP API's log
#: read, a lookup by time) inflates the stored batch whole, so this bounds
#: what one read can allocate, and what the produce check itself inflates: a
#: 1 MiB "zip bomb" that inflated to the 100 MiB request limit cost 100 MiB
#: on produce and on every native read. 16 MiB is far above what producers
#: send (the Java producer's ``batch.size`` is 16 KiB of compressed data,
#: librdkafka's 1 MB before compression), so no real batch meets it.
MAX_INFLATED_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProducedBatch:
    """One producer batch, checked: its bytes and what the broker needs to know of it."""

    data: bytes
    count: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    #: The batch's ``maxTimestamp`` (the producer's clock; -1 when it set none).
    max_timestamp_ms: int
    #: Bytes of the largest record (its length field), for the size limits.
    largest: int
    #: Bytes its records inflated to (0: not compressed).
    inflated: int = 0

    @property
    def last_sequence(self) -> int:
        return self.base_sequence + self.count - 1


def claimed_records(data: bytes | None) -> int:
    """The record count a batch's header claims (0 if it has no header):
    what checking its records would cost, read before paying it."""
    if data is None or len(data) < BATCH_HEADER_SIZE:
        return 0
    count: int = _COUNT.unpack_from(data, BATCH_HEADER_SIZE - _COUNT.size)[0]  # the last field
    return max(count, 0)


def check_produced(
    data: bytes, max_uncompressed: int, max_records: int | None = None
) -> ProducedBatch:
    """Check the single batch of one partition in a Produce request.

    Checks what Kafka's log validator checks before an append: magic 2,
    exactly one batch, its length, the CRC-32C, the record count against
    ``lastOffsetDelta``, and that the records parse, one after the other,
    with offset deltas 0, 1, 2, ... A compressed batch is inflated for that
    (and may not inflate past ``max_uncompressed`` bytes); it is stored
    compressed. ``max_uncompressed`` is capped at :data:`MAX_INFLATED_BYTES`.
    A batch of more than ``max_records`` records (the core's ``max_batch``,
    which would refuse its append) is refused before its records are walked:
    that walk costs about a microsecond a record on the loop every client
    shares. Raises :class:`InvalidBatch` with the Kafka error code to answer.
    """
    max_uncompressed = min(max_uncompressed, MAX_INFLATED_BYTES)
    if len(data) < BATCH_HEADER_SIZE:
        raise InvalidBatch("the record set is shorter than a batch header", CORRUPT_MESSAGE)
    (
        _base_offset,
        batch_length,
        _leader_epoch,
        magic,
        crc,
        attributes,
        last_offset_delta,
        _base_ts,
        max_ts,
        producer_id,
        producer_epoch,
        base_sequence,
        count,
    ) = BATCH_HEADER.unpack_from(data)
    if magic != 2:
        raise InvalidBatch(
            f"record batches of magic {magic} are not supported (only 2)",
            UNSUPPORTED_FOR_MESSAGE_FORMAT,
        )
    if batch_length + _LOG_OVERHEAD != len(data):
        raise InvalidBatch(
            "a produce request must hold exactly one batch per partition (magic 2)"
            if batch_length + _LOG_OVERHEAD < len(data)
            else "the batch is cut short",
            INVALID_RECORD if batch_length + _LOG_OVERHEAD < len(data) else CORRUPT_MESSAGE,
        )
    if crc32c(memoryview(data)[_CRC_START:]) != crc:
        raise InvalidBatch("the batch's CRC-32C does not match its bytes", CORRUPT_MESSAGE)
    if attributes & (TRANSACTIONAL | CONTROL):
        raise InvalidBatch("transactional batches are not supported", INVALID_RECORD)
    if count != last_offset_delta + 1 or count < 1:
        raise InvalidBatch(
            f"the batch says {count} records but lastOffsetDelta {last_offset_delta}",
            INVALID_RECORD,
        )
    if max_records is not None and count > max_records:
        raise InvalidBatch(
            f"a batch holds at most {max_records} records, got {count}", INVALID_RECORD
        )
    codec = attributes & CODEC_MASK
    inflated = 0
    if codec:
        if max_uncompressed <= 0:  # zlib would take a limit of 0 for none at all
            raise InvalidBatch("the request's batches inflate past its limit", MESSAGE_TOO_LARGE)
        try:
            body = compression.inflate(codec, data[BATCH_HEADER_SIZE:], max_uncompressed)
        except compression.Unsupported as exc:
            raise InvalidBatch(str(exc), UNSUPPORTED_COMPRESSION_TYPE) from None
        except compression.Corrupt as exc:
            raise InvalidBatch(str(exc), CORRUPT_MESSAGE) from None
        except compression.TooLarge as exc:
            raise InvalidBatch(str(exc), MESSAGE_TOO_LARGE) from None
        inflated = len(body)
        largest = _check_records(body, 0, count)
    else:
        largest = _check_records(data, BATCH_HEADER_SIZE, count)
    return ProducedBatch(
        data, count, producer_id, producer_epoch, base_sequence, max_ts, largest, inflated
    )


def _offset_deltas(count: int) -> list[bytes]:
    """The encoded offset deltas of a batch of ``count`` records: 0, 1, 2 ... as varints."""
    if count <= VARINT_TABLE_SIZE:
        return _VARINTS[:count]
    return _VARINTS + [_zigzag(i) for i in range(VARINT_TABLE_SIZE, count)]


def _check_records(body: bytes, pos: int, count: int) -> int:
    """Check that ``body[pos:]`` is ``count`` well-framed records; return the largest's length.

    The produce hot path, so nothing is built and each step is as few
    Python operations as it can be: a record's offset delta must be its
    index, so its bytes are compared with that index's encoding (one
    ``startswith``) instead of being decoded; varints of one or two bytes
    (lengths below 8 KiB, small timestamp deltas: nearly all of them) are
    read inline, longer ones by storage's ``read_varint`` (which refuses
    one longer than 10 bytes, as native readers would). A record with more
    than ``MAX_RECORD_HEADERS`` headers is refused. Every field is
    still stepped over, so a record whose fields do not fill exactly its
    length is refused, as Kafka's validator refuses it.
    """
    varint = read_varint
    startswith = body.startswith
    largest = 0
    try:
        for index, delta in enumerate(_offset_deltas(count)):
            # length
            byte = body[pos]
            if byte < 0x80:
                length = (byte >> 1) ^ -(byte & 1)
                pos += 1
            elif body[pos + 1] < 0x80:
                raw = (byte & 0x7F) | (body[pos + 1] << 7)
                length = (raw >> 1) ^ -(raw & 1)
                pos += 2
            else:
                length, pos = varint(body, pos)
            record_end = pos + length
            if length > largest:
                largest = length
            # attributes (unused in magic 2), then the timestamp delta, skipped
            if body[pos + 1] < 0x80:
                pos += 2
            else:
                _timestamp_delta, pos = varint(body, pos + 1)
            # the offset delta: the record's index
            if not startswith(delta, pos):
                found, _ = varint(body, pos)
                raise InvalidBatch(
                    f"record {index} of the batch has offset delta {found}", INVALID_RECORD
                )
            pos += len(delta)
            # the key: length-prefixed (-1 = null, one byte: the common case)
            if body[pos] == 1:
                pos += 1
            else:
                size, pos = varint(body, pos)
                if size > 0:
                    pos += size
            # the value: length-prefixed
            byte = body[pos]
            if byte < 0x80:
                size = (byte >> 1) ^ -(byte & 1)
                pos += 1
            elif body[pos + 1] < 0x80:
                raw = (byte & 0x7F) | (body[pos + 1] << 7)
                size = (raw >> 1) ^ -(raw & 1)
                pos += 2
            else:
                size, pos = varint(body, pos)
            if size > 0:
                pos += size
            # headers
            if body[pos] == 0:
                pos += 1
            else:
                headers, pos = varint(body, pos)
                if headers > MAX_RECORD_HEADERS:
                    raise InvalidBatch(
                        f"record {index} of the batch has {headers} headers; at most "
                        f"{MAX_RECORD_HEADERS} are accepted per record",
                        INVALID_RECORD,
                    )
                for _header in range(headers):
                    size, pos = varint(body, pos)
                    if size < 0:
                        raise InvalidBatch("a header without a name", CORRUPT_MESSAGE)
                    pos += size
                    size, pos = varint(body, pos)
                    if size > 0:
                        pos += size
            if length < 1 or pos != record_end:
                raise InvalidBatch("a record's length does not match its fields", CORRUPT_MESSAGE)
    except IndexError:
        raise InvalidBatch("a record runs past the end of its batch", CORRUPT_MESSAGE) from None
    except CorruptRecord as exc:  # a varint longer than 10 bytes
        raise InvalidBatch(str(exc), CORRUPT_MESSAGE) from None
    if pos != len(body):
        raise InvalidBatch("bytes left over after the batch's last record", CORRUPT_MESSAGE)
    return largest


_MAX_TIMESTAMP: Final = struct.Struct(">q")
_ATTRIBUTES: Final = struct.Struct(">h")
_CRC: Final = struct.Struct(">I")


def with_append_time(data: bytes, now_ms: int) -> bytes:
    """``data`` stamped with the broker's append time, as Kafka stamps batches of a
    LogAppendTime topic: the timestamp-type bit set, ``maxTimestamp`` the append
    time (readers give it to every record), and the CRC computed again."""
    batch = bytearray(data)
    (attributes,) = _ATTRIBUTES.unpack_from(batch, _CRC_START)
    _ATTRIBUTES.pack_into(batch, _CRC_START, attributes | LOG_APPEND_TIME)
    _MAX_TIMESTAMP.pack_into(batch, _CRC_START + 2 + 4 + 8, now_ms)
    _CRC.pack_into(batch, _CRC_START - 4, crc32c(memoryview(batch)[_CRC_START:]))
    return bytes(batch)


# ------------------------------------------------------------------ fetch


def _zigzag(value: int) -> bytes:
    encoded = (value << 1) ^ (value >> 63)
    if encoded < 0x80:
        return bytes((encoded,))
    out = bytearray()
    while encoded >= 0x80:
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7
    out.append(encoded)
    return bytes(out)


#: Zig-zag varints of 0 .. VARINT_TABLE_SIZE-1, ready-made: the fetch hot path
#: looks up record sizes, lengths and deltas instead of encoding them.
VARINT_TABLE_SIZE: Final = 1 << 14
_VARINTS: Final = [_zigzag(value) for value in range(VARINT_TABLE_SIZE)]
_NULL: Final = b"\x01"  # a length of -1


def encode_batch(records: Sequence[Record]) -> bytes:
    """One magic-2 batch holding ``records`` (consecutive offsets, from a log read).

    Each record keeps its own broker timestamp as a delta from the first
    (timestamp type CreateTime, so clients show every record's own time).
    This is the fetch hot path: every varint below 2**13 comes from a table,
    and the batch is joined once.
    """
    first = records[0]
    base_offset = first.offset
    base_ts = first.timestamp_ms
    table = _VARINTS
    limit = VARINT_TABLE_SIZE
    zigzag = _zigzag
    parts: list[bytes] = []
    add = parts.extend
    for offset, timestamp_ms, key, headers, body in records:
        delta_ts = timestamp_ms - base_ts
        delta = offset - base_offset
        head = b"\x00" + (table[delta_ts] if delta_ts < limit else zigzag(delta_ts))
        head += table[delta] if delta < limit else zigzag(delta)
        if key is None:
            head += _NULL
        else:
            head += (table[len(key)] if len(key) < limit else zigzag(len(key))) + key
        size = len(body)
        head += table[size] if size < limit else zigzag(size)
        tail = _encode_headers(headers) if headers else b"\x00"
        size += len(head) + len(tail)
        add((table[size] if size < limit else zigzag(size), head, body, tail))
    last = records[-1]
    after_crc = _AFTER_CRC.pack(
        0,
        last.offset - base_offset,
        base_ts,
        last.timestamp_ms,
        -1,
        -1,
        -1,
        len(records),
    ) + b"".join(parts)
    return _BEFORE_CRC.pack(base_offset, len(after_crc) + 9, 0, 2, crc32c(after_crc)) + after_crc


def _encode_headers(headers: dict[str, str]) -> bytes:
    parts = [_zigzag(len(headers))]
    for name, text in headers.items():
        for encoded in (name.encode(), text.encode()):
            parts.append(_zigzag(len(encoded)))
            parts.append(encoded)
    return b"".join(parts)
