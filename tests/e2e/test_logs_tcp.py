"""Logs end to end over TCP: a broker listening on a port, the Trio client connecting to it.

Replay from every kind of starting point, tails that replay then follow with
no gap and no duplicate, consumer groups that resume after a reconnect,
retention's OffsetOutOfRange, deletion while tails and long polls wait, and
the flow control that keeps a slow tail from making the broker buffer a log.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest
import trio
from prometheus_client.exposition import generate_latest

import minibroker
from minibroker.embedded import EmbeddedBroker, open_broker
from minibroker.errors import NotFound, OffsetOutOfRange
from minibroker.storage import Record
from minibroker.testing import fresh_namespace

SAFETY = 30.0


@pytest.fixture(params=["memory", "disk"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    data_dir = tmp_path / "data" if request.param == "disk" else None
    async with open_broker(listen=True, data_dir=data_dir) as embedded:
        yield embedded


@pytest.fixture
def namespace() -> str:
    return fresh_namespace("logs")


def url_of(broker: EmbeddedBroker) -> str:
    return f"minibroker://127.0.0.1:{broker.port}"


@pytest.fixture
async def mb(broker: EmbeddedBroker, namespace: str) -> AsyncIterator[minibroker.Client]:
    async with minibroker.connect(url_of(broker), namespace=namespace) as client:
        yield client


async def parked_reads(mb: minibroker.Client, log: str, count: int = 1) -> None:
    """Until ``count`` reads of ``log`` wait at the broker: a read sent by
    another task may not have reached it yet (a fixed sleep missed it on a
    loaded machine, and the record then came before the read's "latest")."""
    with trio.fail_after(SAFETY):
        while (await mb.log_stats(log)).waiting_reads < count:
            await trio.sleep(0.001)


async def test_replay_from_each_kind_of_start(mb: minibroker.Client) -> None:
    await mb.create_log("ev")
    first = await mb.append_many("ev", [b"a", b"b", b"c"])
    assert first == 0
    records = await mb.read("ev", start=0)
    stamp = records[0].timestamp_ms
    await trio.sleep(0.01)  # the next batch gets a later timestamp
    await mb.append_many("ev", [{"body": b"d", "key": b"k", "headers": {"h": "1"}}, b"e"])
    records = await mb.read("ev", start="earliest")
    assert [(r.offset, r.body) for r in records] == list(enumerate([b"a", b"b", b"c", b"d", b"e"]))
    assert (records[3].key, records[3].headers) == (b"k", {"h": "1"})

    assert [r.body for r in await mb.read("ev", start=3)] == [b"d", b"e"]
    assert await mb.read("ev", start="latest") == []
    later = records[3].timestamp_ms
    assert later > stamp
    assert [r.offset for r in await mb.read("ev", timestamp_ms=later)] == [3, 4]
    assert [r.offset for r in await mb.read("ev", timestamp_ms=stamp)] == [0, 1, 2, 3, 4]
    assert [r.body for r in await mb.read("ev", start="committed", group="g")] == [
        b"a",
        b"b",
        b"c",
        b"d",
        b"e",
    ]
    await mb.commit("ev", "g", 4)
    assert await mb.committed("ev", "g") == 4
    assert [r.body for r in await mb.read("ev", start="committed", group="g")] == [b"e"]
    assert [r.offset for r in await mb.read("ev", start=1, max_records=2)] == [1, 2]


async def test_long_poll_read_returns_when_records_arrive(mb: minibroker.Client) -> None:
    await mb.create_log("ev")
    async with trio.open_nursery() as nursery:
        got: list[Record] = []

        async def reader() -> None:
            got.extend(await mb.read("ev", start="latest", wait=SAFETY))

        nursery.start_soon(reader)
        await parked_reads(mb, "ev")
        await mb.append("ev", b"news")
    assert [r.body for r in got] == [b"news"]
    # Nothing arrives: an empty answer at the deadline.
    with trio.fail_after(SAFETY):
        assert await mb.read("ev", start="latest", wait=0.05) == []


async def test_tail_replays_then_follows_without_gap_or_duplicate(
    mb: minibroker.Client, broker: EmbeddedBroker, namespace: str
) -> None:
    await mb.create_log("ev")
    total = 20_000
    await mb.append_many("ev", [b"%d" % i for i in range(5_000)])
    seen: list[int] = []
    async with (
        minibroker.connect(url_of(broker), namespace=namespace) as producer,
        mb.tail("ev", start="earliest") as tail,
        trio.open_nursery() as nursery,
    ):

        async def produce() -> None:
            for start in range(5_000, total, 500):
                await producer.append_many("ev", [b"%d" % i for i in range(start, start + 500)])

        nursery.start_soon(produce)
        with trio.fail_after(SAFETY):
            async for record in tail:
                assert int(record.body) == record.offset
                seen.append(record.offset)
                if len(seen) == total:
                    break
    assert seen == list(range(total))


async def test_group_resumes_after_its_consumer_reconnects(
    broker: EmbeddedBroker, namespace: str
) -> None:
    url = url_of(broker)
    async with minibroker.connect(url, namespace=namespace) as mb:
        await mb.create_log("ev")
        await mb.append_many("ev", [b"%d" % i for i in range(1000)])
        async with mb.tail("ev", group="proj", commit_every=100) as tail:
            with trio.fail_after(SAFETY):
                async for record in tail:
                    if record.offset == 299:
                        break  # 0..299 processed
        assert await mb.committed("ev", "proj") == 300
        stats = await mb.log_stats("ev")
        assert (stats.groups["proj"].committed, stats.groups["proj"].lag) == (300, 700)

    # A consumer that dies without closing its tail: the last commit stands.
    with pytest.raises(RuntimeError):
        async with (
            minibroker.connect(url, namespace=namespace) as mb,
            mb.tail("ev", group="proj", commit_every=100) as tail,
        ):
            with trio.fail_after(SAFETY):
                async for record in tail:
                    if record.offset == 549:
                        raise RuntimeError("consumer crashed while processing 549")
    async with minibroker.connect(url, namespace=namespace) as mb:
        # 300..548 were processed; the helper committed at every 100 and on the
        # error it kept 549 (not finished) out of the commit.
        assert await mb.committed("ev", "proj") == 549
        async with mb.tail("ev", group="proj") as tail:
            with trio.fail_after(SAFETY):
                batch = await tail.get_batch(10)
        assert batch[0].offset == 549


async def test_reading_below_retention_names_the_first_offset(mb: minibroker.Client) -> None:
    await mb.create_log("ev", segment_bytes=1024, retention_bytes=2048)
    for _ in range(20):
        await mb.append_many("ev", [bytes(100)] * 3)
    stats = await mb.log_stats("ev")
    assert stats.first_offset > 0 and stats.next_offset == 60
    with pytest.raises(OffsetOutOfRange) as info:
        await mb.read("ev", start=0)
    assert info.value.details["first_offset"] == stats.first_offset
    with pytest.raises(OffsetOutOfRange):
        async with mb.tail("ev", start=0):
            pass
    records = await mb.read("ev", start="earliest")
    assert records[0].offset == stats.first_offset and records[-1].offset == 59


async def test_deleting_a_log_ends_tails_and_fails_parked_reads(
    mb: minibroker.Client, broker: EmbeddedBroker, namespace: str
) -> None:
    await mb.create_log("ev")
    failure: list[BaseException] = []
    async with minibroker.connect(url_of(broker), namespace=namespace) as other:
        async with mb.tail("ev") as tail, trio.open_nursery() as nursery:

            async def parked() -> None:
                try:
                    await other.read("ev", start="latest", wait=SAFETY)
                except NotFound as exc:
                    failure.append(exc)

            nursery.start_soon(parked)
            await parked_reads(mb, "ev")
            await mb.delete_log("ev")
            with trio.fail_after(SAFETY):
                remaining = [r async for r in tail]
        assert remaining == []
        assert tail.subscription.ended is not None
    assert len(failure) == 1
    assert await mb.list_logs() == []


async def test_a_slow_tail_reader_costs_a_cursor_not_a_buffer(
    broker: EmbeddedBroker, namespace: str
) -> None:
    """A client that never reads its socket: the broker stops reading the log for it."""
    async with minibroker.connect(url_of(broker), namespace=namespace) as mb:
        await mb.create_log("ev")
        raw = socket.create_connection(("127.0.0.1", broker.port))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            for frame in (
                {"op": "hello", "id": 1, "version": 1, "namespace": namespace},
                {"op": "tail", "id": 2, "log": "ev", "start": "earliest"},
            ):
                body = msgpack.packb(frame)
                raw.sendall(struct.pack(">I", len(body)) + body)
            chunk = [bytes(1000)] * 1000
            for _ in range(40):  # 40 MB
                await mb.append_many("ev", chunk)
            await trio.sleep(0.2)  # let the tail's connection push what it can
            log = broker.core.namespace(namespace).logs.get("ev")
            (tail,) = log.tails
            assert log.high_watermark == 40_000
            # The socket buffers hold a few MB at most; the rest stays on the
            # broker's log, not in a per-connection buffer.
            assert tail.cursor < 20_000
            for session in broker.server.sessions.values():
                assert session.outbound_bytes <= 2 * 1024 * 1024
        finally:
            raw.close()


async def test_stats_list_and_create_conflicts(mb: minibroker.Client) -> None:
    assert await mb.create_log("a", retention_seconds=60) is True
    assert await mb.create_log("a", retention_seconds=60) is False
    with pytest.raises(minibroker.Conflict):
        await mb.create_log("a", retention_seconds=61)
    await mb.create_log("b")
    assert await mb.list_logs() == ["a", "b"]
    await mb.append("a", b"x", key=b"k")
    stats = await mb.log_stats("a")
    assert (stats.first_offset, stats.next_offset, stats.records, stats.segments) == (0, 1, 1, 1)
    assert stats.options["retention_seconds"] == 60.0
    assert await mb.delete_log("a") == 1
    with pytest.raises(NotFound):
        await mb.log_stats("a")


async def test_metrics_report_logs_groups_and_fsyncs(
    broker: EmbeddedBroker, mb: minibroker.Client, namespace: str
) -> None:
    await mb.create_log("ev", segment_bytes=1024)
    await mb.append_many("ev", [bytes(100)] * 30)
    await mb.commit("ev", "g", 10)
    text = generate_latest(broker.server.registry).decode()
    labels = f'log="ev",namespace="{namespace}"'
    assert f"minibroker_log_appended_records_total{{{labels}}} 30.0" in text
    assert f"minibroker_log_appended_bytes_total{{{labels}}} 3000.0" in text
    assert f"minibroker_log_end_offset{{{labels}}} 30.0" in text
    assert f"minibroker_log_first_offset{{{labels}}} 0.0" in text
    assert f'minibroker_log_group_lag{{group="g",{labels}}} 20.0' in text
    assert f'minibroker_log_group_committed_offset{{group="g",{labels}}} 10.0' in text
    assert "minibroker_log_segments{" in text and "minibroker_log_bytes{" in text
    fsyncs = [
        line for line in text.splitlines() if line.startswith("minibroker_fsync_seconds_count")
    ]
    assert len(fsyncs) == 1
    if broker.server.config.data_dir is not None:  # group commit ran for the append
        assert float(fsyncs[0].split()[-1]) >= 1


async def test_a_caught_up_group_consumer_commits_without_closing(
    mb: minibroker.Client, broker: EmbeddedBroker, namespace: str
) -> None:
    await mb.create_log("ev")
    await mb.append_many("ev", [b"%d" % i for i in range(10)])
    seen: list[int] = []
    async with (
        minibroker.connect(url_of(broker), namespace=namespace) as consumer,
        consumer.tail("ev", group="idle") as tail,
        trio.open_nursery() as nursery,
    ):

        async def consume() -> None:
            async for record in tail:
                seen.append(record.offset)

        nursery.start_soon(consume)
        with trio.fail_after(SAFETY):
            # All ten handed out and the loop waiting for more: the helper has
            # sent the commit for all ten, without the consumer leaving.
            while await mb.committed("ev", "idle") != 10:
                await trio.sleep(0.01)
        assert seen == list(range(10))
        nursery.cancel_scope.cancel()
