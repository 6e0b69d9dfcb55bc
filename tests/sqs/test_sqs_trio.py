"""The SQS endpoint's Trio adapter, driven as an ASGI application under
Trio's MockClock: long polls end on the Trio clock, a client that leaves
withdraws its poll, and durable sends are confirmed after group commit.

These tests call the ASGI application directly (no socket), so that every
timeout is instant with the autojump clock; the boto3 tests cover the
sockets.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from minibroker.embedded import EmbeddedBroker, open_broker
from minibroker.server.sqs_app import SqsApp

Message = dict[str, Any]


class Exchange:
    """One HTTP request to the app: its body, and a switch to hang up."""

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body
        self.hang_up = trio.Event()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""

    async def receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self.hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            self.body += message.get("body", b"")

    def json(self) -> Any:
        return json.loads(self.body)


def scope(action: str) -> Message:
    return {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "path": "/",
        "query_string": b"",
        "server": ("127.0.0.1", 9324),
        "headers": [
            (b"host", b"127.0.0.1:9324"),
            (b"x-amz-target", f"AmazonSQS.{action}".encode()),
            (b"content-type", b"application/x-amz-json-1.0"),
        ],
    }


async def call(app: SqsApp, action: str, exchange: Exchange | None = None, **params: Any) -> Any:
    exchange = exchange or Exchange(json.dumps(params).encode())
    await app(scope(action), exchange.receive, exchange.send)
    return exchange.json() if exchange.body else None


def sqs_app(broker: EmbeddedBroker) -> SqsApp:
    server = broker.server
    return SqsApp(
        server.broker,
        next(server._conn_ids),
        after_request=server._after_input,
        group_commit=server.group_commit if server.settings.hold_until_synced else None,
        input_budget=server.input_budget,
    )


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with open_broker() as b:
        yield b


QUEUE = "http://127.0.0.1:9324/000000000000/jobs"


@asynccontextmanager
async def parked_receive(app: SqsApp) -> AsyncIterator[Exchange]:
    """Create the queue and park a 20-second ReceiveMessage on it; the block
    runs while it waits, and its end waits for the receive to finish."""
    await call(app, "CreateQueue", QueueName="jobs")
    exchange = Exchange(json.dumps({"QueueUrl": QUEUE, "WaitTimeSeconds": 20}).encode())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app, "ReceiveMessage", exchange)
        await trio.sleep(1)
        yield exchange


async def test_long_poll_ends_after_wait_time_on_the_trio_clock(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    app = sqs_app(broker)
    assert (await call(app, "CreateQueue", QueueName="jobs"))["QueueUrl"] == QUEUE
    started = trio.current_time()
    assert await call(app, "ReceiveMessage", QueueUrl=QUEUE, WaitTimeSeconds=20) == {}
    assert trio.current_time() - started == pytest.approx(20)


async def test_queue_default_wait_time_applies(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    app = sqs_app(broker)
    await call(
        app, "CreateQueue", QueueName="jobs", Attributes={"ReceiveMessageWaitTimeSeconds": "7"}
    )
    started = trio.current_time()
    await call(app, "ReceiveMessage", QueueUrl=QUEUE)
    assert trio.current_time() - started == pytest.approx(7)


async def test_a_parked_receive_gets_the_next_send(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    app = sqs_app(broker)
    await call(app, "CreateQueue", QueueName="jobs")
    got: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def poll() -> None:
            got.append(await call(app, "ReceiveMessage", QueueUrl=QUEUE, WaitTimeSeconds=20))

        nursery.start_soon(poll)
        await trio.sleep(5)
        await call(app, "SendMessage", QueueUrl=QUEUE, MessageBody="late")
    assert got[0]["Messages"][0]["Body"] == "late"


async def test_a_client_that_hangs_up_withdraws_its_poll(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    app = sqs_app(broker)
    queues = broker.core.namespace("").queues
    async with parked_receive(app) as exchange:
        assert queues.get("jobs").statistics().waiting_fetches == 1
        exchange.hang_up.set()
    queue = queues.get("jobs")
    assert exchange.status == 0  # nothing was answered to nobody
    stats = queue.statistics()
    assert stats.waiting_fetches == 0
    await call(app, "SendMessage", QueueUrl=QUEUE, MessageBody="kept")
    stats = queue.statistics()
    assert (stats.ready, stats.delivered) == (1, 0)


async def test_deleting_the_queue_answers_a_parked_poll(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    app = sqs_app(broker)
    async with parked_receive(app) as exchange:
        await call(app, "DeleteQueue", QueueUrl=QUEUE)
    assert exchange.status == 400
    assert exchange.headers["x-amzn-query-error"].startswith(
        "AWS.SimpleQueueService.NonExistentQueue;"
    )


async def test_durable_send_is_answered_after_group_commit(tmp_path: Path) -> None:
    async with open_broker(data_dir=tmp_path) as broker:
        app = sqs_app(broker)
        await call(app, "CreateQueue", QueueName="jobs")
        commit = broker.server.group_commit
        await call(app, "SendMessage", QueueUrl=QUEUE, MessageBody="safe")
        assert commit.synced_generation == broker.core.write_generation
    async with open_broker(data_dir=tmp_path) as again:
        queue = again.core.namespace("").queues.get("jobs")
        assert [m.body for m in queue.inspect(10).ready] == [b"safe"]


async def test_open_broker_with_sqs_serves_boto3() -> None:
    boto3 = pytest.importorskip("boto3")
    async with open_broker(sqs=True) as broker:
        client = boto3.client(
            "sqs",
            endpoint_url=broker.sqs_endpoint,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )

        def round_trip() -> str:
            url = client.create_queue(QueueName="embedded")["QueueUrl"]
            client.send_message(QueueUrl=url, MessageBody="in-process")
            body: str = client.receive_message(QueueUrl=url)["Messages"][0]["Body"]
            return body

        assert await trio.to_thread.run_sync(round_trip) == "in-process"
        assert "embedded" in broker.core.namespace("").queues


async def test_a_body_sent_too_slowly_gets_408(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    app = sqs_app(broker)
    answer: dict[str, Any] = {}
    chunks = [{"type": "http.request", "body": b'{"QueueName": ', "more_body": True}]

    async def receive() -> Message:
        if chunks:
            return chunks.pop()
        await trio.sleep_forever()  # the rest never comes
        raise AssertionError

    async def send(message: Message) -> None:
        answer.setdefault("status", message.get("status"))

    started = trio.current_time()
    await app(scope("CreateQueue"), receive, send)
    assert answer["status"] == 408
    assert trio.current_time() - started == pytest.approx(30)
    assert "jobs" not in broker.core.namespace("").queues


async def test_a_dropped_namespace_leaves_no_settings_behind(broker: EmbeddedBroker) -> None:
    app = sqs_app(broker)
    url = "http://127.0.0.1:9324/gone/jobs"

    async def create() -> None:
        exchange = Exchange(
            json.dumps({"QueueName": "jobs", "Attributes": {"DelaySeconds": "7"}}).encode()
        )
        scoped = scope("CreateQueue") | {"path": "/gone"}
        await app(scoped, exchange.receive, exchange.send)
        assert exchange.status == 200

    await create()
    broker.core.drop_namespace("gone")
    gc.collect()  # the dropped namespace may be collected before the sweep: still gone
    await call(app, "CreateQueue", QueueName="elsewhere")  # another namespace: a sweep
    assert not [key for key in app.handler._settings if key[0] == "gone"]
    # Made anew, the namespace's queue starts from SQS's defaults again.
    exchange = Exchange(json.dumps({"QueueName": "jobs"}).encode())
    await app(scope("CreateQueue") | {"path": "/gone"}, exchange.receive, exchange.send)
    got = await call(app, "GetQueueAttributes", QueueUrl=url, AttributeNames=["DelaySeconds"])
    assert got == {"Attributes": {"DelaySeconds": "0"}}
