"""Kafka record batches: what a producer sends is checked and kept; fetches pack native records.

Batches here are built by kio's record writer (an independent implementation
of the format), so the decoder is checked against someone else's encoder, and
the encoder against kio's reader.
"""

from __future__ import annotations

import gzip
import io
import struct
import sys
from datetime import UTC, datetime

import cramjam
import lz4.frame
import pytest
import zstandard
from crc32c import crc32c
from hypothesis import given
from hypothesis import strategies as st
from kio.records.readers import read_batch
from kio.records.schema import NewRecordBatch, Record, RecordHeader
from kio.records.writers import write_new_batch

from minibroker.kafka.records import (
    CORRUPT_MESSAGE,
    INVALID_RECORD,
    MAX_INFLATED_BYTES,
    MAX_RECORD_HEADERS,
    MESSAGE_TOO_LARGE,
    UNSUPPORTED_COMPRESSION_TYPE,
    UNSUPPORTED_FOR_MESSAGE_FORMAT,
    InvalidBatch,
    check_produced,
    encode_batch,
    with_append_time,
)
from minibroker.log_store import Record as LogRecord
from minibroker.storage.kafka_batch import decode, with_base_offset

EPOCH_MS = 1_767_225_600_000


def entries_of(data: bytes) -> list:
    """What a native reader gets from a batch: log entries (bare bodies when they can be)."""
    return [
        body if key is None and headers is None else (key, headers, body)
        for _, _, key, headers, body in decode(data)
    ]


EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def kio_batch(
    records: list[tuple[bytes | None, bytes | None, dict[str, bytes]]],
    *,
    producer_id: int = -1,
    base_sequence: int = -1,
    attributes: int = 0,
) -> bytes:
    buffer = io.BytesIO()
    write_new_batch(
        buffer,
        NewRecordBatch(
            producer_id=producer_id,
            producer_epoch=0 if producer_id >= 0 else -1,
            base_sequence=base_sequence,
            attributes=attributes,
            records=tuple(
                Record(
                    attributes=0,
                    timestamp=EPOCH,
                    offset=index,
                    key=key,
                    value=value,
                    headers=tuple(
                        RecordHeader(key=k.encode(), value=v) for k, v in headers.items()
                    ),
                )
                for index, (key, value, headers) in enumerate(records)
            ),
        ),
    )
    return buffer.getvalue()


def test_a_checked_batch_is_kept_as_sent_and_reads_back_keys_headers_and_all() -> None:
    data = kio_batch(
        [(None, b"a", {}), (b"k", b"b", {"trace": b"t1"})], producer_id=7, base_sequence=3
    )
    batch = check_produced(data, 1 << 20)
    assert batch.data is data
    assert (batch.count, batch.max_timestamp_ms) == (2, EPOCH_MS)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (7, 0, 3)
    assert batch.last_sequence == 4
    assert entries_of(data) == [b"a", (b"k", {"trace": "t1"}, b"b")]
    stored = with_base_offset(data, 40)
    assert [(r[0], r[1]) for r in decode(stored)] == [(40, EPOCH_MS), (41, EPOCH_MS)]


def test_records_whose_offset_deltas_are_not_consecutive_are_an_invalid_record() -> None:
    data = bytearray(kio_batch([(None, b"a", {}), (None, b"b", {})]))
    # The second record: length, attributes, timestamp delta 0, offset delta 1 -> 2.
    second = 61 + 1 + data[61] // 2
    assert data[second + 3] == 2  # zig-zag 1
    data[second + 3] = 4
    struct.pack_into(">I", data, 17, crc32c(bytes(data[21:])))
    with pytest.raises(InvalidBatch) as caught:
        check_produced(bytes(data), 1 << 20)
    assert caught.value.error == INVALID_RECORD


def test_offset_deltas_are_checked_past_the_encoded_table_too() -> None:
    """The check compares each offset delta with its index's encoding, from a
    table of 16,384; a larger batch's later records are checked as well."""
    rows = [LogRecord(i, EPOCH_MS, None, None, b"v") for i in range(20_000)]
    assert check_produced(encode_batch(rows), 1 << 30).count == 20_000
    rows[17_001], rows[17_002] = (
        LogRecord(17_002, EPOCH_MS, None, None, b"v"),
        LogRecord(17_001, EPOCH_MS, None, None, b"v"),
    )
    with pytest.raises(
        InvalidBatch, match="record 17001 of the batch has offset delta 17002"
    ) as caught:
        check_produced(encode_batch(rows), 1 << 30)
    assert caught.value.error == INVALID_RECORD


def test_append_time_stamping_keeps_the_batch_valid_and_times_every_record() -> None:
    data = kio_batch([(None, b"a", {}), (None, b"b", {})])
    stamped = with_append_time(data, 1_800_000_000_000)
    batch = check_produced(stamped, 1 << 20)  # the CRC was computed again
    assert batch.max_timestamp_ms == 1_800_000_000_000
    assert [r[1] for r in decode(stamped)] == [1_800_000_000_000] * 2
    assert stamped[:17] == data[:17] and stamped[61:] == data[61:]


def test_a_record_whose_fields_overrun_its_length_is_corrupt() -> None:
    data = bytearray(kio_batch([(None, b"abc", {})]))
    data[61] -= 2  # the record's length, one byte shorter (zig-zag)
    struct.pack_into(">I", data, 17, crc32c(bytes(data[21:])))
    with pytest.raises(InvalidBatch) as caught:
        check_produced(bytes(data), 1 << 20)
    assert caught.value.error == CORRUPT_MESSAGE


@pytest.mark.parametrize(
    ("position", "short", "long"),
    [
        (63, 0x00, b"\x80" * 10 + b"\x00"),  # the timestamp delta 0, stepped over inline
        (65, 0x01, b"\x81" + b"\x80" * 9 + b"\x00"),  # the null key (-1), read by storage's reader
    ],
)
def test_a_varint_longer_than_ten_bytes_is_corrupt_message(
    position: int, short: int, long: bytes
) -> None:
    """Native readers decode every varint of a stored batch, so one that no
    reader accepts must be refused at produce, as Kafka's CORRUPT_MESSAGE
    (storage's reader raises CorruptRecord; it must not escape the check)."""
    data = bytearray(kio_batch([(None, b"abc", {})]))
    assert data[position] == short
    data[position : position + 1] = long  # the same value in eleven bytes
    data[61] += 20  # the record is ten bytes longer (zig-zag)
    struct.pack_into(">i", data, 8, len(data) - 12)  # and so is the batch
    struct.pack_into(">I", data, 17, crc32c(bytes(data[21:])))
    with pytest.raises(InvalidBatch) as caught:
        check_produced(bytes(data), 1 << 20)
    assert caught.value.error == CORRUPT_MESSAGE
    assert "longer than 10 bytes" in str(caught.value)


def test_a_record_with_more_headers_than_the_bound_is_an_invalid_record() -> None:
    """Each header costs every native reader of the record a Python step, and a
    record cannot be split across reads (docs/kafka.md, "Bad input")."""
    most = {f"h{i}": b"" for i in range(MAX_RECORD_HEADERS)}
    assert check_produced(kio_batch([(None, b"a", most)]), 1 << 24).count == 1
    over = {**most, "one-more": b""}
    data = kio_batch([(None, b"a", {}), (None, b"b", over)])
    with pytest.raises(InvalidBatch) as caught:
        check_produced(data, 1 << 24)
    assert caught.value.error == INVALID_RECORD
    assert f"record 1 of the batch has {MAX_RECORD_HEADERS + 1} headers" in str(caught.value)


def test_a_flipped_bit_inside_the_crc_is_corrupt_message() -> None:
    data = bytearray(kio_batch([(None, b"payload", {})]))
    data[-1] ^= 1
    with pytest.raises(InvalidBatch) as caught:
        check_produced(bytes(data), 1 << 20)
    assert caught.value.error == CORRUPT_MESSAGE


def test_two_batches_for_one_partition_are_refused() -> None:
    one = kio_batch([(None, b"a", {})])
    with pytest.raises(InvalidBatch) as caught:
        check_produced(one + one, 1 << 20)
    assert caught.value.error == INVALID_RECORD


def test_only_magic_2_is_accepted() -> None:
    data = bytearray(kio_batch([(None, b"a", {})]))
    data[16] = 1  # magic
    with pytest.raises(InvalidBatch) as caught:
        check_produced(bytes(data), 1 << 20)
    assert caught.value.error == UNSUPPORTED_FOR_MESSAGE_FORMAT


def _compressed(plain: bytes, codec: int, records: bytes) -> bytes:
    """``plain`` (an uncompressed batch) with its records part replaced and the codec set."""
    after_crc = bytearray(plain[21:61]) + records
    struct.pack_into(">h", after_crc, 0, codec)
    return struct.pack(">qiibI", 0, 9 + len(after_crc), 0, 2, crc32c(after_crc)) + after_crc


def _xerial(raw_blocks: list[bytes]) -> bytes:
    """Snappy in snappy-java's framing, as Kafka's Java client writes it."""
    header = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    return header + b"".join(struct.pack(">i", len(b)) + b for b in raw_blocks)


COMPRESSORS = {
    "gzip": (1, gzip.compress),
    "snappy": (2, lambda data: bytes(cramjam.snappy.compress_raw(data))),
    "snappy-java framing": (
        2,
        lambda data: _xerial(
            [
                bytes(cramjam.snappy.compress_raw(data[:500])),
                bytes(cramjam.snappy.compress_raw(data[500:])),
            ]
        ),
    ),
    "lz4": (3, lz4.frame.compress),
    "zstd": (4, zstandard.ZstdCompressor().compress),
}


@pytest.mark.parametrize("name", COMPRESSORS)
def test_compressed_batches_are_inflated_within_the_limit(name: str) -> None:
    codec, compress = COMPRESSORS[name]
    plain = kio_batch([(None, b"x" * 1000, {}), (None, b"y", {})])
    data = _compressed(plain, codec, compress(plain[61:]))
    assert check_produced(data, 1 << 20).count == 2
    assert entries_of(data) == [b"x" * 1000, b"y"]
    with pytest.raises(InvalidBatch) as caught:
        check_produced(data, 500)  # a small batch that inflates past the limit
    assert caught.value.error == MESSAGE_TOO_LARGE


@pytest.mark.parametrize("name", COMPRESSORS)
def test_a_batch_inflating_past_16_mib_is_refused_whatever_the_request_limit(name: str) -> None:
    """A small batch of zeros that inflates past :data:`MAX_INFLATED_BYTES`
    (a "zip bomb") was accepted up to the 100 MiB request limit, and every
    native read of it inflated it again."""
    codec, compress = COMPRESSORS[name]
    for size, accepted in ((MAX_INFLATED_BYTES - 100, True), (MAX_INFLATED_BYTES, False)):
        plain = kio_batch([(None, bytes(size), {}), (None, b"y", {})])
        assert (len(plain) - 61 <= MAX_INFLATED_BYTES) == accepted  # the records part
        data = _compressed(plain, codec, compress(plain[61:]))
        assert len(data) < 2 << 20
        if accepted:
            assert check_produced(data, 100 << 20).count == 2
            continue
        with pytest.raises(InvalidBatch) as caught:
            check_produced(data, 100 << 20)
        assert caught.value.error == MESSAGE_TOO_LARGE


@pytest.mark.parametrize("name", COMPRESSORS)
def test_corrupt_compressed_data_is_corrupt_message(name: str) -> None:
    codec, _ = COMPRESSORS[name]
    plain = kio_batch([(None, b"x", {})])
    data = _compressed(plain, codec, b"\x82SNAPPY\x00 this is not compressed data")
    with pytest.raises(InvalidBatch) as caught:
        check_produced(data, 1 << 20)
    assert caught.value.error == CORRUPT_MESSAGE


def test_unknown_codecs_and_missing_packages_are_unsupported_compression(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = kio_batch([(None, b"a", {})])
    with pytest.raises(InvalidBatch) as caught:
        check_produced(_compressed(plain, 5, plain[61:]), 1 << 20)
    assert caught.value.error == UNSUPPORTED_COMPRESSION_TYPE
    monkeypatch.setitem(sys.modules, "zstandard", None)  # as if not installed
    data = _compressed(plain, 4, zstandard.ZstdCompressor().compress(plain[61:]))
    with pytest.raises(InvalidBatch) as caught:
        check_produced(data, 1 << 20)
    assert caught.value.error == UNSUPPORTED_COMPRESSION_TYPE
    assert "zstandard" in str(caught.value)


def test_binary_header_values_are_kept_and_replaced_only_for_native_readers() -> None:
    data = kio_batch([(None, b"a", {"bin": b"\xff\xfe", "text": b"ok"})])
    assert check_produced(data, 1 << 20).data == data  # Kafka readers get the bytes
    assert entries_of(data) == [(None, {"bin": "\ufffd\ufffd", "text": "ok"}, b"a")]


records_strategy = st.lists(
    st.tuples(
        st.one_of(st.none(), st.binary(max_size=200)),
        st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
        st.binary(max_size=300),
        st.integers(0, 10_000),
    ),
    min_size=1,
    max_size=30,
)


@given(records_strategy, st.integers(0, 2**40))
def test_fetch_batches_read_back_with_kio(rows: list, first_offset: int) -> None:
    timestamp = 1_700_000_000_000
    log_records = []
    for index, (key, headers, body, step) in enumerate(rows):
        timestamp += step
        log_records.append(LogRecord(first_offset + index, timestamp, key, headers or None, body))
    data = encode_batch(log_records)
    batch, size = read_batch(data, 0)
    assert size == len(data)
    assert batch.base_offset == first_offset
    # kio's reader rounds record timestamps to seconds, so those are
    # checked through the batch header; the rest record by record.
    assert (batch.base_timestamp, batch.max_timestamp) == (
        log_records[0].timestamp_ms,
        log_records[-1].timestamp_ms,
    )
    got = [
        (r.offset, r.key, {h.key.decode(): h.value for h in r.headers}, r.value)
        for r in batch.records
    ]
    assert got == [
        (r.offset, r.key, {k: v.encode() for k, v in (r.headers or {}).items()}, r.body)
        for r in log_records
    ]


@given(records_strategy)
def test_produced_batches_round_trip_into_entries(rows: list) -> None:
    data = kio_batch(
        [(key, body, {k: v.encode() for k, v in headers.items()}) for key, headers, body, _ in rows]
    )
    assert check_produced(data, 1 << 24).count == len(rows)
    entries = entries_of(data)
    expected = [
        body if key is None and not headers else (key, headers or None, body)
        for key, headers, body, _ in rows
    ]
    assert entries == expected


@given(st.binary(max_size=200))
def test_garbage_is_refused_with_a_kafka_error_never_anything_else(data: bytes) -> None:
    try:
        check_produced(data, 1 << 20)
    except InvalidBatch as exc:
        assert exc.error in (
            CORRUPT_MESSAGE,
            INVALID_RECORD,
            UNSUPPORTED_FOR_MESSAGE_FORMAT,
            UNSUPPORTED_COMPRESSION_TYPE,
            10,
        )
