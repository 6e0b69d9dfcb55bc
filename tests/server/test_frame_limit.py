"""Over TCP, the broker keeps every frame it sends within the limit it advertises.

A server started with ``max_frame_bytes`` of 64 KiB holds a log and a queue
far bigger than that. A client that asks for 10 MiB at once gets what fits
one frame and the rest on its next request; a tail and a long list of
queue messages arrive in frames within the limit; the connection stays
usable all along. The raw client below refuses any frame above the
advertised limit, exactly as a client holding that limit would, so a
single oversized frame fails the test.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from raw_wire import RawClient, StartServer

import minibroker
from minibroker.config import MIN_FRAME_BYTES, ServerConfig
from minibroker.core.config import Limits
from minibroker.protocol.codec import RawFrameDecoder, frame_payload_budget, message_limit_for
from minibroker.server.app import BrokerServer
from minibroker.storage import decode_records

LIMIT = 64 * 1024
TEN_MIB = 10 * 1024 * 1024
SAFETY = 30.0


async def strict_client(server: BrokerServer) -> RawClient:
    """A raw client that says hello and refuses frames above the advertised limit."""
    assert server.port is not None
    client = await RawClient.connect(server.port)
    info = (await client.handshake())["result"]
    client.decoder = RawFrameDecoder(info["limits"]["max_frame_bytes"])
    return client


class Requests:
    """Numbered requests on a raw client, one answer awaited at a time."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.next_id = 10

    async def call(self, op: str, **fields: Any) -> Any:
        self.next_id += 1
        await self.client.send({"op": op, "id": self.next_id, **fields})
        reply = await self.client.receive_one()
        assert (reply["op"], reply.get("id")) == ("ok", self.next_id), reply
        return reply["result"]


def numbered(i: int, size: int) -> bytes:
    return i.to_bytes(4, "big") + b"x" * (size - 4)


async def fill_log(mb: minibroker.Client, count: int, size: int) -> list[bytes]:
    """Append ``count`` numbered records of ``size`` bytes, in appends that fit a frame."""
    await mb.create_log("big")
    bodies = [numbered(i, size) for i in range(count)]
    per_append = max(1, (LIMIT // 2) // size)
    for start in range(0, count, per_append):
        await mb.append_many("big", bodies[start : start + per_append])
    return bodies


@pytest.fixture
async def server(start_server: StartServer) -> BrokerServer:
    return await start_server(max_frame_bytes=LIMIT)


def url(server: BrokerServer) -> str:
    return f"minibroker://127.0.0.1:{server.port}"


async def test_hello_advertises_the_limit_and_a_message_limit_that_fits_it(
    server: BrokerServer,
) -> None:
    async with minibroker.connect(url(server)) as mb:
        limits = mb.server_info["limits"]
    assert limits["max_frame_bytes"] == LIMIT
    assert limits["max_message_bytes"] == message_limit_for(LIMIT) < LIMIT


async def test_a_10_mib_read_returns_what_fits_and_the_connection_stays_usable(
    server: BrokerServer,
) -> None:
    with trio.fail_after(SAFETY):
        async with minibroker.connect(url(server)) as mb:
            bodies = await fill_log(mb, 100, 4000)  # 400 KB: six frames' worth
            raw = await strict_client(server)
            calls = Requests(raw)
            got: list[bytes] = []
            offset = answers = 0
            while offset < len(bodies):
                result = await calls.call(
                    "read", log="big", start=offset, max_records=10_000, max_bytes=TEN_MIB
                )
                assert 0 < len(result["records"]) <= frame_payload_budget(LIMIT)
                got += [r.body for r in decode_records(result["records"])]
                offset = result["next_offset"]
                answers += 1
            assert got == bodies
            assert answers >= 6
            assert await calls.call("ping", data=b"still here") == b"still here"

            # The Python client's read, asked for 10 MiB, behaves the same.
            records = await mb.read("big", start=0, max_records=10_000, max_bytes=TEN_MIB)
            assert 0 < len(records) < len(bodies)
            assert [r.body for r in records] == bodies[: len(records)]
            await raw.aclose()


async def test_a_tail_over_a_log_bigger_than_a_frame_delivers_everything(
    server: BrokerServer,
) -> None:
    with trio.fail_after(SAFETY):
        async with minibroker.connect(url(server)) as mb:
            bodies = await fill_log(mb, 100, 4000)
            raw = await strict_client(server)
            calls = Requests(raw)
            sub = (await calls.call("tail", log="big", start=0, max_bytes=TEN_MIB))["sub"]
            got: list[bytes] = []
            pushes = 0
            while len(got) < len(bodies):
                push = await raw.receive_one()
                assert (push["op"], push["sub"]) == ("records", sub)
                got += [r.body for r in decode_records(push["data"])]
                pushes += 1
            assert got == bodies
            assert pushes >= 6
            # It follows what comes next, and the connection answers requests.
            await mb.append("big", b"later")
            push = await raw.receive_one()
            assert [r.body for r in decode_records(push["data"])] == [b"later"]
            assert await calls.call("ping", data=b"ok") == b"ok"

            # The Python client's tail, asked for 10 MiB per push, gets everything too.
            async with mb.tail("big", start=0, max_bytes=TEN_MIB) as tail:
                tailed = [(await tail.__anext__()).body for _ in range(len(bodies) + 1)]
            assert tailed == [*bodies, b"later"]
            await raw.aclose()


async def test_a_fetch_of_more_than_a_frame_returns_a_batch_within_it_then_the_rest(
    server: BrokerServer,
) -> None:
    with trio.fail_after(SAFETY):
        async with minibroker.connect(url(server)) as mb:
            await mb.declare_queue("jobs")
            bodies = [numbered(i, 3000) for i in range(100)]  # 300 KB
            for start in range(0, len(bodies), 10):
                await mb.put_many("jobs", bodies[start : start + 10])
            raw = await strict_client(server)
            calls = Requests(raw)
            first = await calls.call("fetch", queue="jobs", max_messages=1000)
            assert 0 < len(first) < len(bodies)
            assert sum(len(d["body"]) for d in first) <= LIMIT
            got = [d["body"] for d in first]
            fetches = 1
            while len(got) < len(bodies):
                batch = await calls.call("fetch", queue="jobs", max_messages=1000, wait=5.0)
                assert batch
                got += [d["body"] for d in batch]
                fetches += 1
            assert got == bodies
            assert fetches >= 5
            # The Python client's fetch gets a batch within the limit as well.
            await mb.put_many("jobs", bodies[:15])
            await mb.put_many("jobs", bodies[15:30])
            deliveries = await mb.fetch("jobs", max_messages=1000)
            assert [d.body for d in deliveries] == bodies[: len(deliveries)]
            assert 0 < len(deliveries) < 30
            await raw.aclose()


async def test_a_larger_frame_limit_than_the_clients_default_works(
    start_server: StartServer,
) -> None:
    # The Python client's decoder starts at 16 MiB and takes the server's
    # advertised 32 MiB from hello; a 20 MiB batch then arrives whole.
    server = await start_server(max_frame_bytes=32 * 1024 * 1024)
    with trio.fail_after(SAFETY):
        async with minibroker.connect(url(server)) as mb:
            bodies = [numbered(i, 1024 * 1024) for i in range(20)]
            await mb.create_log("big")
            for start in range(0, 20, 5):
                await mb.append_many("big", bodies[start : start + 5])
            records = await mb.read("big", start=0, max_records=100, max_bytes=24 * 1024 * 1024)
            assert [r.body for r in records] == bodies
            assert await mb.ping(b"after") == b"after"


def test_the_message_limit_is_lowered_to_fit_the_frame_limit() -> None:
    config = ServerConfig(max_frame_bytes=LIMIT)
    assert config.limits.max_message_bytes == LIMIT - 4096
    # Other limits stay; a message limit that already fits is kept.
    small = ServerConfig(max_frame_bytes=LIMIT, limits=Limits(max_message_bytes=100, max_batch=7))
    assert (small.limits.max_message_bytes, small.limits.max_batch) == (100, 7)
    assert ServerConfig().limits.max_message_bytes == Limits().max_message_bytes


@pytest.mark.parametrize("value", [0, MIN_FRAME_BYTES - 1, 2.5])
def test_a_frame_limit_too_small_for_hello_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="max_frame_bytes"):
        ServerConfig(max_frame_bytes=value)
