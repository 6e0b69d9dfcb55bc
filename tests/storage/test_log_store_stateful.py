"""Both log stores against a reference model, driven by Hypothesis state machines.

The reference is a plain list of records plus the segment layout, which is
fully determined by the frame sizes and the roll rule, so even retention can
be predicted exactly. The disk machine also reopens the log, either after a
clean close (the newest segment is then trusted, not scanned) or after a
"crash" (its files copied while it is open, so the copy is scanned), and
reads its older segments through a two-descriptor cache, so that they are
closed and reopened all the time. Appends come as batches of entries (the
format since issue 19), as record frames (the format before: both stores
still read it, so segments mix the two) and as Kafka batches (stored whole,
read back as frames, as units, as stored for ``read.batches``, and by time).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from storage.test_kafka_batches import kafka_batch

from minibroker.errors import OffsetOutOfRange
from minibroker.log_store import Entry, LogStore, Record
from minibroker.record_format import decode_records, decode_stored, encode_entries, encode_records
from minibroker.storage import MemoryLog, SegmentedLog
from minibroker.storage.batch import BATCH_HEADER_SIZE, KIND_ENTRIES, KIND_FRAMES, KIND_KAFKA
from minibroker.storage.fd_cache import FdCache
from minibroker.storage.kafka_batch import decode

# max_examples comes from the Hypothesis profile in tests/conftest.py (60 by
# default, a few seconds here; HYPOTHESIS_PROFILE=thorough for long runs).
STATEFUL_SETTINGS = settings(stateful_step_count=50, deadline=None)

entry = st.tuples(
    st.none() | st.binary(max_size=8),
    st.none() | st.dictionaries(st.sampled_from("abc"), st.text(max_size=4), max_size=2),
    st.binary(max_size=120),
)


@dataclass
class ModelSegment:
    base: int
    size: int = 0
    count: int = 0
    first_ts: int | None = None
    last_ts: int | None = None


@dataclass
class Model:
    """What any correct store must hold after the same operations."""

    segment_bytes: int
    start: int = 0
    records: list[Record] = field(default_factory=list)  # retained records, oldest first
    segments: list[ModelSegment] = field(default_factory=list)
    #: First offsets and sizes of the Kafka batches appended.
    kafka: dict[int, int] = field(default_factory=dict)
    #: First offsets and sizes of the batches of entries appended.
    entries: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.segments.append(ModelSegment(self.start))

    @property
    def first_offset(self) -> int:
        return self.segments[0].base

    @property
    def next_offset(self) -> int:
        return self.segments[-1].base + self.segments[-1].count

    def last_ts(self) -> int:
        return next((s.last_ts for s in reversed(self.segments) if s.last_ts is not None), 0)

    def append(self, batch: list[Entry], ts: int, frames: bool = False) -> int:
        first = self.next_offset
        if not batch:
            return first
        ts = max(ts, self.last_ts())
        if frames:  # the format before issue 19
            size = BATCH_HEADER_SIZE + len(encode_records(first, ts, batch))  # as stored on disk
        else:
            size = BATCH_HEADER_SIZE + encode_entries(first, ts, batch).size
            self.entries[first] = len(batch)
        self._add(size, len(batch), ts)
        self.records += [Record(first + i, ts, *e) for i, e in enumerate(batch)]
        return first

    def append_kafka(self, batch: bytes) -> int:
        """A producer's batch, its records stamped at or after the log's latest time."""
        first = self.next_offset
        records = [Record(first + i, *fields[1:]) for i, fields in enumerate(decode(batch))]
        stamps = [record.timestamp_ms for record in records]
        assert min(stamps) >= self.last_ts()  # (what the rule generates)
        self._add(BATCH_HEADER_SIZE + len(batch), len(records), max(stamps))
        self.records += records
        self.kafka[first] = len(records)
        return first

    def _add(self, size: int, count: int, ts: int) -> None:
        active = self.segments[-1]
        if active.size and active.size + size > self.segment_bytes:
            active = ModelSegment(self.next_offset)
            self.segments.append(active)
        active.size += size
        active.count += count
        if active.first_ts is None:
            active.first_ts = ts
        active.last_ts = ts

    def in_kafka_batch(self, offset: int) -> bool:
        return any(first <= offset < first + n for first, n in self.kafka.items())

    def in_unit(self, offset: int) -> bool:
        """Whether ``offset`` is in a batch read whole (a Kafka batch or one of entries)."""
        units = (*self.kafka.items(), *self.entries.items())
        return any(first <= offset < first + n for first, n in units)

    def kind_at(self, first: int) -> int:
        return KIND_KAFKA if first in self.kafka else KIND_ENTRIES if first in self.entries else 0

    def enforce_retention(self, now: int, max_bytes: int | None, max_ms: int | None) -> int:
        removed = 0
        while len(self.segments) > 1:
            oldest = self.segments[0]
            total = sum(s.size for s in self.segments)
            old = (
                max_ms is not None and oldest.last_ts is not None and now - oldest.last_ts > max_ms
            )
            big = max_bytes is not None and total - oldest.size >= max_bytes
            if not (old or big):
                break
            self.segments.pop(0)
            removed += oldest.count
        self.records = self.records[removed:]
        return removed

    def offset_for_timestamp(self, ts: int) -> int:
        return next((r.offset for r in self.records if r.timestamp_ms >= ts), self.next_offset)

    def frame_size(self, record: Record) -> int:
        return len(encode_records(record.offset, record.timestamp_ms, [record_entry(record)]))


def record_entry(record: Record) -> Entry:
    return record.key, record.headers, record.body


class LogMachine(RuleBasedStateMachine):
    """Rules shared by both stores; subclasses say how to make (and reopen) one."""

    store: LogStore
    model: Model

    def __init__(self) -> None:
        super().__init__()
        self.clock = 1_000

    def make_store(self, segment_bytes: int, index_interval: int, start: int) -> LogStore:
        raise NotImplementedError

    @initialize(
        segment_bytes=st.integers(40, 1200),
        index_interval=st.integers(1, 300),
        start=st.sampled_from([0, 0, 7, 2**40]),
    )
    def setup(self, segment_bytes: int, index_interval: int, start: int) -> None:
        self.model = Model(segment_bytes, start)
        self.store = self.make_store(segment_bytes, index_interval, start)

    @rule(batch=st.lists(entry, max_size=6), step=st.integers(-20, 50))
    def append(self, batch: list[Entry], step: int) -> None:
        self.clock = max(0, self.clock + step)  # may go backwards: the store clamps
        assert self.store.append(batch, self.clock) == self.model.append(batch, self.clock)

    @rule(batch=st.lists(entry, max_size=6), step=st.integers(-20, 50))
    def append_frames(self, batch: list[Entry], step: int) -> None:
        """An append in the format before issue 19 (record frames): what a log
        written by an older broker holds, followed by batches of entries."""
        self.clock = max(0, self.clock + step)
        self.store.entries_format = False  # type: ignore[attr-defined]
        try:
            got = self.store.append(batch, self.clock)
        finally:
            self.store.entries_format = True  # type: ignore[attr-defined]
        assert got == self.model.append(batch, self.clock, frames=True)

    @rule(values=st.lists(st.binary(max_size=60), min_size=1, max_size=6), ahead=st.integers(0, 9))
    def append_kafka(self, values: list[bytes], ahead: int) -> None:
        # The producer's clock runs at or ahead of the log's (a late one is in
        # test_kafka_batches.py); kio's writer keeps whole seconds.
        first_ms = -(-(max(self.model.last_ts(), self.clock) + ahead) // 1000) * 1000
        self.clock = first_ms
        batch = kafka_batch(values, first_ms, headers=False)
        newest = max(fields[1] for fields in decode(batch))  # what the front end passes
        got = self.store.append_kafka(batch, len(values), newest)
        assert got == self.model.append_kafka(batch)

    @rule(data=st.data(), max_bytes=st.integers(1, 900))
    def read_batches(self, data: st.DataObject, max_bytes: int) -> None:
        model = self.model
        offset = data.draw(st.integers(model.first_offset, model.next_offset), label="offset")
        end = data.draw(st.integers(offset, model.next_offset), label="end")
        units = self.store.read_batches(offset, end, max_bytes)
        if offset == end:
            assert units == []
            return
        units_read_whole = (*model.kafka.items(), *model.entries.items())
        crossing = [f for f, n in units_read_whole if f <= offset < f + n and f + n > end]
        if crossing:  # the batch holding ``offset`` reaches past ``end``
            assert units == []
            return
        assert units, "at least one unit"
        assert units[0].first_offset <= offset < units[0].first_offset + units[0].records
        for unit in units:
            if unit.kind == KIND_FRAMES:
                assert not model.in_unit(unit.first_offset)
            else:
                assert unit.kind == model.kind_at(unit.first_offset)
                stored = model.kafka if unit.kind == KIND_KAFKA else model.entries
                assert unit.records == stored[unit.first_offset]
                assert unit.first_offset + unit.records <= end
            assert unit.first_offset + unit.records <= model.next_offset
        for before, after in pairwise(units):
            assert before.first_offset + before.records == after.first_offset
        assert len(units) == 1 or sum(len(u.data) for u in units) <= max_bytes

    @rule(data=st.data(), max_records=st.integers(1, 12), max_bytes=st.integers(0, 700))
    def read(self, data: st.DataObject, max_records: int, max_bytes: int) -> None:
        model = self.model
        offset = data.draw(st.integers(model.first_offset, model.next_offset), label="offset")
        batch = self.store.read(offset, max_records, max_bytes)
        got = decode_records(batch.data)
        i = offset - model.first_offset
        assert got == model.records[i : i + batch.count]
        assert batch.count == len(got)
        assert batch.next_offset == offset + batch.count
        assert batch.count <= max_records
        if offset < model.next_offset:
            assert batch.count >= 1  # at least one, whatever max_bytes says
        assert len(batch.data) <= max_bytes or batch.count == 1
        # ... and as many as the limits allow (reads span segment boundaries;
        # through batches read whole the budget counts their stored bytes).
        touched = range(offset, min(batch.next_offset + 1, model.next_offset))
        whole = any(model.in_unit(o) for o in touched)
        if not whole and batch.count < max_records and batch.next_offset < model.next_offset:
            next_record = model.records[i + batch.count]
            assert len(batch.data) + model.frame_size(next_record) > max_bytes

    @rule(data=st.data(), max_records=st.integers(1, 12), max_bytes=st.integers(0, 700))
    def read_stored(self, data: st.DataObject, max_records: int, max_bytes: int) -> None:
        """What a client with ``read.batches`` gets: the same records as a read,
        within the same limits (``max_bytes`` counting the bytes sent)."""
        model = self.model
        offset = data.draw(st.integers(model.first_offset, model.next_offset), label="offset")
        batch = self.store.read_stored(offset, max_records, max_bytes)
        got = decode_stored(batch.data)
        i = offset - model.first_offset
        assert got == model.records[i : i + batch.count]
        assert batch.count == len(got)
        assert batch.next_offset == offset + batch.count
        assert 1 <= batch.count <= max_records or offset == model.next_offset
        assert len(batch.data) <= max_bytes or batch.count == 1 or batch.data[0] != 0xB7
        touched = range(offset, min(offset + max_records, model.next_offset))
        if not any(model.in_unit(o) for o in touched):  # frames only: exactly a read
            assert batch == self.store.read(offset, max_records, max_bytes)

    @rule(data=st.data())
    def read_out_of_range(self, data: st.DataObject) -> None:
        model = self.model
        below = st.integers(0, model.first_offset - 1) if model.first_offset else st.nothing()
        offset = data.draw(below | st.integers(model.next_offset + 1, model.next_offset + 5))
        with pytest.raises(OffsetOutOfRange) as caught:
            self.store.read(offset, 1, 100)
        assert caught.value.details["first_offset"] == model.first_offset
        assert caught.value.details["next_offset"] == model.next_offset

    @rule(delta=st.integers(-30, 30))
    def offset_for_timestamp(self, delta: int) -> None:
        ts = self.clock + delta
        assert self.store.offset_for_timestamp(ts) == self.model.offset_for_timestamp(ts)

    @rule(
        age=st.integers(0, 200),
        max_bytes=st.none() | st.integers(0, 3000),
        max_ms=st.none() | st.integers(0, 150),
    )
    def enforce_retention(self, age: int, max_bytes: int | None, max_ms: int | None) -> None:
        now = self.clock + age
        expected = self.model.enforce_retention(now, max_bytes, max_ms)
        assert self.store.enforce_retention(now, max_bytes, max_ms) == expected

    @rule()
    def sync(self) -> None:
        self.store.sync()

    @rule()
    def iterate(self) -> None:
        assert list(self.store.iter_records()) == self.model.records

    @invariant()
    def bounds_match(self) -> None:
        model = self.model
        assert self.store.first_offset == model.first_offset
        assert self.store.next_offset == model.next_offset
        assert self.store.segment_count == len(model.segments)
        assert self.store.size_bytes == sum(s.size for s in model.segments)
        first_ts = next((s.first_ts for s in model.segments if s.first_ts is not None), None)
        expected_range = (first_ts, model.last_ts()) if model.records else None
        assert self.store.timestamp_range() == expected_range

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.destroy()


class MemoryLogMachine(LogMachine):
    def make_store(self, segment_bytes: int, index_interval: int, start: int) -> LogStore:
        return MemoryLog(segment_bytes=segment_bytes, start_offset=start)


_LOCK_FILE = shutil.ignore_patterns(".lock")


class DiskLogMachine(LogMachine):
    root: Path  # set by the test, one directory per test run
    FD_CACHE_CAPACITY = 2

    def make_store(self, segment_bytes: int, index_interval: int, start: int) -> LogStore:
        self.directory = tempfile.mkdtemp(dir=self.root)
        self.options = {"segment_bytes": segment_bytes, "index_interval_bytes": index_interval}
        self.fd_cache = FdCache(self.FD_CACHE_CAPACITY)
        return self.open(start_offset=start)

    def open(self, start_offset: int = 0) -> SegmentedLog:
        return SegmentedLog.open(
            self.directory,
            start_offset=start_offset,
            fd_cache=self.fd_cache,
            segment_bytes=self.options["segment_bytes"],
            index_interval_bytes=self.options["index_interval_bytes"],
        )

    @rule(clean=st.booleans())
    def reopen(self, clean: bool) -> None:
        if not clean:
            self.crash()
        self.store.close()
        assert self.fd_cache.open_count == 0
        reopened = self.open()
        self.store = reopened
        assert reopened.recovery.scan_skipped == clean
        assert reopened.recovery.bytes_truncated == 0
        assert reopened.recovery.records == self.model.next_offset - self.model.first_offset

    def crash(self) -> None:
        """Switch to a copy of the open log's files: what a killed process leaves behind.

        No clean-shutdown marker in it (the open deleted it), and the newest
        segment's index file missing or stale. The original is closed and
        deleted.
        """
        copy = tempfile.mkdtemp(dir=self.root)
        shutil.copytree(self.directory, copy, dirs_exist_ok=True, ignore=_LOCK_FILE)
        self.store.destroy()
        self.directory = copy

    @invariant()
    def open_files_stay_bounded(self) -> None:
        if hasattr(self, "fd_cache"):
            sealed = len(self.model.segments) - 1
            assert self.fd_cache.open_count <= min(self.FD_CACHE_CAPACITY, sealed)

    def teardown(self) -> None:
        super().teardown()
        if hasattr(self, "fd_cache"):
            assert self.fd_cache.open_count == 0


def test_memory_log_matches_model() -> None:
    run_state_machine_as_test(MemoryLogMachine, settings=STATEFUL_SETTINGS)


def test_disk_log_matches_model(tmp_path: Path) -> None:
    DiskLogMachine.root = tmp_path
    run_state_machine_as_test(DiskLogMachine, settings=STATEFUL_SETTINGS)
