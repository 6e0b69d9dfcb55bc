"""A disk log keeps a bounded number of files open, however many segments it has.

Only the active segment (and the ``.lock`` file) stay open; older segments
borrow a read-only descriptor from an :class:`FdCache` for each read. Open
files are counted from ``/proc/self/fd``, so these tests see what the process
really holds, not what the cache believes.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from minibroker.errors import StorageError, StorageFull
from minibroker.log_store import Record
from minibroker.record_format import decode_records, encode_entries
from minibroker.storage import SegmentedLog
from minibroker.storage.batch import BATCH_HEADER_SIZE
from minibroker.storage.fd_cache import DEFAULT_CAPACITY, FdCache

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc/self/fd"
)

SEGMENTS = 300
CAPACITY = 8
#: Open files of an open log besides the cache: the active segment and ``.lock``.
OWN_FILES = 2


def open_files_under(directory: Path) -> list[str]:
    """Paths of the files this process has open inside ``directory``."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the descriptor listdir itself used, closed by now
            continue
        if target.startswith(str(directory) + os.sep):
            found.append(target)
    return found


def fill(log: SegmentedLog, segments: int = SEGMENTS) -> list[Record]:
    """Append one record per segment (segment_bytes is smaller than a frame)."""
    records = []
    for i in range(segments):
        body = b"record-%d" % i
        log.append([(None, {"i": str(i)}, body)], 1_000 + i)
        records.append(Record(i, 1_000 + i, None, {"i": str(i)}, body))
    assert log.segment_count == segments
    return records


def read_each(log: SegmentedLog) -> list[Record]:
    """Read every record on its own, so every segment is read (and its file opened)."""
    got = []
    for offset in range(log.first_offset, log.next_offset):
        got += decode_records(log.read(offset, 1, 1000).data)
    return got


@pytest.fixture
def cache() -> FdCache:
    return FdCache(CAPACITY)


@pytest.fixture
def log(tmp_path: Path, cache: FdCache) -> Iterator[SegmentedLog]:
    store = SegmentedLog.open(tmp_path, segment_bytes=10, fd_cache=cache)
    yield store
    store.close()


def test_hundreds_of_segments_keep_only_the_bound_open(
    log: SegmentedLog, cache: FdCache, tmp_path: Path
) -> None:
    records = fill(log)
    assert len(open_files_under(tmp_path)) == OWN_FILES  # writing opens no old segment
    assert read_each(log) == records
    assert read_each(log) == records  # again, now that eviction has happened
    assert cache.open_count == CAPACITY
    assert len(open_files_under(tmp_path)) == CAPACITY + OWN_FILES
    # A read spanning every segment returns the same bytes and leaves the bound.
    batch = log.read(0, SEGMENTS, 10**6)
    assert decode_records(batch.data) == records
    assert len(open_files_under(tmp_path)) == CAPACITY + OWN_FILES
    assert [r.body for r in log.iter_records(SEGMENTS - 20)] == [r.body for r in records[-20:]]
    assert log.offset_for_timestamp(1_000 + 150) == 150


def test_a_recently_read_segment_is_read_without_reopening(
    log: SegmentedLog, cache: FdCache
) -> None:
    records = fill(log, 20)
    read_each(log)
    opens = cache.opens
    for _ in range(3):
        assert decode_records(log.read(18, 1, 1000).data) == [records[18]]  # the newest sealed
    assert cache.opens == opens


def test_retention_closes_the_files_of_deleted_segments(
    log: SegmentedLog, cache: FdCache, tmp_path: Path
) -> None:
    records = fill(log, 50)
    read_each(log)  # the last CAPACITY sealed segments are now open in the cache
    removed = log.enforce_retention(now_ms=10**6, retention_bytes=None, retention_ms=1)
    assert removed == 49  # all but the active segment
    assert cache.open_count == 0
    assert sorted(open_files_under(tmp_path)) == [
        str(tmp_path / ".lock"),
        str(tmp_path / "00000000000000000049.log"),
    ]
    assert read_each(log) == records[49:]


def test_close_closes_every_file(log: SegmentedLog, cache: FdCache, tmp_path: Path) -> None:
    fill(log, 30)
    read_each(log)
    log.close()
    assert cache.open_count == 0
    assert open_files_under(tmp_path) == []
    with pytest.raises(StorageError):
        log.read(0, 1, 100)


@pytest.mark.parametrize("verify", [False, True])
def test_reopening_checks_every_segment_but_keeps_none_open(
    log: SegmentedLog, cache: FdCache, tmp_path: Path, verify: bool
) -> None:
    records = fill(log)
    log.close()
    reopened = SegmentedLog.open(tmp_path, segment_bytes=10, fd_cache=cache, verify=verify)
    try:
        assert reopened.recovery.records == SEGMENTS
        assert len(open_files_under(tmp_path)) == OWN_FILES
        assert read_each(reopened) == records
        assert len(open_files_under(tmp_path)) == CAPACITY + OWN_FILES
        reopened.append([(None, None, b"more")], 5_000)  # the recovered newest segment is writable
        assert reopened.next_offset == SEGMENTS + 1
    finally:
        reopened.close()


def test_the_shared_cache_bounds_many_logs_together(tmp_path: Path) -> None:
    logs = [SegmentedLog.open(tmp_path / f"log{i}", segment_bytes=10) for i in range(3)]
    try:
        everything = [fill(log, 40) for log in logs]
        for log, records in zip(logs, everything, strict=True):
            assert read_each(log) == records
        sealed = len(open_files_under(tmp_path)) - OWN_FILES * len(logs)
        assert 0 < sealed <= DEFAULT_CAPACITY
    finally:
        for log in logs:
            log.destroy()
    assert open_files_under(tmp_path) == []


def test_a_failed_roll_leaves_the_active_segment_writable(
    tmp_path: Path, cache: FdCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = (None, None, b"s")
    big = (None, None, b"b" * 60)
    segment_bytes = encode_entries(0, 1, [big]).size + encode_entries(1, 1, [small]).size
    segment_bytes += 2 * BATCH_HEADER_SIZE
    log = SegmentedLog.open(tmp_path, segment_bytes=segment_bytes, fd_cache=cache)
    try:
        log.append([big], 1)

        real_open = os.open

        def no_new_segment(path: str, flags: int, *args: int, **kwargs: int) -> int:
            if flags & os.O_EXCL and str(path).endswith(".log"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_open(path, flags, *args, **kwargs)

        # (A failed fsync is another matter: the log stops, test_fsync_failures.py.)
        monkeypatch.setattr(os, "open", no_new_segment)
        with pytest.raises(StorageFull):
            log.append([big], 1)  # needs a new segment, whose creation fails
        monkeypatch.undo()
        log.append([small], 1)  # still fits the old active segment
        assert [r.body for r in log.iter_records()] == [big[2], small[2]]
        assert log.segment_count == 1
    finally:
        log.close()


def test_a_sealed_segment_that_cannot_be_opened_is_a_storage_error(
    log: SegmentedLog, tmp_path: Path
) -> None:
    fill(log, 3)
    (tmp_path / "00000000000000000000.log").unlink()  # behind the log's back
    with pytest.raises(StorageError) as caught:
        log.read(0, 1, 100)
    assert caught.value.details["errno"] == errno.ENOENT


# -- the cache on its own ----------------------------------------------------------


def make_files(directory: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        path = directory / f"f{i}"
        path.write_bytes(b"%d" % i)
        paths.append(str(path))
    return paths


def test_the_least_recently_used_descriptor_is_closed_first(tmp_path: Path) -> None:
    cache = FdCache(2)
    a, b, c = (object() for _ in range(3))
    pa, pb, pc = make_files(tmp_path, 3)
    for owner, path in ((a, pa), (b, pb), (a, pa), (c, pc)):  # b is now the oldest use
        with cache.borrow(owner, path):
            pass
    assert sorted(open_files_under(tmp_path)) == [pa, pc]
    assert cache.opens == 3


def test_a_borrowed_descriptor_is_never_closed_under_its_reader(tmp_path: Path) -> None:
    cache = FdCache(1)
    a, b = object(), object()
    pa, pb = make_files(tmp_path, 2)
    with cache.borrow(a, pa) as fd:
        with cache.borrow(b, pb):
            assert cache.open_count == 2  # over capacity while both are in use
        assert open_files_under(tmp_path) == [pa]  # b, given back, went: a is still in use
        cache.discard(a)  # a's segment deleted while it is being read
        assert os.pread(fd, 10, 0) == b"0"
    assert cache.open_count == 0
    assert open_files_under(tmp_path) == []


def test_a_file_that_cannot_be_opened_leaves_the_cache_unchanged(tmp_path: Path) -> None:
    cache = FdCache(2)
    with pytest.raises(FileNotFoundError):
        cache.borrow(object(), str(tmp_path / "missing"))
    assert cache.open_count == 0


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FdCache(0)
