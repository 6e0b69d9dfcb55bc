"""Reopening a log that was closed cleanly skips the scan of its newest segment.

A clean close leaves a marker naming the newest segment's exact end; the next
open trusts that segment (after checking its last records) instead of
checking every record's CRC. Anything else (a crash, a marker that no longer
matches the files, a damaged index) gets the full scan, and loses nothing.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from minibroker.log_store import Record
from minibroker.storage import SegmentedLog, fileio, segment
from minibroker.storage.batch import BatchScan
from minibroker.storage.commitlog import CLEAN_SHUTDOWN_FILE_NAME

SEGMENT_BYTES = 20_000
INTERVAL = 256
MARKER = CLEAN_SHUTDOWN_FILE_NAME


def open_log(directory: Path, **options: object) -> SegmentedLog:
    return SegmentedLog.open(
        directory, segment_bytes=SEGMENT_BYTES, index_interval_bytes=INTERVAL, **options
    )


def append_records(log: SegmentedLog, count: int, timestamp_ms: int = 1_000) -> None:
    first = log.next_offset
    for i in range(0, count, 50):
        log.append(
            [(None, {"n": str(first + j)}, b"body-%d" % (first + j)) for j in range(i, i + 50)],
            timestamp_ms + i,
        )


def crash_copy(directory: Path, target: Path) -> Path:
    """The files of an open log as a killed process would leave them (no marker)."""
    shutil.copytree(directory, target, ignore=shutil.ignore_patterns(".lock"))
    return target


@pytest.fixture
def scanned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The byte length of every buffer the segments scan while opening."""
    lengths: list[int] = []
    real_scan = segment.scan_batches

    def counting_scan(data: bytes, *args: int, **options: bool) -> BatchScan:
        lengths.append(len(data))
        return real_scan(data, *args, **options)

    monkeypatch.setattr(segment, "scan_batches", counting_scan)
    yield lengths


@pytest.fixture
def closed_log(tmp_path: Path) -> tuple[Path, list[Record]]:
    """A cleanly closed log of several segments, its newest one holding many records."""
    directory = tmp_path / "log"
    log = open_log(directory)
    append_records(log, 2_000)
    written = list(log.iter_records())
    log.close()
    assert log.segment_count >= 3
    assert (directory / MARKER).exists()
    return directory, written


def newest_segment(directory: Path) -> Path:
    return sorted(directory.glob("*.log"))[-1]


def test_clean_reopen_skips_the_scan_and_continues(
    closed_log: tuple[Path, list[Record]], scanned: list[int]
) -> None:
    directory, written = closed_log
    newest_size = newest_segment(directory).stat().st_size
    log = open_log(directory)
    try:
        assert log.recovery.scan_skipped
        assert log.recovery.records == len(written)
        # Only the tails (from the last index entry) were scanned, never a whole
        # segment: an entry is at most INTERVAL bytes before the last batch
        # (a batch of entries, about 1.1 kB here, has one entry, at its header).
        assert scanned and max(scanned) < INTERVAL + 1_200 < newest_size
        assert not (directory / MARKER).exists()  # gone before the first write
        assert list(log.iter_records()) == written
        middle = len(written) - 7  # a read through the trusted index
        assert log.read(middle, 3, 10_000).count == 3
        assert log.append([(None, None, b"next")], 9_000) == len(written)
    finally:
        log.close()
    log = open_log(directory)
    try:
        assert log.recovery.scan_skipped
        assert [r.body for r in log.iter_records(len(written) - 1)] == [
            written[-1].body,
            b"next",
        ]
    finally:
        log.close()


def test_a_crashed_log_is_scanned_in_full(
    tmp_path: Path, closed_log: tuple[Path, list[Record]], scanned: list[int]
) -> None:
    directory, written = closed_log
    log = open_log(directory)
    append_records(log, 100, timestamp_ms=5_000)
    written = list(log.iter_records())
    copy = crash_copy(directory, tmp_path / "crashed")
    log.close()
    scanned.clear()
    crashed = open_log(copy)
    try:
        assert not crashed.recovery.scan_skipped
        assert scanned[-1] == newest_segment(copy).stat().st_size
        assert list(crashed.iter_records()) == written
        assert crashed.append([(None, None, b"next")], 9_000) == len(written)
    finally:
        crashed.close()


def test_a_crash_after_a_clean_reopen_gets_the_full_scan(
    tmp_path: Path, closed_log: tuple[Path, list[Record]]
) -> None:
    directory, written = closed_log
    log = open_log(directory)
    assert log.recovery.scan_skipped
    copy = crash_copy(directory, tmp_path / "crashed")  # nothing written yet
    log.append([(None, None, b"lost")], 9_000)
    copy_after_write = crash_copy(directory, tmp_path / "crashed-after-write")
    log.close()
    for crashed_dir, bodies_after in ((copy, []), (copy_after_write, [b"lost"])):
        crashed = open_log(crashed_dir)
        try:
            assert not crashed.recovery.scan_skipped
            records = list(crashed.iter_records())
            assert records[: len(written)] == written
            assert [r.body for r in records[len(written) :]] == bodies_after
        finally:
            crashed.close()


def test_a_marker_older_than_the_files_falls_back_and_loses_nothing(
    tmp_path: Path, closed_log: tuple[Path, list[Record]]
) -> None:
    directory, _ = closed_log
    stale_marker = (directory / MARKER).read_bytes()
    log = open_log(directory)
    append_records(log, 30, timestamp_ms=5_000)  # the newest segment grows past the marker
    written = list(log.iter_records())
    copy = crash_copy(directory, tmp_path / "crashed")
    log.close()
    (copy / MARKER).write_bytes(stale_marker)
    reopened = open_log(copy)
    try:
        assert not reopened.recovery.scan_skipped
        assert reopened.recovery.bytes_truncated == 0
        assert list(reopened.iter_records()) == written
    finally:
        reopened.close()


def test_a_truncated_segment_falls_back_to_the_scan(
    closed_log: tuple[Path, list[Record]], caplog: pytest.LogCaptureFixture
) -> None:
    directory, written = closed_log
    newest = newest_segment(directory)
    base = int(newest.stem)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) - 5])  # cuts the last record of the last batch
    with caplog.at_level(logging.INFO, logger="minibroker.storage"):
        log = open_log(directory)
    try:
        assert not log.recovery.scan_skipped
        assert list(log.iter_records()) == written[:-50]  # that batch goes whole
        assert log.next_offset == len(written) - 50 > base
    finally:
        log.close()
    assert any("does not match" in message for message in caplog.messages)


@pytest.mark.parametrize("damage", ["index", "marker", "marker-fields", "index-missing"])
def test_a_damaged_marker_or_index_falls_back_to_the_scan(
    closed_log: tuple[Path, list[Record]], damage: str
) -> None:
    directory, written = closed_log
    index = newest_segment(directory).with_suffix(".index")
    if damage == "index":
        entries = bytearray(index.read_bytes())
        entries[-1] ^= 0x10  # still well-formed, but not what the close wrote
        index.write_bytes(entries)
    elif damage == "index-missing":
        index.unlink()
    elif damage == "marker":
        (directory / MARKER).write_bytes(b"\x00garbage")
    else:
        (directory / MARKER).write_text('{"version": 1, "base_offset": 0}')
    log = open_log(directory)
    try:
        assert not log.recovery.scan_skipped
        assert list(log.iter_records()) == written
        assert not (directory / MARKER).exists()
    finally:
        log.close()


def test_which_path_was_taken_is_logged(
    closed_log: tuple[Path, list[Record]], caplog: pytest.LogCaptureFixture
) -> None:
    directory, _ = closed_log
    with caplog.at_level(logging.INFO, logger="minibroker.storage"):
        open_log(directory).close()
    assert any("closed cleanly: trusting" in message for message in caplog.messages)
    (directory / MARKER).unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="minibroker.storage"):
        open_log(directory).close()
    assert any("not closed cleanly: scanning" in message for message in caplog.messages)


def test_verify_scans_even_after_a_clean_close(
    closed_log: tuple[Path, list[Record]], scanned: list[int]
) -> None:
    """Queue journals open with ``verify``: every record is checked, marker or not."""
    directory, written = closed_log
    log = open_log(directory, verify=True)
    try:
        assert not log.recovery.scan_skipped
        assert scanned[-1] == newest_segment(directory).stat().st_size
        assert list(log.iter_records()) == written
    finally:
        log.close()
    reopened = open_log(directory)  # the verified open's close marked it clean again
    assert reopened.recovery.scan_skipped
    reopened.close()


def test_an_empty_log_reopens_without_a_scan(tmp_path: Path) -> None:
    open_log(tmp_path / "log").close()
    log = open_log(tmp_path / "log")
    try:
        assert log.recovery.scan_skipped
        assert log.append([(None, None, b"first")], 1) == 0
    finally:
        log.close()


def test_failing_to_write_the_marker_only_costs_a_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(tmp_path / "log")
    append_records(log, 100)

    def refuse(directory: str, name: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio, "replace_file", refuse)
    log.close()  # does not raise: every record is on disk already
    monkeypatch.undo()
    reopened = open_log(tmp_path / "log")
    try:
        assert not reopened.recovery.scan_skipped
        assert reopened.next_offset == 100
    finally:
        reopened.close()
