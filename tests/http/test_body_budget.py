"""Request bodies still arriving claim the server-wide input budget, on the
HTTP face and the SQS endpoint alike: many slow clients cannot together
make the broker hold more than the budget (plus one body)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import httpx
import pytest
import trio
import trio.testing

from minibroker import open_broker
from minibroker.config import ServerConfig
from minibroker.embedded import EmbeddedBroker

KiB = 1024
BUDGET = 256 * KiB


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    config = ServerConfig(partial_frame_budget=BUDGET)
    async with open_broker(http=True, sqs=True, config=config) as broker:
        yield broker


async def start_a_body_and_stall(url: str, path: str, sent: int) -> trio.SocketStream:
    """A client that announces a body larger than ``sent``, sends ``sent``
    bytes of it and then stops, holding its connection open."""
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    stream = await trio.open_tcp_stream(address.hostname, address.port)
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {address.netloc}\r\n"
        f"content-type: application/json\r\ncontent-length: {2 * sent}\r\n\r\n"
    )
    await stream.send_all(head.encode() + b"x" * sent)
    return stream


async def wait_until_held(broker: EmbeddedBroker, check: Callable[[int], bool]) -> None:
    """Let the server take in what the clients sent or closed until the
    bytes its input budget holds pass ``check``."""
    with trio.fail_after(5):
        while not check(broker.server.input_budget.held):
            await trio.testing.wait_all_tasks_blocked()


async def test_http_bodies_past_the_budget_are_refused_until_it_frees(
    broker: EmbeddedBroker,
) -> None:
    stalled = await start_a_body_and_stall(broker.http_url, "/v1/queues/q/messages", BUDGET)
    await wait_until_held(broker, lambda held: held >= BUDGET)
    async with httpx.AsyncClient(base_url=broker.http_url) as http:
        await http.put("/v1/queues/q")
        refused = await http.post("/v1/queues/q/messages", json={"body": "x" * 100 * KiB})
        assert (refused.status_code, refused.json()["error"]["code"]) == (429, "limit_exceeded")
        assert broker.server.input_budget.refused == 1

        await stalled.aclose()
        await wait_until_held(broker, lambda held: held == 0)
        accepted = await http.post("/v1/queues/q/messages", json={"body": "x" * 100 * KiB})
        assert accepted.json() == {"count": 1}
    assert broker.server.input_budget.held == 0


async def test_sqs_bodies_past_the_budget_are_a_503_botocore_retries(
    broker: EmbeddedBroker,
) -> None:
    stalled = await start_a_body_and_stall(broker.sqs_endpoint, "/", BUDGET)
    await wait_until_held(broker, lambda held: held >= BUDGET)
    headers = {"x-amz-target": "AmazonSQS.ListQueues", "content-type": "application/x-amz-json-1.0"}
    async with httpx.AsyncClient(base_url=broker.sqs_endpoint, headers=headers) as sqs:
        refused = await sqs.post("/", content=b'{"QueueNamePrefix": "' + b"x" * 100 * KiB + b'"}')
        assert refused.status_code == 503
        assert refused.json()["__type"] == "com.amazonaws.sqs#ServiceUnavailable"

        await stalled.aclose()
        await wait_until_held(broker, lambda held: held == 0)
        assert (await sqs.post("/", content=b"{}")).status_code == 200
