"""Queues end to end over TCP: a broker listening on a port, real client processes and connections.

Every client's API is covered in tests/client/test_clients_common.py; this
module is about what only a real network and real processes show:
competing ``consume`` helpers with a producer running, a consumer process
killed with SIGKILL in the middle of a batch, a consumer that leaves while
its long poll is parked, durable queues across a restart, and the
per-queue Prometheus series.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

import minibroker
from minibroker.client.queues import Delivery
from minibroker.config import ServerConfig
from minibroker.embedded import EmbeddedBroker, open_broker
from minibroker.testing import fresh_namespace

SAFETY = 30.0


@pytest.fixture(params=["memory", "disk"])
async def broker(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    data_dir = tmp_path / "data" if request.param == "disk" else None
    async with open_broker(listen=True, data_dir=data_dir) as embedded:
        yield embedded


def url_of(broker: EmbeddedBroker, namespace: str) -> str:
    return f"minibroker://127.0.0.1:{broker.port}?namespace={namespace}"


def numbered(count: int, prefix: bytes = b"m") -> list[bytes]:
    return [b"%s-%05d" % (prefix, i) for i in range(count)]


async def test_competing_consumers_with_a_live_producer_get_every_message_once(
    broker: EmbeddedBroker,
) -> None:
    url = url_of(broker, fresh_namespace("race"))
    sent = numbered(6000)
    received: dict[int, list[bytes]] = {0: [], 1: [], 2: []}

    async def consumer(index: int) -> None:
        async with minibroker.connect(url) as mb:
            await mb.declare_queue("work", durable=True)
            async with mb.consume("work", prefetch=200, ack_every=50) as deliveries:
                async for d in deliveries:
                    await d.ack()
                    if d.body == b"stop":
                        break  # what it fetched beyond this goes back to the others
                    received[index].append(d.body)

    async def producer() -> None:
        async with minibroker.connect(url) as mb:
            await mb.declare_queue("work", durable=True)
            for start in range(0, len(sent), 250):
                await mb.put_many("work", sent[start : start + 250])
            await mb.put_many("work", [b"stop"] * len(received))

    with trio.fail_after(SAFETY):
        async with trio.open_nursery() as nursery:
            for index in received:
                nursery.start_soon(consumer, index)
            nursery.start_soon(producer)

    everything = [body for bodies in received.values() for body in bodies]
    assert sorted(everything) == sent, "every message exactly once (nothing timed out)"
    assert sum(1 for bodies in received.values() if bodies) >= 2, "the work was shared"
    async with minibroker.connect(url) as mb:
        stats = await mb.queue_stats("work")
    assert (stats.acked, stats.ready, stats.in_flight) == (6003, 0, 0)


CONSUMER_SCRIPT = """
import sys, time
import minibroker
with minibroker.connect_sync(sys.argv[1]) as mb:
    batch = mb.fetch("work", max_messages=50, visibility_timeout=3600)
    mb.ack(batch[:10])
    print(len(batch), flush=True)
    time.sleep(3600)
"""


async def test_a_consumer_process_killed_mid_batch_has_its_messages_redelivered(
    broker: EmbeddedBroker,
) -> None:
    url = url_of(broker, fresh_namespace("kill9"))
    async with minibroker.connect(url) as mb:
        await mb.declare_queue("work", durable=True)
        await mb.put_many("work", numbered(80))
        victim = await trio.lowlevel.open_process(
            [sys.executable, "-c", CONSUMER_SCRIPT, url], stdout=subprocess.PIPE
        )
        try:
            assert victim.stdout is not None
            with trio.fail_after(SAFETY):
                line = await victim.stdout.receive_some(100)
            assert line.strip() == b"50"  # it holds 40 unacked, for an hour
            stats = await mb.queue_stats("work")
            assert (stats.in_flight, stats.acked, stats.ready) == (40, 10, 30)
        finally:
            os.kill(victim.pid, signal.SIGKILL)
            await victim.wait()
        # The broker sees the connection die and requeues the 40 at once (our long
        # poll may get the 30 never-delivered ones first, if it is read first).
        got: list[Delivery] = []
        with trio.fail_after(SAFETY):
            while len(got) < 70:
                got += await mb.fetch("work", max_messages=100, wait=SAFETY)
        counts = Counter(d.delivery_count for d in got)
        assert counts == {2: 40, 1: 30}
        assert sorted(d.body for d in got) == numbered(80)[10:]
        assert await mb.ack(got) == 70


async def test_a_consumer_leaving_an_idle_queue_is_prompt_and_withdraws_its_poll(
    broker: EmbeddedBroker,
) -> None:
    """A worker stopped (cancelled) while its long poll is parked, again and
    again, never gets a message: each time the poll is withdrawn, so the
    message put afterwards reaches the next consumer on its first delivery
    instead of creeping towards max_deliveries."""
    url = url_of(broker, fresh_namespace("idle"))
    async with minibroker.connect(url) as mb, minibroker.connect(url) as other:
        await mb.declare_queue("work.dead")
        await mb.declare_queue("work", max_deliveries=2, dead_letter_queue="work.dead")
        with trio.fail_after(SAFETY):
            for _ in range(3):
                async with trio.open_nursery() as nursery:

                    async def idle_consumer() -> None:
                        async with mb.consume("work", prefetch=50, wait=600) as deliveries:
                            async for _ in deliveries:
                                raise AssertionError("nothing was put yet")

                    nursery.start_soon(idle_consumer)
                    await trio.testing.wait_all_tasks_blocked()  # its fetch is parked
                    assert (await other.queue_stats("work")).waiting_fetches == 1
                    nursery.cancel_scope.cancel()  # leaves at once, not after the 600 s poll
                await mb.ping()  # the cancel went out before this, on the same connection
                assert (await other.queue_stats("work")).waiting_fetches == 0
            await other.put_many("work", numbered(5))
            async with other.consume("work", prefetch=10) as deliveries:
                got: list[Delivery] = []
                async for d in deliveries:
                    got.append(d)
                    await d.ack()
                    if len(got) == 5:
                        break
        assert [(d.body, d.delivery_count) for d in got] == [(b, 1) for b in numbered(5)]
        stats = await other.queue_stats("work")
        assert (stats.acked, stats.requeued, stats.dead_lettered) == (5, 0, 0)
        assert (stats.in_flight, stats.ready, stats.waiting_fetches) == (0, 0, 0)


async def test_a_cancelled_long_poll_fetch_is_withdrawn(broker: EmbeddedBroker) -> None:
    """``await mb.fetch(q, wait=600)`` cancelled while parked withdraws its poll:
    a message put afterwards is not delivered to the cancelled caller (where
    it would stay invisible until its visibility timeout), but to the next
    fetch, on its first delivery."""
    url = url_of(broker, fresh_namespace("cancelled-fetch"))
    async with minibroker.connect(url) as mb, minibroker.connect(url) as other:
        await mb.declare_queue("work", max_deliveries=2)
        with trio.fail_after(SAFETY):
            for _ in range(3):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(partial(mb.fetch, "work", 10, wait=600))
                    await trio.testing.wait_all_tasks_blocked()  # the fetch is parked
                    assert (await other.queue_stats("work")).waiting_fetches == 1
                    nursery.cancel_scope.cancel()
                await mb.ping()  # the cancel went out before this, on the same connection
                assert (await other.queue_stats("work")).waiting_fetches == 0
            await other.put("work", b"late")
            (delivery,) = await mb.fetch("work", 10, wait=SAFETY)
        assert (delivery.body, delivery.delivery_count) == (b"late", 1)
        await delivery.ack()
        stats = await other.queue_stats("work")
        assert (stats.acked, stats.requeued, stats.in_flight, stats.ready) == (1, 0, 0, 0)


async def test_a_consumer_holds_at_most_its_prefetch(broker: EmbeddedBroker) -> None:
    url = url_of(broker, fresh_namespace("prefetch"))
    async with minibroker.connect(url) as mb, minibroker.connect(url) as observer:
        await mb.declare_queue("work")
        await mb.put_many("work", numbered(1000))
        seen = 0
        async with mb.consume("work", prefetch=100) as deliveries:
            async for d in deliveries:
                seen += 1
                await d.ack()
                stats = await observer.queue_stats("work")
                assert stats.in_flight <= 100
                if seen == 300:
                    break
        stats = await observer.queue_stats("work")
        assert (stats.acked, stats.in_flight, stats.ready) == (300, 0, 700)


async def test_a_durable_queue_comes_back_after_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    namespace = fresh_namespace("restart")
    async with (
        open_broker(listen=True, data_dir=data_dir) as first,
        minibroker.connect(url_of(first, namespace)) as mb,
    ):
        await mb.declare_queue("keep", durable=True, max_deliveries=3)
        await mb.declare_queue("lose")
        await mb.put_many("keep", numbered(20))
        await mb.put("lose", b"memory only")
        held = await mb.fetch("keep", max_messages=5)
        await mb.ack(held[:3])  # two stay in flight through the restart
    async with (
        open_broker(listen=True, data_dir=data_dir) as second,
        minibroker.connect(url_of(second, namespace)) as mb,
    ):
        assert [q.queue for q in await mb.list_queues()] == ["keep"]
        stats = await mb.queue_stats("keep")
        assert (stats.ready, stats.durable, stats.options["max_deliveries"]) == (17, True, 3)
        bodies: list[bytes] = []
        async with mb.consume("keep", prefetch=10) as deliveries:
            async for d in deliveries:
                bodies.append(d.body)
                await d.ack()
                if len(bodies) == 17:
                    break
        assert sorted(bodies) == numbered(20)[3:]
        assert (await mb.queue_stats("keep")).acked == 17


async def http_get(port: int, path: str) -> str:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        chunks = []
        while chunk := await stream.receive_some(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


async def test_metrics_have_a_series_per_queue() -> None:
    config = ServerConfig(port=0, metrics_port=0)
    async with open_broker(listen=True, config=config) as broker:
        port = broker.server.metrics_port
        assert port is not None
        async with minibroker.connect(url_of(broker, "metrics")) as mb:
            await mb.declare_queue("jobs")
            await mb.put_many("jobs", numbered(5))
            batch = await mb.fetch("jobs", max_messages=3)
            await mb.ack(batch[:2])
            await mb.nack(batch[2], requeue=False)  # no dead-letter queue: dropped
            with trio.fail_after(SAFETY):
                text = await http_get(port, "/metrics")
        labels = '{namespace="metrics",queue="jobs"}'
        expected = {
            "minibroker_queue_ready": 2,
            "minibroker_queue_in_flight": 0,
            "minibroker_queue_consumers": 0,
            "minibroker_queue_published_total": 5,
            "minibroker_queue_delivered_total": 3,
            "minibroker_queue_acked_total": 2,
            "minibroker_queue_dropped_total": 1,
            "minibroker_queue_redelivered_total": 0,
            "minibroker_queue_expired_total": 0,
            "minibroker_queue_dead_lettered_total": 0,
        }
        for name, value in expected.items():
            assert f"{name}{labels} {float(value)}" in text, name
        # A deleted queue's series go with it: the label set stays bounded.
        async with minibroker.connect(url_of(broker, "metrics")) as mb:
            await mb.delete_queue("jobs")
        with trio.fail_after(SAFETY):
            text = await http_get(port, "/metrics")
        assert 'queue="jobs"' not in text
        assert "# TYPE minibroker_queue_ready gauge" in text


class Boom(Exception):
    pass


async def test_an_exception_in_the_loop_still_sends_the_acks_and_gives_back_the_rest(
    broker: EmbeddedBroker,
) -> None:
    url = url_of(broker, fresh_namespace("boom"))
    async with minibroker.connect(url) as mb:
        await mb.declare_queue("work")
        await mb.put_many("work", numbered(100))
        with pytest.raises(Boom):
            async with mb.consume("work", prefetch=40, ack_every=1000) as deliveries:
                async for d in deliveries:
                    await d.ack()
                    if deliveries.pending_acks == 10:
                        raise Boom
        # Nothing was awaited on the way out, but everything was sent, in order:
        # an answer to a later request means the broker has applied it.
        await mb.ping()
        stats = await mb.queue_stats("work")
        assert (stats.acked, stats.in_flight, stats.ready) == (10, 0, 90)


async def test_nacked_one_at_a_time_they_come_back_in_publication_order(
    broker: EmbeddedBroker,
) -> None:
    """As RabbitMQ: a requeued message goes back to its place in publication
    order (each nack used to go to the very front: m4, m1, m3 came next)."""
    url = url_of(broker, fresh_namespace("requeue"))
    async with minibroker.connect(url) as mb:
        await mb.declare_queue("work", durable=True)
        await mb.put_many("work", numbered(8))
        with trio.fail_after(SAFETY):
            held = await mb.fetch("work", max_messages=5)  # m0 .. m4
            async with minibroker.connect(url) as other:
                later = await other.fetch("work", max_messages=2)  # m5, m6
                assert [d.body for d in later] == numbered(7)[5:]
                await later[1].nack()
                await later[0].nack()
            for index in (3, 1, 4):
                await held[index].nack()
            again = await mb.fetch("work", max_messages=10)
        assert [d.body for d in again] == [numbered(8)[i] for i in (1, 3, 4, 5, 6, 7)]
        assert [d.delivery_count for d in again] == [2, 2, 2, 2, 2, 1]
