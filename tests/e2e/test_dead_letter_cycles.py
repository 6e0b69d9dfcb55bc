"""Dead-letter cycles end, on a real broker under Trio's MockClock (issue 14 item 2).

Two queues expiring into each other bounced a message forever (227 bounces
each way in 5 s, and on). Now a message goes round once and is dropped when
it would go back into a queue it already died in, as in RabbitMQ; the path
it took is in its headers, so a restart does not give it another lap.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from pamqp import commands

from minibroker.embedded import open_broker
from tests.amqp.amqp_wire import WireClient, publish_frames  # type: ignore[import-not-found]


@pytest.mark.parametrize("durable", [False, True])
async def test_two_queues_expiring_into_each_other_stop_after_one_lap(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, durable: bool
) -> None:
    data_dir = tmp_path / "data" if durable else None
    async with open_broker(data_dir=data_dir) as broker, broker.connect() as mb:
        await mb.declare_queue("a", message_ttl=0.01, dead_letter_queue="b", durable=durable)
        await mb.declare_queue("b", message_ttl=0.01, dead_letter_queue="a", durable=durable)
        await mb.put("a", b"ping-pong")
        await trio.sleep(5)
        a, b = await mb.queue_stats("a"), await mb.queue_stats("b")
        assert (a.dead_lettered, a.dropped, a.ready) == (1, 0, 0)
        assert (b.published, b.dropped, b.ready) == (1, 1, 0)
        assert broker.core.next_deadline() is None


async def test_the_path_survives_a_restart(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    async with open_broker(data_dir=data_dir) as broker, broker.connect() as mb:
        await mb.declare_queue("a", message_ttl=1.0, dead_letter_queue="b", durable=True)
        await mb.declare_queue("b", message_ttl=100.0, dead_letter_queue="a", durable=True)
        await mb.put("a", b"m")
        await trio.sleep(2)  # expired into b, where it waits for its next expiry
    async with open_broker(data_dir=data_dir) as broker, broker.connect() as mb:
        [inside] = (await mb.inspect_queue("b")).ready
        assert inside.headers == {
            "x-death-reason": "expired",
            "x-death-queue": "a",
            "x-death-count": "0",
            "x-death-hops": "1",
            "x-death-path": "a",
        }
        await trio.sleep(200)
        a, b = await mb.queue_stats("a"), await mb.queue_stats("b")
        assert (a.published, a.ready, b.dropped, b.ready) == (0, 0, 1, 0)


async def test_amqp_queues_expiring_into_each_other_stop_after_one_lap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The same cycle through x-dead-letter-exchange (the default exchange): it
    went round once per TTL forever, as the core's rule did not apply there."""
    async with open_broker(amqp=True) as broker:
        client = await WireClient.connect(broker.server.front_end_ports["amqp"])
        await client.handshake()
        await client.open_channel()
        for name, target in (("a", "b"), ("b", "a")):
            arguments = {
                "x-message-ttl": 10,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": target,
            }
            await client.send(1, commands.Queue.Declare(queue=name, arguments=arguments))
            await client.expect(commands.Queue.DeclareOk)
        await client.send_bytes(publish_frames(b"ping-pong", routing_key="a"))
        await trio.sleep(5)  # 250 TTLs of each queue
        queues = broker.core.namespace().queues
        a, b = queues.get("a").statistics(), queues.get("b").statistics()
        assert (a.published, a.dead_lettered, a.dropped, a.ready) == (1, 1, 0, 0)
        assert (b.published, b.dead_lettered, b.dropped, b.ready) == (1, 0, 1, 0)
        assert broker.core.next_deadline() is None
        await client.aclose()
