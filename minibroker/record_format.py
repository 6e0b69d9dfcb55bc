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
import threading
import zlib
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import accumulate, repeat
from operator import itemgetter
from sys import getsizeof
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


# ---------------------------------------------------------------- batches of entries
#
# A batch of *entries* is how an ``append`` is stored since issue 19 (kind 2
# of the batch format, minibroker/storage/batch.py): not one frame per
# record, but the records as the client sent them, one msgpack array packed
# in one C call, behind one CRC. Offsets and the timestamp are the batch's:
# record ``i`` has offset ``first_offset + i`` and the batch's timestamp. The
# body, after the 16-byte batch header::
#
#     u32 crc32          zlib.crc32 of every byte after this field
#     u64 first_offset   big-endian
#     u64 timestamp_ms   big-endian
#     entries            msgpack array of ``count`` items: bin (a bare body)
#                        or [key (bin | nil), headers (map str -> str | nil), body (bin)]
#
# It lives here, beside frames, because clients that announce the
# ``read.batches`` extension (docs/protocol.md) get these bytes as stored
# and decode them themselves (:func:`decode_stored`), and frame readers get
# the very frames :func:`encode_batch` would have written
# (:func:`entries_to_frames`).

#: First byte of a batch header (see minibroker/storage/batch.py). A frame never
#: starts with it: a frame's length is below 2**28, so its first byte is at most 0x10.
BATCH_MAGIC: Final = 0xB7
BATCH_VERSION: Final = 2
#: The batch kind of a batch of entries.
KIND_ENTRIES: Final = 2
#: magic, version, kind, count, length, crc32 of the 12 bytes before it.
BATCH_HEADER: Final = struct.Struct(">BBHIII")
BATCH_HEADER_SIZE: Final = BATCH_HEADER.size
#: ``crc32``, ``first_offset``, ``timestamp_ms`` at the start of a batch of entries.
ENTRIES_HEAD: Final = struct.Struct(">IQQ")
ENTRIES_HEAD_SIZE: Final = ENTRIES_HEAD.size
_OFFSET_AND_TIME: Final = struct.Struct(">QQ")
_CRC32: Final = struct.Struct(">I")
_new_tuple = tuple.__new__


class EncodedEntries(NamedTuple):
    """A batch of entries as two buffers (``head`` + ``entries`` is the body), so
    that a store puts its own header in front with one copy of the entries."""

    head: bytes
    entries: bytes

    @property
    def size(self) -> int:
        return len(self.head) + len(self.entries)


def encode_entries(
    first_offset: int, timestamp_ms: int, entries: Sequence[Entry]
) -> EncodedEntries:
    """The body of a batch of ``entries`` from ``first_offset``, stamped ``timestamp_ms``.

    The append hot path: one ``packb`` of the list as it is (bare bodies and
    ``(key, headers, body)`` tuples, which msgpack writes as arrays) and one
    CRC, whatever the number of records. The caller has checked the entries'
    types (the protocol's append decoder does).
    """
    if first_offset < 0 or timestamp_ms < 0:
        raise ValueError("offsets and timestamps must not be negative")
    packed = msgpack.packb(entries)
    if len(packed) > MAX_FRAME_SIZE:  # rare: only then look for a record over the limit
        encode_batch(first_offset, timestamp_ms, entries)  # raises ValueError if there is one
    tail = _OFFSET_AND_TIME.pack(first_offset, timestamp_ms)
    crc = zlib.crc32(packed, zlib.crc32(tail))
    return EncodedEntries(_CRC32.pack(crc) + tail, packed)


class EntriesFacts(NamedTuple):
    """What a valid batch of entries says about itself."""

    first_offset: int
    timestamp_ms: int
    records: int


def entries_facts(buf: bytes | memoryview, pos: int, length: int) -> EntriesFacts | None:
    """The facts of the valid body of ``length`` bytes at ``pos``, None if it is not one.

    Valid: whole, CRC matching, and a msgpack array header (of at least
    one item) right after the head. Recovery relies on this: one CRC pass
    over the batch and no unpacking; the item count is read from the array header.
    """
    end = pos + length
    if length < ENTRIES_HEAD_SIZE + 2 or end > len(buf):
        return None
    crc, first_offset, timestamp_ms = ENTRIES_HEAD.unpack_from(buf, pos)
    with memoryview(buf) as view:
        if zlib.crc32(view[pos + 4 : end]) != crc:
            return None
    count = _array_length(buf, pos + ENTRIES_HEAD_SIZE)
    if not count:
        return None
    return EntriesFacts(first_offset, timestamp_ms, count)


def _array_length(buf: bytes | memoryview, pos: int) -> int | None:
    """The item count of the msgpack array header at ``pos``, None if there is none."""
    tag = buf[pos]
    if 0x90 <= tag <= 0x9F:
        return tag & 0x0F
    width = {0xDC: 2, 0xDD: 4}.get(tag)
    if width is None or pos + 1 + width > len(buf):
        return None
    return int.from_bytes(buf[pos + 1 : pos + 1 + width], "big")


def decode_entries(body: bytes | memoryview) -> tuple[int, int, tuple[Entry, ...]]:
    """``(first_offset, timestamp_ms, entries)`` of a body, its CRC checked.

    The entries are bare bodies (``bytes``) and ``(key, headers, body)``
    tuples, as appended. Raises :class:`CorruptRecord` when the CRC does
    not match or the entries are not an array.
    """
    if len(body) < ENTRIES_HEAD_SIZE + 1:
        raise CorruptRecord("a batch of entries is cut short")
    crc, first_offset, timestamp_ms = ENTRIES_HEAD.unpack_from(body, 0)
    with memoryview(body) as view:
        if zlib.crc32(view[4:]) != crc:
            raise CorruptRecord("CRC mismatch in a batch of entries")
        try:
            entries = msgpack.unpackb(view[ENTRIES_HEAD_SIZE:], use_list=False)
        except Exception as exc:  # msgpack raises several unrelated exception types
            raise CorruptRecord(f"undecodable batch of entries: {exc}") from None
    if type(entries) is not tuple:
        raise CorruptRecord("a batch of entries is not an array")
    return first_offset, timestamp_ms, entries


def entries_records(body: bytes | memoryview) -> list[Record]:
    """The records of a body as :class:`Record` objects (CRC checked).

    For bare bodies, the common case, the records are built in C: ``zip``
    makes each ``(offset, timestamp, None, None, body)`` tuple and
    ``tuple.__new__`` makes it a Record, with no Python code per record.
    """
    first, timestamp, entries = decode_entries(body)
    offsets = range(first, first + len(entries))
    if set(map(type, entries)) == {bytes}:
        fields = zip(offsets, repeat(timestamp), repeat(None), repeat(None), entries)
        return list(map(_new_tuple, repeat(Record), fields))
    records: list[Record] = []
    add = records.append
    for offset, entry in zip(offsets, entries, strict=True):
        if type(entry) is bytes:
            add(_new_tuple(Record, (offset, timestamp, None, None, entry)))
            continue
        if type(entry) is not tuple or len(entry) != 3:
            raise CorruptRecord(f"the entry of offset {offset} is not a body nor a triple")
        key, headers, value = entry
        add(_new_tuple(Record, (offset, timestamp, key, headers, value)))
    return records


class DecodedBatches:
    """The last few batches of entries decoded for readers of frames, by content.

    A read of frames that starts or stops inside a batch of entries pays the
    whole batch (a CRC pass and an unpack of every record, ~300 µs for 1000
    records), so a reader stepping through it by small ``max_records`` paid
    that per step: O(batch size) per record. This keeps the decoded entries
    of the batches such reads touched, so the next read in the same batch
    frames only the records it wants.

    A batch is found by its head (CRC, first offset, timestamp) and length
    and then **compared byte for byte** with the body being read (one
    ``memcmp``; free when the store hands out the same object): a hit is
    only ever the result :func:`decode_entries` would give for these very
    bytes. So nothing has to invalidate it: a log truncated, deleted,
    compacted, recovered or damaged on disk yields other bytes, which miss
    (and are checked as before); byte-identical batches of two logs share
    an entry, correctly.

    Bounded: at most ``max_batches`` batches and ``max_bytes`` of memory
    (the body kept for the comparison and the decoded objects, counted as
    CPython lays them out: :meth:`_cost`); least recently used first out. A batch
    over the byte bound is not kept. Process-wide, shared by every log (a
    cache per log would multiply the bound by the number of logs), and by
    threads (brokers embedded in one process): its bookkeeping is under a
    lock, decoding and the comparison are not.
    """

    def __init__(self, max_batches: int = 8, max_bytes: int = 8 << 20) -> None:
        self.max_batches = max_batches
        self.max_bytes = max_bytes
        self._batches: dict[tuple[bytes, int], tuple[bytes, int, int, tuple[Entry, ...], int]] = {}
        self._bytes = 0
        # Brokers embedded in threads of one process (minibroker.testing) share it.
        self._lock = threading.Lock()

    @property
    def bytes_held(self) -> int:
        """The memory of the batches held as :meth:`_cost` counts it (``max_bytes`` bounds it)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._batches)

    def get(self, body: bytes | memoryview) -> tuple[int, int, tuple[Entry, ...]]:
        """:func:`decode_entries` of ``body``, from the cache when it holds these bytes."""
        key = (bytes(body[:ENTRIES_HEAD_SIZE]), len(body))
        with self._lock:
            held = self._batches.pop(key, None)
            if held is not None:
                self._batches[key] = held  # most recently used: to the end
        if held is not None and (held[0] is body or held[0] == body):
            return held[1], held[2], held[3]
        return decode_entries(body)

    def keep(
        self, body: bytes | memoryview, first: int, timestamp: int, entries: tuple[Entry, ...]
    ) -> None:
        """Hold the decoded ``entries`` of ``body`` (as :func:`decode_entries` gave them).

        Entries :meth:`get` just found here are already held (and moved to
        the most recent end): they are not counted again.
        """
        if not self.max_batches:
            return
        key = (bytes(body[:ENTRIES_HEAD_SIZE]), len(body))
        with self._lock:
            held = self._batches.get(key)
        if held is not None and held[3] is entries:
            return
        cost = self._cost(body, entries)
        if cost > self.max_bytes:
            return
        kept = body if type(body) is bytes else bytes(body)
        with self._lock:
            old = self._batches.pop(key, None)
            if old is not None:
                self._bytes -= old[4]
            self._batches[key] = (kept, first, timestamp, entries, cost)
            self._bytes += cost
            while len(self._batches) > self.max_batches or self._bytes > self.max_bytes:
                oldest = next(iter(self._batches))
                self._bytes -= self._batches.pop(oldest)[4]

    def clear(self) -> None:
        with self._lock:
            self._batches.clear()
            self._bytes = 0

    @staticmethod
    def _cost(body: bytes | memoryview, entries: tuple[Entry, ...]) -> int:
        """The bytes a batch held here takes: the body kept for the comparison,
        and the decoded objects as CPython lays them out (``sys.getsizeof``:
        the tuple, each ``bytes``, and a record's key, header dict and header
        strings). Objects the unpacker shares (``b""``, one-character strings)
        are counted each time: never less than the real memory.

        An estimate of two bytes per body byte and 100 per entry (before)
        was below the real memory for records with headers: 3.6 times below
        for 50 short headers a record, so the 8 MiB bound held ~29 MiB.
        """
        count = len(entries)
        cost = len(body) + _TUPLE_BASE + _SLOT * count
        types = set(map(type, entries))
        if types <= {bytes}:  # bare bodies, the common case: C loops
            return cost + _BYTES_BASE * count + sum(map(len, entries))
        if types == {tuple}:  # every record a triple: C loops but for headers
            cost += (_TRIPLE + _BYTES_BASE) * count + sum(map(len, map(_third, entries)))
            keys = list(filter(None, map(_first, entries)))
            cost += _BYTES_BASE * len(keys) + sum(map(len, keys))
            return cost + sum(map(_headers_size, filter(None, map(_second, entries))))
        for entry in entries:
            if isinstance(entry, bytes):
                cost += _BYTES_BASE + len(entry)
                continue
            key, headers, value = entry
            cost += _TRIPLE + _BYTES_BASE + len(value)
            if key is not None:
                cost += _BYTES_BASE + len(key)
            if headers:
                cost += _headers_size(headers)
        return cost


def _headers_size(headers: dict[str, str]) -> int:
    """What a record's header dict and its strings take (``sys.getsizeof``)."""
    return getsizeof(headers) + sum(
        [getsizeof(name) + getsizeof(text) for name, text in headers.items()]
    )


_first = itemgetter(0)
_second = itemgetter(1)
_third = itemgetter(2)


#: CPython's sizes (``sys.getsizeof``) of an empty tuple, of each slot of one,
#: of an empty ``bytes`` (its contents come on top), and of a 3-tuple.
_TUPLE_BASE: Final = getsizeof(())
_SLOT: Final = getsizeof((None,)) - getsizeof(())
_BYTES_BASE: Final = getsizeof(b"")
_TRIPLE: Final = getsizeof((None, None, None))


#: The process's cache of decoded batches of entries (see :class:`DecodedBatches`).
_DECODED: Final = DecodedBatches()


def entries_to_frames(
    body: bytes | memoryview, from_offset: int, max_records: int, max_bytes: int, at_least_one: bool
) -> EncodedBatch:
    """The records of a body from ``from_offset`` as record frames, for a frame reader.

    Exactly the frames :func:`encode_batch` would have written for them, at
    most ``max_records`` of them and ``max_bytes`` of frames (at least one
    frame when ``at_least_one``), like a log read. A read that starts or
    stops inside the batch leaves its decoded entries in :class:`DecodedBatches`
    for the next one (a reader stepping by small ``max_records``).
    """
    first, timestamp, entries = _DECODED.get(body)
    skip = max(0, from_offset - first)
    wanted = entries[skip : skip + max_records]
    if max_bytes < len(body):
        # Frame no more than can fit: a frame is more than its entry, so
        # ``max_bytes`` of entries bound what fits (plus the one always given).
        sizes = accumulate(len(e if type(e) is bytes else e[2]) for e in wanted)  # type: ignore[arg-type]
        wanted = wanted[: bisect_right(list(sizes), max_bytes) + 1]
    frames = cut_frames(encode_batch(first + skip, timestamp, wanted), max_bytes, at_least_one)
    if skip or skip + len(frames.frame_sizes) < len(entries):
        _DECODED.keep(body, first, timestamp, entries)
    return frames


def cut_frames(frames: EncodedBatch, max_bytes: int, at_least_one: bool) -> EncodedBatch:
    """The leading frames of ``frames`` that fit ``max_bytes`` (one, if ``at_least_one``)."""
    sizes = frames.frame_sizes
    if len(frames.data) <= max_bytes:
        return frames
    ends = list(accumulate(sizes))
    keep = bisect_right(ends, max_bytes)
    if not keep and at_least_one and sizes:
        keep = 1
    return EncodedBatch(frames.data[: ends[keep - 1]] if keep else b"", sizes[:keep])


def decode_stored(
    blob: bytes, decode_frames: Callable[[bytes], list[Record]] = decode_records_fast
) -> list[Record]:
    """Decode a read's or push's data that may hold batches of entries beside frames.

    What a client that asked for them (``read.batches``, docs/protocol.md)
    runs instead of :func:`decode_records_fast`: runs of frames are decoded
    by it, and a batch (its 16-byte header, then the body) by
    :func:`entries_records`: one CRC and one unpack for the whole batch.
    Data that starts with a frame is first tried as frames alone (what an
    older broker sends): one pass, as before the extension. ``decode_frames``
    decodes the runs of frames (the storage's own iteration passes
    :func:`decode_records`, which checks every field).
    """
    if blob and blob[0] != BATCH_MAGIC:
        try:
            return decode_frames(blob)
        except CorruptRecord:
            pass  # a batch further on (or damage, which the walk below reports)
    records: list[Record] = []
    pos = 0
    end = len(blob)
    with memoryview(blob) as view:
        while pos < end:
            if blob[pos] == BATCH_MAGIC:
                if pos + BATCH_HEADER_SIZE > end:
                    raise CorruptRecord(f"a batch header is cut short at byte {pos}")
                _magic, version, kind, count, length, _crc = BATCH_HEADER.unpack_from(blob, pos)
                start = pos + BATCH_HEADER_SIZE
                if version != BATCH_VERSION or kind != KIND_ENTRIES or start + length > end:
                    raise CorruptRecord(f"bad batch header at byte {pos}")
                batch = entries_records(view[start : start + length])
                if len(batch) != count:
                    raise CorruptRecord(f"the batch at byte {pos} does not hold {count} records")
                records += batch
                pos = start + length
                continue
            stop = _frames_end(blob, pos)
            records += decode_frames(blob[pos:stop])
            pos = stop
    return records


def _frames_end(blob: bytes, pos: int) -> int:
    """Where the run of frames at ``pos`` ends: at a batch header or the end of ``blob``
    (always past ``pos``: a cut or damaged frame is left to the frame decoder to report)."""
    end = len(blob)
    unpack_length = _LENGTH.unpack_from
    while blob[pos] != BATCH_MAGIC:
        if pos + 4 > end:
            return end
        (length,) = unpack_length(blob, pos)
        pos += 4 + length
        if pos >= end:
            return end
    return pos
