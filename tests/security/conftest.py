"""Fixtures for the security tests: brokers served on a free port in the test's Trio run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from security_support import StartServer

from minibroker.config import ServerConfig
from minibroker.server.app import BrokerServer


@pytest.fixture
async def serve(nursery: trio.Nursery) -> AsyncIterator[StartServer]:
    """``await serve(**config)``: a broker on a free TCP port until the test ends."""
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
