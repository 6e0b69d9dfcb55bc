"""The record format: round trips, the documented bytes, CRC checks, prefix scans."""

from __future__ import annotations

import contextlib
import struct
import zlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minibroker.log_store import Entry, Record
from minibroker.record_format import (
    MAX_FRAME_SIZE,
    CorruptRecord,
    decode_fields,
    decode_records,
    encode_batch,
    encode_records,
    peek_offset,
    scan_valid_prefix,
)
from minibroker.storage.batch import span_frames

keys = st.none() | st.binary(max_size=20)
headers = st.none() | st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)
entries = st.lists(st.tuples(keys, headers, st.binary(max_size=300)), max_size=20)
offsets = st.integers(0, 2**63)
timestamps = st.integers(0, 2**62)


def frame(payload: bytes) -> bytes:
    """A frame around any payload, with a correct CRC."""
    return struct.pack(">II", len(payload) + 4, zlib.crc32(payload)) + payload


@given(offsets, timestamps, entries)
def test_round_trip(first: int, ts: int, batch: list[Entry]) -> None:
    blob = encode_records(first, ts, batch)
    assert decode_records(blob) == [
        Record(first + i, ts, key, hdrs, body) for i, (key, hdrs, body) in enumerate(batch)
    ]


@given(offsets, timestamps, entries)
def test_fields_match_records(first: int, ts: int, batch: list[Entry]) -> None:
    blob = encode_records(first, ts, batch)
    fields = decode_fields(blob)
    assert fields == [tuple(vars_of(r)) for r in decode_records(blob)]


def vars_of(record: Record) -> list[object]:
    return [record.offset, record.timestamp_ms, record.key, record.headers, record.body]


@given(offsets, timestamps, entries)
def test_frame_sizes_add_up(first: int, ts: int, batch: list[Entry]) -> None:
    data, sizes = encode_batch(first, ts, batch)
    assert sum(sizes) == len(data)
    position = 0
    for i, size in enumerate(sizes):
        assert peek_offset(data, position) == first + i
        position += size


def test_documented_example_bytes() -> None:
    """The first frame of the example in docs/storage.md."""
    blob = encode_records(0, 1_700_000_000_000, [(b"k1", {"h": "v"}, b"hello")])
    assert blob.hex(" ") == (
        "00 00 00 1f 58 17 46 46 "  # length 31, crc32
        "95 00 cf 00 00 01 8b cf e5 68 00 "  # array(5), offset 0, timestamp (uint 64)
        "c4 02 6b 31 81 a1 68 a1 76 c4 05 68 65 6c 6c 6f"  # key, headers, body
    )
    assert blob[8:] == msgpack.packb([0, 1_700_000_000_000, b"k1", {"h": "v"}, b"hello"])
    assert int.from_bytes(blob[4:8], "big") == zlib.crc32(blob[8:])


def test_crc_mismatch_is_detected() -> None:
    blob = bytearray(encode_records(0, 1, [(None, None, b"body")]))
    blob[-1] ^= 0x01
    with pytest.raises(CorruptRecord):
        decode_records(bytes(blob))


def test_truncated_frame_is_detected() -> None:
    blob = encode_records(0, 1, [(None, None, b"body")])
    with pytest.raises(CorruptRecord):
        decode_records(blob[:-1])


@pytest.mark.parametrize(
    "payload",
    [
        msgpack.packb([1, 2]),  # too short
        msgpack.packb([-1, 0, None, None, b""]),  # negative offset
        msgpack.packb([0, 0, "text key", None, b""]),  # key must be bin
        msgpack.packb([0, 0, None, {"a": 1}, b""]),  # header values must be str
        msgpack.packb([0, 0, None, None, "body"]),  # body must be bin
        msgpack.packb(b"\x01\x02\x03\x04\x05"),  # five of something, but not an array
        msgpack.packb([0, 0, None, None, b"", b"extra"]),  # six fields
        b"\xc1\xc1\xc1\xc1\xc1\xc1\xc1",  # not msgpack at all
    ],
)
def test_wrong_payload_shape_is_corrupt(payload: bytes) -> None:
    with pytest.raises(CorruptRecord):
        decode_records(frame(payload))


@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_else(garbage: bytes) -> None:
    with contextlib.suppress(CorruptRecord):
        decode_records(garbage)
    scan = scan_valid_prefix(garbage)
    assert 0 <= scan.valid_bytes <= len(garbage)


@given(entries, st.binary(max_size=50))
def test_scan_stops_at_garbage(batch: list[Entry], garbage: bytes) -> None:
    good = encode_records(10, 5, batch)
    valid_bytes, count, last = scan_valid_prefix(good + garbage, first_offset=10)
    # Garbage might by chance continue the log validly, but never shortens it.
    assert valid_bytes >= len(good)
    assert count >= len(batch)
    if garbage == b"" or valid_bytes == len(good):
        assert (valid_bytes, count) == (len(good), len(batch))
        assert last == (10 + len(batch) - 1 if batch else None)


def test_scan_checks_offsets_and_timestamps() -> None:
    a = encode_records(0, 100, [(None, None, b"a")] * 2)
    gap = encode_records(3, 100, [(None, None, b"b")])  # offset 2 is missing
    assert scan_valid_prefix(a + gap).record_count == 2
    assert scan_valid_prefix(a, first_offset=1).record_count == 0
    older = encode_records(2, 99, [(None, None, b"c")])  # time goes backwards
    assert scan_valid_prefix(a + older).record_count == 2
    assert scan_valid_prefix(a + encode_records(2, 100, [(None, None, b"c")])).record_count == 3


def test_scan_refuses_oversized_lengths() -> None:
    # A damaged length claiming more than the limit is corruption, not a short read.
    huge = struct.pack(">II", MAX_FRAME_SIZE, 0)
    assert scan_valid_prefix(huge + bytes(64)).valid_bytes == 0


def test_span_frames_limits() -> None:
    data, sizes = encode_batch(0, 1, [(None, None, b"x" * n) for n in (10, 20, 30)])
    assert span_frames(data, 0, 10, 10**6, False) == (len(data), 3)
    assert span_frames(data, 0, 2, 10**6, False) == (sizes[0] + sizes[1], 2)
    assert span_frames(data, 0, 10, sizes[0] + sizes[1] - 1, False) == (sizes[0], 1)
    assert span_frames(data, 0, 10, 0, False) == (0, 0)
    assert span_frames(data, 0, 10, 0, True) == (sizes[0], 1)  # at least one
    assert span_frames(data[:-1], 0, 10, 10**6, False) == (sizes[0] + sizes[1], 2)
    assert span_frames(data, sizes[0], 10, 10**6, False) == (len(data), 2)


@given(offsets)
def test_peek_offset_reads_every_integer_width(offset: int) -> None:
    assert peek_offset(encode_records(offset, 0, [(None, None, b"")]), 0) == offset


def test_negative_values_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_records(-1, 0, [])
    with pytest.raises(ValueError):
        encode_records(0, -1, [])
