"""The log model plus real storage against a reference list, driven by Hypothesis.

The reference keeps every record ever appended (offsets never change
meaning), the groups' commits, and what each tail has delivered. Retention
is checked by its contract rather than predicted: the first offset only moves
forward, never past the active segment, and every retained record reads back
exactly as it was appended. Deleting records (Kafka's DeleteRecords) moves
the first offset to where it was asked, for every reader. The disk machine
also closes and reopens the broker (recovery), which must keep records,
options, commits and the log's start.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from test_logs import FakePeer

from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig, FsyncPolicy
from minibroker.core.log_options import LogOptions
from minibroker.core.log_readers import LogTail
from minibroker.core.logs import Logs
from minibroker.errors import BrokerError, OffsetOutOfRange
from minibroker.log_store import Entry
from minibroker.server.datadir import DataDirectory
from minibroker.storage import MemoryLog, Record, RecordBatch, decode_records

MACHINE_SETTINGS = settings(max_examples=30, stateful_step_count=30, deadline=None)

entries = st.lists(
    st.tuples(
        st.none() | st.binary(max_size=6),
        st.none() | st.dictionaries(st.sampled_from("xy"), st.text(max_size=3), max_size=2),
        st.binary(max_size=300),
    ),
    min_size=1,
    max_size=5,
)
groups = st.sampled_from(["g1", "g2"])


class LogsMachine(RuleBasedStateMachine):
    """Rules for one log in one namespace; the disk subclass adds reopening."""

    data_dir: Path | None = None
    fsync: FsyncPolicy = "never"

    def __init__(self) -> None:
        super().__init__()
        self.now = 1.0
        self.records: list[Record] = []
        self.groups: dict[str, int] = {}
        self.first_seen = 0
        #: The highest offset records were deleted up to (delete_records).
        self.start = 0
        self.peer = FakePeer()
        self.next_sub = 1
        #: sub id -> (tail, offsets delivered so far, ended errors)
        self.tail_state: dict[int, tuple[LogTail, list[int], list[BrokerError]]] = {}
        self.next_token = 1
        self.parked: dict[int, int] = {}  # token -> offset it waits at

    # ------------------------------------------------------------ set-up

    def open_logs(self) -> Logs:
        storage = DataDirectory(self.data_dir) if self.data_dir is not None else None
        broker = Broker(CoreConfig(fsync=self.fsync), storage=storage, memory_log=MemoryLog)
        return broker.namespace("sm").logs

    @initialize(
        segment_bytes=st.sampled_from([1024, 1500]),
        retention_bytes=st.none() | st.sampled_from([1500, 4000]),
        retention_seconds=st.none() | st.sampled_from([5.0, 30.0]),
    )
    def setup(
        self, segment_bytes: int, retention_bytes: int | None, retention_seconds: float | None
    ) -> None:
        self.options = LogOptions(retention_bytes, retention_seconds, segment_bytes)
        self.logs = self.open_logs()
        assert self.logs.create("ev", self.options, self.now)
        self.start_tail("earliest")
        self.start_tail("latest")

    # ------------------------------------------------------------ helpers

    @property
    def first(self) -> int:
        return self.logs.statistics("ev").first_offset

    @property
    def end(self) -> int:
        return len(self.records)

    def check_batch(self, batch: RecordBatch, offset: int) -> list[Record]:
        got = decode_records(batch.data)
        assert got == self.records[offset : offset + len(got)]
        assert batch.count == len(got)
        assert batch.next_offset == offset + len(got)
        return got

    # ------------------------------------------------------------- rules

    @rule(batch=entries, dt=st.floats(0, 20))
    def append(self, batch: list[Entry], dt: float) -> None:
        self.now += dt
        first = self.logs.append("ev", batch, self.now)
        assert first == self.end
        stamp = self.logs.broker.clock.wall_ms(self.now)
        stored = decode_records(self.logs.read("ev", start=first, max_records=len(batch)).data)
        stamp = stored[0].timestamp_ms  # raised to the previous one if the clock lagged
        self.records += [Record(first + i, stamp, *e) for i, e in enumerate(batch)]
        for token, offset in list(self.parked.items()):
            result = self.peer.resolved.pop(token, None)
            assert result is not None, "a parked read must wake on append"
            self.check_batch(result, offset)
            del self.parked[token]

    @rule(data=st.data(), max_records=st.integers(1, 20), max_bytes=st.integers(1, 2000))
    def read_from_offset(self, data: st.DataObject, max_records: int, max_bytes: int) -> None:
        offset = data.draw(st.integers(self.first, self.end))
        batch = self.logs.read("ev", start=offset, max_records=max_records, max_bytes=max_bytes)
        got = self.check_batch(batch, offset)
        assert len(got) <= max_records
        if offset < self.end:
            assert got

    @rule(start=st.sampled_from(["earliest", "latest", "committed"]), group=groups)
    def read_from_named_start(self, start: str, group: str) -> None:
        """A commit may sit below the first offset: one made before retention
        passed it, or a commit back to an offset already gone (allowed). Reading
        from it must then fail as docs/logs.md says, naming the first offset.
        So the expectation is decided *before* the read, which may raise."""
        expected = {
            "earliest": self.first,
            "latest": self.end,
            "committed": self.groups.get(group, self.first),
        }[start]
        if expected < self.first:
            try:
                self.logs.read("ev", start=start, group=group)
            except OffsetOutOfRange as exc:
                assert exc.details["first_offset"] == self.first
                return
            raise AssertionError("a commit behind retention must not be readable")
        batch = self.logs.read("ev", start=start, group=group, max_records=1000)
        self.check_batch(batch, expected)

    @rule(data=st.data())
    def read_by_timestamp(self, data: st.DataObject) -> None:
        retained = self.records[self.first :]
        stamps = sorted({r.timestamp_ms for r in retained} | {0, 10**13})
        ts = data.draw(st.sampled_from(stamps))
        expected = next((r.offset for r in retained if r.timestamp_ms >= ts), self.end)
        batch = self.logs.read("ev", timestamp_ms=ts, max_records=1000)
        self.check_batch(batch, expected)

    @precondition(lambda self: self.first > 0)
    @rule(data=st.data())
    def read_below_first(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(0, self.first - 1))
        try:
            self.logs.read("ev", start=offset)
        except OffsetOutOfRange as exc:
            assert exc.details["first_offset"] == self.first
        else:
            raise AssertionError("reading below the first offset must fail")

    @rule(group=groups, data=st.data())
    def commit(self, group: str, data: st.DataObject) -> None:
        offset = data.draw(st.integers(0, self.end))
        self.logs.commit("ev", group, offset, self.now)
        self.groups[group] = offset

    @rule(group=groups)
    def committed(self, group: str) -> None:
        assert self.logs.committed("ev", group) == self.groups.get(group)

    def start_tail(self, start: str) -> None:
        sub_id = self.next_sub
        self.next_sub += 1
        ended: list[BrokerError] = []
        tail = self.logs.tail(self.peer, sub_id, "ev", ended.append, start=start)
        begin = self.first if start == "earliest" else self.end
        self.tail_state[sub_id] = (tail, [begin - 1], ended)

    @rule(start=st.sampled_from(["earliest", "latest"]))
    def new_tail(self, start: str) -> None:
        self.start_tail(start)

    @rule(data=st.data(), budget=st.integers(1, 3000), pushes=st.integers(1, 4))
    def drain_tail(self, data: st.DataObject, budget: int, pushes: int) -> None:
        """What the session does: take chunks while the tail says it has more."""
        live = sorted(k for k, v in self.tail_state.items() if not v[2])
        if not live:
            return
        tail, delivered, ended = self.tail_state[data.draw(st.sampled_from(live))]
        for _ in range(pushes):
            if ended:
                return
            batch = tail.take(budget)
            if ended:
                assert isinstance(ended[0], OffsetOutOfRange)
                assert delivered[-1] + 1 < self.first
                return
            if batch is None:
                assert delivered[-1] + 1 == self.end  # caught up
                return
            got = self.check_batch(batch, delivered[-1] + 1)  # no gap, no duplicate
            delivered.extend(r.offset for r in got)
            if not tail.has_more():
                assert delivered[-1] + 1 == self.end
                return

    @rule()
    def park_read_at_the_end(self) -> None:
        token = self.next_token
        self.next_token += 1
        self.logs.wait_for_records(self.peer, token, "ev", self.end, 100, 1 << 20, 600.0, self.now)
        self.parked[token] = self.end

    @rule(dt=st.floats(0, 60))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self.logs.broker.on_time(self.now)
        for token, offset in list(self.parked.items()):
            expired = self.peer.resolved.pop(token, None)
            if expired is not None:  # its deadline passed with nothing to read
                assert (expired.count, expired.next_offset) == (0, offset)
                del self.parked[token]

    @rule()
    def enforce_retention(self) -> None:
        self.logs.enforce_retention(self.now)

    @rule(data=st.data())
    def delete_records(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(0, self.end))
        expected = max(self.first, offset)
        assert self.logs.delete_records("ev", offset, self.now) == expected
        self.start = max(self.start, offset)
        assert self.first == expected

    # -------------------------------------------------------- invariants

    @invariant()
    def offsets_hold(self) -> None:
        if not hasattr(self, "logs"):
            return
        stats = self.logs.statistics("ev")
        assert stats.next_offset == stats.high_watermark == self.end
        assert self.first_seen <= stats.first_offset <= self.end
        self.first_seen = stats.first_offset
        assert stats.options == self.options
        assert {g: s.committed for g, s in stats.groups.items()} == self.groups
        assert stats.first_offset >= self.start
        if not self.options.has_retention:
            assert stats.first_offset == self.start
        # The stored records are exactly the reference's suffix; those below the
        # log's start (inside the segment that holds it) are stored but unread.
        store = self.logs.get("ev").store
        assert store.first_offset <= stats.first_offset
        assert list(store.iter_records()) == self.records[store.first_offset :]


class TestMemory(LogsMachine.TestCase):  # type: ignore[name-defined,misc]
    settings = MACHINE_SETTINGS


class DiskLogsMachine(LogsMachine):
    """The same rules on disk, plus closing and reopening the broker."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="mb-logs-sm-")
        self.data_dir = Path(self._tmp.name)
        super().__init__()

    @rule()
    def reopen(self) -> None:
        self.logs.broker.close()
        self.logs = self.open_logs()
        # Tails and parked reads belonged to connections, which a restart closes.
        for _tail, _delivered, ended in self.tail_state.values():
            ended.append(BrokerError("restarted"))
        self.parked.clear()
        self.peer = FakePeer()
        self.start_tail("earliest")

    def teardown(self) -> None:
        with contextlib.suppress(AttributeError):  # setup never ran
            self.logs.broker.close()
        self._tmp.cleanup()


def test_disk_machine() -> None:
    run_state_machine_as_test(DiskLogsMachine, settings=MACHINE_SETTINGS)


class BatchDiskLogsMachine(DiskLogsMachine):
    """Group commit: readers see records only after the sync that covers them."""

    fsync: FsyncPolicy = "batch"

    @rule(batch=entries, dt=st.floats(0, 20))
    def append(self, batch: list[Entry], dt: float) -> None:
        before = self.logs.statistics("ev").high_watermark
        self.now += dt
        first = self.logs.append("ev", batch, self.now)
        stats = self.logs.statistics("ev")
        assert stats.high_watermark == before and stats.next_offset == first + len(batch)
        assert self.logs.read("ev", start="latest").next_offset == before
        self.logs.broker.sync_storage()
        stored = decode_records(self.logs.read("ev", start=first, max_records=len(batch)).data)
        self.records += stored
        assert [(r.key, r.headers, r.body) for r in stored] == batch
        for token, offset in list(self.parked.items()):
            result = self.peer.resolved.pop(token)
            self.check_batch(result, offset)
            del self.parked[token]


def test_batch_disk_machine() -> None:
    run_state_machine_as_test(BatchDiskLogsMachine, settings=MACHINE_SETTINGS)
