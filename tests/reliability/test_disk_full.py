"""A full disk, through a live server: refused with ``storage_full``, the broker stays
up, nothing confirmed is lost, and it recovers when space returns.

Two ways to fill the disk:

* the storage layer's seam (``minibroker.storage.fileio.pwrite``), with the
  broker served over TCP from a thread of this process: runs everywhere;
* a real, tiny tmpfs (``mount -t tmpfs -o size=...``) under a real
  ``minibroker serve`` process, filled up with a file: needs permission to
  mount, and is skipped without it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import minibroker
from benchmarks.broker_process import BrokerProcess
from minibroker.config import ServerConfig
from minibroker.errors import StorageFull
from minibroker.storage import fileio
from minibroker.testing import run_in_thread

QUEUE = "jobs"
AUDIT = "audit"
LOG = "events"
LATE = "late"


class Disk:
    """The seam: ``full`` makes every log and journal write fail with ENOSPC."""

    def __init__(self) -> None:
        self.full = False
        self.refused = 0
        self._real = os.pwrite

    def pwrite(self, fd: int, data: bytes | memoryview, position: int) -> int:
        if self.full:
            self.refused += 1
            # Some bytes reach the file before the disk fills: the store must cut them off.
            self._real(fd, bytes(data)[: max(1, len(data) // 3)], position)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._real(fd, data, position)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    seam = Disk()
    monkeypatch.setattr(fileio, "pwrite", seam.pwrite)
    return seam


def prepare(mb: minibroker.client.sync.SyncClient) -> None:  # type: ignore[name-defined]
    mb.declare_queue(QUEUE, durable=True)
    mb.declare_queue(AUDIT, durable=True)
    mb.bind(AUDIT, "orders.#")
    mb.create_log(LOG)


def exercise_full_disk(
    url: str, set_full: Callable[[bool], None], *, every_write_fails: bool
) -> dict[str, list[bytes]]:
    """Write, fill the disk, check every write is refused cleanly, free it, write again.

    On a real file system a small write may still fit in the last, partly
    used page of a file, so only writes bigger than a page are sure to fail
    there (``every_write_fails`` is False): the refused batches are made big.
    Returns what the broker confirmed, by stream, for the check after a restart.
    """
    padding = b"." * 2000
    confirmed: dict[str, list[bytes]] = {QUEUE: [], AUDIT: [], LOG: []}
    with minibroker.connect_sync(url) as mb, minibroker.connect_sync(url) as bystander:
        prepare(mb)

        def write(tag: str) -> None:
            queue_batch = [b"%s-q%d" % (tag.encode(), i) for i in range(50)]
            mb.put_many(QUEUE, queue_batch)
            confirmed[QUEUE] += queue_batch
            topic_batch = [b"%s-t%d" % (tag.encode(), i) for i in range(20)]
            assert mb.publish_many("orders.eu", topic_batch).queues == 20
            confirmed[AUDIT] += topic_batch
            log_batch = [b"%s-l%d" % (tag.encode(), i) for i in range(30)]
            mb.append_many(LOG, log_batch)
            confirmed[LOG] += log_batch

        write("before")
        held = mb.fetch(QUEUE, max_messages=5)
        set_full(True)
        for attempt in range(3):
            with pytest.raises(StorageFull) as caught:
                mb.put_many(QUEUE, [b"refused-q%d" % attempt + padding] * 10)
            assert caught.value.code == "storage_full"
            with pytest.raises(StorageFull):
                mb.publish_many("orders.eu", [b"refused-t%d" % attempt + padding] * 10)
            with pytest.raises(StorageFull):
                mb.append_many(LOG, [b"refused-l%d" % attempt + padding] * 10)
            if every_write_fails:
                with pytest.raises(StorageFull):
                    mb.commit(LOG, "g", 5)
        if every_write_fails:
            # Declarations too, each with its own storage_full, nothing declared ...
            with pytest.raises(StorageFull):
                mb.declare_queue(LATE, durable=True)
            with pytest.raises(StorageFull):
                mb.bind(AUDIT, "late.#")
            with pytest.raises(StorageFull):
                mb.create_log(LATE)
            assert mb.publish_many("late.x", [b"unrouted"]).queues == 0
        # ... while a new namespace and what needs no disk still work.
        with minibroker.connect_sync(url, namespace="fresh") as newcomer:
            newcomer.declare_queue("scratch")
            newcomer.put_many("scratch", [b"in memory"])
            assert [d.body for d in newcomer.fetch("scratch")] == [b"in memory"]
        # Reads, and the connections themselves, are unaffected.
        assert mb.ping(b"still up") == b"still up"
        assert bystander.ping(b"me too") == b"me too"
        assert [r.body for r in bystander.read(LOG, start=0, max_records=100)] == confirmed[LOG]
        stats = bystander.queue_stats(QUEUE)
        assert (stats.ready, stats.in_flight) == (45, 5)
        if every_write_fails:
            # Acks are journaled by the group commit (queue_journal.py): one that
            # cannot be written fails its confirm like a failed fsync. It stands
            # in memory, and the next commit with room writes it.
            with pytest.raises(StorageFull):
                mb.ack(held)
            assert bystander.queue_stats(QUEUE).in_flight == 0
        else:
            set_full(False)
            assert mb.ack(held) == 5

        set_full(False)
        confirmed[QUEUE] = confirmed[QUEUE][5:]
        write("after")
        mb.commit(LOG, "g", 5)
        mb.declare_queue(LATE, durable=True)
        mb.bind(LATE, "late.#")
        mb.create_log(LATE)
    return confirmed


def check_after_restart(url: str, confirmed: dict[str, list[bytes]]) -> None:
    """Everything confirmed is there, in order, and nothing that was refused."""
    with minibroker.connect_sync(url) as mb:
        for queue in (QUEUE, AUDIT):
            bodies = [d.body for d in mb.fetch(queue, max_messages=1000)]
            assert bodies == confirmed[queue], queue
        assert [r.body for r in mb.read(LOG, start=0, max_records=1000)] == confirmed[LOG]
        assert mb.committed(LOG, "g") == 5
        # Declared once there was room again: all there.
        assert mb.publish_many("late.x", [b"routed"]).queues == 1
        assert [d.body for d in mb.fetch(LATE)] == [b"routed"]
        assert list(mb.read(LATE, start=0)) == []  # the log exists (NotFound if not)


def test_disk_full_through_the_storage_seam(disk: Disk, tmp_path: Path) -> None:
    config = ServerConfig(port=0, data_dir=tmp_path / "data")

    def set_full(full: bool) -> None:
        disk.full = full

    with run_in_thread(config) as broker:
        confirmed = exercise_full_disk(broker.url, set_full, every_write_fails=True)
    assert disk.refused >= 12
    with run_in_thread(config) as broker:
        check_after_restart(broker.url, confirmed)


# ------------------------------------------------------------ a real small disk


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here ({exc}); the seam test covers ENOSPC")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill_up(directory: Path) -> Path:
    """Write a file until the file system is full; returns it (delete it to free space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for chunk in (b"\0" * 65536, b"\0"):  # big writes, then top up the last page
            with contextlib.suppress(OSError):
                while os.write(fd, chunk):
                    pass
    finally:
        os.close(fd)
    return filler


def test_disk_full_on_a_real_small_file_system(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "8m") as disk:
        data_dir = disk / "data"
        server = BrokerProcess.start(data_dir)
        try:
            filler: Path | None = None

            def set_full(full: bool) -> None:
                nonlocal filler
                if full:
                    filler = fill_up(disk)
                elif filler is not None:
                    filler.unlink()
                    filler = None

            confirmed = exercise_full_disk(server.url, set_full, every_write_fails=False)
            assert server.alive()
            assert server.lines_matching("disk full|No space left"), server.log_text()
        finally:
            server.stop()
        server = BrokerProcess.start(data_dir)
        try:
            check_after_restart(server.url, confirmed)
        finally:
            server.stop()
