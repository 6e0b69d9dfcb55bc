"""Deleting a log's records up to an offset (Kafka's DeleteRecords): the log start offset.

The start may fall inside a segment; every reader agrees on it (reads,
"earliest", lookups by time, tails, parked reads, statistics), the whole
segments below it are deleted, and on disk it survives a restart, a
compaction of the metadata journal and a crash between journalling it and
deleting the segments.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_logs import FakePeer, bodies, drain, make_logs

from minibroker.core.log_meta import LogMeta
from minibroker.core.log_options import LogOptions
from minibroker.core.logs import Logs
from minibroker.errors import BrokerError, OffsetOutOfRange, StorageError
from minibroker.server.datadir import DataDirectory
from minibroker.storage import decode_records

#: 100-byte bodies in 1 KiB segments: a few records per segment, so offset 25
#: falls inside a segment with whole segments below it.
SEGMENT = LogOptions(segment_bytes=1024)


@pytest.fixture(params=["memory", "disk"])
def logs(request: pytest.FixtureRequest, tmp_path: Path) -> Logs:
    return make_logs(tmp_path if request.param == "disk" else None)


def _fill(logs: Logs, count: int = 40) -> None:
    logs.create("ev", SEGMENT, 0.0)
    for i in range(count):
        logs.append("ev", [(None, None, b"%03d" % i + bytes(97))], float(i))


def test_every_reader_starts_at_the_new_start(logs: Logs) -> None:
    _fill(logs)
    store = logs.get("ev").store
    segments = store.segment_count
    assert logs.delete_records("ev", 25, 50.0) == 25
    assert 0 < store.first_offset < 25  # whole segments below went, not the one holding 25
    assert store.segment_count < segments
    assert logs.statistics("ev").first_offset == 25
    assert logs.statistics("ev").records == 15
    with pytest.raises(OffsetOutOfRange) as refused:
        logs.read("ev", start=24)
    assert refused.value.details["first_offset"] == 25
    assert bodies(logs.read("ev", start="earliest", max_records=1))[0][:3] == b"025"
    assert decode_records(logs.read("ev", start=25, max_records=1).data)[0].offset == 25
    assert logs.read("ev", timestamp_ms=0, max_records=1).next_offset == 26  # by time: from 25
    assert decode_records(logs.read("ev", start="committed", group="new").data)[0].offset == 25
    with pytest.raises(OffsetOutOfRange):
        logs.get("ev").read_batches_at(24, 1 << 20)
    with pytest.raises(OffsetOutOfRange):
        logs.wait_for_records(FakePeer(), 1, "ev", 24, 10, 1 << 20, 1.0, 50.0)


def test_an_offset_at_or_below_the_start_changes_nothing(logs: Logs) -> None:
    _fill(logs)
    assert logs.delete_records("ev", 25, 50.0) == 25
    assert logs.delete_records("ev", 10, 51.0) == 25
    assert logs.delete_records("ev", 25, 52.0) == 25
    assert logs.statistics("ev").first_offset == 25


@pytest.mark.parametrize("offset", [-1, 41, 1 << 62])
def test_offsets_outside_the_log_are_refused(logs: Logs, offset: int) -> None:
    _fill(logs)
    with pytest.raises(OffsetOutOfRange) as refused:
        logs.delete_records("ev", offset, 50.0)
    assert refused.value.details == {"first_offset": 0, "next_offset": 40}
    assert logs.statistics("ev").first_offset == 0


def test_records_not_yet_synced_cannot_be_deleted(tmp_path: Path) -> None:
    """Only up to the high watermark: what readers see, as Kafka's DeleteRecords."""
    logs = make_logs(tmp_path, fsync="batch")
    logs.create("ev", LogOptions(), 0.0)
    logs.append("ev", [(None, None, b"x")] * 5, 0.0)
    with pytest.raises(OffsetOutOfRange):
        logs.delete_records("ev", 5, 1.0)
    logs.sync()
    assert logs.delete_records("ev", 5, 1.0) == 5


def test_deleting_every_record_leaves_an_empty_log_that_appends_go_on(logs: Logs) -> None:
    _fill(logs)
    assert logs.delete_records("ev", 40, 50.0) == 40
    stats = logs.statistics("ev")
    assert (stats.first_offset, stats.next_offset, stats.records) == (40, 40, 0)
    assert logs.read("ev", start="earliest").count == 0
    assert logs.append("ev", [(None, None, b"next")], 51.0) == 40
    assert bodies(logs.read("ev", start="earliest")) == [b"next"]


def test_a_tail_behind_the_new_start_ends_with_offset_out_of_range(logs: Logs) -> None:
    _fill(logs)
    ended: list[BrokerError] = []
    tail = logs.tail(FakePeer(), 1, "ev", ended.append, start="earliest")
    logs.delete_records("ev", 25, 50.0)
    assert tail.take(1 << 20) is None
    assert isinstance(ended[0], OffsetOutOfRange)
    ahead = logs.tail(FakePeer(), 2, "ev", ended.append, start=30)
    assert [r.offset for r in drain(ahead)] == list(range(30, 40))


def test_retention_after_the_start_keeps_the_higher_of_the_two(logs: Logs) -> None:
    _fill(logs)
    logs.delete_records("ev", 3, 50.0)
    logs.change_options("ev", LogOptions(segment_bytes=1024, retention_bytes=2048), 51.0)
    first = logs.get("ev").store.first_offset
    assert first > 3
    assert logs.statistics("ev").first_offset == first


def test_the_start_survives_a_restart_and_a_journal_compaction(tmp_path: Path) -> None:
    logs = make_logs(tmp_path)
    _fill(logs)
    logs.delete_records("ev", 25, 50.0)
    for i in range(6_000):  # commits until the metadata journal compacts into a snapshot
        logs.commit("ev", "g", 30 + i % 10, 60.0)
    meta = logs.get("ev").meta
    assert meta is not None and meta.compactions > 0
    logs.broker.close()
    again = make_logs(tmp_path)
    assert again.statistics("ev").first_offset == 25
    with pytest.raises(OffsetOutOfRange):
        again.read("ev", start=24)
    assert decode_records(again.read("ev", start="earliest").data)[0].offset == 25


def test_segments_left_by_a_failed_deletion_go_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start is journalled first; segment files that could not be deleted then
    (or a crash in between) are never read, and recovery deletes them."""
    logs = make_logs(tmp_path)
    _fill(logs)
    store = logs.get("ev").store

    def failing(offset: int) -> int:
        raise StorageError("disk said no")

    monkeypatch.setattr(store, "delete_before", failing)
    assert logs.delete_records("ev", 25, 50.0) == 25
    assert store.first_offset == 0
    assert logs.statistics("ev").first_offset == 25
    with pytest.raises(OffsetOutOfRange):
        logs.read("ev", start=0)
    logs.broker.close()
    again = make_logs(tmp_path)
    assert 0 < again.get("ev").store.first_offset <= 25
    assert again.statistics("ev").first_offset == 25


def test_a_start_past_the_recovered_end_is_moved_back(tmp_path: Path) -> None:
    logs = make_logs(tmp_path)
    _fill(logs)
    logs.delete_records("ev", 30, 50.0)
    logs.broker.close()
    # The records vanish (fsync=never and a crash, say) but the start stayed.
    storage = DataDirectory(tmp_path)
    storage.open("t", "log", "ev", segment_bytes=None).destroy()
    storage.open("t", "log", "ev", segment_bytes=None).close()
    again = make_logs(tmp_path)
    stats = again.statistics("ev")
    assert (stats.first_offset, stats.next_offset) == (0, 0)


def test_log_meta_replays_start_records_and_snapshots(tmp_path: Path) -> None:
    storage = DataDirectory(tmp_path)
    store = storage.open("t", "log-meta", "x", segment_bytes=None)
    meta = LogMeta(store)
    meta.write_options(LogOptions(), 0)
    meta.write_start(7, 0)
    meta.write_start(12, 0)
    assert LogMeta.load(store).start_offset == 12
    meta._compact(0)
    store.enforce_retention(0, retention_bytes=0, retention_ms=None)
    assert LogMeta.load(store).start_offset == 12
