"""aio-pika (on aiormq and pamqp) against minibroker's AMQP port.

The tests are plain functions running their own asyncio loop: the repository's
pytest runs async tests under Trio, and aio-pika needs asyncio.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import aio_pika
from aio_pika.patterns import RPC

from minibroker.config import ServerConfig
from minibroker.testing import run_in_thread


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), timeout=30))


def test_publish_with_confirms_and_consume_with_qos(minibroker_amqp_url: str) -> None:
    async def main() -> None:
        async with await aio_pika.connect(minibroker_amqp_url) as conn:
            channel = await conn.channel()  # publisher confirms on by default
            await channel.set_qos(prefetch_count=3)
            queue = await channel.declare_queue("jobs", durable=True)
            for i in range(10):
                # aio-pika publishes with mandatory=True and waits for the confirm.
                await channel.default_exchange.publish(
                    aio_pika.Message(str(i).encode(), message_id=str(i)), routing_key="jobs"
                )
            held: list[aio_pika.abc.AbstractIncomingMessage] = []
            reached = {3: asyncio.Event(), 4: asyncio.Event()}

            async def hold(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                held.append(message)
                if len(held) in reached:
                    reached[len(held)].set()

            tag = await queue.consume(hold)
            await reached[3].wait()
            # A round trip on the same channel: any fourth delivery would come first.
            assert (
                await channel.declare_queue("jobs", passive=True)
            ).declaration_result.message_count == 7
            assert len(held) == 3
            await held[0].ack()
            await reached[4].wait()  # the ack made room for one more
            await queue.cancel(tag)
            assert [int(m.body) for m in held[:4]] == [0, 1, 2, 3]

    run(main)


def test_rpc_pattern_calls_and_returns(minibroker_amqp_url: str) -> None:
    async def main() -> None:
        async with await aio_pika.connect(minibroker_amqp_url) as conn:
            channel = await conn.channel()
            rpc = await RPC.create(channel)

            async def multiply(*, x: int, y: int) -> int:
                return x * y

            await rpc.register("multiply", multiply, auto_delete=True)
            assert await rpc.proxy.multiply(x=6, y=7) == 42
            assert await asyncio.gather(
                *(rpc.call("multiply", {"x": i, "y": i}) for i in range(5))
            ) == [0, 1, 4, 9, 16]
            await rpc.close()

    run(main)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_connect_robust_reconnects_after_a_broker_restart_with_a_data_dir(
    tmp_path: Path,
) -> None:
    port = _free_port()
    config = ServerConfig(port=0, amqp_port=port, data_dir=tmp_path)
    url = f"amqp://guest:guest@127.0.0.1:{port}/"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        broker = run_in_thread(config)
        broker.__enter__()
        conn = await aio_pika.connect_robust(url, reconnect_interval=0.1)
        try:
            channel = await conn.channel()
            queue = await channel.declare_queue("kept", durable=True)
            await channel.default_exchange.publish(
                aio_pika.Message(b"before", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="kept",
            )
            reconnected = asyncio.Event()
            conn.reconnect_callbacks.add(lambda *args: reconnected.set())
            await loop.run_in_executor(None, broker.__exit__, None, None, None)
            broker = run_in_thread(config)
            await loop.run_in_executor(None, broker.__enter__)
            await reconnected.wait()
            message = await queue.get(timeout=5)
            assert message.body == b"before"  # durable: it survived the restart
            await message.ack()
            await channel.default_exchange.publish(aio_pika.Message(b"after"), routing_key="kept")
            assert (await queue.get(timeout=5)).body == b"after"
        finally:
            await conn.close()
            await loop.run_in_executor(None, broker.__exit__, None, None, None)

    run(main)
