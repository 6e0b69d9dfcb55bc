"""Behaviour both stores share, with hand-picked cases, plus disk-only details."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minibroker.errors import OffsetOutOfRange, StorageError
from minibroker.log_store import LogStore
from minibroker.record_format import decode_records, encode_entries, encode_records
from minibroker.storage import MemoryLog, SegmentedLog
from minibroker.storage.batch import BATCH_HEADER_SIZE

MakeLog = Callable[..., LogStore]


@pytest.fixture(params=["memory", "disk"])
def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLog]:
    made: list[LogStore] = []

    def make(
        segment_bytes: int = 1000, index_interval_bytes: int = 64, start_offset: int = 0
    ) -> LogStore:
        store: LogStore
        if request.param == "memory":
            store = MemoryLog(segment_bytes=segment_bytes, start_offset=start_offset)
        else:
            store = SegmentedLog.open(
                tmp_path / f"log{len(made)}",
                segment_bytes=segment_bytes,
                index_interval_bytes=index_interval_bytes,
                start_offset=start_offset,
            )
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def bodies(
    store: LogStore, offset: int, max_records: int = 1000, max_bytes: int = 10**6
) -> list[bytes]:
    return [r.body for r in decode_records(store.read(offset, max_records, max_bytes).data)]


def frame_size(offset: int, body: bytes, ts: int = 1) -> int:
    return len(encode_records(offset, ts, [(None, None, body)]))


def stored_size(offset: int, body: bytes, ts: int = 1) -> int:
    """What a batch of one record adds to a segment: its batch header and its entries."""
    return BATCH_HEADER_SIZE + encode_entries(offset, ts, [(None, None, body)]).size


def test_empty_log(make_log: MakeLog) -> None:
    log = make_log(start_offset=42)
    assert (log.first_offset, log.next_offset, log.size_bytes, log.segment_count) == (42, 42, 0, 1)
    assert log.read(42, 10, 100).count == 0
    assert log.offset_for_timestamp(0) == 42
    assert log.timestamp_range() is None
    assert list(log.iter_records()) == []
    assert log.append([], 5) == 42


def test_append_returns_first_offsets_and_reads_back(make_log: MakeLog) -> None:
    log = make_log()
    assert log.append([(b"k", {"a": "b"}, b"one"), (None, None, b"two")], 10) == 0
    assert log.append([(None, None, b"three")], 11) == 2
    records = decode_records(log.read(0, 10, 10_000).data)
    assert [(r.offset, r.timestamp_ms, r.key, r.headers, r.body) for r in records] == [
        (0, 10, b"k", {"a": "b"}, b"one"),
        (1, 10, None, None, b"two"),
        (2, 11, None, None, b"three"),
    ]


def test_segments_roll_when_the_next_batch_would_not_fit(make_log: MakeLog) -> None:
    size = stored_size(0, b"x" * 50)
    log = make_log(segment_bytes=3 * size)
    for _ in range(3):
        log.append([(None, None, b"x" * 50)], 1)
    assert (log.segment_count, log.size_bytes) == (1, 3 * size)  # exactly full: no roll yet
    log.append([(None, None, b"x" * 50)], 1)
    assert log.segment_count == 2
    # A batch bigger than a whole segment is never split: it gets a segment of its own.
    log.append([(None, None, b"x" * 50)] * 10, 1)
    assert log.segment_count == 3
    log.append([(None, None, b"x")], 1)
    assert log.segment_count == 4
    assert bodies(log, 0) == [b"x" * 50] * 14 + [b"x"]


def test_reads_span_segments_and_every_offset_is_found(make_log: MakeLog) -> None:
    log = make_log(segment_bytes=400, index_interval_bytes=30)
    expected = []
    for i in range(40):
        batch = [(None, None, b"%d-%d" % (i, j) * (j + 1)) for j in range(i % 4 + 1)]
        log.append(batch, 1_000 + i)
        expected += [body for _, _, body in batch]
    assert log.segment_count > 5
    for offset in range(len(expected)):
        for max_records in (1, 3, 50):
            assert bodies(log, offset, max_records) == expected[offset : offset + max_records]


def test_max_bytes_cuts_on_record_boundaries_but_returns_at_least_one(make_log: MakeLog) -> None:
    log = make_log(segment_bytes=10**6)
    log.append([(None, None, b"a" * 100), (None, None, b"b"), (None, None, b"c")], 1)
    big = frame_size(0, b"a" * 100)
    assert log.read(0, 10, 0).count == 1  # over max_bytes, but one record is always returned
    assert log.read(0, 10, big).count == 1
    assert log.read(0, 10, big + frame_size(1, b"b")).count == 2
    assert log.read(1, 10, 1).count == 1
    batch = log.read(0, 10, 10**6)
    frames = big + frame_size(1, b"b") + frame_size(2, b"c")
    assert (batch.count, batch.next_offset, len(batch.data)) == (3, 3, frames)


def test_out_of_range_reads_carry_the_bounds(make_log: MakeLog) -> None:
    log = make_log(segment_bytes=100)
    for i in range(5):
        log.append([(None, None, b"x" * 60)], i)
    assert log.enforce_retention(10, retention_bytes=None, retention_ms=0) == 4
    assert log.first_offset == 4
    for offset in (0, 3, 6):
        with pytest.raises(OffsetOutOfRange) as caught:
            log.read(offset, 1, 100)
        assert caught.value.details == {"first_offset": 4, "next_offset": 5}
    assert log.read(5, 1, 100).count == 0
    with pytest.raises(ValueError):
        log.read(4, 0, 100)


def test_offset_for_timestamp(make_log: MakeLog) -> None:
    log = make_log(segment_bytes=200, index_interval_bytes=40)
    for i in range(30):
        log.append([(None, None, b"r%d" % i)] * 3, 1_000 + 10 * i)  # ts 1000, 1010, ...
    assert log.segment_count > 3
    assert log.offset_for_timestamp(0) == 0
    assert log.offset_for_timestamp(1_000) == 0
    assert log.offset_for_timestamp(1_001) == 3
    assert log.offset_for_timestamp(1_150) == 45
    assert log.offset_for_timestamp(1_155) == 48
    assert log.offset_for_timestamp(1_290) == 87
    assert log.offset_for_timestamp(1_291) == log.next_offset == 90
    assert log.timestamp_range() == (1_000, 1_290)


def test_timestamps_never_go_backwards(make_log: MakeLog) -> None:
    log = make_log()
    log.append([(None, None, b"a")], 500)
    log.append([(None, None, b"b")], 400)  # a clock step back is clamped
    assert [r.timestamp_ms for r in log.iter_records()] == [500, 500]
    with pytest.raises(ValueError):
        log.append([(None, None, b"c")], -1)


def test_retention_by_age_deletes_whole_old_segments_only(make_log: MakeLog) -> None:
    log = make_log(segment_bytes=100)
    for i in range(4):
        log.append([(None, None, b"x" * 60)], 1_000 * (i + 1))  # one record per segment
    assert log.segment_count == 4
    assert log.enforce_retention(3_500, None, retention_ms=1_000) == 2  # ts 1000 and 2000
    assert log.first_offset == 2
    assert log.enforce_retention(10**9, None, retention_ms=0) == 1
    assert log.segment_count == 1  # the active segment stays, however old
    assert bodies(log, 3) == [b"x" * 60]


def test_retention_by_size_keeps_at_least_the_limit(make_log: MakeLog) -> None:
    log = make_log(segment_bytes=100)
    for i in range(5):
        log.append([(None, None, b"x" * 60)], i)
    size = stored_size(0, b"x" * 60)
    assert log.enforce_retention(0, retention_bytes=2 * size, retention_ms=None) == 3
    assert log.size_bytes == 2 * size
    # Deleting the older of the two would leave less than 2 * size - 1 bytes: it stays.
    assert log.enforce_retention(0, retention_bytes=2 * size - 1, retention_ms=None) == 0
    assert log.enforce_retention(0, retention_bytes=size, retention_ms=None) == 1
    assert log.enforce_retention(0, retention_bytes=0, retention_ms=None) == 0


def test_iter_records_from_an_offset(make_log: MakeLog) -> None:
    log = make_log(segment_bytes=300)
    for i in range(20):
        log.append([(None, None, b"%d" % i)], i)
    assert [r.offset for r in log.iter_records(15)] == [15, 16, 17, 18, 19]
    with pytest.raises(OffsetOutOfRange):
        list(log.iter_records(21))


def test_closed_log_refuses_work(make_log: MakeLog) -> None:
    log = make_log()
    log.close()
    with pytest.raises(StorageError):
        log.append([(None, None, b"x")], 1)
    with pytest.raises(StorageError):
        log.read(0, 1, 1)
    log.close()  # twice is fine


# -- disk only ----------------------------------------------------------------------


def read_index(path: Path) -> list[tuple[int, int]]:
    data = path.read_bytes()
    return [struct.unpack_from(">II", data, i) for i in range(0, len(data), 8)]


def test_index_file_format_and_spacing(tmp_path: Path) -> None:
    """The index of batches of frames (the format before issue 19): entries at frames."""
    log = SegmentedLog.open(tmp_path, segment_bytes=10**6, index_interval_bytes=100)
    log.entries_format = False
    body = b"z" * 20
    for _ in range(10):
        log.append([(None, None, body)] * 10, 7)
    log.close()
    size = frame_size(0, body, 7)  # every offset here has the same encoded width
    entries = read_index(tmp_path / f"{0:020d}.index")
    assert entries, "expected index entries"
    previous = 0
    for relative, position in entries:
        headers = relative // 10 + 1  # one before each batch of 10
        assert position == relative * size + headers * BATCH_HEADER_SIZE  # at its record's frame
        assert position - previous >= 100  # at least one interval apart...
        assert position - previous < 100 + size + BATCH_HEADER_SIZE  # ...at most a frame beyond
        previous = position


def test_index_of_batches_of_entries_points_at_their_headers(tmp_path: Path) -> None:
    """A batch of entries is read whole: an index entry points at its header, never inside."""
    log = SegmentedLog.open(tmp_path, segment_bytes=10**6, index_interval_bytes=100)
    body = b"z" * 20
    for _ in range(10):
        log.append([(None, None, body)] * 10, 7)
    log.close()
    size = BATCH_HEADER_SIZE + encode_entries(0, 7, [(None, None, body)] * 10).size
    entries = read_index(tmp_path / f"{0:020d}.index")
    assert entries, "expected index entries"
    previous = 0
    for relative, position in entries:
        assert relative % 10 == 0 and position == relative // 10 * size  # a batch's header
        assert 100 <= position - previous < 100 + size
        previous = position
    log = SegmentedLog.open(tmp_path, segment_bytes=10**6, index_interval_bytes=100)
    try:  # a read inside a batch starts at its header and skips the records before
        assert [r.offset for r in decode_records(log.read(37, 5, 10**6).data)] == [*range(37, 42)]
    finally:
        log.close()


def test_directory_and_files_are_named_by_base_offset(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path / "nested" / "log", segment_bytes=100, start_offset=1000)
    for _ in range(3):
        log.append([(None, None, b"x" * 70)], 1)
    log.close()
    names = sorted(p.name for p in (tmp_path / "nested" / "log").iterdir())
    assert names == [".clean_shutdown", ".lock", ".sealed_segments"] + [
        f"{base:020d}.{suffix}" for base in (1000, 1001, 1002) for suffix in ("index", "log")
    ]


def test_destroy_removes_everything(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log = SegmentedLog.open(directory, segment_bytes=100)
    log.append([(None, None, b"x" * 70)] * 3, 1)
    log.destroy()
    assert not directory.exists()


def test_reopen_continues_and_keeps_timestamps(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path, segment_bytes=200, index_interval_bytes=30)
    for i in range(20):
        log.append([(None, None, b"r%d" % i)] * 2, 100 + i)
    log.close()
    log = SegmentedLog.open(tmp_path, segment_bytes=200, index_interval_bytes=30)
    assert log.timestamp_range() == (100, 119)
    assert log.offset_for_timestamp(110) == 20
    log.append([(None, None, b"late")], 50)  # clamped to the last stored timestamp
    assert [r.timestamp_ms for r in log.iter_records(40)] == [119]
    log.close()


def test_documented_segment_and_index_bytes(tmp_path: Path) -> None:
    """The example in docs/storage.md, byte for byte: batches of entries."""
    log = SegmentedLog.open(tmp_path, segment_bytes=1000, index_interval_bytes=64)
    log.append([(b"k1", {"h": "v"}, b"hello")], 1_700_000_000_000)
    log.append([b"body-%d" % i for i in range(1, 6)], 1_700_000_000_250)
    frames = log.read(0, 10, 10_000).data
    log.close()
    data = (tmp_path / f"{0:020d}.log").read_bytes()
    assert len(data) == 131
    assert data[:16].hex(" ") == "b7 02 00 02 00 00 00 01 00 00 00 26 e2 54 4b 0e"
    assert data[16:36].hex(" ") == (
        "04 cc 7b aa 00 00 00 00 00 00 00 00 00 00 01 8b cf e5 68 00"
    )
    assert data[36:54].hex(" ") == "91 93 c4 02 6b 31 81 a1 68 a1 76 c4 05 68 65 6c 6c 6f"
    assert data[54:70].hex(" ") == "b7 02 00 02 00 00 00 05 00 00 00 3d 9d b1 24 22"
    assert data[70:90].hex(" ") == (
        "41 35 f1 b3 00 00 00 00 00 00 00 01 00 00 01 8b cf e5 68 fa"
    )
    bodies = ("c4 06 " + f"body-{i}".encode().hex(" ") for i in range(1, 6))
    assert data[90:].hex(" ") == " ".join(["95", *bodies])  # fixarray 5 of bin 8
    assert (tmp_path / f"{0:020d}.index").read_bytes() == b""  # both batches within 64 bytes
    # A reader of frames gets the frames of the record format example.
    assert len(frames) == 180
    assert frames[:35].hex(" ") == (
        "00 00 00 1f 58 17 46 46 95 00 cf 00 00 01 8b cf e5 68 00 "
        "c4 02 6b 31 81 a1 68 a1 76 c4 05 68 65 6c 6c 6f"
    )
    assert frames[35:64].hex(" ") == (
        "00 00 00 19 85 da 00 e9 95 01 cf 00 00 01 8b cf e5 68 fa c0 c0 c4 06 62 6f 64 79 2d 31"
    )


def test_documented_segment_and_index_bytes_of_frames(tmp_path: Path) -> None:
    """The example in docs/storage.md in batches of frames (kind 0), byte for byte."""
    log = SegmentedLog.open(tmp_path, segment_bytes=1000, index_interval_bytes=64)
    log.entries_format = False
    log.append([(b"k1", {"h": "v"}, b"hello")], 1_700_000_000_000)
    log.append([(None, None, b"body-%d" % i) for i in range(1, 6)], 1_700_000_000_250)
    log.close()
    data = (tmp_path / f"{0:020d}.log").read_bytes()
    assert len(data) == 212
    assert data[:16].hex(" ") == "b7 02 00 00 00 00 00 01 00 00 00 23 bc c8 97 07"
    assert data[16:51].hex(" ") == (
        "00 00 00 1f 58 17 46 46 95 00 cf 00 00 01 8b cf e5 68 00 "
        "c4 02 6b 31 81 a1 68 a1 76 c4 05 68 65 6c 6c 6f"
    )
    assert data[51:67].hex(" ") == "b7 02 00 00 00 00 00 05 00 00 00 91 6c 27 e3 67"
    assert data[67:96].hex(" ") == (
        "00 00 00 19 85 da 00 e9 95 01 cf 00 00 01 8b cf e5 68 fa c0 c0 c4 06 62 6f 64 79 2d 31"
    )
    index = (tmp_path / f"{0:020d}.index").read_bytes()
    assert index.hex(" ") == "00 00 00 01 00 00 00 43 00 00 00 04 00 00 00 9a"
