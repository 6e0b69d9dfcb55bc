"""An answer about durable state goes out only after the fsync that covers it.

Under ``--fsync always`` every write is synced before the request that made
it returns; under ``batch`` its answer is held (``Durability.must_hold``) and
the group commit's sync must cover it. These tests open every store through
a data directory that remembers them, and check after each operation that no
store is left with unsynced bytes (``LogStore.unsynced``) once the answer
may go. They also fail fsyncs on purpose (the ``fileio`` seams) and check
that telling a client "it exists" (a re-declaration, which writes nothing)
waits for the retried sync.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from minibroker.amqp.errors import INTERNAL_ERROR, HardError
from minibroker.amqp.vhost import Vhost, vhost_of
from minibroker.core import binding_journal, state_journal
from minibroker.core.binding_journal import BindingJournal
from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig, FsyncPolicy
from minibroker.core.log_options import LogOptions
from minibroker.core.namespace import Namespace
from minibroker.core.queue_options import QueueOptions
from minibroker.core.state_journal import StateJournal
from minibroker.errors import BrokerError, StorageFailed, StorageFull
from minibroker.log_store import Entry, LogStore
from minibroker.protocol.frames import MessageIn
from minibroker.server.datadir import DataDirectory
from minibroker.storage import MemoryLog, fileio

NOW = 1.0
DURABLE = QueueOptions(durable=True)


class RecordingDirectory(DataDirectory):
    """A data directory that remembers every store it opened."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.opened: list[LogStore] = []

    def open(self, namespace: str, kind: str, name: str, *, segment_bytes: int | None) -> LogStore:
        store = super().open(namespace, kind, name, segment_bytes=segment_bytes)
        self.opened.append(store)
        return store

    def unsynced(self) -> list[str]:
        return [str(getattr(s, "directory", s)) for s in self.opened if s.unsynced]


class Site:
    def __init__(self, root: Path, policy: FsyncPolicy) -> None:
        self.root = root
        self.policy = policy
        self.storage = RecordingDirectory(root)
        self.broker = Broker(CoreConfig(fsync=policy), storage=self.storage, memory_log=MemoryLog)

    @property
    def ns(self) -> Namespace:
        return self.broker.namespace("")

    @property
    def vhost(self) -> Vhost:
        return vhost_of(self.ns)

    def restart(self) -> None:
        self.broker.close()
        self.storage = RecordingDirectory(self.root)
        self.broker = Broker(
            CoreConfig(fsync=self.policy), storage=self.storage, memory_log=MemoryLog
        )

    def answer(self, operation: Callable[[], object]) -> BrokerError | None:
        """Run ``operation`` as a front end would, and return what its answer
        became: None (sent), or the error a failed group commit made of it."""
        durability = self.broker.durability
        since = durability.generation
        operation()
        if not durability.must_hold(since):
            return None
        outcome: list[BrokerError | None] = []
        durability.hold(outcome.append)
        durability.sync()
        return outcome[0]


@pytest.fixture
def site(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Site]:
    s = Site(tmp_path, getattr(request, "param", "batch"))
    yield s
    s.broker.close()


class Peer:
    conn_id = 7

    def resolve(self, token: int, result: object) -> None: ...

    def reject(self, token: int, error: BrokerError) -> None: ...

    def push_ready(self, source: object) -> None: ...

    def kick(self, error: BrokerError) -> None: ...


def exchange(vhost: Vhost, name: str, type_: str = "direct") -> None:
    vhost.declare_exchange(
        name, type_, passive=False, durable=True, auto_delete=False, internal=False, arguments={}
    )


def amqp_queue(vhost: Vhost, name: str) -> None:
    vhost.declare_queue(
        1,
        name,
        passive=False,
        durable=True,
        exclusive=False,
        auto_delete=False,
        arguments={},
        now=NOW,
    )


def operations(s: Site) -> list[tuple[str, Callable[[], object]]]:
    """Every kind of durable write a client can make, in an order that works."""
    ns = s.ns
    peer = Peer()
    fetched: list[int] = []

    def fetch() -> None:
        fetched.extend(d.delivery_id for d in ns.queues.get("jobs").fetch(peer, 3, NOW))

    return [
        ("queue declare", lambda: ns.queues.declare("jobs", DURABLE, NOW)),
        ("queue redeclare", lambda: ns.queues.declare("jobs", DURABLE, NOW)),
        ("put", lambda: ns.queues.get("jobs").put([MessageIn(b"%d" % i) for i in range(3)], NOW)),
        ("fetch", fetch),
        ("ack", lambda: ns.queues.get("jobs").ack(peer, fetched[:1], NOW)),
        ("nack", lambda: ns.queues.get("jobs").nack(peer, fetched[1:], NOW)),
        (
            "reconfigure",
            lambda: ns.queues.reconfigure("jobs", QueueOptions(durable=True, max_length=9), NOW),
        ),
        ("bind", lambda: ns.topics.bind("jobs", "orders.#")),
        ("rebind", lambda: ns.topics.bind("jobs", "orders.#")),
        ("publish", lambda: ns.topics.publish("orders.eu", [MessageIn(b"o")], NOW)),
        ("purge", lambda: ns.queues.get("jobs").purge(NOW)),
        ("unbind", lambda: ns.topics.unbind("jobs", "orders.#")),
        ("bind again", lambda: ns.topics.bind("jobs", "orders.#")),
        ("queue delete", lambda: ns.queues.delete("jobs", NOW)),
        ("log create", lambda: ns.logs.create("events", LogOptions(), NOW)),
        ("append", lambda: ns.logs.append("events", [(None, None, b"r")] * 3, NOW)),
        ("commit", lambda: ns.logs.commit("events", "g", 2, NOW)),
        ("forget group", lambda: ns.logs.forget_group("events", "g", NOW)),
        ("delete records", lambda: ns.logs.delete_records("events", 1, NOW)),
        (
            "change options",
            lambda: ns.logs.change_options("events", LogOptions(retention_seconds=60.0), NOW),
        ),
        ("log delete", lambda: ns.logs.delete("events", NOW)),
        ("exchange declare", lambda: exchange(s.vhost, "ex")),
        ("exchange redeclare", lambda: exchange(s.vhost, "ex")),
        ("exchange declare 2", lambda: exchange(s.vhost, "fan", "fanout")),
        ("amqp queue declare", lambda: amqp_queue(s.vhost, "aq")),
        ("amqp queue redeclare", lambda: amqp_queue(s.vhost, "aq")),
        ("amqp bind", lambda: s.vhost.bind("aq", "ex", "k", {})),
        ("amqp rebind", lambda: s.vhost.bind("aq", "ex", "k", {})),
        ("amqp topic bind", lambda: s.vhost.bind("aq", "amq.topic", "a.*", {})),
        ("exchange bind", lambda: s.vhost.bind_exchange("fan", "ex", "k", {})),
        ("amqp unbind", lambda: s.vhost.unbind("aq", "ex", "k")),
        ("exchange unbind", lambda: s.vhost.unbind_exchange("fan", "ex", "k")),
        ("exchange delete", lambda: s.vhost.delete_exchange("ex", if_unused=False, now=NOW)),
        (
            "amqp queue delete",
            lambda: s.vhost.delete_queue(1, "aq", if_unused=False, if_empty=False, now=NOW),
        ),
        ("new namespace", lambda: s.broker.namespace("other").queues.declare("q", DURABLE, NOW)),
    ]


@pytest.mark.parametrize("site", ["always", "batch"], indirect=True)
def test_every_durable_write_is_synced_before_its_answer(site: Site) -> None:
    for name, operation in operations(site):
        assert site.answer(operation) is None, name
        assert site.storage.unsynced() == [], name


@pytest.mark.parametrize("site", ["always"], indirect=True)
def test_always_what_a_vhost_writes_while_it_recovers_is_synced(site: Site) -> None:
    """Recovery drops an exclusive queue's entry (it died with its connection).
    That write was reported while the vhost was being made, before it was a
    model of its namespace, so the write's own sync did not reach its store."""
    vhost = site.vhost
    vhost.declare_queue(
        1,
        "mine",
        passive=False,
        durable=True,
        exclusive=True,
        auto_delete=False,
        arguments={},
        now=NOW,
    )
    site.restart()
    vhost = site.vhost
    assert "mine" not in site.ns.queues and "mine" not in vhost.declarations
    assert site.storage.unsynced() == []


# -------------------------------------------- "it exists" after a failed fsync


class FailingSyncs:
    """Fails the next ``directories`` directory fsyncs and ``data`` fdatasyncs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.directories = 0
        self.data = 0
        real_directory, real_data = fileio.fsync_directory, fileio.datasync

        def fsync_directory(path: str) -> None:
            if self.directories:
                self.directories -= 1
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real_directory(path)

        def datasync(fd: int) -> None:
            if self.data:
                self.data -= 1
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real_data(fd)

        monkeypatch.setattr(fileio, "fsync_directory", fsync_directory)
        monkeypatch.setattr(fileio, "datasync", datasync)


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch) -> FailingSyncs:
    return FailingSyncs(monkeypatch)


def declare_queue(s: Site) -> None:
    s.ns.queues.declare("jobs", DURABLE, NOW)


def bind_queue(s: Site) -> None:
    s.ns.topics.bind("jobs", "orders.#")


def declare_exchange(s: Site) -> None:
    exchange(s.vhost, "ex")


def declare_amqp_queue(s: Site) -> None:
    amqp_queue(s.vhost, "aq")


def bind_amqp_queue(s: Site) -> None:
    s.vhost.bind("jobs", "ex", "k", {})


def setup_for(declare: Callable[[Site], None]) -> Callable[[Site], None]:
    """What must exist (and be synced) before ``declare`` can run."""

    def setup(s: Site) -> None:
        if declare in (bind_queue, bind_amqp_queue):
            declare_queue(s)
        if declare is bind_amqp_queue:
            declare_exchange(s)
        if declare in (declare_exchange, declare_amqp_queue, bind_amqp_queue):
            s.vhost  # noqa: B018 (made and synced before the failure)
        s.broker.durability.sync()

    return setup


DECLARATIONS = [declare_queue, bind_queue, declare_exchange, declare_amqp_queue, bind_amqp_queue]


@pytest.mark.parametrize("declare", DECLARATIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("which", ["directory", "data"])
def test_batch_a_redeclaration_after_a_failed_fsync_is_refused_until_restart(
    site: Site, failing: FailingSyncs, declare: Callable[[Site], None], which: str
) -> None:
    """The group commit's fsync of a declaration fails: that client is told
    so. A client that declares the same thing again writes nothing ("it
    exists"). The old broker held that answer and retried the fsync, which
    can "succeed" without the declaration on disk (docs/storage.md, "A
    failed fsync"): it is refused now, until a restart recovers from disk."""
    setup_for(declare)(site)
    durability = site.broker.durability
    since = durability.generation
    declare(site)
    assert durability.must_hold(since)
    if which == "directory":
        failing.directories = 100  # the new directories' names, at the commit
    else:
        failing.data = 1
    told: list[BrokerError | None] = []
    durability.hold(told.append)
    durability.sync()
    if which == "directory" and told == [None]:
        pytest.skip("this declaration made no new directory")
    assert isinstance(told[0], StorageFailed)
    failing.directories = failing.data = 0  # the disk works again
    with pytest.raises((StorageFailed, HardError)) as caught:
        site.answer(lambda: declare(site))
    assert "an fsync of" in getattr(caught.value, "text", str(caught.value))
    site.restart()
    assert site.answer(lambda: declare(site)) is None
    assert site.storage.unsynced() == []


@pytest.mark.parametrize("declare", DECLARATIONS, ids=lambda f: f.__name__)
def test_batch_a_redeclaration_before_the_first_commit_waits_for_it(
    site: Site, declare: Callable[[Site], None]
) -> None:
    """Two clients declare the same durable object in one burst: the second
    is told it exists, and that must wait for the commit as the first's does."""
    setup_for(declare)(site)
    durability = site.broker.durability
    declare(site)
    since = durability.generation
    declare(site)
    assert durability.must_hold(since)


def put(s: Site, queue: str, body: bytes) -> None:
    s.ns.queues.get(queue).put([MessageIn(body)], NOW)


def bodies(s: Site, queue: str) -> list[bytes]:
    return [d.body for d in s.ns.queues.get(queue).fetch(Peer(), 100, NOW)]


@pytest.mark.parametrize("site", ["always"], indirect=True)
def test_always_a_failed_sync_fails_the_write_and_the_queue_until_restart(
    site: Site, failing: FailingSyncs
) -> None:
    """Under ``always`` a failed sync fails the request that wrote; the old
    broker then retried it at the queue's next write (or re-declaration),
    which "succeeded" and confirmed both. Now the queue refuses until a
    restart, and the other queues go on."""
    declare_queue(site)
    site.ns.queues.declare("other", DURABLE, NOW)
    put(site, "jobs", b"kept")
    failing.data = 1
    with pytest.raises(StorageFailed):
        put(site, "jobs", b"unsure")
    with pytest.raises(StorageFailed):
        put(site, "jobs", b"refused")
    with pytest.raises(StorageFailed):
        declare_queue(site)
    put(site, "other", b"fine")
    assert site.storage.unsynced() == []
    site.restart()
    assert bodies(site, "jobs")[0] == b"kept"
    assert bodies(site, "other") == [b"fine"]
    put(site, "jobs", b"after")


def test_batch_a_failed_fsync_is_never_confirmed_by_a_later_round(
    site: Site, failing: FailingSyncs
) -> None:
    """The confirmation waiting on the failed fsync fails; the queue's later
    writes (puts, acks deferred to the group commit) are refused instead of
    being confirmed by a retried fsync; other queues are confirmed as ever;
    a restart serves what was synced."""
    declare_queue(site)
    site.ns.queues.declare("other", DURABLE, NOW)
    assert site.answer(lambda: put(site, "jobs", b"kept")) is None
    failing.data = 1
    told = site.answer(lambda: put(site, "jobs", b"unsure"))
    assert isinstance(told, StorageFailed) and told.code == "storage_failed"
    with pytest.raises(StorageFailed):
        site.answer(lambda: put(site, "jobs", b"refused"))
    peer = Peer()
    held = site.ns.queues.get("jobs").fetch(peer, 1, NOW)  # reads go on
    with pytest.raises(StorageFailed):
        site.answer(lambda: site.ns.queues.get("jobs").ack(peer, [held[0].delivery_id], NOW))
    assert site.answer(lambda: put(site, "other", b"fine")) is None
    assert site.storage.unsynced() == []
    site.restart()
    assert bodies(site, "jobs")[0] == b"kept"
    assert bodies(site, "other") == [b"fine"]
    assert site.answer(lambda: put(site, "jobs", b"after")) is None


def test_batch_a_log_never_shows_a_record_whose_fsync_failed(
    site: Site, failing: FailingSyncs
) -> None:
    logs = site.ns.logs
    logs.create("events", LogOptions(), NOW)
    assert site.answer(lambda: logs.append("events", [b"a"], NOW)) is None
    failing.data = 1
    assert isinstance(site.answer(lambda: logs.append("events", [b"b"], NOW)), StorageFailed)
    with pytest.raises(StorageFailed):
        logs.append("events", [b"c"], NOW)
    # The group's commits live in another store: still confirmed.
    assert site.answer(lambda: logs.commit("events", "g", 1, NOW)) is None
    assert logs.get("events").high_watermark == 1
    site.restart()
    assert site.ns.logs.committed("events", "g") == 1
    assert site.answer(lambda: site.ns.logs.append("events", [b"d"], NOW)) is None


# ------------------------------------------------------------- a full disk


class FullDisk:
    """Every write, new file and new directory fails with ENOSPC while ``full``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        real_pwrite, real_mkdir, real_open = fileio.pwrite, os.mkdir, os.open

        def pwrite(fd: int, data: bytes | memoryview, position: int) -> int:
            if self.full:
                real_pwrite(fd, bytes(data)[: max(1, len(data) // 3)], position)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_pwrite(fd, data, position)

        def mkdir(path: str, mode: int = 0o777, *args: object, **kwargs: object) -> None:
            if self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_mkdir(path, mode, *args, **kwargs)  # type: ignore[arg-type]

        def open_(path: str, flags: int, *args: object, **kwargs: object) -> int:
            if self.full and flags & os.O_CREAT and not os.path.exists(path):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(fileio, "pwrite", pwrite)
        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(os, "open", open_)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    return FullDisk(monkeypatch)


@pytest.mark.parametrize("site", ["always", "batch"], indirect=True)
def test_a_new_namespace_needs_no_disk_space(site: Site, disk: FullDisk) -> None:
    """A client's hello makes its namespace: on a full disk that must still
    work (it used to create the binding journal's files at once and failed
    with storage_full), so non-durable work and reads go on."""
    disk.full = True
    ns = site.broker.namespace("fresh")
    ns.queues.declare("scratch", QueueOptions(), NOW)
    with pytest.raises(StorageFull):
        ns.queues.declare("kept", DURABLE, NOW)
    assert ns.topics.bind("scratch", "orders.#")  # not durable: nothing to write
    disk.full = False
    ns.queues.declare("kept", DURABLE, NOW)
    assert ns.topics.bind("kept", "orders.#")
    site.broker.durability.sync()
    site.restart()
    ns = site.broker.namespace("fresh")
    assert ns.queues.names() == ["kept"] and ns.topics.bindings() == [("kept", "orders.#")]


@pytest.mark.parametrize("site", ["always", "batch"], indirect=True)
def test_deleting_a_bound_durable_queue_on_a_full_disk(site: Site, disk: FullDisk) -> None:
    """The queue goes (its files are removed, which needs no space) although
    its bindings' removal cannot be journaled; the binding does not come back
    with a later queue of the same name, across restarts."""
    ns = site.ns
    ns.queues.declare("jobs", DURABLE, NOW)
    ns.topics.bind("jobs", "orders.#")
    ns.queues.declare("other", DURABLE, NOW)
    site.broker.durability.sync()
    disk.full = True
    assert site.answer(lambda: ns.queues.delete("jobs", NOW)) is None
    assert ns.topics.bindings() == [] and "jobs" not in ns.queues
    disk.full = False
    site.restart()
    ns = site.ns
    assert ns.topics.bindings() == []
    ns.queues.declare("jobs", DURABLE, NOW)
    assert ns.topics.bind("other", "audit.#")  # a write: the stale binding is left out
    site.broker.durability.sync()
    site.restart()
    assert site.ns.topics.bindings() == [("other", "audit.#")]


@pytest.mark.parametrize("site", ["always", "batch"], indirect=True)
def test_amqp_declarations_on_a_full_disk_are_one_clear_error(site: Site, disk: FullDisk) -> None:
    """Every durable AMQP declaration refused by a full disk is the same
    connection error, 541 "cannot write durable state: disk full ..." (a queue
    declare was a 406 precondition-failed, a topic binding an unexplained
    internal error); nothing is declared, and all work once there is room."""
    vhost = site.vhost
    amqp_queue(vhost, "bound")
    site.broker.durability.sync()
    disk.full = True
    attempts: list[Callable[[], object]] = [
        lambda: amqp_queue(vhost, "aq"),
        lambda: exchange(vhost, "ex"),
        lambda: vhost.bind("bound", "amq.topic", "a.*", {}),
        lambda: vhost.bind("bound", "amq.direct", "k", {}),
    ]
    for attempt in attempts:
        with pytest.raises(HardError) as caught:
            attempt()
        assert caught.value.code == INTERNAL_ERROR
        assert "cannot write durable state: disk full" in caught.value.text
    assert "aq" not in site.ns.queues and "ex" not in vhost.exchanges
    assert site.ns.topics.bindings() == []
    disk.full = False
    for attempt in attempts:
        assert site.answer(attempt) is None
    assert site.storage.unsynced() == []


class SnapshotsFail(MemoryLog):
    """A store whose disk is full exactly when a journal appends its snapshot."""

    def append(self, entries: Sequence[Entry], timestamp_ms: int) -> int:
        if entries and entries[0][0] == b"S":
            raise StorageFull("disk full while appending a snapshot")
        return super().append(entries, timestamp_ms)


def test_a_compaction_the_disk_refuses_does_not_fail_the_write_before_it() -> None:
    """The record is in the store when the snapshot that compacts it fails: the
    write must not be reported failed (the binding or entry would come back
    at the next start although the client was told it was refused)."""
    store = SnapshotsFail(segment_bytes=4096)
    bindings = BindingJournal(lambda: store, lambda: None, exists=False)
    for i in range(binding_journal.COMPACT_SLACK + 10):
        bindings.record_bind("q", f"p.{i}", 1)
    assert len(bindings.bindings) == binding_journal.COMPACT_SLACK + 10
    states = StateJournal(lambda: SnapshotsFail(segment_bytes=4096), lambda: None, exists=False)
    for i in range(state_journal.COMPACT_SLACK + 10):
        states.put("churn", b"%d" % i, 1)
    assert states.entries == {"churn": b"%d" % (state_journal.COMPACT_SLACK + 9)}
