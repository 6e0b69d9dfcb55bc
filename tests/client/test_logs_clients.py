"""Logs through every client: Trio, asyncio, blocking and in-process (see conftest.py).

Same names, arguments and results in each: ``append`` / ``append_many``
return offsets, ``read`` returns ``Record`` objects, ``tail`` is a context
whose records arrive in offset order and whose group commits survive a
reconnect, and errors come back as the same exception classes.
"""

from __future__ import annotations

import pytest
import trio
from client_facades import SAFETY, ClientFacade, Opener

from minibroker.client.logs import LogStats
from minibroker.errors import BadRequest, Conflict, NotFound, OffsetOutOfRange
from minibroker.storage import Record
from minibroker.testing import fresh_namespace


async def test_create_append_read_stats_delete(client: ClientFacade) -> None:
    assert await client.call("create_log", "ev", retention_bytes=1 << 20) is True
    assert await client.call("create_log", "ev", retention_bytes=1 << 20) is False
    with pytest.raises(Conflict):
        await client.call("create_log", "ev")
    assert await client.call("append", "ev", b"one", key=b"k", headers={"h": "v"}) == 0
    first = await client.call(
        "append_many", "ev", [b"two", (b"three", b"k3"), {"body": b"four", "headers": {"a": "b"}}]
    )
    assert first == 1
    records = await client.call("read", "ev")
    assert all(isinstance(r, Record) for r in records)
    assert [(r.offset, r.key, r.headers, r.body) for r in records] == [
        (0, b"k", {"h": "v"}, b"one"),
        (1, None, None, b"two"),
        (2, b"k3", None, b"three"),
        (3, None, {"a": "b"}, b"four"),
    ]
    # Records read from one log can be appended to another as they are.
    await client.call("create_log", "copy")
    assert await client.call("append_many", "copy", records) == 0
    copied = await client.call("read", "copy", start=0, max_records=2)
    assert [(r.key, r.body) for r in copied] == [(b"k", b"one"), (None, b"two")]

    stats = await client.call("log_stats", "ev")
    assert isinstance(stats, LogStats)
    assert (stats.first_offset, stats.next_offset, stats.records) == (0, 4, 4)
    assert await client.call("list_logs") == ["copy", "ev"]
    assert await client.call("delete_log", "ev") == 4
    with pytest.raises(NotFound):
        await client.call("read", "ev")


async def test_errors_keep_their_class_and_details(client: ClientFacade) -> None:
    await client.call("create_log", "ev")
    await client.call("append", "ev", b"x")
    with pytest.raises(OffsetOutOfRange) as info:
        await client.call("read", "ev", start=5)
    assert info.value.details["first_offset"] == 0
    with pytest.raises(BadRequest):
        await client.call("read", "ev", start="sometime")
    # An empty batch is accepted and changes nothing, as put, publish, ack and nack.
    assert await client.call("append_many", "ev", []) == 1


async def test_long_poll_read(client: ClientFacade) -> None:
    await client.call("create_log", "ev")
    with trio.fail_after(SAFETY):
        assert await client.call("read", "ev", start="latest", wait=0.05) == []
        # Waiting at offset 0 returns as soon as the append lands, in either order.
        results = await client.gather(
            [
                ("read", ("ev",), {"start": 0, "wait": SAFETY}),
                ("append", ("ev", b"late"), {}),
            ]
        )
    records, offset = results
    assert offset == 0
    assert [r.body for r in records] == [b"late"]


async def test_tail_replays_then_follows(client: ClientFacade) -> None:
    await client.call("create_log", "ev")
    await client.call("append_many", "ev", [b"%d" % i for i in range(100)])
    async with client.subscription("tail", "ev", start="earliest") as tail:
        with trio.fail_after(SAFETY):
            replayed = await tail.take(100)
            await client.call("append_many", "ev", [b"100", b"101"])
            live = await tail.take(2)
    assert [r.offset for r in replayed + live] == list(range(102))
    assert [int(r.body) for r in replayed + live] == list(range(102))


async def test_tail_group_commits_and_resumes(open_client: Opener) -> None:
    namespace = fresh_namespace("logs")
    async with open_client(namespace=namespace) as client:
        await client.call("create_log", "ev")
        await client.call("append_many", "ev", [b"%d" % i for i in range(50)])
        async with client.subscription("tail", "ev", group="g", commit_every=10) as tail:
            with trio.fail_after(SAFETY):
                await tail.take(20)
        # Leaving the block counts the last record as processed.
        assert await client.call("committed", "ev", "g") == 20
    async with open_client(namespace=namespace) as client:
        async with client.subscription("tail", "ev", group="g") as tail:
            with trio.fail_after(SAFETY):
                batch = await tail.batch(100)
        assert batch[0].offset == 20
        stats = await client.call("log_stats", "ev")
        assert stats.groups["g"].lag == 50 - stats.groups["g"].committed
        await client.call("commit", "ev", "g", 3)
        assert await client.call("committed", "ev", "g") == 3
        assert await client.call("committed", "ev", "other") is None
