"""Failed writes (a full disk, I/O errors) leave the log exactly as it was.

The disk is never really filled: the tests replace ``fileio.pwrite``, the one
call that writes log bytes, with fakes that fail after writing part of the data.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minibroker.errors import StorageError, StorageFull
from minibroker.storage import SegmentedLog, fileio

Pwrite = Callable[[int, bytes | memoryview, int], int]
REAL_PWRITE: Pwrite = os.pwrite


def failing_pwrite(err: int, fail_on_call: int = 1) -> Pwrite:
    """A pwrite that works until call number ``fail_on_call``, which writes half and fails."""
    calls = 0

    def pwrite(fd: int, data: bytes | memoryview, position: int) -> int:
        nonlocal calls
        calls += 1
        if calls < fail_on_call:
            return REAL_PWRITE(fd, data, position)
        REAL_PWRITE(fd, bytes(data)[: len(data) // 2], position)  # a partial write reached the file
        raise OSError(err, os.strerror(err))

    return pwrite


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.log"))}


@pytest.fixture
def log(tmp_path: Path) -> Iterator[SegmentedLog]:
    store = SegmentedLog.open(tmp_path, segment_bytes=4096, index_interval_bytes=100)
    for i in range(10):  # ten batches: the index has entries (a batch of entries gets one)
        store.append([(None, None, b"before-%d" % i)], 1_000)
    yield store
    store.close()


def test_disk_full_raises_storage_full_and_changes_nothing(
    log: SegmentedLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = files(tmp_path)
    monkeypatch.setattr(fileio, "pwrite", failing_pwrite(errno.ENOSPC))
    with pytest.raises(StorageFull) as caught:
        log.append([(None, None, b"x" * 100)] * 5, 2_000)
    assert caught.value.details["errno"] == errno.ENOSPC
    assert files(tmp_path) == before
    assert (log.next_offset, log.size_bytes) == (10, len(before["00000000000000000000.log"]))
    assert log.timestamp_range() == (1_000, 1_000)

    monkeypatch.setattr(fileio, "pwrite", os.pwrite)  # space freed: appends work again
    assert log.append([(None, None, b"after")], 3_000) == 10
    assert [r.body for r in log.iter_records(9)] == [b"before-9", b"after"]
    log.close()
    reopened = SegmentedLog.open(tmp_path)
    assert [r.offset for r in reopened.iter_records()] == list(range(11))
    assert reopened.recovery.bytes_truncated == 0
    reopened.close()


def test_other_write_errors_raise_storage_error(
    log: SegmentedLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = files(tmp_path)
    monkeypatch.setattr(fileio, "pwrite", failing_pwrite(errno.EIO))
    with pytest.raises(StorageError) as caught:
        log.append([(None, None, b"x")], 2_000)
    assert not isinstance(caught.value, StorageFull)
    assert files(tmp_path) == before
    assert log.next_offset == 10


def test_short_writes_are_completed(log: SegmentedLog, monkeypatch: pytest.MonkeyPatch) -> None:
    def one_byte_at_a_time(fd: int, data: bytes | memoryview, position: int) -> int:
        return REAL_PWRITE(fd, bytes(data[:1]), position)

    monkeypatch.setattr(fileio, "pwrite", one_byte_at_a_time)
    log.append([(b"k", {"h": "v"}, b"body")], 2_000)
    assert [r.body for r in log.iter_records(10)] == [b"body"]


def test_disk_full_while_rolling_over(
    log: SegmentedLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = [(None, None, b"y" * 1000)] * 4  # does not fit the active segment: a roll first
    # Call 1 writes the sealed segment's index file.
    monkeypatch.setattr(fileio, "pwrite", failing_pwrite(errno.ENOSPC, fail_on_call=1))
    with pytest.raises(StorageFull):
        log.append(big, 2_000)
    assert (log.segment_count, log.next_offset) == (1, 10)
    # Call 2 writes the batch into the new segment.
    monkeypatch.setattr(fileio, "pwrite", failing_pwrite(errno.ENOSPC, fail_on_call=2))
    with pytest.raises(StorageFull):
        log.append(big, 2_000)
    assert log.next_offset == 10
    assert log.segment_count == 2  # the new segment stays, empty, as the active one
    assert (tmp_path / f"{10:020d}.log").stat().st_size == 0

    monkeypatch.setattr(fileio, "pwrite", os.pwrite)
    assert log.append(big, 2_000) == 10
    assert log.segment_count == 2
    assert log.read(10, 100, 10**6).count == 4


def test_a_write_that_cannot_be_undone_blocks_appends_until_reopen(
    log: SegmentedLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_ftruncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(fileio, "pwrite", failing_pwrite(errno.ENOSPC))
        patch.setattr(os, "ftruncate", broken_ftruncate)
        with pytest.raises(StorageFull):
            log.append([(None, None, b"x" * 200)], 2_000)
    with pytest.raises(StorageError, match="reopen"):
        log.append([(None, None, b"x")], 2_000)
    assert [r.offset for r in log.iter_records()] == list(range(10))
    log.close()
    reopened = SegmentedLog.open(tmp_path)  # recovery cuts the partial write
    assert reopened.recovery.bytes_truncated > 0
    assert reopened.append([(None, None, b"x")], 2_000) == 10
    reopened.close()


def test_sync_flushes_only_when_something_was_written(
    log: SegmentedLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(fileio, "datasync", synced.append)
    log.sync()
    log.sync()
    assert len(synced) == 1
    log.append([(None, None, b"x")], 2_000)
    log.sync()
    assert len(synced) == 2


def test_sync_failure_is_a_storage_error(
    log: SegmentedLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(fileio, "datasync", broken)
    with pytest.raises(StorageError):
        log.sync()
