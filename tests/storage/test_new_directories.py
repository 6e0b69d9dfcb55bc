"""New stores survive a power loss: the directories they create get their parent fsynced.

A file's fsync does not make its name durable; the parent directory's does.
These tests record every directory fsync (the ``fileio.fsync_directory``
seam) instead of pulling a plug: a directory whose new entry was never
fsynced is exactly what a power loss can take away.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig, FsyncPolicy
from minibroker.core.log_options import LogOptions
from minibroker.core.queue_options import QueueOptions
from minibroker.errors import StorageFailed
from minibroker.server.datadir import DataDirectory
from minibroker.storage import MemoryLog, SegmentedLog, fileio
from minibroker.storage.new_directories import SHARED_PENDING_DIRECTORIES, make_directories


class Fsyncs:
    """Records the directories fsynced, and can fail the next ones."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced: list[str] = []
        self.fail = 0
        real = fileio.fsync_directory

        def fsync_directory(path: str) -> None:
            if self.fail:
                self.fail -= 1
                raise OSError(5, "Input/output error")
            real(path)
            self.synced.append(os.path.abspath(path))

        monkeypatch.setattr(fileio, "fsync_directory", fsync_directory)

    def count(self, path: Path) -> int:
        return self.synced.count(str(path))


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Fsyncs:
    return Fsyncs(monkeypatch)


def test_make_directories_names_the_parent_of_each_directory_it_created(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    target = tmp_path / "a" / "b" / "c"
    assert make_directories(str(target)) == (str(tmp_path / "a" / "b"), str(tmp_path / "a"))
    assert target.is_dir()
    assert make_directories(str(target)) == ()  # nothing new


def test_a_new_log_directory_and_its_new_parents_are_fsynced_by_its_first_sync(
    tmp_path: Path, fsyncs: Fsyncs
) -> None:
    path = tmp_path / "ns" / "queues" / "jobs"
    log = SegmentedLog.open(path)
    try:
        # Opening fsyncs the log's own directory (its first segment file),
        # but leaves its parents to the first sync: the group commit's.
        assert fsyncs.count(path) == 1
        assert fsyncs.count(path.parent) == 0
        log.append([(None, None, b"x")], 1)
        log.sync()
        for parent in (path.parent, tmp_path / "ns", tmp_path):
            assert fsyncs.count(parent) == 1, parent
        log.append([(None, None, b"y")], 2)
        log.sync()
        assert fsyncs.count(path.parent) == 1  # once is enough
    finally:
        log.close()


def test_one_fsync_of_a_directory_covers_every_store_created_in_it(
    tmp_path: Path, fsyncs: Fsyncs
) -> None:
    (tmp_path / "queues").mkdir()
    logs = [SegmentedLog.open(tmp_path / "queues" / name) for name in ("a", "b", "c")]
    try:
        for log in logs:
            log.sync()
        assert fsyncs.count(tmp_path / "queues") == 1
        assert fsyncs.count(tmp_path) == 0  # it existed: no new entry there
        late = SegmentedLog.open(tmp_path / "queues" / "d")  # after that fsync: needs another
        logs.append(late)
        late.sync()
        assert fsyncs.count(tmp_path / "queues") == 2
    finally:
        for log in logs:
            log.close()


def test_a_failed_directory_fsync_is_never_retried(tmp_path: Path, fsyncs: Fsyncs) -> None:
    """After a failed fsync a retry could "succeed" without the entry on disk
    (docs/storage.md, "A failed fsync"): the directory is never fsynced again,
    every store that needs it fails, until a data directory is opened anew."""
    log = SegmentedLog.open(tmp_path / "new" / "log")
    other = SegmentedLog.open(tmp_path / "new" / "other")  # its entry is in new/ too
    try:
        fsyncs.fail = 1
        with pytest.raises(StorageFailed, match=r"an fsync of .*new failed"):
            log.sync()
        with pytest.raises(StorageFailed):
            log.sync()
        with pytest.raises(StorageFailed):
            other.sync()
        assert fsyncs.count(tmp_path / "new") == 0
        assert log.failed is not None and other.failed is not None
    finally:
        log.close()
        other.close()
    SHARED_PENDING_DIRECTORIES.forget_failures(str(tmp_path))  # a restart
    third = SegmentedLog.open(tmp_path / "new" / "third")
    try:
        third.sync()
        assert fsyncs.count(tmp_path / "new") == 1
    finally:
        third.close()


def test_a_clean_close_makes_a_new_directory_durable_too(tmp_path: Path, fsyncs: Fsyncs) -> None:
    SegmentedLog.open(tmp_path / "new" / "log").close()
    assert fsyncs.count(tmp_path / "new") == 1 and fsyncs.count(tmp_path) == 1


def test_destroying_a_log_makes_its_removal_durable(tmp_path: Path, fsyncs: Fsyncs) -> None:
    log = SegmentedLog.open(tmp_path / "log")
    log.sync()
    before = fsyncs.count(tmp_path)
    log.destroy()
    assert not (tmp_path / "log").exists()
    assert fsyncs.count(tmp_path) == before + 1


def test_a_new_data_directory_is_made_durable_at_once(tmp_path: Path, fsyncs: Fsyncs) -> None:
    DataDirectory(tmp_path / "fresh" / "data")
    assert fsyncs.count(tmp_path / "fresh") == 1 and fsyncs.count(tmp_path) == 1
    DataDirectory(tmp_path / "fresh" / "data")  # exists: nothing to do
    assert fsyncs.count(tmp_path / "fresh") == 1


# ------------------------------------------------- through the broker's policy


def broker(root: Path, policy: FsyncPolicy) -> Broker:
    return Broker(CoreConfig(fsync=policy), storage=DataDirectory(root), memory_log=MemoryLog)


def queues_dir(root: Path) -> Path:
    return root / "namespaces" / "default" / "queues"


def test_batch_a_durable_queue_is_on_disk_by_name_once_the_group_commit_ran(
    tmp_path: Path, fsyncs: Fsyncs
) -> None:
    b = broker(tmp_path, "batch")
    try:
        since = b.durability.generation
        b.namespace("").queues.declare("jobs", QueueOptions(durable=True), 0.0)
        b.namespace("").queues.declare("more", QueueOptions(durable=True), 0.0)
        assert b.durability.must_hold(since)  # the declare-ok waits for the group commit
        assert fsyncs.count(queues_dir(tmp_path)) == 0
        b.durability.sync()
        # One fsync for both queues' entries, and for each new directory above.
        assert fsyncs.count(queues_dir(tmp_path)) == 1
        assert fsyncs.count(queues_dir(tmp_path).parent) == 1
        assert fsyncs.count(tmp_path / "namespaces") == 1
        assert fsyncs.count(tmp_path) == 1
    finally:
        b.close()


def test_always_a_durable_queue_is_on_disk_by_name_before_the_declare_returns(
    tmp_path: Path, fsyncs: Fsyncs
) -> None:
    b = broker(tmp_path, "always")
    try:
        b.namespace("").queues.declare("jobs", QueueOptions(durable=True), 0.0)
        assert fsyncs.count(queues_dir(tmp_path)) == 1
    finally:
        b.close()


def test_always_the_declaration_itself_is_synced_before_the_declare_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal's declaration record was written before the queue was
    registered, so the write's own sync under ``always`` (which syncs the
    registered queues) missed it: nothing was fdatasynced before the answer."""
    b = broker(tmp_path, "always")
    datasyncs: list[int] = []
    real = fileio.datasync

    def datasync(fd: int) -> None:
        datasyncs.append(fd)
        real(fd)

    monkeypatch.setattr(fileio, "datasync", datasync)
    try:
        b.namespace("").queues.declare("jobs", QueueOptions(durable=True), 0.0)
        assert datasyncs
    finally:
        b.close()


def test_never_no_directory_is_fsynced_for_a_new_queue(tmp_path: Path, fsyncs: Fsyncs) -> None:
    b = broker(tmp_path, "never")
    try:
        b.namespace("").queues.declare("jobs", QueueOptions(durable=True), 0.0)
        assert fsyncs.count(queues_dir(tmp_path)) == 0
    finally:
        b.close()


@pytest.mark.parametrize("policy", ["batch", "always", "never"])
def test_a_created_log_is_on_disk_by_name_before_create_returns(
    tmp_path: Path, fsyncs: Fsyncs, policy: FsyncPolicy
) -> None:
    """Creating a log syncs before it answers, whatever the policy (docs/logs.md):
    its directory, which recovery lists, included."""
    b = broker(tmp_path, policy)
    try:
        b.namespace("").logs.create("events", LogOptions(), 0.0)
        logs = tmp_path / "namespaces" / "default" / "logs"
        assert fsyncs.count(logs) == 1
        assert fsyncs.count(logs.parent / "log-metas") == 1
    finally:
        b.close()
