"""Recovery of a log directory after crashes and damage.

Whatever happens to the newest segment (cut at any byte, any byte flipped),
reopening keeps exactly the batches that are intact, whole, all CRC-valid:
a batch with any byte missing or damaged goes with everything after it,
however many of its records are intact. New appends continue right after.
"""

from __future__ import annotations

import logging
import os
import uuid
from itertools import groupby
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minibroker.errors import StorageError
from minibroker.log_store import Record
from minibroker.record_format import encode_entries, encode_records
from minibroker.storage import SegmentedLog
from minibroker.storage.batch import BATCH_HEADER_SIZE
from minibroker.storage.checkpoint import CHECKPOINT_FILE_NAME
from minibroker.storage.commitlog import CLEAN_SHUTDOWN_FILE_NAME

SEGMENT_BYTES = 300
INTERVAL = 64


#: Which batches are stored as batches of entries (the format since issue 19)
#: and which as record frames (before), by batch number: a log written by an
#: older broker and appended to by a newer one mixes them.
FORMATS = {
    "entries": lambda i: True,
    "frames": lambda i: False,
    "mixed": lambda i: i % 3 != 1,
}


def fill(directory: Path, batches: int = 16, fmt: str = "entries") -> list[Record]:
    """Write batches of varied records across several segments; return what was written."""
    log = SegmentedLog.open(directory, segment_bytes=SEGMENT_BYTES, index_interval_bytes=INTERVAL)
    for i in range(batches):
        log.entries_format = FORMATS[fmt](i)
        entries = [
            (
                b"key%d" % j if j % 2 else None,
                {"batch": str(i)} if j % 3 == 0 else None,
                b"v" * (j * 7),
            )
            for j in range(i % 5 + 1)
        ]
        log.append(entries, 1_000 + i)
    written = list(log.iter_records())
    log.close()
    return written


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log"))


def batch_ends(records: list[Record], fmt: str = "entries") -> list[tuple[int, int]]:
    """``(byte where a batch ends, records up to it)`` for each batch of a segment's records.

    Every batch :func:`fill` writes has a timestamp of its own (1000 plus its
    number), so the records of one batch are the run sharing a timestamp.
    """
    ends = []
    position = 0
    count = 0
    for timestamp, batch in groupby(records, key=lambda r: r.timestamp_ms):
        entries = [(r.key, r.headers, r.body) for r in batch]
        first = records[count].offset
        if FORMATS[fmt](timestamp - 1_000):
            stored = encode_entries(first, timestamp, entries).size
        else:
            stored = len(encode_records(first, timestamp, entries))
        position += BATCH_HEADER_SIZE + stored
        count += len(entries)
        ends.append((position, count))
    return ends


def whole_batches_before(records: list[Record], position: int, fmt: str = "entries") -> int:
    """How many records the batches ending at or before ``position`` hold."""
    return max((count for end, count in batch_ends(records, fmt) if end <= position), default=0)


def reopen_and_check_prefix(directory: Path, written: list[Record], expected_count: int) -> None:
    log = SegmentedLog.open(directory, segment_bytes=SEGMENT_BYTES, index_interval_bytes=INTERVAL)
    try:
        recovered = list(log.iter_records())  # decoding verifies every CRC
        assert recovered == written[:expected_count]
        assert log.next_offset == expected_count
        # Appends continue at the next offset and survive another reopen.
        assert log.append([(None, None, b"after")], 5_000) == expected_count
    finally:
        log.close()
    log = SegmentedLog.open(directory, segment_bytes=SEGMENT_BYTES, index_interval_bytes=INTERVAL)
    try:
        assert log.recovery.bytes_truncated == 0
        tail = list(log.iter_records(expected_count))
        assert [(r.offset, r.body) for r in tail] == [(expected_count, b"after")]
    finally:
        log.close()


@pytest.fixture(scope="module", params=sorted(FORMATS))
def template(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> tuple[Path, list[Record], str]:
    """A closed log in each format: batches of entries, frames, or both mixed."""
    directory = tmp_path_factory.mktemp("template")
    return directory, fill(directory, fmt=request.param), request.param


def copy_log(template: Path, root: Path, *, clean: bool = False) -> Path:
    """A copy of a closed log; without its clean-shutdown marker, as a crash would leave it."""
    target = root / uuid.uuid4().hex
    target.mkdir()
    skipped = {".lock"} if clean else {".lock", CLEAN_SHUTDOWN_FILE_NAME}
    for source in template.iterdir():
        if source.name not in skipped:
            (target / source.name).write_bytes(source.read_bytes())
    return target


def test_template_spans_several_segments(template: tuple[Path, list[Record], str]) -> None:
    directory, written, _ = template
    assert len(segment_files(directory)) >= 3
    assert len(written) > 20


@settings(max_examples=60)
@given(data=st.data())
def test_newest_segment_cut_at_any_byte(
    template: tuple[Path, list[Record], str],
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
) -> None:
    clean = data.draw(st.booleans(), label="clean")  # the marker then names the old size
    directory = copy_log(template[0], tmp_path_factory.getbasetemp(), clean=clean)
    written = template[1]
    newest = segment_files(directory)[-1]
    base = int(newest.stem)
    size = newest.stat().st_size
    cut = data.draw(st.integers(0, size), label="cut")
    os.truncate(newest, cut)
    survivors = base + whole_batches_before(written[base:], cut, template[2])
    reopen_and_check_prefix(directory, written, survivors)


@settings(max_examples=60)
@given(data=st.data())
def test_newest_segment_byte_flipped_anywhere(
    template: tuple[Path, list[Record], str],
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
) -> None:
    directory = copy_log(template[0], tmp_path_factory.getbasetemp())
    written = template[1]
    newest = segment_files(directory)[-1]
    base = int(newest.stem)
    content = bytearray(newest.read_bytes())
    position = data.draw(st.integers(0, len(content) - 1), label="position")
    content[position] ^= data.draw(st.integers(1, 255), label="mask")
    newest.write_bytes(content)
    survivors = base + whole_batches_before(written[base:], position, template[2])
    reopen_and_check_prefix(directory, written, survivors)


@settings(max_examples=30)
@given(garbage=st.binary(min_size=1, max_size=300))
def test_garbage_appended_to_newest_segment(
    template: tuple[Path, list[Record], str],
    tmp_path_factory: pytest.TempPathFactory,
    garbage: bytes,
) -> None:
    directory = copy_log(template[0], tmp_path_factory.getbasetemp(), clean=True)
    written = template[1]
    newest = segment_files(directory)[-1]
    with newest.open("ab") as file:
        file.write(garbage)
    reopen_and_check_prefix(directory, written, len(written))


def test_recovery_is_reported_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    written = fill(tmp_path)
    newest = segment_files(tmp_path)[-1]
    os.truncate(newest, newest.stat().st_size - 3)
    with caplog.at_level(logging.WARNING, logger="minibroker.storage"):
        log = SegmentedLog.open(
            tmp_path, segment_bytes=SEGMENT_BYTES, index_interval_bytes=INTERVAL
        )
    report = log.recovery
    base = int(newest.stem)
    (previous_end, kept), (last_end, _) = ([(0, 0), *batch_ends(written[base:])])[-2:]
    assert report.bytes_truncated == last_end - previous_end - 3  # the whole last batch
    assert report.records == base + kept
    assert report.segments == len(segment_files(tmp_path))
    assert any("cut" in message for message in caplog.messages)
    log.close()


def test_missing_or_corrupt_index_is_rebuilt(tmp_path: Path) -> None:
    written = fill(tmp_path)
    indexes = sorted(tmp_path.glob("*.index"))
    original = indexes[0].read_bytes()
    assert original  # older segments have index entries at this interval
    indexes[0].unlink()
    indexes[1].write_bytes(b"\x00" * 24)  # zero-filled after a crash: entries out of order
    reopen_and_check_prefix(tmp_path, written, len(written))
    assert indexes[0].read_bytes() == original
    assert indexes[1].read_bytes() != b"\x00" * 24


def test_index_pointing_at_the_wrong_record_is_rebuilt(tmp_path: Path) -> None:
    written = fill(tmp_path)
    index = sorted(tmp_path.glob("*.index"))[0]
    entries = bytearray(index.read_bytes())
    entries[-5] ^= 0x01  # the last entry now names the wrong offset for its position
    index.write_bytes(entries)
    reopen_and_check_prefix(tmp_path, written, len(written))


def test_damaged_older_segment_cuts_the_log_there(tmp_path: Path) -> None:
    written = fill(tmp_path)
    # Without the checkpoint every older segment is checked at open (with it,
    # they are checked when first read: tests/storage/test_lazy_open.py).
    (tmp_path / CHECKPOINT_FILE_NAME).unlink()
    segments = segment_files(tmp_path)
    damaged = segments[1]
    content = bytearray(damaged.read_bytes())
    content[-1] ^= 0xFF  # the last record of an older segment
    damaged.write_bytes(content)
    log = SegmentedLog.open(tmp_path, segment_bytes=SEGMENT_BYTES, index_interval_bytes=INTERVAL)
    base = int(segments[1].stem)
    # everything before the batch holding the damaged record
    expected = base + whole_batches_before(written[base : int(segments[2].stem)], len(content) - 1)
    assert list(log.iter_records()) == written[:expected]
    assert log.recovery.segments_removed == len(segments) - 2
    assert log.recovery.segments == 2
    assert [p.name for p in segment_files(tmp_path)] == [p.name for p in segments[:2]]
    log.close()


def test_stray_files_are_left_alone_and_orphan_indexes_removed(tmp_path: Path) -> None:
    written = fill(tmp_path, batches=3)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "123.log").write_bytes(b"not a segment name")
    orphan = tmp_path / f"{10**6:020d}.index"
    orphan.write_bytes(b"")
    log = SegmentedLog.open(tmp_path, segment_bytes=SEGMENT_BYTES, index_interval_bytes=INTERVAL)
    assert list(log.iter_records()) == written
    assert not orphan.exists()
    assert (tmp_path / "notes.txt").exists()
    log.close()


def test_a_log_can_only_be_open_once(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path)
    with pytest.raises(StorageError):
        SegmentedLog.open(tmp_path)
    log.close()
    SegmentedLog.open(tmp_path).close()


def test_an_empty_newest_segment_is_fine(tmp_path: Path) -> None:
    written = fill(tmp_path)
    newest = segment_files(tmp_path)[-1]
    base = int(newest.stem)
    os.truncate(newest, 0)
    reopen_and_check_prefix(tmp_path, written, base)
