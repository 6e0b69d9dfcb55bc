"""asyncio code under test: pytest-asyncio tests with ``minibroker_aio_client``.

Needs pytest-asyncio. The client is connected to ``minibroker_url``: the
session's threaded broker, in this test's own namespace. Trio's ``trio_mode``
would claim these ``async def`` tests for Trio, which is why this directory's
pytest.ini leaves it off and the Trio examples mark themselves instead.
"""

from __future__ import annotations

import pytest

import minibroker
from minibroker import IncomingRequest

pytest.importorskip("pytest_asyncio")


# --- snippet: asyncio fixture
@pytest.mark.asyncio
async def test_order_service(minibroker_aio_client: minibroker.aio.Client) -> None:
    mb = minibroker_aio_client

    async def price(req: IncomingRequest) -> bytes:
        return b"42"

    async with mb.serving("pricing.quote", price):  # registered on entry
        reply = await mb.request("pricing.quote", b"sku-1")
    assert reply.body == b"42"
# --- end
