"""A real ``minibroker serve`` killed with SIGKILL while it writes a batch keeps batches whole.

A client appends large batches (about 4 MB each); the test watches the
log's newest segment file and sends SIGKILL the moment it grows, that is
while the server's write of a batch is under way (Linux stops such a write
at a page boundary when a fatal signal arrives, so the file can end inside
the batch). After a restart, every batch in the log must be there with all
of its records: each record body says which batch it belongs to and how
many records that batch has.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from pathlib import Path

import pytest

import minibroker
from benchmarks.broker_process import BrokerProcess

pytestmark = pytest.mark.slow

LOG = "big-batches"
RECORDS_PER_BATCH = 1000
BODY_BYTES = 4000
CYCLES = 3


def batch_bodies(number: int) -> list[bytes]:
    return [
        b"%d/%d/%d|" % (number, i, RECORDS_PER_BATCH) + b"x" * BODY_BYTES
        for i in range(RECORDS_PER_BATCH)
    ]


def append_until_killed(url: str, first_batch: int) -> None:
    with contextlib.suppress(Exception), minibroker.connect_sync(url) as mb:
        number = first_batch
        while True:
            mb.append_many(LOG, batch_bodies(number))
            number += 1


def newest_segment_size(directory: Path) -> int:
    try:
        names = sorted(name for name in os.listdir(directory) if name.endswith(".log"))
        return os.stat(directory / names[-1]).st_size if names else 0
    except FileNotFoundError:  # a roll or a first segment under way
        return -1


def kill_while_writing(server: BrokerProcess, directory: Path) -> None:
    """SIGKILL the server as soon as its newest segment grows: in the middle of a write."""
    before = newest_segment_size(directory)
    while server.alive():
        size = newest_segment_size(directory)
        if size != before:
            server.kill()
            return


def test_sigkill_in_the_middle_of_a_batch_keeps_batches_whole(
    tmp_path: Path, broker_processes: list[BrokerProcess]
) -> None:
    data_dir = tmp_path / "data"
    log_dir = data_dir / "namespaces" / "default" / "logs" / LOG
    server = BrokerProcess.start(data_dir)
    broker_processes.append(server)
    with minibroker.connect_sync(server.url) as mb:
        mb.create_log(LOG, segment_bytes=64 * 1024 * 1024)
        mb.append_many(LOG, batch_bodies(0))
    cuts = 0
    for cycle in range(CYCLES):
        writer = threading.Thread(
            target=append_until_killed, args=(server.url, 1 + cycle * 10_000), daemon=True
        )
        writer.start()
        kill_while_writing(server, log_dir)
        writer.join()
        server = BrokerProcess.start(data_dir)
        broker_processes.append(server)  # killed at the end even if an assertion fails
        cuts += len(server.lines_matching(r"cut \d+ bytes of torn or corrupt records"))
        counts = batch_sizes_found(server.url)
        partial = {number: n for number, n in counts.items() if n != RECORDS_PER_BATCH}
        assert not partial, f"cycle {cycle}: partial batches {partial}\n{server.log_text()}"
    server.stop()
    print(f"{CYCLES} kills while writing, {cuts} torn batches cut whole by recovery")


def batch_sizes_found(url: str) -> Counter[int]:
    """How many records of each batch the whole log holds."""
    counts: Counter[int] = Counter()
    with minibroker.connect_sync(url) as mb:
        position = 0
        while records := mb.read(LOG, start=position, max_records=5000):
            for record in records:
                number, _, size = record.body.split(b"|", 1)[0].split(b"/")
                assert int(size) == RECORDS_PER_BATCH
                counts[int(number)] += 1
            position = records[-1].offset + 1
    return counts
