"""Native reads of Kafka batches build what the read takes, not the whole batch.

A Kafka producer may append one batch of very many tiny records (a 1 MiB
batch holds 150,000 empty ones). A native reader of the partition gets
record frames made from the stored batch (minibroker/storage/kafka_batch.py
``to_frames``); that used to decode every record of the batch into Python
objects and frame them all, then cut the answer: tens of MiB for a read of
one record. These tests bound the memory a read allocates (tracemalloc), and
check the bounded conversion against the plain definition (decode all, keep
the records from the offset, frame, cut) on arbitrary batches and limits.
"""

from __future__ import annotations

import gzip
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from crc32c import crc32c
from hypothesis import given, settings
from hypothesis import strategies as st

from minibroker.kafka.records import _zigzag
from minibroker.log_store import LogStore
from minibroker.record_format import EncodedBatch, cut_frames, decode_records, encode_fields
from minibroker.storage import MemoryLog, SegmentedLog
from minibroker.storage.kafka_batch import (
    FRAME_RUN,
    decode,
    first_at_or_after,
    to_frames,
    with_base_offset,
)

EPOCH_MS = 1_767_225_600_000
MiB = 1 << 20




def raw_batch(
    records: list[tuple[int, bytes | None, bytes, dict[str, bytes]]],
    *,
    gzipped: bool = False,
) -> bytes:
    """A magic-2 batch of ``(timestamp delta, key, value, headers)`` records, base offset 0.

    Written here byte by byte (kio's writer takes seconds for 150,000 records).
    """
    parts = []
    for index, (delta_ts, key, value, headers) in enumerate(records):
        body = b"\x00" + _zigzag(delta_ts) + _zigzag(index)
        body += _zigzag(-1) if key is None else _zigzag(len(key)) + key
        body += _zigzag(len(value)) + value + _zigzag(len(headers))
        for name, text in headers.items():
            encoded = name.encode()
            body += _zigzag(len(encoded)) + encoded + _zigzag(len(text)) + text
        parts.append(_zigzag(len(body)) + body)
    payload = b"".join(parts)
    if gzipped:
        payload = gzip.compress(payload)
    max_delta = max(delta for delta, _, _, _ in records)
    after_crc = (
        struct.pack(
            ">hiqqqhii",
            1 if gzipped else 0,
            len(records) - 1,
            EPOCH_MS,
            EPOCH_MS + max_delta,
            -1,
            -1,
            -1,
            len(records),
        )
        + payload
    )
    return struct.pack(">qiibI", 0, 9 + len(after_crc), 0, 2, crc32c(after_crc)) + after_crc


#: 150,000 empty records: a 1 MiB batch (one a Kafka producer may send).
TINY = 150_000


@pytest.fixture(scope="module")
def tiny_batch() -> bytes:
    return raw_batch([(0, None, b"", {})] * TINY)


@pytest.fixture(params=["memory", "disk"])
def tiny_log(
    request: pytest.FixtureRequest, tmp_path: Path, tiny_batch: bytes
) -> Iterator[LogStore]:
    store: LogStore
    if request.param == "memory":
        store = MemoryLog(segment_bytes=4 * MiB)
    else:
        store = SegmentedLog.open(tmp_path / "log", segment_bytes=4 * MiB)
    store.append_kafka(tiny_batch, TINY, EPOCH_MS)
    yield store
    store.close()


def peak_of(action: Callable[[], object]) -> int:
    """Bytes allocated at the peak of ``action`` over what was held before it."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


def test_a_read_of_a_few_records_from_a_batch_of_many_tiny_ones_allocates_little(
    tiny_log: LogStore,
) -> None:
    # The stored batch is ~1 MiB and a read copies it once; decoding and framing
    # all 150,000 records took ~40 MiB (objects and frames) for this read.
    assert tiny_log.read(0, 1, MiB).count == 1
    assert peak_of(lambda: tiny_log.read(0, 1, MiB)) < 4 * MiB
    assert peak_of(lambda: tiny_log.read(TINY - 10, 100, MiB)) < 4 * MiB
    records = decode_records(tiny_log.read(TINY - 10, 100, MiB).data)
    assert [r.offset for r in records] == list(range(TINY - 10, TINY))


def test_a_read_of_max_bytes_builds_about_that_much(tiny_log: LogStore) -> None:
    """Without a small max_records, max_bytes bounds what is decoded."""
    read = tiny_log.read(1000, TINY, 64 * 1024)
    assert 0 < len(read.data) <= 64 * 1024
    assert decode_records(read.data)[0].offset == 1000
    assert peak_of(lambda: tiny_log.read(1000, TINY, 64 * 1024)) < 4 * MiB


def test_reading_a_whole_tiny_batch_in_steps_gives_every_record(tiny_log: LogStore) -> None:
    offset = 0
    while offset < TINY:
        read = tiny_log.read(offset, TINY, MiB)
        assert decode_records(read.data)[0].offset == offset
        offset = read.next_offset
    assert offset == TINY


def test_a_compressed_batch_is_read_within_the_same_bounds() -> None:
    batch = raw_batch([(0, None, b"", {})] * TINY, gzipped=True)
    assert len(batch) < 300_000  # 1 MiB of records, inflated
    assert peak_of(lambda: to_frames(batch, 5, 1, MiB, True)) < 4 * MiB
    assert [r.offset for r in decode_records(to_frames(batch, 5, 2, MiB, True).data)] == [5, 6]


# ------------------------------------------------- the bounded path equals the plain one


def plain_to_frames(
    batch: bytes, from_offset: int, max_records: int, max_bytes: int, at_least_one: bool
) -> EncodedBatch:
    """The definition: every record decoded, those from ``from_offset`` framed, cut."""
    fields = [record for record in decode(batch) if record[0] >= from_offset][:max_records]
    return cut_frames(encode_fields(fields), max_bytes, at_least_one)


record_strategy = st.tuples(
    st.integers(0, 5000),
    st.none() | st.binary(max_size=40),
    st.binary(max_size=300),
    st.dictionaries(st.text(max_size=5), st.binary(max_size=20), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(record_strategy, min_size=1, max_size=FRAME_RUN + 300),
    base_offset=st.integers(0, 1 << 40),
    skip=st.integers(-3, FRAME_RUN + 310),
    max_records=st.integers(1, FRAME_RUN + 400),
    max_bytes=st.integers(0, 200_000),
    at_least_one=st.booleans(),
    gzipped=st.booleans(),
)
def test_to_frames_equals_the_plain_definition(
    records: list[tuple[int, bytes | None, bytes, dict[str, bytes]]],
    base_offset: int,
    skip: int,
    max_records: int,
    max_bytes: int,
    at_least_one: bool,
    gzipped: bool,
) -> None:
    batch = with_base_offset(raw_batch(records, gzipped=gzipped), base_offset)
    args = (batch, base_offset + skip, max_records, max_bytes, at_least_one)
    assert to_frames(*args) == plain_to_frames(*args)


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(record_strategy, min_size=1, max_size=50),
    target=st.integers(EPOCH_MS - 10, EPOCH_MS + 5010),
)
def test_first_at_or_after_equals_a_search_over_the_decoded_records(
    records: list[tuple[int, bytes | None, bytes, dict[str, bytes]]], target: int
) -> None:
    batch = with_base_offset(raw_batch(records), 7)
    expected = next((r[0] for r in decode(batch) if r[1] >= target), None)
    assert first_at_or_after(batch, target) == expected


@pytest.mark.parametrize(
    ("skip", "max_records", "max_bytes"),
    [
        (0, 5000, 1 << 30),
        (0, 3000, 50_000),
        (10, 2049, 1 << 30),
        (1023, 1025, 200_000),
        (2500, 1, 0),
        (2999, 5000, 1 << 20),
    ],
)
def test_to_frames_over_several_runs_equals_the_plain_definition(
    skip: int, max_records: int, max_bytes: int
) -> None:
    """Reads that take more than one run of :data:`FRAME_RUN` records."""
    records = [(i % 7, b"k" if i % 3 else None, b"v" * (i % 50), {}) for i in range(3000)]
    batch = with_base_offset(raw_batch(records), 100)
    for at_least_one in (False, True):
        args = (batch, 100 + skip, max_records, max_bytes, at_least_one)
        assert to_frames(*args) == plain_to_frames(*args)
