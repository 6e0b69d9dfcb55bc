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


SQS_LIST_QUEUES = (
    b"POST / HTTP/1.1\r\nhost: h\r\nx-amz-target: AmazonSQS.ListQueues\r\n"
    b"content-type: application/x-amz-json-1.0\r\ncontent-length: 2\r\n\r\n{}"
)


async def start_a_body_and_stall(
    url: str, path: str, sent: int, *, first: bytes = b""
) -> trio.SocketStream:
    """A client that announces a body larger than ``sent``, sends ``sent``
    bytes of it and then stops, holding its connection open; after a whole
    request ``first`` and its answer, if given (an SQS connection that has
    had a request served is no longer in its handshake)."""
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    stream = await trio.open_tcp_stream(address.hostname, address.port)
    if first:
        await stream.send_all(first)
        assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200")
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
    stalled = await start_a_body_and_stall(broker.sqs_endpoint, "/", BUDGET, first=SQS_LIST_QUEUES)
    await wait_until_held(broker, lambda held: held >= BUDGET)
    headers = {"x-amz-target": "AmazonSQS.ListQueues", "content-type": "application/x-amz-json-1.0"}
    async with httpx.AsyncClient(base_url=broker.sqs_endpoint, headers=headers) as sqs:
        refused = await sqs.post("/", content=b'{"QueueNamePrefix": "' + b"x" * 100 * KiB + b'"}')
        assert refused.status_code == 503
        assert refused.json()["__type"] == "com.amazonaws.sqs#ServiceUnavailable"

        await stalled.aclose()
        await wait_until_held(broker, lambda held: held == 0)
        assert (await sqs.post("/", content=b"{}")).status_code == 200


async def test_sqs_bodies_before_a_first_request_is_served_claim_a_quarter_of_the_budget(
    broker: EmbeddedBroker,
) -> None:
    """A connection that has proved nothing yet (no request served: with
    --sqs-keys, no signature checked) may not hold the budget others need:
    before, 40 such clients announcing 8 MiB bodies held it all for 30 s."""
    first = await start_a_body_and_stall(broker.sqs_endpoint, "/", 32 * KiB)  # 64 KiB: fits
    await wait_until_held(broker, lambda held: held == 64 * KiB)
    refused = await start_a_body_and_stall(broker.sqs_endpoint, "/", 16 * KiB)  # 32 more: no
    answer = await refused.receive_some(65536)
    assert answer.startswith(b"HTTP/1.1 503")
    assert broker.server.input_budget.held == 64 * KiB
    for stream in (first, refused):
        await stream.aclose()
    await wait_until_held(broker, lambda held: held == 0)
