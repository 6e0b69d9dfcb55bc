"""The AMQP front end on the wire: handshake, limits, errors, heartbeats, garbage.

A bare-bytes client (amqp_wire.py) against an in-process broker, with Trio's
MockClock where time matters.
"""

from __future__ import annotations

import struct

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands, heartbeat

from minibroker.access.permissions import Permissions
from minibroker.config import ServerConfig
from minibroker.core.config import Limits
from minibroker.embedded import open_broker
from tests.amqp.amqp_wire import WireClient  # type: ignore[import-not-found]


def amqp_port(broker: object) -> int:
    return broker.server.front_end_ports["amqp"]  # type: ignore[attr-defined, no-any-return]


async def test_start_advertises_only_implemented_capabilities() -> None:
    async with open_broker(amqp=True) as broker:
        client = await WireClient.connect(amqp_port(broker))
        start = await client.handshake()
        props = start.server_properties
        assert props["product"] == "minibroker"
        assert set(props["capabilities"]) == {
            "publisher_confirms",
            "basic.nack",
            "consumer_cancel_notify",
            "authentication_failure_close",
            "per_consumer_qos",
            "direct_reply_to",
            "exchange_exchange_bindings",
        }
        assert set(start.mechanisms.split()) == {"PLAIN", "AMQPLAIN"}
        await client.aclose()


async def test_a_wrong_protocol_header_gets_ours_and_a_close() -> None:
    async with open_broker(amqp=True) as broker:
        client = await WireClient.connect(amqp_port(broker))
        await client.send_bytes(b"AMQP\x00\x00\x08\x00")
        data = b""
        while chunk := await client.stream.receive_some(100):
            data += chunk
        assert data == b"AMQP\x00\x00\x09\x01"
        await client.aclose()


async def test_tokens_are_the_passwords() -> None:
    config = ServerConfig(port=0, tokens={"s3cret": "app"})
    async with open_broker(amqp=True, config=config) as broker:
        refused = await WireClient.connect(amqp_port(broker))
        await refused.login(password="guess")
        [close] = await refused.until_eof()
        assert isinstance(close, commands.Connection.Close) and close.reply_code == 403
        accepted = await WireClient.connect(amqp_port(broker))
        await accepted.handshake(password="s3cret")
        await accepted.aclose()
        await refused.aclose()


async def _oversized_frame_closes_with(code: int, data: bytes) -> None:
    async with open_broker(amqp=True) as broker:
        bystander = await WireClient.connect(amqp_port(broker))
        await bystander.handshake()
        await bystander.open_channel()
        client = await WireClient.connect(amqp_port(broker))
        await client.handshake()
        await client.open_channel()
        await client.send_bytes(data)
        frames = await client.until_eof()
        assert isinstance(frames[-1], commands.Connection.Close)
        assert frames[-1].reply_code == code
        # Nobody else noticed.
        await bystander.send(1, commands.Queue.Declare(queue="still-here"))
        await bystander.expect(commands.Queue.DeclareOk)
        await bystander.aclose()
        await client.aclose()


async def test_a_frame_above_frame_max_closes_the_connection_with_501() -> None:
    header = struct.pack(">BHI", 3, 1, 10_000_000)  # a 10 MB body frame, never sent
    await _oversized_frame_closes_with(501, header)


async def test_a_body_frame_without_a_publish_closes_with_505() -> None:
    await _oversized_frame_closes_with(505, struct.pack(">BHI", 3, 1, 3) + b"abc\xce")


async def test_connection_update_secret_is_not_implemented_540() -> None:
    payload = struct.pack(">HHI", 10, 70, 3) + b"new" + b"\x06reason"
    await _oversized_frame_closes_with(
        540, struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce"
    )


async def test_a_method_with_garbage_arguments_closes_with_502() -> None:
    # Queue.Declare whose shortstr length runs past the end of the frame.
    payload = struct.pack(">HHH", 50, 10, 0) + b"\xff"
    await _oversized_frame_closes_with(
        502, struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce"
    )


async def test_a_silent_client_is_sent_heartbeats_then_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_broker(amqp=True) as broker:
        client = await WireClient.connect(amqp_port(broker))
        await client.handshake(heartbeat_seconds=10)
        start = trio.current_time()
        frames = await client.until_eof()
        silent_for = trio.current_time() - start
        assert frames and all(isinstance(f, heartbeat.Heartbeat) for f in frames)
        assert 20 <= silent_for <= 25  # two intervals, checked every half interval


async def test_a_client_that_heartbeats_stays_connected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_broker(amqp=True) as broker:
        client = await WireClient.connect(amqp_port(broker))
        await client.handshake(heartbeat_seconds=10)
        for _ in range(10):
            await trio.sleep(9)
            await client.send_bytes(b"\x08\x00\x00\x00\x00\x00\x00\xce")
        await client.open_channel()  # still open after 90 s
        await client.aclose()


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=300), after_handshake=st.booleans())
def test_garbage_never_crashes_the_server_or_disturbs_others(
    garbage: bytes, after_handshake: bool
) -> None:
    async def main() -> None:
        async with open_broker(amqp=True) as broker:
            bystander = await WireClient.connect(amqp_port(broker))
            await bystander.handshake()
            await bystander.open_channel()
            client = await WireClient.connect(amqp_port(broker))
            if after_handshake:
                await client.handshake()
                await client.open_channel()
            await client.send_bytes(garbage)
            await client.stream.send_eof()
            with trio.fail_after(5):
                await client.until_eof()
            await bystander.send(1, commands.Queue.Declare(queue="q"))
            await bystander.expect(commands.Queue.DeclareOk)
            assert broker.server.broker.namespace().queues.find("q") is not None
            await bystander.aclose()
            await client.aclose()

    trio.run(main)


async def test_consumers_per_connection_are_bounded() -> None:
    config = ServerConfig(port=0, limits=Limits(max_subscriptions_per_connection=3))
    async with open_broker(amqp=True, config=config) as broker:
        client = await WireClient.connect(amqp_port(broker))
        await client.handshake()
        await client.open_channel()
        await client.send(1, commands.Queue.Declare(queue="q"))
        await client.expect(commands.Queue.DeclareOk)
        for n in range(3):
            await client.send(1, commands.Basic.Consume(queue="q", consumer_tag=f"c{n}"))
            await client.expect(commands.Basic.ConsumeOk)
        await client.send(1, commands.Basic.Consume(queue="q", consumer_tag="one-too-many"))
        [close] = await client.until_eof()
        assert isinstance(close, commands.Connection.Close) and close.reply_code == 530
        await client.aclose()


async def test_a_non_ascii_plain_response_is_just_a_login() -> None:
    async with open_broker(amqp=True) as broker:
        client = await WireClient.connect(amqp_port(broker))
        await client.login("用户", "密码")
        await client.expect(commands.Connection.Tune)
        await client.aclose()


async def test_with_a_permissions_file_a_login_gets_its_principals_grants() -> None:
    permissions = Permissions.parse("allow ci read queue:jobs\n")
    config = ServerConfig(port=0, tokens={"s3cret": "ci"}, permissions=permissions)
    async with open_broker(amqp=True, config=config) as broker:
        client = await WireClient.connect(amqp_port(broker))
        await client.handshake(password="s3cret")
        await client.open_channel()
        await client.send(1, commands.Queue.Declare(queue="jobs"))
        _, close = await client.expect(commands.Channel.Close)
        assert close.reply_code == 403  # type: ignore[attr-defined]
        assert "may not admin queue 'jobs'" in close.reply_text  # type: ignore[attr-defined]
        await client.aclose()


def _nested_table(depth: int) -> bytes:
    """A field table with ``depth`` tables nested in one another (the innermost empty)."""
    table = struct.pack(">I", 0)
    for _ in range(depth - 1):
        entry = b"\x01aF" + table
        table = struct.pack(">I", len(entry)) + entry
    return table


async def test_a_deeply_nested_header_table_closes_with_a_clear_502() -> None:
    # 5000 levels: pamqp's recursive decoder would run out of stack first.
    properties = b"\x20\x00" + _nested_table(5000)
    header = struct.pack(">HHQ", 60, 0, 0) + properties
    publish = commands.Basic.Publish(exchange="", routing_key="q")
    async with open_broker(amqp=True) as broker:
        client = await WireClient.connect(amqp_port(broker))
        await client.handshake()
        await client.open_channel()
        await client.send(1, publish)
        await client.send_bytes(struct.pack(">BHI", 2, 1, len(header)) + header + b"\xce")
        frames = await client.until_eof()
        close = frames[-1]
        assert isinstance(close, commands.Connection.Close)
        assert close.reply_code == 502
        assert "nested more than 100 levels deep" in close.reply_text
        assert "Recursion" not in close.reply_text
        await client.aclose()
