"""Fixtures for server tests: real ``BrokerServer`` instances on port 0, in the test's Trio run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from raw_wire import StartServer

from minibroker.config import ServerConfig
from minibroker.server.app import BrokerServer


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> AsyncIterator[StartServer]:
    """``await start_server(**config)``: a broker served on a free port until the test ends."""
    servers: list[BrokerServer] = []

    async def start(**overrides: Any) -> BrokerServer:
        server = BrokerServer(ServerConfig(port=0, **overrides))
        await nursery.start(server.run)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
    with trio.fail_after(30):
        for server in servers:
            await server.stopped.wait()


@pytest.fixture
async def server(start_server: StartServer) -> BrokerServer:
    """A served broker with the default configuration (port 0)."""
    return await start_server()
