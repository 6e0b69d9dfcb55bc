"""A failed fsync makes the store fail-stop: never retried, writes refused, a reopen recovers.

After a failed fsync Linux may have dropped the dirty pages and marked them
clean, so a retried fsync can "succeed" without the data on disk
(docs/storage.md, "A failed fsync"). The fsyncs are failed through the
``fileio`` seams (``datasync``, ``fsync_file``, ``fsync_directory``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from minibroker.errors import StorageFailed, StorageFull
from minibroker.storage import SegmentedLog, fileio
from minibroker.storage.commitlog import CLEAN_SHUTDOWN_FILE_NAME


class Syncs:
    """Counts fdatasyncs, and fails the next ``fail_data`` of them, the next
    ``fail_files`` whole-file fsyncs (index files, directories)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.datasyncs = 0
        self.fail_data = 0
        self.fail_files = 0
        real_data, real_file = fileio.datasync, fileio.fsync_file

        def datasync(fd: int) -> None:
            if self.fail_data:
                self.fail_data -= 1
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            self.datasyncs += 1
            real_data(fd)

        def fsync_file(fd: int) -> None:
            if self.fail_files:
                self.fail_files -= 1
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real_file(fd)

        monkeypatch.setattr(fileio, "datasync", datasync)
        monkeypatch.setattr(fileio, "fsync_file", fsync_file)


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Syncs:
    return Syncs(monkeypatch)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[SegmentedLog]:
    store = SegmentedLog.open(tmp_path / "log", segment_bytes=4096, index_interval_bytes=100)
    yield store
    store.close()


def records(store: SegmentedLog) -> list[bytes]:
    return [bytes(r.body) for r in store.iter_records()]


def test_a_failed_fdatasync_is_never_retried(log: SegmentedLog, syncs: Syncs) -> None:
    """The old store kept the bytes "unsynced" and the next sync fdatasynced
    them again, which succeeded: the group commit then confirmed them."""
    log.append([b"synced"], 1)
    log.sync()
    log.append([b"unsure"], 2)
    syncs.fail_data = 1
    with pytest.raises(StorageFailed) as caught:
        log.sync()
    assert caught.value.code == "storage_failed"
    assert caught.value.details["errno"] == errno.EIO
    assert "restart the broker" in caught.value.message
    before = syncs.datasyncs
    with pytest.raises(StorageFailed):
        log.sync()  # the disk works again: a retry would "succeed"
    assert syncs.datasyncs == before
    assert log.failed is not None and not log.unsynced


def test_a_failed_store_refuses_every_write_and_keeps_serving_reads(
    log: SegmentedLog, syncs: Syncs
) -> None:
    log.append([b"a", b"b"], 1)
    syncs.fail_data = 1
    with pytest.raises(StorageFailed):
        log.sync()
    next_offset = log.next_offset
    for write in (
        lambda: log.append([b"c"], 3),
        lambda: log.append_kafka(b"", 0, 3),
        lambda: log.enforce_retention(3, 0, None),
        lambda: log.delete_before(1),
    ):
        with pytest.raises(StorageFailed):
            write()
    assert log.next_offset == next_offset
    assert records(log) == [b"a", b"b"]


def test_the_group_commit_hears_of_a_failure_once(log: SegmentedLog, syncs: Syncs) -> None:
    """The round that meets the failure must fail what waited on it; later
    rounds pass over the store, so other stores' confirmations go on."""
    log.append([b"a"], 1)
    syncs.fail_data = 1
    with pytest.raises(StorageFailed):
        log.group_sync()
    log.group_sync()
    log.group_sync()
    with pytest.raises(StorageFailed):
        log.sync()  # a caller that needs this store's data still hears it


def test_a_failure_while_rolling_fails_the_next_group_commit(
    log: SegmentedLog, syncs: Syncs
) -> None:
    """Sealing a segment fsyncs its unsynced appends: when that fails inside
    an append, the confirmations waiting for the group commit must fail there."""
    log.append([b"x" * 3000], 1)  # unsynced, waiting for the group commit
    syncs.fail_data = 1
    with pytest.raises(StorageFailed):
        log.append([b"y" * 3000], 2)  # rolls: seals (and fsyncs) the first segment
    assert log.segment_count == 1
    with pytest.raises(StorageFailed):
        log.group_sync()
    log.group_sync()


def test_a_failed_index_fsync_fails_the_store(log: SegmentedLog, syncs: Syncs) -> None:
    log.append([b"x" * 3000], 1)
    syncs.fail_files = 1  # the index file's fsync while sealing
    with pytest.raises(StorageFailed, match=r"\.index failed"):
        log.append([b"y" * 3000], 2)
    with pytest.raises(StorageFailed):
        log.append([b"z"], 3)


def test_a_failed_directory_fsync_after_a_good_seal_owes_nothing(
    log: SegmentedLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The roll's seal synced every append; only the new segment's name
    failed: nothing that waits on the group commit depended on it."""
    log.append([b"x" * 3000], 1)
    log.sync()

    def fsync_directory(path: str) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(fileio, "fsync_directory", fsync_directory)
    with pytest.raises(StorageFailed):
        log.append([b"y" * 3000], 2)
    log.group_sync()  # nothing was waiting on it
    with pytest.raises(StorageFailed):
        log.append([b"z"], 3)


def test_a_full_disk_is_not_a_failed_fsync(
    log: SegmentedLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write refused for room is undone and may be retried: the store goes on."""
    real = fileio.pwrite

    def full(fd: int, data: bytes | memoryview, position: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio, "pwrite", full)
    with pytest.raises(StorageFull):
        log.append([b"a"], 1)
    monkeypatch.setattr(fileio, "pwrite", real)
    log.append([b"a"], 1)
    log.sync()
    assert log.failed is None


def test_reopening_recovers_what_was_synced(tmp_path: Path, syncs: Syncs) -> None:
    """A restart opens the store from what is on disk: a failed store leaves
    no clean-shutdown marker, so its newest segment is scanned."""
    path = tmp_path / "log"
    store = SegmentedLog.open(path, segment_bytes=4096)
    store.append([b"one", b"two"], 1)
    store.sync()
    store.append([b"unsure"], 2)
    syncs.fail_data = 1
    with pytest.raises(StorageFailed):
        store.sync()
    store.close()
    assert not (path / CLEAN_SHUTDOWN_FILE_NAME).exists()
    reopened = SegmentedLog.open(path, segment_bytes=4096)
    try:
        assert reopened.failed is None
        assert records(reopened)[:2] == [b"one", b"two"]
        reopened.append([b"three"], 3)
        reopened.sync()
    finally:
        reopened.close()
