"""Durable queues: the journal, recovery after a restart, compaction, storage failures."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given
from test_queues import A, B, In, bodies, ids, put

from minibroker.core import queues as queues_module
from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig
from minibroker.core.queue_journal import (
    TAG_FULL,
    CompactionSettings,
    QueueJournal,
    record_bound,
    recover,
)
from minibroker.core.queue_message import NEVER, Message
from minibroker.core.queues import Queue, QueueOptions
from minibroker.errors import StorageError, StorageFull
from minibroker.log_store import Entry
from minibroker.record_format import encode_records
from minibroker.server.datadir import DataDirectory
from minibroker.storage import LogStore, MemoryLog

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
from helpers import MemoryOpener


class Site:
    """A data directory (or a memory twin) and the broker currently running on it."""

    def __init__(self, root: Path | None, *, epoch_offset: float = 0.0) -> None:
        self.root = root
        self.memory = MemoryOpener()
        self.now = 100.0
        self.broker = Broker(storage=self._opener(), epoch_offset=epoch_offset)

    def _opener(self) -> DataDirectory | MemoryOpener:
        return self.memory if self.root is None else DataDirectory(self.root)

    @property
    def queues(self) -> queues_module.Queues:
        return self.broker.namespace("").queues

    def declare(self, name: str = "q", **options: Any) -> Queue:
        options.setdefault("durable", True)
        self.queues.declare(name, QueueOptions(**options), self.now)
        return self.queues.get(name)

    def restart(self, *, epoch_offset: float | None = None, advance: float = 0.0) -> None:
        """Stop (close storage, as a kill -9 leaves files behind) and start a new broker."""
        wall = self.now + self.broker.clock.epoch_offset
        self.broker.close()
        offset = self.broker.clock.epoch_offset if epoch_offset is None else epoch_offset
        # The new process's monotonic clock starts elsewhere; wall time goes on.
        self.now = wall - offset + advance
        self.broker = Broker(storage=self._opener(), epoch_offset=offset)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.broker.on_time(self.now)


@pytest.fixture(params=["disk", "memory"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path if request.param == "disk" else None)
    yield s
    s.broker.close()


@pytest.fixture
def memory_site() -> Iterator[Site]:
    s = Site(None)
    yield s
    s.broker.close()


def ready_bodies(q: Queue) -> list[bytes]:
    return bodies(q.inspect(10_000).ready)


# -------------------------------------------------------------- recovery


def test_restart_keeps_unacked_messages_and_options(site: Site) -> None:
    q = site.declare(max_deliveries=5, visibility_timeout=9.0)
    q.put([In(b"a", {"h": "1"}), In(b"b"), In(b"c"), In(b"d"), In(b"e")], site.now)
    published_at = site.broker.clock.wall_ms(site.now)
    got = q.fetch(A, 4, site.now)  # a b c d
    q.ack(A, [got[1].delivery_id], site.now)  # b acked
    q.nack(A, [got[0].delivery_id], site.now)  # a back, count 1 journaled
    q.nack(A, [got[2].delivery_id], site.now, delay=60.0)  # c delayed, count 1
    # d stays in flight (count 1, never journaled)
    site.restart()
    q = site.queues.get("q")
    assert q.options == QueueOptions(max_deliveries=5, visibility_timeout=9.0, durable=True)
    assert q.durable
    contents = q.inspect(100)
    assert [(m.body, m.delivery_count) for m in contents.ready] == [
        (b"a", 1),
        (b"c", 1),
        (b"d", 0),
        (b"e", 0),
    ]
    assert contents.ready[0].headers == {"h": "1"}
    assert {m.published_at for m in contents.ready} == {published_at}
    assert q.statistics().published == 4
    got = q.fetch(B, 10, site.now)
    assert [m.delivery_count for m in got] == [2, 2, 1, 1]


def test_restart_after_everything_acked_is_empty(site: Site) -> None:
    q = site.declare()
    put(q, site.now, *[str(i) for i in range(100)])
    q.ack(A, ids(q.fetch(A, 100, site.now)), site.now)
    site.restart()
    assert site.queues.get("q").statistics().ready == 0


def test_dead_letters_survive_restart(site: Site) -> None:
    site.declare("dead")
    q = site.declare("q", dead_letter_queue="dead", max_deliveries=1)
    q.put([In(b"x", {"k": "v"})], site.now)
    published_at = site.broker.clock.wall_ms(site.now)
    site.advance(1)
    (m,) = q.fetch(A, 1, site.now)
    q.nack(A, [m.delivery_id], site.now)  # max_deliveries reached
    site.restart()
    assert site.queues.get("q").statistics().ready == 0
    (d,) = site.queues.get("dead").inspect(10).ready
    assert d.body == b"x"
    assert d.published_at == published_at
    assert d.headers == {
        "k": "v",
        "x-death-reason": "max_deliveries",
        "x-death-queue": "q",
        "x-death-count": "1",
        "x-death-hops": "1",
        "x-death-path": "q",
    }


def test_ttl_counts_wall_time_across_restart(tmp_path: Path) -> None:
    site = Site(tmp_path, epoch_offset=1_000_000.0)
    q = site.declare(message_ttl=60.0)
    put(q, site.now, "a")
    site.advance(20)
    put(q, site.now, "b")
    # 30 s pass while the broker is down; the new process's clock starts at another value.
    site.restart(epoch_offset=1_000_500.0, advance=30.0)
    q = site.queues.get("q")
    assert ready_bodies(q) == [b"a", b"b"]
    site.advance(9.9)
    assert ready_bodies(q) == [b"a", b"b"]
    site.advance(0.2)  # a is 60 s old
    assert ready_bodies(q) == [b"b"]
    site.advance(20)
    assert ready_bodies(q) == []
    assert q.statistics().expired == 2
    site.broker.close()


def test_purge_and_delete_are_durable(site: Site) -> None:
    q = site.declare()
    put(q, site.now, "a", "b")
    site.declare("gone")
    q.purge(site.now)
    site.queues.delete("gone", site.now)
    if site.root is not None:
        assert not DataDirectory(site.root).path_of("", "queue", "gone").exists()
    else:
        assert site.memory.existing("", "queue") == ["q"]
    site.restart()
    assert site.queues.names() == ["q"]
    assert site.queues.get("q").statistics().ready == 0


def test_non_durable_queue_is_not_recovered(site: Site) -> None:
    put(site.declare("mem", durable=False), site.now, "a")
    site.restart()
    assert "mem" not in site.queues


def test_durable_writes_are_reported_for_group_commit(site: Site) -> None:
    q = site.declare()
    generation = site.broker.durability.generation
    put(q, site.now, "a")
    assert site.broker.durability.generation > generation
    generation = site.broker.durability.generation
    got = q.fetch(A, 1, site.now)
    assert site.broker.durability.generation == generation  # fetches write nothing
    q.ack(A, ids(got), site.now)
    assert site.broker.durability.generation > generation
    site.broker.sync_storage()


def test_declaration_without_messages_survives(site: Site) -> None:
    site.declare("empty", max_length=10, overflow="drop_head", message_ttl=5.0)
    site.restart()
    assert site.queues.get("empty").options == QueueOptions(
        max_length=10, overflow="drop_head", message_ttl=5.0, durable=True
    )


def test_journal_without_declaration_is_removed(tmp_path: Path) -> None:
    site = Site(tmp_path)
    store = DataDirectory(tmp_path).open("", "queue", "orphan", segment_bytes=None)
    store.append([(None, None, b"x")], 1)
    store.close()
    site.restart()
    assert "orphan" not in site.queues
    assert DataDirectory(tmp_path).existing("", "queue") == []
    site.broker.close()


def test_unknown_record_type_is_an_error() -> None:
    store = MemoryLog()
    store.append([(b"Z", None, b"")], 1)
    with pytest.raises(StorageError, match="unknown type"):
        recover(store, 0.0)


# ------------------------------------------------------------- compaction


def _journal(site: Site, name: str = "q") -> QueueJournal:
    journal = site.queues.get(name)._journal
    assert journal is not None
    return journal


@pytest.fixture
def small_journals(monkeypatch: pytest.MonkeyPatch) -> CompactionSettings:
    settings = CompactionSettings(
        segment_bytes=16384, check_bytes=4096, min_bytes=32768, live_ratio=0.5, move_bytes=8192
    )
    monkeypatch.setattr(queues_module, "compaction_defaults", settings)
    return settings


def test_compaction_keeps_the_journal_small(site: Site, small_journals: CompactionSettings) -> None:
    q = site.declare()
    body = b"x" * 100
    for _ in range(300):
        q.put([In(body)] * 10, site.now)
        q.ack(A, ids(q.fetch(A, 10, site.now)), site.now)
    journal = _journal(site)
    assert journal.stats.bytes_written > 300_000
    assert journal.store.size_bytes < 3 * small_journals.segment_bytes
    assert journal.stats.messages_moved == 0  # retention alone did it
    put(q, site.now, "last")
    site.restart()
    assert ready_bodies(site.queues.get("q")) == [b"last"]


def test_compaction_moves_a_message_that_pins_the_journal(
    memory_site: Site, small_journals: CompactionSettings
) -> None:
    site = memory_site
    q = site.declare(visibility_timeout=10_000.0)
    put(q, site.now, "stuck", "old-ready")
    (stuck,) = q.fetch(B, 1, site.now)
    body = b"y" * 100
    for _ in range(300):
        q.put([In(body)] * 10, site.now)
        q.ack(A, ids(q.fetch(A, 10, site.now)), site.now)
    q.ack(A, ids(q.fetch(A, 10, site.now)), site.now)
    # "old-ready" and all the filler were acked; only "stuck" is left.
    journal = _journal(site)
    assert journal.stats.messages_moved >= 1
    assert journal.store.size_bytes < 4 * small_journals.segment_bytes
    assert q.ack(B, [stuck.delivery_id], site.now) == 1  # still the same delivery
    put(q, site.now, "after")
    site.restart()
    assert ready_bodies(site.queues.get("q")) == [b"after"]


def test_compaction_then_restart_keeps_order_and_counts(
    memory_site: Site, small_journals: CompactionSettings
) -> None:
    site = memory_site
    q = site.declare(visibility_timeout=10_000.0)
    put(q, site.now, "p0", "p1", "p2")
    got = q.fetch(B, 1, site.now)
    q.nack(B, ids(got), site.now)  # p0 back with count 1
    held = q.fetch(B, 1, site.now)  # p0 in flight (count 2, journaled 1)
    for i in range(200):
        q.put([In(b"z" * 100, {"i": str(i)})], site.now)
    # consume the filler from the back... by acking everything behind p1, p2
    rest = q.fetch(A, 1000, site.now)
    assert bodies(rest[:2]) == [b"p1", b"p2"]
    q.nack(A, ids(rest[:2]), site.now)
    q.ack(A, ids(rest[2:]), site.now)
    for _ in range(100):
        q.put([In(b"w" * 100)] * 5, site.now)
        mine = q.fetch(A, 7, site.now)
        keep = [m for m in mine if m.body in (b"p1", b"p2")]
        q.ack(A, [m.delivery_id for m in mine if m not in keep], site.now)
        q.nack(A, ids(keep), site.now)
    assert _journal(site).stats.messages_moved >= 2
    site.restart()
    q = site.queues.get("q")
    contents = q.inspect(100)
    assert [(m.body, m.delivery_count) for m in contents.ready] == [
        (b"p0", 1),
        (b"p1", 101),
        (b"p2", 101),
    ]
    assert held  # the in-flight delivery of p0 came back as ready


def test_a_journal_restarted_before_each_check_still_compacts(
    memory_site: Site, small_journals: CompactionSettings
) -> None:
    """Each run writes less than check_bytes, then the broker restarts (a crash
    loop, or a quiet queue on a server restarted daily): the journal must not
    keep every run's records, or each start replays all of history."""
    site = memory_site
    site.declare()
    body = b"x" * 100
    for _ in range(200):
        q = site.queues.get("q")
        q.put([In(body)] * 10, site.now)
        q.ack(A, ids(q.fetch(A, 10, site.now)), site.now)
        assert _journal(site).stats.bytes_written < small_journals.check_bytes
        site.restart()
    put(site.queues.get("q"), site.now, "last")
    assert _journal(site).store.size_bytes < 4 * small_journals.segment_bytes
    site.restart()
    assert ready_bodies(site.queues.get("q")) == [b"last"]


def test_replay_of_a_move_interrupted_before_retention() -> None:
    store = MemoryLog()
    journal = QueueJournal(
        store, QueueOptions(durable=True), epoch_offset=0.0, on_write=lambda: None
    )
    journal.write_options(1)
    m = Message(b"a", {"k": "v"}, 5)
    journal.put([m], 5)
    old = m.jid
    m.delivery_count = 3
    journal.put_full([m], 9, replace=True)  # the move, but no prefix deletion ("crash")
    assert m.jid != old
    found = recover(store, 0.0)
    assert list(found.live) == [m.jid]
    (r,) = found.live.values()
    assert (r.body, r.headers, r.published_at, r.delivery_count, r.seq, r.expires_at) == (
        b"a",
        {"k": "v"},
        5,
        3,
        old,
        NEVER,
    )
    key = next(rec.key for rec in store.iter_records() if rec.offset == m.jid)
    assert key is not None and key.startswith(TAG_FULL)


# ----------------------------------------------------- storage failures


class FlakyStore:
    """A LogStore whose appends fail on demand."""

    def __init__(self, inner: LogStore) -> None:
        self.inner = inner
        self.fail: type[Exception] | None = None
        self.appends = 0

    def append(self, entries: Sequence[Entry], timestamp_ms: int) -> int:
        if self.fail is not None:
            raise self.fail("disk full")
        self.appends += 1
        return self.inner.append(entries, timestamp_ms)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FlakyOpener:
    def __init__(self, root: Path) -> None:
        self.data = DataDirectory(root)
        self.stores: dict[str, FlakyStore] = {}

    def open(self, namespace: str, kind: str, name: str, *, segment_bytes: int | None) -> LogStore:
        store = FlakyStore(self.data.open(namespace, kind, name, segment_bytes=segment_bytes))
        self.stores[name] = store
        return store  # type: ignore[return-value]

    def existing(self, namespace: str, kind: str) -> list[str]:
        return self.data.existing(namespace, kind)

    def remove(self, namespace: str, kind: str, name: str) -> None:
        self.data.remove(namespace, kind, name)


def test_storage_failures(tmp_path: Path) -> None:
    """Journal writes made at once (``fsync=never``/``always``): an ack that cannot be
    written fails and changes nothing. (Under ``batch`` see the next test.)"""
    opener = FlakyOpener(tmp_path)
    broker = Broker(CoreConfig(fsync="never"), storage=opener)
    queues = broker.namespace("").queues
    now = 10.0
    queues.declare("dead", QueueOptions(durable=True), now)
    queues.declare("q", QueueOptions(durable=True, dead_letter_queue="dead"), now)
    q = queues.get("q")
    put(q, now, "a", "b", "c")
    flaky = opener.stores["q"]

    flaky.fail = StorageFull
    with pytest.raises(StorageFull):
        put(q, now, "d")
    assert q.statistics().published == 3  # nothing changed
    got = q.fetch(A, 3, now)  # fetch writes nothing: works
    with pytest.raises(StorageFull):
        q.ack(A, ids(got), now)
    assert q.statistics().in_flight == 3  # the ack did not happen

    # Outside a request, failures are counted and the queue carries on.
    q.nack(A, [got[0].delivery_id], now)
    assert q.statistics().journal_errors == 1
    assert q.statistics().ready == 1
    opener.stores["dead"].fail = StorageError
    q.nack(A, [got[1].delivery_id], now, requeue=False)
    s = q.statistics()
    assert (s.dead_lettered, s.journal_errors) == (1, 1)  # q kept b: no settle
    assert queues.get("dead").statistics().journal_errors == 1
    with pytest.raises(StorageFull):
        q.put([In(b"t")], now)  # a put in a request fails and stores nothing
    flaky.fail = None
    opener.stores["dead"].fail = None
    broker.close()

    # After a restart: b, which the dead-letter queue could not journal, is
    # back in q (at least once); nothing was lost.
    broker = Broker(storage=FlakyOpener(tmp_path))
    queues = broker.namespace("").queues
    assert sorted(ready_bodies(queues.get("q"))) == [b"a", b"b", b"c"]
    assert ready_bodies(queues.get("dead")) == []
    broker.close()


def files_left_by_a_crash(root: Path) -> Path:
    """What a kill -9 leaves: the files as they are now, without the broker's close
    (a copy, because the running broker holds the stores' locks)."""
    copy = root.parent / (root.name + "-crashed")
    shutil.copytree(root, copy)
    return copy


def test_group_commit_writes_acks_and_nacks_at_the_sync(tmp_path: Path) -> None:
    """Under ``batch`` acks and nacks wait for the group commit: many acks, one append."""
    opener = FlakyOpener(tmp_path)
    broker = Broker(storage=opener)
    queues = broker.namespace("").queues
    queues.declare("q", QueueOptions(durable=True), 10.0)
    q = queues.get("q")
    put(q, 10.0, *"abcdef")
    journal = opener.stores["q"]
    written = journal.appends
    got = q.fetch(A, 6, 10.0)
    generation = broker.durability.generation
    for d in got[:4]:
        q.ack(A, [d.delivery_id], 10.0)  # one request per ack, as a consumer acking each
    q.nack(A, [got[4].delivery_id], 10.0)
    assert broker.durability.generation == generation + 5  # each confirm waits for the commit
    assert journal.appends == written  # nothing written yet
    assert q.statistics().acked == 4  # the queue itself moved on at once
    broker.sync_storage()
    assert journal.appends == written + 1  # all of them in one append, then the fsync
    broker.sync_storage()
    assert journal.appends == written + 1  # nothing left to write

    # A crash (no close) after the commit: the synced acks and the count stay.
    crashed = Broker(storage=DataDirectory(files_left_by_a_crash(tmp_path)))
    contents = crashed.namespace("").queues.get("q").inspect(10)
    assert [(m.body, m.delivery_count) for m in contents.ready] == [(b"e", 1), (b"f", 0)]
    crashed.close()


def test_group_commit_crash_before_the_sync_undoes_only_unconfirmed_acks(tmp_path: Path) -> None:
    broker = Broker(storage=DataDirectory(tmp_path))
    broker.namespace("").queues.declare("q", QueueOptions(durable=True), 10.0)
    q = broker.namespace("").queues.get("q")
    put(q, 10.0, "a", "b")
    got = q.fetch(A, 2, 10.0)
    q.ack(A, [got[0].delivery_id], 10.0)
    broker.sync_storage()  # the group commit: a's ack is confirmed
    q.ack(A, [got[1].delivery_id], 10.0)  # b's is not yet, and the process dies
    crashed = Broker(storage=DataDirectory(files_left_by_a_crash(tmp_path)))
    assert ready_bodies(crashed.namespace("").queues.get("q")) == [b"b"]
    crashed.close()


def test_group_commit_write_failure_fails_the_sync_and_retries(tmp_path: Path) -> None:
    """A deferred ack that cannot be written fails the commit (its held confirm becomes
    an error, as when the fsync fails); the ids stay pending and the next commit writes them."""
    opener = FlakyOpener(tmp_path)
    broker = Broker(storage=opener)
    queues = broker.namespace("").queues
    queues.declare("q", QueueOptions(durable=True), 10.0)
    q = queues.get("q")
    put(q, 10.0, "a", "b")
    got = q.fetch(A, 2, 10.0)
    q.ack(A, ids(got), 10.0)
    opener.stores["q"].fail = StorageFull
    with pytest.raises(StorageFull):
        broker.sync_storage()
    opener.stores["q"].fail = None
    broker.sync_storage()
    crashed = Broker(storage=DataDirectory(files_left_by_a_crash(tmp_path)))
    assert ready_bodies(crashed.namespace("").queues.get("q")) == []
    crashed.close()


def test_leftover_store_at_declare_is_reset(tmp_path: Path) -> None:
    data = DataDirectory(tmp_path)
    broker = Broker(storage=data)
    queues = broker.namespace("").queues
    # Files appear for a queue the namespace does not know (e.g. a deletion cut short).
    store = data.open("", "queue", "q", segment_bytes=None)
    store.append([(None, None, b"stale")], 1)
    store.close()
    queues.declare("q", QueueOptions(durable=True), 1.0)
    broker.close()
    broker = Broker(storage=DataDirectory(tmp_path))
    assert ready_bodies(broker.namespace("").queues.get("q")) == []
    broker.close()
    assert os.path.isdir(tmp_path)


# ------------------------------------------------------------ size bounds


@given(
    offset=st.integers(0, 2**63 - 1),
    timestamp=st.integers(0, 2**63 - 1),
    key=st.none() | st.binary(max_size=300),
    headers=st.none() | st.dictionaries(st.text(max_size=40), st.text(max_size=300), max_size=20),
    body=st.binary(max_size=70_000),
)
def test_record_bound_is_an_upper_bound(
    offset: int, timestamp: int, key: bytes | None, headers: dict[str, str] | None, body: bytes
) -> None:
    """Segment deletion is only safe if the journal never underestimates a record."""
    frame = encode_records(offset, timestamp, [(key, headers, body)])
    assert record_bound(None if key is None else len(key), headers, len(body)) >= len(frame)
