"""``serving``: a responder in the background for one block, registered on
entry, in the Trio, asyncio and blocking clients alike (issue 18 item 2)."""

from __future__ import annotations

import asyncio

import pytest

import minibroker
import minibroker.aio
from minibroker import IncomingRequest, SyncIncomingRequest
from minibroker.errors import InvalidName, NoResponders


async def shout(req: IncomingRequest) -> bytes:
    return req.body.upper()


def shout_sync(req: SyncIncomingRequest) -> bytes:
    return req.body.upper()


async def serving_round_trip(mb: minibroker.Client | minibroker.aio.Client) -> None:
    """The scenario for the Trio and asyncio clients alike."""
    async with mb.serving("svc.shout", shout):
        # No waiting, no polling: the first request already finds the responder.
        assert (await mb.request("svc.shout", b"hi")).body == b"HI"
    with pytest.raises(NoResponders):
        await mb.request("svc.shout", b"gone")
    with pytest.raises(InvalidName):
        async with mb.serving("bad subject", shout):
            pytest.fail("entered with an invalid subject")


async def test_trio_serving_is_registered_on_entry(minibroker_client: minibroker.Client) -> None:
    await serving_round_trip(minibroker_client)


def test_asyncio_serving_is_registered_on_entry(minibroker_url: str) -> None:
    async def main() -> None:
        async with minibroker.aio.connect(minibroker_url) as mb:
            await serving_round_trip(mb)

    asyncio.run(main())


def test_blocking_serving_is_registered_on_entry(minibroker_url: str) -> None:
    with minibroker.connect_sync(minibroker_url) as mb:
        with mb.serving("svc.shout", shout_sync) as handle:
            assert (mb.request("svc.shout", b"hi")).body == b"HI"
            assert not handle.stopped
        assert handle.stopped
        with pytest.raises(NoResponders):
            mb.request("svc.shout", b"gone")
        with pytest.raises(InvalidName), mb.serving("bad subject", shout_sync):
            pytest.fail("entered with an invalid subject")
