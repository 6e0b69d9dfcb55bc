"""Unit tests of the log model (minibroker.core.logs), driven directly: no protocol, no sockets.

Storage is real: MemoryLog without a data directory, SegmentedLog files under
tmp_path with one. Time is a plain number passed in, and timers fire through
``broker.on_time(now)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig, FsyncPolicy, Limits
from minibroker.core.log_meta import LogMeta
from minibroker.core.log_options import LogOptions
from minibroker.core.log_readers import LogTail
from minibroker.core.logs import Logs
from minibroker.core.peer import PushSource
from minibroker.errors import (
    BadRequest,
    BrokerError,
    Conflict,
    InvalidName,
    NotFound,
    OffsetOutOfRange,
    TooLarge,
)
from minibroker.server.datadir import DataDirectory
from minibroker.storage import MemoryLog, Record, RecordBatch, decode_records


class FakePeer:
    """Records what the core tells a connection."""

    def __init__(self, conn_id: int = 1) -> None:
        self._conn_id = conn_id
        self.resolved: dict[int, RecordBatch] = {}
        self.rejected: dict[int, BrokerError] = {}
        self.ready: list[PushSource] = []
        #: What ``takes_reply`` answers (False: a client that stopped reading).
        self.reading = True

    @property
    def conn_id(self) -> int:
        return self._conn_id

    def takes_reply(self) -> bool:
        return self.reading

    def resolve(self, token: int, result: object) -> None:
        assert token not in self.resolved and token not in self.rejected
        assert isinstance(result, RecordBatch)
        self.resolved[token] = result

    def reject(self, token: int, error: BrokerError) -> None:
        assert token not in self.resolved and token not in self.rejected
        self.rejected[token] = error

    def push_ready(self, source: PushSource) -> None:
        self.ready.append(source)

    def kick(self, error: BrokerError) -> None:
        raise AssertionError("logs never kick a connection")


def make_logs(
    data_dir: Path | None = None, fsync: FsyncPolicy = "never", limits: Limits | None = None
) -> Logs:
    storage = DataDirectory(data_dir) if data_dir is not None else None
    broker = Broker(
        CoreConfig(limits=limits or Limits(), fsync=fsync), storage=storage, memory_log=MemoryLog
    )
    return broker.namespace("t").logs


def bodies(batch: RecordBatch) -> list[bytes]:
    return [r.body for r in decode_records(batch.data)]


def drain(tail: LogTail, budget: int = 1 << 20) -> list[Record]:
    """What a session would send for ``tail`` until it has nothing more."""
    out: list[Record] = []
    while True:
        batch = tail.take(budget)
        if batch is None:
            return out
        out.extend(decode_records(batch.data))
        if not tail.has_more():
            return out


@pytest.fixture(params=["memory", "disk"])
def logs(request: pytest.FixtureRequest, tmp_path: Path) -> Logs:
    return make_logs(tmp_path if request.param == "disk" else None)


# ------------------------------------------------------------------ create


def test_create_is_idempotent_with_the_same_options(logs: Logs) -> None:
    options = LogOptions(retention_bytes=10_000, segment_bytes=4096)
    assert logs.create("ev", options, 0.0) is True
    assert logs.create("ev", LogOptions(retention_bytes=10_000, segment_bytes=4096), 1.0) is False
    with pytest.raises(Conflict) as info:
        logs.create("ev", LogOptions(retention_bytes=20_000, segment_bytes=4096), 1.0)
    assert "retention_bytes" in info.value.message
    assert logs.names() == ["ev"]


@pytest.mark.parametrize(
    "options",
    [
        LogOptions(retention_bytes=0),
        LogOptions(retention_seconds=0.0),
        LogOptions(retention_seconds=float("nan")),
        LogOptions(segment_bytes=10),
        LogOptions(segment_bytes=2**40),
    ],
)
def test_bad_options_are_refused_and_change_nothing(logs: Logs, options: LogOptions) -> None:
    with pytest.raises(BadRequest):
        logs.create("ev", options, 0.0)
    assert logs.names() == []


@pytest.mark.parametrize("name", ["", "a b", "x*", "#", "a" * 256])
def test_bad_names_are_refused(logs: Logs, name: str) -> None:
    with pytest.raises(InvalidName):
        logs.create(name, LogOptions(), 0.0)


def test_unknown_log_is_not_found(logs: Logs) -> None:
    with pytest.raises(NotFound):
        logs.append("nope", [(None, None, b"x")], 0.0)
    with pytest.raises(NotFound):
        logs.read("nope")
    with pytest.raises(NotFound):
        logs.delete("nope", 0.0)


# ------------------------------------------------------------------ append


def test_append_assigns_dense_offsets_and_one_timestamp_per_batch(logs: Logs) -> None:
    logs.create("ev", LogOptions(), 0.0)
    assert logs.append("ev", [(None, None, b"a")], 1.0) == 0
    assert logs.append("ev", [(b"k", {"h": "v"}, b"b"), (None, None, b"c")], 2.0) == 1
    records = decode_records(logs.read("ev").data)
    assert [(r.offset, r.key, r.headers, r.body) for r in records] == [
        (0, None, None, b"a"),
        (1, b"k", {"h": "v"}, b"b"),
        (2, None, None, b"c"),
    ]
    assert records[1].timestamp_ms == records[2].timestamp_ms == 2000
    assert records[0].timestamp_ms == 1000


def test_append_limits(tmp_path: Path) -> None:
    logs = make_logs(None, limits=Limits(max_batch=3, max_message_bytes=10))
    logs.create("ev", LogOptions(), 0.0)
    assert logs.append("ev", [], 0.0) == 0  # an empty batch changes nothing
    with pytest.raises(BadRequest):
        logs.append("ev", [(None, None, b"x")] * 4, 0.0)
    with pytest.raises(TooLarge):
        logs.append("ev", [(None, None, b"x"), (None, None, b"y" * 11)], 0.0)
    with pytest.raises(TooLarge):
        logs.append("ev", [(b"k" * 11, None, b"x")], 0.0)
    assert logs.statistics("ev").next_offset == 0  # nothing was stored


# -------------------------------------------------------------------- read


def test_read_from_every_kind_of_start(logs: Logs) -> None:
    logs.create("ev", LogOptions(), 0.0)
    logs.append("ev", [(None, None, b"a"), (None, None, b"b")], 10.0)
    logs.append("ev", [(None, None, b"c")], 20.0)
    assert bodies(logs.read("ev", start=1)) == [b"b", b"c"]
    assert bodies(logs.read("ev", start="earliest")) == [b"a", b"b", b"c"]
    latest = logs.read("ev", start="latest")
    assert (latest.count, latest.next_offset) == (0, 3)
    assert bodies(logs.read("ev", timestamp_ms=15_000)) == [b"c"]
    assert bodies(logs.read("ev", timestamp_ms=0)) == [b"a", b"b", b"c"]
    assert logs.read("ev", timestamp_ms=99_000).next_offset == 3
    # A group that never committed starts at the beginning.
    assert bodies(logs.read("ev", start="committed", group="g")) == [b"a", b"b", b"c"]
    logs.commit("ev", "g", 2, 30.0)
    assert bodies(logs.read("ev", start="committed", group="g")) == [b"c"]
    batch = logs.read("ev", start=0, max_records=2)
    assert (bodies(batch), batch.next_offset) == ([b"a", b"b"], 2)


def test_read_returns_at_least_one_record_beyond_max_bytes(logs: Logs) -> None:
    logs.create("ev", LogOptions(), 0.0)
    logs.append("ev", [(None, None, b"x" * 500), (None, None, b"y")], 0.0)
    assert bodies(logs.read("ev", max_bytes=10)) == [b"x" * 500]


def test_max_bytes_is_a_budget_without_a_ceiling_in_the_core(logs: Logs) -> None:
    # The ceiling is the connection's frame limit, applied by the front end
    # (protocol/handlers/logs.py::read_budget); asking for more is no error.
    logs.create("ev", LogOptions(), 0.0)
    logs.append("ev", [(None, None, b"a"), (None, None, b"b")], 0.0)
    assert bodies(logs.read("ev", max_bytes=1 << 40)) == [b"a", b"b"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": "newest"},
        {"start": -1},
        {"start": "committed"},  # no group
        {"max_records": 0},
        {"max_bytes": 0},
        {"wait": -1.0},
        {"wait": 1e9},
        {"timestamp_ms": -5},
        {"group": "bad group"},
    ],
)
def test_bad_reads_are_refused(logs: Logs, kwargs: dict[str, Any]) -> None:
    logs.create("ev", LogOptions(), 0.0)
    with pytest.raises((BadRequest, InvalidName)):
        logs.read("ev", **kwargs)


def test_reading_outside_the_log_names_the_first_offset(logs: Logs) -> None:
    logs.create("ev", LogOptions(segment_bytes=1024, retention_bytes=1024), 0.0)
    for i in range(40):
        logs.append("ev", [(None, None, bytes(100))], float(i))
    logs.enforce_retention(100.0)
    first = logs.statistics("ev").first_offset
    assert first > 0
    with pytest.raises(OffsetOutOfRange) as info:
        logs.read("ev", start=first - 1)
    assert info.value.details["first_offset"] == first
    with pytest.raises(OffsetOutOfRange):
        logs.read("ev", start=41)
    assert logs.read("ev", start=first).count > 0


# --------------------------------------------------------------- long poll


def test_parked_read_wakes_on_append(logs: Logs) -> None:
    peer = FakePeer()
    logs.create("ev", LogOptions(), 0.0)
    logs.wait_for_records(peer, 7, "ev", 0, 100, 1 << 20, 5.0, 0.0)
    assert peer.resolved == {}
    assert logs.statistics("ev").waiting_reads == 1
    logs.append("ev", [(None, None, b"a"), (None, None, b"b")], 1.0)
    assert bodies(peer.resolved[7]) == [b"a", b"b"]
    assert logs.statistics("ev").waiting_reads == 0
    # The deadline timer was cancelled: nothing more happens later.
    logs.broker.on_time(100.0)
    assert list(peer.resolved) == [7]


def test_parked_read_answers_empty_at_its_deadline(logs: Logs) -> None:
    peer = FakePeer()
    logs.create("ev", LogOptions(), 0.0)
    logs.wait_for_records(peer, 1, "ev", 0, 100, 1 << 20, 2.0, 10.0)
    logs.broker.on_time(11.9)
    assert peer.resolved == {}
    logs.broker.on_time(12.0)
    assert (peer.resolved[1].count, peer.resolved[1].next_offset) == (0, 0)


def test_a_parked_read_of_a_client_not_reading_is_answered_as_at_its_deadline(
    logs: Logs,
) -> None:
    """``takes_reply`` False when records come: an empty batch at the read's
    offset, no records read, the deadline timer gone; others are served."""
    peer, other = FakePeer(1), FakePeer(2)
    logs.create("ev", LogOptions(), 0.0)
    logs.wait_for_records(peer, 1, "ev", 0, 100, 1 << 20, 2.0, 0.0)
    logs.wait_for_records(other, 1, "ev", 0, 100, 1 << 20, 2.0, 0.0)
    peer.reading = False
    logs.append("ev", [b"a", b"b"], 1.0)
    assert (peer.resolved[1].count, peer.resolved[1].next_offset) == (0, 0)
    assert peer.resolved[1].data == b""
    assert bodies(other.resolved[1]) == [b"a", b"b"]
    assert logs.statistics("ev").waiting_reads == 0
    assert len(logs.broker.timers) == 0
    # Once reading again, the same offset gives every record.
    assert bodies(logs.read("ev", start=peer.resolved[1].next_offset)) == [b"a", b"b"]


def test_a_parked_read_can_be_withdrawn_by_the_front_end(logs: Logs) -> None:
    """A Kafka Fetch waits on several logs; once one answers, it withdraws the others."""
    peer = FakePeer()
    logs.create("ev", LogOptions(), 0.0)
    logs.append("ev", [b"old"], 0.0)
    assert logs.wait_for_records(peer, 1, "ev", 0, 100, 1 << 20, 2.0, 0.0) is None
    assert bodies(peer.resolved[1]) == [b"old"]  # answered at once: nothing to withdraw
    waiter = logs.wait_for_records(peer, 2, "ev", 1, 100, 1 << 20, 2.0, 0.0)
    assert waiter is not None and logs.statistics("ev").waiting_reads == 1
    waiter.detach()
    assert logs.statistics("ev").waiting_reads == 0
    logs.append("ev", [b"new"], 1.0)
    logs.broker.on_time(5.0)
    assert list(peer.resolved) == [1]  # neither the append nor the deadline answers it


def test_parked_read_fails_when_the_log_is_deleted(logs: Logs) -> None:
    peer = FakePeer()
    logs.create("ev", LogOptions(), 0.0)
    logs.wait_for_records(peer, 1, "ev", 0, 100, 1 << 20, 2.0, 0.0)
    logs.delete("ev", 1.0)
    assert isinstance(peer.rejected[1], NotFound)


def test_disconnect_forgets_parked_reads_and_tails(logs: Logs) -> None:
    peer, other = FakePeer(1), FakePeer(2)
    logs.create("ev", LogOptions(), 0.0)
    logs.wait_for_records(peer, 1, "ev", 0, 100, 1 << 20, 2.0, 0.0)
    logs.tail(peer, 1, "ev", lambda e: None)
    logs.tail(other, 1, "ev", lambda e: None)
    logs.disconnect(peer, 0.5)
    stats = logs.statistics("ev")
    assert (stats.waiting_reads, stats.tails) == (0, 1)
    logs.append("ev", [(None, None, b"a")], 1.0)
    logs.broker.on_time(10.0)
    assert peer.resolved == {} and peer.ready == []
    assert len(other.ready) == 1


# -------------------------------------------------------------------- tail


def test_tail_replays_then_follows_without_gap_or_duplicate(logs: Logs) -> None:
    peer = FakePeer()
    logs.create("ev", LogOptions(), 0.0)
    logs.append("ev", [(None, None, b"%d" % i) for i in range(10)], 0.0)
    tail = logs.tail(peer, 1, "ev", lambda e: None, start="earliest")
    assert peer.ready == [tail]
    seen = drain(tail, budget=200)  # small budget: several pushes
    assert [r.offset for r in seen] == list(range(10))
    assert tail.idle
    logs.append("ev", [(None, None, b"10")], 1.0)
    assert peer.ready == [tail, tail]
    assert [r.offset for r in drain(tail)] == [10]
    assert drain(tail) == []


def test_tail_from_latest_only_sees_new_records(logs: Logs) -> None:
    peer = FakePeer()
    logs.create("ev", LogOptions(), 0.0)
    logs.append("ev", [(None, None, b"old")], 0.0)
    tail = logs.tail(peer, 1, "ev", lambda e: None)
    assert peer.ready == [] and tail.idle
    logs.append("ev", [(None, None, b"new")], 1.0)
    assert [r.body for r in drain(tail)] == [b"new"]


def test_tail_ends_when_the_log_is_deleted(logs: Logs) -> None:
    ended: list[BrokerError] = []
    logs.create("ev", LogOptions(), 0.0)
    logs.tail(FakePeer(), 1, "ev", ended.append)
    logs.delete("ev", 1.0)
    assert len(ended) == 1 and isinstance(ended[0], NotFound)


def test_tail_that_falls_behind_retention_ends_with_offset_out_of_range(logs: Logs) -> None:
    ended: list[BrokerError] = []
    logs.create("ev", LogOptions(segment_bytes=1024, retention_bytes=1024), 0.0)
    tail = logs.tail(FakePeer(), 1, "ev", ended.append, start="earliest")
    for i in range(40):
        logs.append("ev", [(None, None, bytes(100))], float(i))
    logs.enforce_retention(100.0)
    assert tail.take(1 << 20) is None
    assert isinstance(ended[0], OffsetOutOfRange)
    assert logs.statistics("ev").tails == 0


def test_unsubscribed_tail_is_not_woken(logs: Logs) -> None:
    peer = FakePeer()
    logs.create("ev", LogOptions(), 0.0)
    tail = logs.tail(peer, 1, "ev", lambda e: None)
    tail.cancel(0.0)
    logs.append("ev", [(None, None, b"x")], 1.0)
    assert peer.ready == []


def test_tail_respects_the_byte_budget(logs: Logs) -> None:
    logs.create("ev", LogOptions(), 0.0)
    logs.append("ev", [(None, None, bytes(100)) for _ in range(100)], 0.0)
    tail = logs.tail(FakePeer(), 1, "ev", lambda e: None, start=0, max_bytes=1 << 20)
    batch = tail.take(1000)
    assert batch is not None and 0 < len(batch.data) <= 1000
    assert tail.has_more()


# ------------------------------------------------------------------ groups


def test_commit_and_committed(logs: Logs) -> None:
    logs.create("ev", LogOptions(), 0.0)
    logs.append("ev", [(None, None, b"x")] * 5, 0.0)
    assert logs.committed("ev", "g") is None
    logs.commit("ev", "g", 3, 1.0)
    assert logs.committed("ev", "g") == 3
    stats = logs.statistics("ev")
    assert (stats.groups["g"].committed, stats.groups["g"].lag) == (3, 2)
    with pytest.raises(OffsetOutOfRange):
        logs.commit("ev", "g", 6, 1.0)
    with pytest.raises(OffsetOutOfRange):
        logs.commit("ev", "g", -1, 1.0)
    with pytest.raises(InvalidName):
        logs.commit("ev", "", 1, 1.0)
    assert logs.committed("ev", "g") == 3


def test_reading_a_commit_that_fell_behind_retention_names_the_first_offset(
    logs: Logs,
) -> None:
    """The stateful test's case: a commit below the first retained offset stays
    committed, and reading from it fails as docs/logs.md promises."""
    logs.create("ev", LogOptions(segment_bytes=1024, retention_seconds=5.0), 0.0)
    for i in range(40):
        logs.append("ev", [(None, None, bytes(100))], float(i))
    logs.commit("ev", "g", 3, 40.0)
    logs.broker.on_time(100.0)
    first = logs.statistics("ev").first_offset
    assert first > 3
    assert logs.committed("ev", "g") == 3
    with pytest.raises(OffsetOutOfRange) as info:
        logs.read("ev", start="committed", group="g")
    assert info.value.details["first_offset"] == first
    logs.commit("ev", "g", 1, 101.0)  # committing back below the first offset is allowed
    assert logs.statistics("ev").groups["g"].committed == 1


# --------------------------------------------------------------- retention


def test_size_retention_runs_right_after_an_append(logs: Logs) -> None:
    logs.create("ev", LogOptions(segment_bytes=1024, retention_bytes=2048), 0.0)
    for i in range(100):
        logs.append("ev", [(None, None, bytes(100))], float(i))
        logs.broker.on_time(float(i))
    stats = logs.statistics("ev")
    assert stats.first_offset > 0
    assert stats.bytes < 2048 + 1024 + 200
    assert stats.next_offset == 100


def test_age_retention_runs_on_a_timer(logs: Logs) -> None:
    logs.create("ev", LogOptions(segment_bytes=1024, retention_seconds=60.0), 0.0)
    for i in range(30):
        logs.append("ev", [(None, None, bytes(100))], float(i))
    assert logs.statistics("ev").first_offset == 0
    logs.broker.on_time(60.0)
    assert logs.statistics("ev").first_offset == 0  # the newest of the oldest is 0-7 s old
    logs.broker.on_time(200.0)
    stats = logs.statistics("ev")
    assert stats.first_offset > 0 and stats.segments == 1
    assert stats.next_offset == 30


# -------------------------------------------------------------- durability


def test_group_commit_holds_records_from_readers_until_synced(tmp_path: Path) -> None:
    logs = make_logs(tmp_path, fsync="batch")
    broker = logs.broker
    peer = FakePeer()
    logs.create("ev", LogOptions(), 0.0)
    tail = logs.tail(peer, 1, "ev", lambda e: None)
    logs.wait_for_records(peer, 1, "ev", 0, 10, 1 << 20, 5.0, 0.0)
    generation = broker.durability.generation
    logs.append("ev", [(None, None, b"a")], 1.0)
    assert broker.durability.generation == generation + 1
    assert logs.read("ev").count == 0  # not yet durable, not yet visible
    assert peer.resolved == {} and peer.ready == []
    stats = logs.statistics("ev")
    assert (stats.next_offset, stats.high_watermark) == (1, 0)
    broker.sync_storage()
    assert bodies(peer.resolved[1]) == [b"a"]
    assert peer.ready == [tail]
    assert logs.read("ev").count == 1


@pytest.mark.parametrize("fsync", ["always", "never"])
def test_other_policies_make_records_visible_at_once(tmp_path: Path, fsync: FsyncPolicy) -> None:
    logs = make_logs(tmp_path, fsync=fsync)
    generation = logs.broker.durability.generation
    logs.create("ev", LogOptions(), 0.0)
    logs.append("ev", [(None, None, b"a")], 1.0)
    assert logs.read("ev").count == 1
    assert logs.broker.durability.generation == generation


# ---------------------------------------------------------------- recovery


def test_options_records_and_groups_survive_a_restart(tmp_path: Path) -> None:
    logs = make_logs(tmp_path)
    options = LogOptions(retention_bytes=1 << 20, retention_seconds=3600.0, segment_bytes=4096)
    logs.create("ev", options, 0.0)
    logs.create("other", LogOptions(), 0.0)
    logs.append("ev", [(b"k", {"a": "b"}, b"x" * 100) for _ in range(100)], 1.0)
    logs.commit("ev", "g", 42, 2.0)
    logs.broker.close()

    again = make_logs(tmp_path)
    assert again.names() == ["ev", "other"]
    stats = again.statistics("ev")
    assert stats.options == options
    assert (stats.first_offset, stats.next_offset) == (0, 100)
    assert again.committed("ev", "g") == 42
    assert again.create("ev", options, 3.0) is False
    assert again.append("ev", [(None, None, b"more")], 3.0) == 100
    assert decode_records(again.read("ev", start=0, max_records=1).data)[0].key == b"k"


def test_deleted_log_stays_deleted_after_a_restart(tmp_path: Path) -> None:
    logs = make_logs(tmp_path)
    logs.create("ev", LogOptions(), 0.0)
    logs.append("ev", [(None, None, b"a")], 0.0)
    logs.delete("ev", 1.0)
    logs.create("ev2", LogOptions(), 0.0)
    logs.broker.close()
    again = make_logs(tmp_path)
    assert again.names() == ["ev2"]
    again.create("ev", LogOptions(), 2.0)
    assert again.statistics("ev").next_offset == 0


def test_orphan_metadata_is_removed_at_recovery(tmp_path: Path) -> None:
    logs = make_logs(tmp_path)
    logs.create("ev", LogOptions(), 0.0)
    target = logs.get("ev")
    logs.broker.close()
    # Simulate a crash between deleting the log and deleting its metadata.
    storage = DataDirectory(tmp_path)
    storage.remove("t", "log", "ev")
    assert storage.existing("t", "log-meta") == ["ev"]
    again = make_logs(tmp_path)
    assert again.names() == []
    assert storage.existing("t", "log-meta") == []
    assert target.closed


def test_metadata_journal_compacts_and_keeps_every_group(tmp_path: Path) -> None:
    logs = make_logs(tmp_path)
    logs.create("ev", LogOptions(segment_bytes=4096), 0.0)
    logs.append("ev", [(None, None, b"x")] * 100, 0.0)
    for i in range(8_000):
        logs.commit("ev", f"g{i % 7}", i % 100 + 1 if i % 100 else 1, float(i))
    meta = logs.get("ev").meta
    assert meta is not None and meta.compactions > 0
    assert meta.store.segment_count <= 2
    expected = dict(logs.get("ev").groups)
    logs.broker.close()
    again = make_logs(tmp_path)
    assert dict(again.get("ev").groups) == expected
    assert again.statistics("ev").options == LogOptions(segment_bytes=4096)


def test_a_group_offset_past_the_recovered_end_is_moved_back(tmp_path: Path) -> None:
    logs = make_logs(tmp_path)
    logs.create("ev", LogOptions(), 0.0)
    logs.append("ev", [(None, None, b"x")] * 10, 0.0)
    logs.commit("ev", "g", 10, 0.0)
    meta_store = logs.get("ev").meta
    assert meta_store is not None
    logs.broker.close()
    # The records vanish (fsync=never and a crash, say) but the commit stayed.
    storage = DataDirectory(tmp_path)
    store = storage.open("t", "log", "ev", segment_bytes=None)
    store.destroy()
    storage.open("t", "log", "ev", segment_bytes=None).close()
    again = make_logs(tmp_path)
    assert again.committed("ev", "g") == 0


def test_log_meta_replay_ignores_unknown_record_kinds(tmp_path: Path) -> None:
    storage = DataDirectory(tmp_path)
    store = storage.open("t", "log-meta", "x", segment_bytes=None)
    meta = LogMeta(store)
    meta.write_options(LogOptions(segment_bytes=2048), 0)
    store.append([(b"Z", None, b"{}")], 0)
    meta.write_commit("g", 5, 0)
    store.close()
    loaded = LogMeta.load(storage.open("t", "log-meta", "x", segment_bytes=None))
    assert loaded.options == LogOptions(segment_bytes=2048)
    assert loaded.groups == {"g": 5}


def test_a_broker_without_an_in_memory_store_says_how_to_give_it_one() -> None:
    # The core never names a concrete store: the shell injects the factory.
    logs = Broker().namespace("t").logs
    with pytest.raises(RuntimeError, match=r"Broker\(memory_log=\.\.\.\)"):
        logs.create("ev", LogOptions(), 0.0)
    assert "ev" not in logs


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_deleted_group_offset_stays_deleted_after_a_restart(
    tmp_path: Path, on_disk: bool
) -> None:
    logs = make_logs(tmp_path) if on_disk else make_logs()
    logs.create("ev", LogOptions(), 0.0)
    logs.append("ev", [(None, None, b"a"), (None, None, b"b")], 0.0)
    logs.commit("ev", "g", 2, 1.0)
    logs.commit("ev", "h", 1, 1.0)
    assert logs.forget_group("ev", "g", 2.0) is True
    assert logs.forget_group("ev", "g", 2.0) is False
    assert logs.committed("ev", "g") is None
    assert set(logs.statistics("ev").groups) == {"h"}
    if on_disk:
        logs.broker.close()
        again = make_logs(tmp_path)
        assert again.committed("ev", "g") is None
        assert again.committed("ev", "h") == 1


def test_changed_retention_applies_at_once_and_survives_a_restart(tmp_path: Path) -> None:
    logs = make_logs(tmp_path)
    logs.create("ev", LogOptions(segment_bytes=4096), 0.0)
    for _ in range(20):
        logs.append("ev", [(None, None, b"x" * 1000)], 1.0)
    assert logs.statistics("ev").first_offset == 0
    tighter = LogOptions(retention_bytes=8192, segment_bytes=4096)
    logs.change_options("ev", tighter, 2.0)
    stats = logs.statistics("ev")
    assert stats.options == tighter and stats.first_offset > 0 and stats.bytes <= 8192 + 4096
    with pytest.raises(BadRequest, match="segment size"):
        logs.change_options("ev", LogOptions(segment_bytes=8192), 3.0)
    with pytest.raises(BadRequest):
        logs.change_options("ev", LogOptions(retention_bytes=0, segment_bytes=4096), 3.0)
    stamped = LogOptions(retention_bytes=8192, segment_bytes=4096, append_time=True)
    logs.change_options("ev", stamped, 4.0)
    logs.broker.close()
    assert make_logs(tmp_path).statistics("ev").options == stamped
