"""``namespace.drop`` (issue 18 item 9): a namespace goes with everything in
it, its connections are closed, and the next hello naming it starts afresh.
Through every client, on disk, under permissions, and as the per-test
fixtures use it."""

from __future__ import annotations

from pathlib import Path

import pytest
from client_facades import ClientFacade, Opener

import minibroker
from minibroker.access.permissions import Permissions
from minibroker.config import ServerConfig
from minibroker.errors import BrokerError, Conflict, Forbidden, InvalidName, NotFound, Overflow
from minibroker.testing import ThreadedBroker, fresh_namespace


async def test_dropping_a_namespace_deletes_everything_and_closes_its_connections(
    open_client: Opener, client_kind: str
) -> None:
    doomed = fresh_namespace("doomed")
    async with open_client(namespace=doomed) as inside, open_client(namespace="") as admin:
        await inside.call("declare_queue", "jobs")
        await inside.call("put", "jobs", b"work")
        await inside.call("create_log", "events")
        await inside.call("append", "events", b"e")
        async with inside.subscription("subscribe", "orders.#"):
            assert await admin.call("drop_namespace", doomed) is True
            with pytest.raises(BrokerError, match="was dropped"):
                await inside.call("ping")
        assert inside.closed
    async with open_client(namespace=doomed) as again:
        with pytest.raises(NotFound):
            await again.call("queue_stats", "jobs")
        assert await again.call("list_logs") == []


async def test_nothing_to_drop_and_bad_names(client: ClientFacade) -> None:
    assert await client.call("drop_namespace", fresh_namespace("never-used")) is False
    with pytest.raises(InvalidName):
        await client.call("drop_namespace", "no spaces")


async def test_a_connection_cannot_drop_its_own_namespace(open_client: Opener) -> None:
    mine = fresh_namespace("mine")
    async with open_client(namespace=mine) as mb:
        await mb.call("declare_queue", "jobs")
        with pytest.raises(Conflict, match="cannot drop it"):
            await mb.call("drop_namespace", mine)
        assert await mb.call("queue_stats", "jobs") is not None


async def test_a_dropped_durable_namespace_leaves_no_files(tmp_path: Path) -> None:
    async with minibroker.open_broker(data_dir=tmp_path) as broker:
        async with broker.connect(namespace="durable") as mb:
            await mb.declare_queue("jobs", durable=True)
            await mb.put("jobs", b"kept on disk")
            await mb.create_log("events")
            await mb.append("events", b"e")
        async with broker.connect() as admin:
            assert await admin.drop_namespace("durable") is True
    async with minibroker.open_broker(data_dir=tmp_path) as broker:
        async with broker.connect() as admin:
            assert await admin.drop_namespace("durable") is False  # nothing came back
        async with broker.connect(namespace="durable") as mb:
            assert await mb.list_queues() == []
            assert await mb.list_logs() == []


async def test_a_durable_queue_keeps_its_byte_limit_across_a_restart(tmp_path: Path) -> None:
    async with minibroker.open_broker(data_dir=tmp_path) as broker, broker.connect() as mb:
        await mb.declare_queue("small", durable=True, max_length_bytes=4)
        await mb.put("small", b"four")
    async with minibroker.open_broker(data_dir=tmp_path) as broker, broker.connect() as mb:
        assert (await mb.queue_stats("small")).options["max_length_bytes"] == 4
        with pytest.raises(Overflow):
            await mb.put("small", b"x")  # the journaled limit holds after the restart
        assert not await mb.declare_queue("small", durable=True, max_length_bytes=4)


async def test_dropping_needs_admin_on_everything() -> None:
    permissions = Permissions.parse("allow ops all #\nallow ci all queue:# log:#\n")
    config = ServerConfig(tokens={"t-ops": "ops", "t-ci": "ci"}, permissions=permissions)
    async with minibroker.open_broker(config=config) as broker:
        async with broker.connect(token="t-ci") as ci:
            with pytest.raises(Forbidden):
                await ci.drop_namespace("other")
        async with broker.connect(token="t-ops") as ops:
            assert await ops.drop_namespace("other") is False


def test_the_url_fixture_drops_its_namespace_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import minibroker

        NAMES = []

        def test_uses_a_namespace(minibroker_url, minibroker_namespace):
            NAMES.append(minibroker_namespace)
            with minibroker.connect_sync(minibroker_url) as mb:
                mb.declare_queue("jobs")
                mb.put("jobs", b"left behind")

        def test_it_is_gone_afterwards(minibroker_server):
            assert NAMES[0] not in minibroker_server.server.broker.namespaces
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_threaded_broker_drop_namespace(minibroker_server: ThreadedBroker) -> None:
    name = fresh_namespace("threaded")
    with minibroker.connect_sync(minibroker_server.url_for(name)) as mb:
        mb.declare_queue("jobs")
    assert minibroker_server.drop_namespace(name) is True
    assert name not in minibroker_server.server.broker.namespaces
