"""Trio code under test: an in-process broker per test, no socket, no port.

Run with ``pytest docs/examples/testing`` (pytest-trio must be installed;
``trio_mode = true`` in the pytest configuration, or the ``pytestmark`` below).
These files are the snippets of docs/testing.md; tests/docs runs them.
"""

from __future__ import annotations

import pytest
import trio

import minibroker
from minibroker import IncomingRequest

pytestmark = pytest.mark.trio


# --- snippet: fixture
async def test_a_job_round_trip(minibroker_client: minibroker.Client) -> None:
    await minibroker_client.declare_queue("jobs")
    await minibroker_client.put("jobs", b"resize photo-1.jpg")

    [delivery] = await minibroker_client.fetch("jobs")
    assert delivery.body == b"resize photo-1.jpg"
    assert delivery.delivery_count == 1
    await delivery.ack()
# --- end


# --- snippet: open_broker
async def test_two_services_on_one_broker() -> None:
    async with (
        minibroker.open_broker() as broker,
        broker.connect(client_name="publisher") as publisher,
        broker.connect(client_name="subscriber") as subscriber,
        subscriber.subscribe("orders.*") as orders,
    ):
        reached = await publisher.publish("orders.placed", b'{"id": 1}')
        assert reached.subscriptions == 1
        message = await orders.__anext__()
        assert (message.topic, message.body) == ("orders.placed", b'{"id": 1}')
# --- end


# --- snippet: code under test
class PriceService:
    """The code under test: it only needs a client, whichever broker is behind it."""

    def __init__(self, mb: minibroker.Client) -> None:
        self.mb = mb

    async def handle(self, req: IncomingRequest) -> bytes:
        return b"%d" % (len(req.body) * 100)


async def test_the_service_answers(minibroker_broker: minibroker.EmbeddedBroker) -> None:
    async with (
        minibroker_broker.connect() as service_side,
        minibroker_broker.connect() as caller,
        trio.open_nursery() as nursery,
    ):
        service = PriceService(service_side)
        # ``start`` returns once the responder is registered: no sleep, no retry.
        await nursery.start(service_side.serve, "pricing.quote", service.handle)
        reply = await caller.request("pricing.quote", b"abc", timeout=1.0)
        assert reply.body == b"300"
        nursery.cancel_scope.cancel()
# --- end
