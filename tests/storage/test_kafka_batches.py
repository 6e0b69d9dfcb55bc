"""Kafka batches stored as sent, beside record frames, in both stores.

A Kafka batch is one unit of a segment: appended whole with its base offset
written (outside its CRC), read back byte for byte by ``read_batches``,
framed for readers of frames, found by time, and after a crash there whole
or not at all, like a batch of frames. Batches here are written by kio (an
independent implementation of the format), with the producer's own
timestamps.
"""

from __future__ import annotations

import gzip
import io
import os
import signal
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from crc32c import crc32c
from kio.records.schema import NewRecordBatch, Record, RecordHeader
from kio.records.writers import write_new_batch

from minibroker.log_store import LogStore, StoredBatch
from minibroker.record_format import decode_records
from minibroker.storage import MemoryLog, SegmentedLog
from minibroker.storage.batch import BATCH_HEADER_SIZE, KIND_KAFKA
from minibroker.storage.commitlog import CLEAN_SHUTDOWN_FILE_NAME
from minibroker.storage.kafka_batch import base_offset_of

MakeLog = Callable[..., LogStore]
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH_MS = int(EPOCH.timestamp() * 1000)


def kafka_batch(
    values: list[bytes],
    first_ms: int,
    *,
    key: bytes | None = None,
    gzipped: bool = False,
    headers: bool = True,
) -> bytes:
    """A producer's batch of ``values``, record *i* stamped ``first_ms + i``; base offset 0."""
    buffer = io.BytesIO()
    write_new_batch(
        buffer,
        NewRecordBatch(
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            attributes=0,
            records=tuple(
                Record(
                    attributes=0,
                    timestamp=EPOCH + timedelta(milliseconds=first_ms - EPOCH_MS + i),
                    offset=i,
                    key=key,
                    value=value,
                    headers=(RecordHeader(key=b"h", value=b"%d" % i),) if headers else (),
                )
                for i, value in enumerate(values)
            ),
        ),
    )
    data = buffer.getvalue()
    if not gzipped:
        return data
    after_crc = bytearray(data[21:61]) + gzip.compress(data[61:])
    struct.pack_into(">h", after_crc, 0, 1)
    return struct.pack(">qiibI", 0, 9 + len(after_crc), 0, 2, crc32c(after_crc)) + after_crc


@pytest.fixture(params=["memory", "disk"])
def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLog]:
    made: list[LogStore] = []

    def make(segment_bytes: int = 1 << 20, index_interval_bytes: int = 64) -> LogStore:
        store: LogStore
        if request.param == "memory":
            store = MemoryLog(segment_bytes=segment_bytes)
        else:
            store = SegmentedLog.open(
                tmp_path / f"log{len(made)}",
                segment_bytes=segment_bytes,
                index_interval_bytes=index_interval_bytes,
            )
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


#: A log written through both doors: (kind, first offset, values).
MIXED = [
    ("frames", [b"n0", b"n1"]),
    ("kafka", [b"k2", b"k3", b"k4"]),
    ("frames", [b"n5"]),
    ("kafka", [b"k6"]),
    ("kafka", [b"k7", b"k8"]),
    ("frames", [b"n9", b"n10", b"n11"]),
]


def write_mixed(log: LogStore) -> dict[int, bytes]:
    """Append :data:`MIXED`; return the Kafka batches as appended, by first offset.

    The native appends are stored as frames (kind 0), as before issue 19, so
    that these tests see runs of frames beside Kafka batches (batches of
    entries beside Kafka batches: tests/storage/test_entries_batches.py)."""
    log.entries_format = False  # type: ignore[attr-defined]
    sent: dict[int, bytes] = {}
    for kind, values in MIXED:
        if kind == "frames":
            log.append(values, EPOCH_MS + 1000 * log.next_offset)
        else:
            batch = kafka_batch(values, EPOCH_MS + 1000 * log.next_offset, key=b"key")
            sent[log.append_kafka(batch, len(values), EPOCH_MS + 1000 * log.next_offset)] = batch
    return sent


ALL_VALUES = [value for _, values in MIXED for value in values]


def check_mixed(log: LogStore, sent: dict[int, bytes]) -> None:
    """Every way of reading :data:`MIXED` gives what was appended."""
    records = decode_records(log.read(0, 100, 1 << 20).data)
    assert [r.body for r in records] == ALL_VALUES
    assert [r.offset for r in records] == list(range(len(ALL_VALUES)))
    kafka = [r for r in records if r.body.startswith(b"k")]
    # The producer's timestamps and headers, per record.
    assert [(r.key, r.headers) for r in kafka] == [
        (b"key", {"h": str(r.offset - first)})
        for first, batch in sent.items()
        for r in kafka
        if first <= r.offset < first + len(decode_values(batch))
    ]
    assert [r.timestamp_ms for r in kafka] == [
        EPOCH_MS + 1000 * first + i
        for first, batch in sent.items()
        for i in range(len(decode_values(batch)))
    ]
    for offset in range(len(ALL_VALUES)):
        one = decode_records(log.read(offset, 1, 1).data)
        assert [r.body for r in one] == [ALL_VALUES[offset]]
    units = log.read_batches(0, log.next_offset, 1 << 20)
    assert [(u.kind == KIND_KAFKA, u.first_offset, u.records) for u in units] == [
        (False, 0, 2),
        (True, 2, 3),
        (False, 5, 1),
        (True, 6, 1),
        (True, 7, 2),
        (False, 9, 3),
    ]
    for unit in units:
        if unit.kind == KIND_KAFKA:
            # Byte for byte what the producer sent, but for the base offset.
            assert unit.data[8:] == sent[unit.first_offset][8:]
            assert base_offset_of(unit.data) == unit.first_offset


def decode_values(batch: bytes) -> list[bytes]:
    return [fields[4] for fields in _decode(batch)]


def _decode(batch: bytes) -> list[tuple[int, int, bytes | None, dict[str, str] | None, bytes]]:
    from minibroker.storage.kafka_batch import decode

    return decode(batch)


def test_kafka_batches_and_frames_read_back_every_way(make_log: MakeLog) -> None:
    log = make_log()
    check_mixed(log, write_mixed(log))


def test_a_read_from_inside_a_kafka_batch_gets_it_whole(make_log: MakeLog) -> None:
    log = make_log()
    write_mixed(log)
    units = log.read_batches(3, log.next_offset, 1)  # one unit: at least one, whatever its size
    assert [(u.kind == KIND_KAFKA, u.first_offset, u.records) for u in units] == [(True, 2, 3)]
    units = log.read_batches(4, 8, 1 << 20)  # the batch at 7 reaches past 8: left out
    assert [(u.kind == KIND_KAFKA, u.first_offset, u.records) for u in units] == [
        (True, 2, 3),
        (False, 5, 1),
        (True, 6, 1),
    ]
    units = log.read_batches(9, 11, 1 << 20)  # frames are cut at the end offset
    assert [(u.kind == KIND_KAFKA, u.first_offset, u.records) for u in units] == [(False, 9, 2)]
    assert log.read_batches(log.next_offset, log.next_offset, 100) == []


def test_frames_after_a_kafka_batch_are_limited_by_bytes(make_log: MakeLog) -> None:
    log = make_log()
    sent = write_mixed(log)
    size = len(sent[2])
    units = log.read_batches(2, log.next_offset, size)
    assert [(u.kind == KIND_KAFKA, u.first_offset) for u in units] == [(True, 2)]
    total = sum(len(u.data) for u in log.read_batches(0, log.next_offset, 1 << 20))
    assert sum(len(u.data) for u in log.read_batches(0, log.next_offset, total - 1)) < total


def test_lookups_by_time_use_the_producers_timestamps(make_log: MakeLog) -> None:
    log = make_log()
    log.append([b"a"], EPOCH_MS)
    # A producer whose clock is behind: its batch is stamped before the log's last record.
    log.append_kafka(kafka_batch([b"b", b"c"], EPOCH_MS - 5000), 2, EPOCH_MS - 4999)
    log.append_kafka(kafka_batch([b"d", b"e", b"f"], EPOCH_MS + 100), 3, EPOCH_MS + 102)
    assert log.offset_for_timestamp(EPOCH_MS - 10_000) == 0
    assert log.offset_for_timestamp(EPOCH_MS + 1) == 3
    assert log.offset_for_timestamp(EPOCH_MS + 101) == 4  # inside the batch
    assert log.offset_for_timestamp(EPOCH_MS + 102) == 5
    assert log.offset_for_timestamp(EPOCH_MS + 103) == log.next_offset
    # The log's time never goes back: the late batch counts at the last time so far.
    assert log.timestamp_range() == (EPOCH_MS, EPOCH_MS + 102)
    assert [r.timestamp_ms for r in log.iter_records()] == [
        EPOCH_MS,
        EPOCH_MS - 5000,
        EPOCH_MS - 4999,
        EPOCH_MS + 100,
        EPOCH_MS + 101,
        EPOCH_MS + 102,
    ]


def test_compressed_batches_are_stored_compressed_and_read_as_frames(make_log: MakeLog) -> None:
    log = make_log()
    batch = kafka_batch([b"z" * 500, b"y"], EPOCH_MS, gzipped=True)
    log.append_kafka(batch, 2, EPOCH_MS + 1)
    [unit] = log.read_batches(0, 2, 1 << 20)
    assert unit.data[8:] == batch[8:]
    assert [r.body for r in log.iter_records()] == [b"z" * 500, b"y"]


def test_many_segments_of_kafka_batches(make_log: MakeLog) -> None:
    log = make_log(segment_bytes=600, index_interval_bytes=100)
    values = [b"v%03d" % i for i in range(120)]
    for i in range(0, 120, 4):
        if i % 8:
            log.append(values[i : i + 4], EPOCH_MS + i)
        else:
            log.append_kafka(kafka_batch(values[i : i + 4], EPOCH_MS + i), 4, EPOCH_MS + i + 3)
    assert log.segment_count > 3
    assert [r.body for r in log.iter_records()] == values
    for offset in range(0, 120, 7):
        assert [r.body for r in decode_records(log.read(offset, 3, 1 << 20).data)] == values[
            offset : offset + 3
        ]
        units = log.read_batches(offset, 120, 1 << 20)
        assert units[0].first_offset <= offset < units[0].first_offset + units[0].records
        assert_contiguous(units, 120)
    assert log.offset_for_timestamp(EPOCH_MS + 50) == 50
    removed = log.enforce_retention(EPOCH_MS, retention_bytes=1200, retention_ms=None)
    assert removed and log.first_offset == removed
    assert [r.body for r in log.iter_records()] == values[removed:]


def assert_contiguous(units: list[StoredBatch], end: int) -> None:
    for before, after in pairwise(units):
        assert before.first_offset + before.records == after.first_offset
    assert units[-1].first_offset + units[-1].records == end


# -- on disk: reopening, recovery, damage ----------------------------------------------


def test_reopened_cleanly_or_recovered_the_log_is_the_same(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log = SegmentedLog.open(directory, segment_bytes=1 << 20, index_interval_bytes=32)
    sent = write_mixed(log)
    log.close()
    log = SegmentedLog.open(directory, segment_bytes=1 << 20, index_interval_bytes=32)
    check_mixed(log, sent)
    log.close()
    # As after kill -9: no clean-shutdown marker (the newest segment is scanned), no index.
    (directory / CLEAN_SHUTDOWN_FILE_NAME).unlink()
    (directory / f"{0:020d}.index").unlink(missing_ok=True)
    log = SegmentedLog.open(directory, segment_bytes=1 << 20, index_interval_bytes=32)
    try:
        assert log.recovery.bytes_truncated == 0
        check_mixed(log, sent)
        assert log.append_kafka(kafka_batch([b"next"], EPOCH_MS + 99_000), 1, EPOCH_MS) == 12
        assert [r.body for r in log.iter_records(12)] == [b"next"]
    finally:
        log.close()


def test_sealed_segments_of_kafka_batches_open_lazily(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    log = SegmentedLog.open(directory, segment_bytes=300, index_interval_bytes=64)
    values = [b"s%02d" % i for i in range(40)]
    for i in range(0, 40, 4):
        log.append_kafka(kafka_batch(values[i : i + 4], EPOCH_MS + i), 4, EPOCH_MS + i + 3)
    assert log.segment_count > 2
    log.close()
    log = SegmentedLog.open(directory, segment_bytes=300, index_interval_bytes=64)
    try:
        assert [r.body for r in log.iter_records()] == values
        assert log.offset_for_timestamp(EPOCH_MS + 21) == 21
    finally:
        log.close()


def test_every_cut_and_flip_of_a_kafka_batch_keeps_whole_units_only(tmp_path: Path) -> None:
    source = tmp_path / "source"
    log = SegmentedLog.open(source, segment_bytes=1 << 20)
    log.append([b"first"], EPOCH_MS)
    start = log.size_bytes
    log.append_kafka(kafka_batch([b"a", b"bb", b"ccc"], EPOCH_MS), 3, EPOCH_MS + 2)
    end = log.size_bytes
    log.append([b"last"], EPOCH_MS + 3)
    log.close()
    content = (source / f"{0:020d}.log").read_bytes()
    work = tmp_path / "work"
    work.mkdir()

    def survivors(position: int) -> list[bytes]:
        if position < start:
            return []
        return [b"first"] if position < end else [b"first", b"a", b"bb", b"ccc"]

    for position in range(start - 1, len(content)):
        torn = recovered(work, content[:position])
        assert torn == survivors(position), position
    for position in range(start, end):
        damaged = bytearray(content)
        damaged[position] ^= 0x41
        got = recovered(work, bytes(damaged))
        # The base offset is outside the CRC but checked against the log's offsets.
        assert got == [b"first"], position


def recovered(directory: Path, content: bytes) -> list[bytes]:
    for name in os.listdir(directory):
        os.unlink(directory / name)
    (directory / f"{0:020d}.log").write_bytes(content)
    log = SegmentedLog.open(directory, segment_bytes=1 << 20)
    try:
        return [r.body for r in log.iter_records()]
    finally:
        log.close()


KILLED_MID_KAFKA_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    from minibroker.storage import SegmentedLog, fileio
    from storage.test_kafka_batches import EPOCH_MS, kafka_batch

    log = SegmentedLog.open(sys.argv[1], segment_bytes=1 << 30)
    log.append_kafka(kafka_batch([b"before-%d" % i for i in range(50)], EPOCH_MS), 50, EPOCH_MS)
    log.sync()
    real_pwrite = fileio.pwrite

    def torn_pwrite(fd, data, position):
        real_pwrite(fd, bytes(data[: len(data) // 2]), position)
        os.kill(os.getpid(), signal.SIGKILL)

    fileio.pwrite = torn_pwrite
    log.append_kafka(kafka_batch([b"torn-%d" % i for i in range(2000)], EPOCH_MS), 2000, EPOCH_MS)
    """
)


def test_a_process_killed_mid_kafka_batch_leaves_none_of_it(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    tests = str(Path(__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run(
        [sys.executable, "-c", KILLED_MID_KAFKA_WRITE, str(directory)],
        capture_output=True,
        check=False,
        env=env,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    segment = directory / f"{0:020d}.log"
    assert b"torn-1000" in segment.read_bytes()  # half the batch did reach the file
    log = SegmentedLog.open(directory)
    try:
        assert [r.body for r in log.iter_records()] == [b"before-%d" % i for i in range(50)]
        assert log.recovery.bytes_truncated > 0
        assert log.size_bytes == BATCH_HEADER_SIZE + len(log.read_batches(0, 50, 1 << 20)[0].data)
    finally:
        log.close()


def test_the_server_imports_without_crc32c() -> None:
    """crc32c comes with the ``kafka`` extra (kio needs it): a broker installed
    without that extra must still start (the storage once imported it for all)."""
    script = (
        "import sys; sys.modules['crc32c'] = None\n"  # as if not installed
        "import minibroker.cli.serve, minibroker.server.app, minibroker.storage\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_checking_a_kafka_batch_without_crc32c_names_the_missing_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from minibroker.errors import StorageError
    from minibroker.storage.kafka_batch import stored_facts

    batch = kafka_batch([b"a", b"b"], EPOCH_MS)
    assert stored_facts(batch, 0, len(batch)) is not None
    monkeypatch.setitem(sys.modules, "crc32c", None)  # import now raises ImportError
    with pytest.raises(StorageError, match=r"pip install 'minibroker\[kafka\]'"):
        stored_facts(batch, 0, len(batch))
