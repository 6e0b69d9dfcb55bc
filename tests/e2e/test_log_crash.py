"""Crash test: a real ``minibroker serve --data-dir`` killed with SIGKILL during appends.

Several clients append batches as fast as they can and keep a ledger of what
the broker confirmed (first offset and bodies of every confirmed batch); a
consumer commits its group's position as it goes. The server is killed in
the middle of all that, restarted on the same directory, and checked:

* every confirmed record is there, at the same offset, with the same body;
* nothing unexpected is there: every record is one some client sent, once
  (a batch whose confirm was lost in the crash may or may not be there, whole);
* offsets are dense and never reused: a new append lands after every
  surviving record;
* the group's committed offset is the last one confirmed (or a later one
  that was in flight).

Twice over, to recover an already recovered directory too.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import trio

import minibroker
from benchmarks.broker_process import BrokerProcess
from minibroker.errors import BrokerError

pytestmark = pytest.mark.slow

LOG = "ledger"
GROUP = "auditor"
APPENDERS = 4
BATCH = 50
#: Confirmed records to wait for before pulling the plug.
KILL_AFTER = 20_000


def body_of(round_: int, writer: int, seq: int) -> bytes:
    return b"r%d-w%d-%08d" % (round_, writer, seq) + b"." * 80


async def load_and_kill(
    server: BrokerProcess, sent: set[bytes], round_: int
) -> tuple[dict[int, bytes], list[int]]:
    """Append and commit until the kill; return confirmed records and confirmed commits."""
    confirmed: dict[int, bytes] = {}
    commits: list[int] = []
    counter = {"confirmed": 0}
    enough = trio.Event()

    async def appender(writer: int) -> None:
        seq = 0
        async with minibroker.connect(server.url) as mb:
            while True:
                bodies = [body_of(round_, writer, seq + i) for i in range(BATCH)]
                seq += BATCH
                sent.update(bodies)
                first = await mb.append_many(LOG, bodies)
                for i, body in enumerate(bodies):
                    confirmed[first + i] = body
                counter["confirmed"] += BATCH
                if counter["confirmed"] >= KILL_AFTER:
                    enough.set()

    async def auditor() -> None:
        async with minibroker.connect(server.url) as mb:
            position = await mb.committed(LOG, GROUP) or 0
            while True:
                records = await mb.read(LOG, start=position, max_records=500, wait=1.0)
                if records:
                    position = records[-1].offset + 1
                    await mb.commit(LOG, GROUP, position)
                    commits.append(position)

    async def guarded(task: object, *args: object) -> None:
        with contextlib.suppress(BrokerError, OSError):  # the server died: expected
            await task(*args)  # type: ignore[operator]

    # Every task ends on its own once its connection is gone with the server.
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for writer in range(APPENDERS):
                nursery.start_soon(guarded, appender, writer)
            nursery.start_soon(guarded, auditor)
            await enough.wait()
            server.kill()
    return confirmed, commits


async def check_after_restart(
    server: BrokerProcess,
    confirmed: dict[int, bytes],
    commits: list[int],
    sent: set[bytes],
    marker: bytes,
) -> int:
    async with minibroker.connect(server.url) as mb:
        stats = await mb.log_stats(LOG)
        assert stats.first_offset == 0
        present: dict[int, bytes] = {}
        position = 0
        while position < stats.next_offset:
            for record in await mb.read(LOG, start=position, max_records=10_000):
                assert record.offset == position, "offsets are dense"
                present[record.offset] = record.body
                position += 1
        lost = [o for o, body in confirmed.items() if present.get(o) != body]
        assert lost == [], f"{len(lost)} confirmed records lost or changed, e.g. {lost[:5]}"
        unexpected = [o for o, body in present.items() if body not in sent]
        assert unexpected == [], f"records nobody sent at {unexpected[:5]}"
        assert len(set(present.values())) == len(present), "a record was stored twice"
        # Offsets are never reused: the next append goes after everything that survived.
        offset = await mb.append(LOG, marker)
        assert offset == stats.next_offset
        assert offset > max(confirmed)
        committed = await mb.committed(LOG, GROUP)
        if commits:
            assert committed is not None and committed >= commits[-1]
        return offset


def test_confirmed_appends_survive_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    sent: set[bytes] = set()
    all_confirmed: dict[int, bytes] = {}
    server = BrokerProcess.start(data_dir)
    try:
        with minibroker.connect_sync(server.url) as mb:
            mb.create_log(LOG, segment_bytes=256 * 1024)
        for round_ in range(2):
            confirmed, commits = trio.run(load_and_kill, server, sent, round_)
            assert len(confirmed) >= KILL_AFTER
            all_confirmed.update(confirmed)
            server = BrokerProcess.start(data_dir)
            marker = b"after crash %d" % round_
            sent.add(marker)
            after = trio.run(check_after_restart, server, all_confirmed, commits, sent, marker)
            all_confirmed[after] = marker
        assert any("recovered log" in line for line in server.log)
    finally:
        server.stop()
