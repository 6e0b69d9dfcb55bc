"""Opening a log costs what is unclean, not its history: older segments open lazily.

With the sealed-segment checkpoint, an open reads the directory listing and
one small file, and touches no older segment's files until a read needs
that segment; reads then return the right records. Without a usable
checkpoint (missing, damaged, or lying), the log falls back to checking the
segments, and never serves wrong records.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from minibroker.errors import StorageError
from minibroker.record_format import decode_records
from minibroker.storage import SegmentedLog, segment
from minibroker.storage.checkpoint import CHECKPOINT_FILE_NAME
from minibroker.storage.commitlog import CLEAN_SHUTDOWN_FILE_NAME
from minibroker.storage.fd_cache import FdCache

SEGMENT_BYTES = 400
INTERVAL = 64


def open_log(directory: Path, cache: FdCache | None = None) -> SegmentedLog:
    return SegmentedLog.open(
        directory, segment_bytes=SEGMENT_BYTES, index_interval_bytes=INTERVAL, fd_cache=cache
    )


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """A closed log of many small segments, each batch at its own timestamp."""
    directory = tmp_path / "log"
    log = open_log(directory)
    bodies = []
    for i in range(120):
        batch = [b"r%d-%d" % (i, j) * 3 for j in range(i % 3 + 1)]
        log.append(batch, 1_000 + i)
        bodies += batch
    assert log.segment_count > 20
    log.close()
    return directory, bodies


@pytest.fixture
def opened_paths(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every file the storage opens: with ``os.open`` (segments, fd cache) or ``open`` (indexes)."""
    paths: list[str] = []
    real_os_open = os.open

    def counting_os_open(path: Any, *args: Any, **kwargs: Any) -> int:
        paths.append(os.fspath(path))
        return real_os_open(path, *args, **kwargs)

    def counting_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        paths.append(os.fspath(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_os_open)
    monkeypatch.setattr(segment, "open", counting_open, raising=False)
    yield paths


def sealed_segment_files(paths: list[str], newest: str) -> list[str]:
    return [
        p for p in paths if p.endswith((".log", ".index")) and Path(p).stem != Path(newest).stem
    ]


def all_bodies(log: SegmentedLog) -> list[bytes]:
    return [r.body for r in log.iter_records()]


def reopens_lazily(directory: Path, bodies: list[bytes]) -> None:
    """The next open takes every older segment from the checkpoint, and reads are right."""
    log = open_log(directory)
    try:
        assert log.recovery.lazy_segments == log.segment_count - 1
        assert all_bodies(log) == bodies
    finally:
        log.close()


def newest_log_file(directory: Path) -> str:
    return str(sorted(directory.glob("*.log"))[-1])


def test_an_open_touches_no_older_segment_until_it_is_read(
    history: tuple[Path, list[bytes]], opened_paths: list[str]
) -> None:
    directory, bodies = history
    newest = newest_log_file(directory)
    cache = FdCache()
    log = open_log(directory, cache)
    try:
        assert log.recovery.lazy_segments == log.segment_count - 1
        assert sealed_segment_files(opened_paths, newest) == []
        # What the log knows without reading them: bounds, sizes, times.
        assert (log.first_offset, log.next_offset) == (0, len(bodies))
        assert log.timestamp_range() == (1_000, 1_119)
        # One read opens the one segment it needs, and gets the right records.
        batch = log.read(100, 3, 1 << 20)
        assert [r.body for r in decode_records(batch.data)] == bodies[100:103]
        touched = {Path(p).stem for p in sealed_segment_files(opened_paths, newest)}
        assert 1 <= len(touched) <= 2  # the segment of offset 100 (and the next, if it spans)
        assert cache.open_count <= 2
        # Every record, read through every segment, is right.
        assert all_bodies(log) == bodies
        for offset in range(0, len(bodies), 7):
            got = decode_records(log.read(offset, 1, 1 << 20).data)
            assert [r.body for r in got] == [bodies[offset]]
        assert log.offset_for_timestamp(1_060) == sum(i % 3 + 1 for i in range(60))
    finally:
        log.close()


def test_retention_and_time_lookup_need_no_older_segment_file(
    history: tuple[Path, list[bytes]], opened_paths: list[str]
) -> None:
    directory, bodies = history
    newest = newest_log_file(directory)
    log = open_log(directory)
    try:
        removed = log.enforce_retention(1_100, retention_bytes=None, retention_ms=50)
        assert removed > 0
        assert log.first_offset == removed
        assert all(".index" not in p for p in sealed_segment_files(opened_paths, newest))
        assert all_bodies(log) == bodies[removed:]
    finally:
        log.close()
    reopens_lazily(directory, bodies[removed:])  # the checkpoint's stale entries do no harm


def test_appends_after_a_lazy_open_roll_and_reopen_lazily(
    history: tuple[Path, list[bytes]],
) -> None:
    directory, bodies = history
    log = open_log(directory)
    try:
        more = [b"more-%d" % i * 10 for i in range(40)]
        for body in more:
            log.append([body], 5_000)
        segments = log.segment_count
    finally:
        log.close()
    for crashed in (False, True):
        if crashed:  # no clean-shutdown marker: the newest is scanned, the others still lazy
            (directory / CLEAN_SHUTDOWN_FILE_NAME).unlink(missing_ok=True)
        log = open_log(directory)
        try:
            assert log.segment_count == segments
            assert log.recovery.lazy_segments == segments - 1
            assert all_bodies(log) == bodies + more
        finally:
            log.close()


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",  # missing (an empty file)
        lambda data: b"garbage!" + data[8:],  # not a checkpoint
        lambda data: data[:8] + bytes(b ^ 0x20 for b in data[8:]),  # every entry's CRC wrong
        lambda data: data[: len(data) - 17],  # the last entry torn
    ],
    ids=["missing", "bad-header", "bad-entries", "torn-entry"],
)
def test_a_missing_or_damaged_checkpoint_falls_back_to_checking_the_segments(
    history: tuple[Path, list[bytes]],
    opened_paths: list[str],
    damage: Callable[[bytes], bytes],
) -> None:
    directory, bodies = history
    checkpoint = directory / CHECKPOINT_FILE_NAME
    damaged = damage(checkpoint.read_bytes())
    if damaged:
        checkpoint.write_bytes(damaged)
    else:
        checkpoint.unlink()
    log = open_log(directory)
    try:
        checked = log.segment_count - 1 - log.recovery.lazy_segments
        assert checked >= 1
        assert len(sealed_segment_files(opened_paths, newest_log_file(directory))) >= checked
        assert all_bodies(log) == bodies
    finally:
        log.close()
    reopens_lazily(directory, bodies)  # the open rewrote the checkpoint: lazy again


def test_a_segment_that_does_not_match_its_checkpoint_entry_is_never_served(
    history: tuple[Path, list[bytes]],
) -> None:
    directory, bodies = history
    third = sorted(directory.glob("*.log"))[2]
    data = third.read_bytes()
    third.write_bytes(data[:-5])  # damage behind the broker's back: the segment is shorter
    log = open_log(directory)
    try:
        base = int(third.stem)
        assert decode_records(log.read(0, 1, 1 << 20).data)[0].body == bodies[0]
        with pytest.raises(StorageError, match="does not match"):
            log.read(base, 1, 1 << 20)
        with pytest.raises(StorageError):  # and again: it stays refused
            log.read(base, 1, 1 << 20)
        after = int(sorted(directory.glob("*.log"))[3].stem)
        assert decode_records(log.read(after, 1, 1 << 20).data)[0].body == bodies[after]
    finally:
        log.close()
