"""The SQS endpoint's connections under Trio's MockClock: long polls end on
the Trio clock, a client that leaves withdraws its poll, durable sends are
confirmed after group commit, and the HTTP deadlines and limits hold.

Each test connects to the server's own shell over an in-memory stream
(``BrokerServer.serve_stream`` with the SQS front end's session), so every
timeout is instant with the autojump clock; the boto3 tests cover sockets.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h11
import httptools
import pytest
import trio
import trio.testing

from minibroker.embedded import EmbeddedBroker, open_broker
from minibroker.server.memory_stream import memory_stream_pair
from minibroker.server.sqs_app import SQS
from minibroker.sqs.session import IDLE_SECONDS, MAX_HEADER_BYTES

QUEUE = "http://127.0.0.1:9324/000000000000/jobs"


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Client:
    """An HTTP/1.1 client (h11) on an in-memory connection to the SQS front end."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.http = h11.Connection(h11.CLIENT)

    def request_bytes(self, action: str, params: dict[str, Any], path: str = "/") -> bytes:
        body = json.dumps(params).encode()
        request = h11.Request(
            method="POST",
            target=path,
            headers=[
                ("host", "127.0.0.1:9324"),
                ("x-amz-target", f"AmazonSQS.{action}"),
                ("content-type", "application/x-amz-json-1.0"),
                ("content-length", str(len(body))),
            ],
        )
        out = self.http.send(request) or b""
        out += self.http.send(h11.Data(data=body)) or b""
        return out + (self.http.send(h11.EndOfMessage()) or b"")

    async def send(self, action: str, path: str = "/", **params: Any) -> None:
        await self.stream.send_all(self.request_bytes(action, params, path))

    async def answer(self) -> Answer:
        status, headers, body = 0, {}, b""
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                self.http.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                if self.http.our_state is h11.DONE and self.http.their_state is h11.DONE:
                    self.http.start_next_cycle()
                return Answer(status, headers, body)
            elif isinstance(event, h11.ConnectionClosed):
                raise EOFError("the server closed the connection")

    async def call(self, action: str, path: str = "/", **params: Any) -> Any:
        await self.send(action, path, **params)
        return (await self.answer()).json()


async def connect(broker: EmbeddedBroker) -> Client:
    """A client connected through the server's shell, like one from a socket."""
    server = broker.server
    (front_end,) = [f for f in server.front_ends if f.name == SQS]
    ours, theirs = memory_stream_pair()
    assert server._connections_nursery is not None
    server._connections_nursery.start_soon(
        server.serve_stream, theirs, "test-client", front_end.make_session
    )
    return Client(ours)


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with open_broker(sqs=True) as b:
        yield b


async def test_long_poll_ends_after_wait_time_on_the_trio_clock(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect(broker)
    assert (await client.call("CreateQueue", QueueName="jobs"))["QueueUrl"] == QUEUE
    started = trio.current_time()
    assert await client.call("ReceiveMessage", QueueUrl=QUEUE, WaitTimeSeconds=20) == {}
    assert trio.current_time() - started == pytest.approx(20)


async def test_queue_default_wait_time_applies(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect(broker)
    await client.call(
        "CreateQueue", QueueName="jobs", Attributes={"ReceiveMessageWaitTimeSeconds": "7"}
    )
    started = trio.current_time()
    await client.call("ReceiveMessage", QueueUrl=QUEUE)
    assert trio.current_time() - started == pytest.approx(7)


async def test_a_parked_receive_gets_the_next_send(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    poller, sender = await connect(broker), await connect(broker)
    await sender.call("CreateQueue", QueueName="jobs")
    await poller.send("ReceiveMessage", QueueUrl=QUEUE, WaitTimeSeconds=20)
    await trio.sleep(5)
    await sender.call("SendMessage", QueueUrl=QUEUE, MessageBody="late")
    got = (await poller.answer()).json()
    assert got["Messages"][0]["Body"] == "late"
    assert trio.current_time() == pytest.approx(5)


def raw_request(action: str, params: dict[str, Any]) -> bytes:
    body = json.dumps(params).encode()
    return (
        f"POST / HTTP/1.1\r\nhost: 127.0.0.1:9324\r\nx-amz-target: AmazonSQS.{action}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def read_bodies(stream: trio.abc.Stream, count: int) -> list[Any]:
    """The JSON bodies of the next ``count`` responses (h11 does not pipeline)."""
    bodies: list[bytes] = []
    complete: list[bytes] = []

    class Collect:
        def on_message_begin(self) -> None:
            bodies.append(b"")

        def on_body(self, body: bytes) -> None:
            bodies[-1] += body

        def on_message_complete(self) -> None:
            complete.append(bodies[-1])

    parser = httptools.HttpResponseParser(Collect())
    while len(complete) < count:
        parser.feed_data(await stream.receive_some(65536))
    return [json.loads(b) for b in complete]


async def test_requests_pipelined_behind_a_long_poll_are_answered_after_it_in_order(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    client, other = await connect(broker), await connect(broker)
    await other.call("CreateQueue", QueueName="jobs")
    await client.stream.send_all(
        raw_request("ReceiveMessage", {"QueueUrl": QUEUE, "WaitTimeSeconds": 20})
        + raw_request("GetQueueAttributes", {"QueueUrl": QUEUE, "AttributeNames": ["All"]})
    )
    await trio.sleep(3)
    await other.call("SendMessage", QueueUrl=QUEUE, MessageBody="first")
    received, attributes = await read_bodies(client.stream, 2)
    assert received["Messages"][0]["Body"] == "first"
    # Served after the poll's answer: the message is in flight by then.
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"


async def test_a_client_that_hangs_up_withdraws_its_poll(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    client, other = await connect(broker), await connect(broker)
    await client.call("CreateQueue", QueueName="jobs")
    queue = broker.core.namespace("").queues.get("jobs")
    await client.send("ReceiveMessage", QueueUrl=QUEUE, WaitTimeSeconds=20)
    await trio.sleep(1)
    assert queue.statistics().waiting_fetches == 1
    await client.stream.aclose()
    await trio.sleep(1)
    assert queue.statistics().waiting_fetches == 0
    await other.call("SendMessage", QueueUrl=QUEUE, MessageBody="kept")
    stats = queue.statistics()
    assert (stats.ready, stats.delivered) == (1, 0)


async def test_deleting_the_queue_answers_a_parked_poll(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    client, other = await connect(broker), await connect(broker)
    await client.call("CreateQueue", QueueName="jobs")
    await client.send("ReceiveMessage", QueueUrl=QUEUE, WaitTimeSeconds=20)
    await trio.sleep(1)
    await other.call("DeleteQueue", QueueUrl=QUEUE)
    answer = await client.answer()
    assert answer.status == 400
    assert answer.headers["x-amzn-query-error"].startswith(
        "AWS.SimpleQueueService.NonExistentQueue;"
    )


async def test_shutdown_answers_a_parked_poll_with_no_messages() -> None:
    async with open_broker(sqs=True) as broker:
        client = await connect(broker)
        await client.call("CreateQueue", QueueName="jobs")
        await client.send("ReceiveMessage", QueueUrl=QUEUE, WaitTimeSeconds=20)
        await trio.testing.wait_all_tasks_blocked()
        broker.server.shutdown()
        answer = await client.answer()
        assert (answer.status, answer.json(), answer.headers["connection"]) == (200, {}, "close")


async def test_durable_send_is_answered_after_group_commit(tmp_path: Path) -> None:
    async with open_broker(data_dir=tmp_path, sqs=True) as broker:
        client = await connect(broker)
        await client.call("CreateQueue", QueueName="jobs")
        commit = broker.core.durability
        await client.call("SendMessage", QueueUrl=QUEUE, MessageBody="safe")
        assert commit.synced_generation == broker.core.durability.generation
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


async def test_a_request_sent_too_slowly_gets_408(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect(broker)
    whole = client.request_bytes("CreateQueue", {"QueueName": "jobs"})
    started = trio.current_time()
    await client.stream.send_all(whole[:-5])  # the rest never comes
    answer = await client.answer()
    assert answer.status == 408
    assert json.loads(answer.body)["__type"] == "com.amazonaws.sqs#RequestTimeout"
    assert trio.current_time() - started == pytest.approx(30)
    assert "jobs" not in broker.core.namespace("").queues


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect(broker)
    await client.call("ListQueues")
    started = trio.current_time()
    assert await client.stream.receive_some(100) == b""  # EOF
    assert trio.current_time() - started == pytest.approx(IDLE_SECONDS)


async def test_a_connection_that_starts_no_request_is_closed_at_the_hello_timeout(
    broker: EmbeddedBroker, autojump_clock: trio.testing.MockClock
) -> None:
    """As on every port: before, it held its slot for the 75 s keep-alive
    timeout without ever proving anything (connection floods)."""
    client = await connect(broker)
    started = trio.current_time()
    assert await client.stream.receive_some(100) == b""  # EOF
    assert trio.current_time() - started == pytest.approx(10)  # --hello-timeout


async def test_headers_too_large_get_431_and_the_connection_closes(
    broker: EmbeddedBroker,
) -> None:
    client = await connect(broker)
    huge = b"x-padding: " + b"x" * (MAX_HEADER_BYTES + 100) + b"\r\n"
    await client.stream.send_all(b"POST / HTTP/1.1\r\nhost: h\r\n" + huge * 3)
    answer = await client.answer()
    assert answer.status == 431
    with pytest.raises(EOFError):
        await client.answer()


@pytest.mark.parametrize("whole", [False, True], ids=["headers-only", "whole-request"])
async def test_headers_too_large_arriving_in_one_read_get_431(
    broker: EmbeddedBroker, whole: bool
) -> None:
    """Headers over the limit that arrive complete in one read (one big header,
    or many small ones) used to pass: only incomplete ones were counted."""
    client = await connect(broker)
    many = b"".join(b"x-pad-%d: %s\r\n" % (i, b"y" * 60) for i in range(400))
    request = b"POST / HTTP/1.1\r\nhost: h\r\n" + many + b"\r\n"
    if whole:
        request = request.replace(b"host: h", b"host: h\r\ncontent-length: 2") + b"{}"
    assert len(many) > MAX_HEADER_BYTES
    await client.stream.send_all(request)
    answer = await client.answer()
    assert answer.status == 431
    with pytest.raises(EOFError):
        await client.answer()


async def test_headers_just_under_the_limit_are_served(broker: EmbeddedBroker) -> None:
    client = await connect(broker)
    padding = b"y" * (MAX_HEADER_BYTES - 400)
    body = b"{}"
    await client.stream.send_all(
        b"POST / HTTP/1.1\r\nhost: h\r\nx-amz-target: AmazonSQS.ListQueues\r\n"
        b"content-type: application/x-amz-json-1.0\r\ncontent-length: 2\r\n"
        b"x-pad: " + padding + b"\r\n\r\n" + body
    )
    answer = await client.answer()
    assert answer.status == 200


async def test_a_malformed_request_gets_400_and_the_connection_closes(
    broker: EmbeddedBroker,
) -> None:
    client = await connect(broker)
    await client.stream.send_all(b"POST / HTTP/1.1\r\ncontent-length: nope\r\n\r\n")
    answer = await client.answer()
    assert answer.status == 400
    assert answer.headers["connection"] == "close"


async def test_a_dropped_namespace_leaves_no_settings_behind(broker: EmbeddedBroker) -> None:
    client = await connect(broker)
    url = "http://127.0.0.1:9324/gone/jobs"
    await client.call("CreateQueue", "/gone", QueueName="jobs", Attributes={"DelaySeconds": "7"})
    broker.core.drop_namespace("gone")
    gc.collect()  # the dropped namespace may be collected before the sweep: still gone
    await client.call("CreateQueue", QueueName="elsewhere")  # another namespace: a sweep
    assert broker.server.sqs is not None
    assert not [key for key in broker.server.sqs.handler._settings if key[0] == "gone"]
    # Made anew, the namespace's queue starts from SQS's defaults again.
    await client.call("CreateQueue", "/gone", QueueName="jobs")
    got = await client.call("GetQueueAttributes", QueueUrl=url, AttributeNames=["DelaySeconds"])
    assert got == {"Attributes": {"DelaySeconds": "0"}}


async def test_expect_100_continue_is_answered_before_the_body(broker: EmbeddedBroker) -> None:
    client = await connect(broker)
    body = b'{"QueueName": "jobs"}'
    await client.stream.send_all(
        b"POST / HTTP/1.1\r\nhost: h\r\nx-amz-target: AmazonSQS.CreateQueue\r\n"
        b"expect: 100-continue\r\ncontent-length: %d\r\n\r\n" % len(body)
    )
    assert await client.stream.receive_some(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    await client.stream.send_all(body)
    (answer,) = await read_bodies(client.stream, 1)
    assert answer["QueueUrl"].endswith("/000000000000/jobs")


async def test_an_oversized_body_announced_with_expect_is_refused_before_it_is_sent(
    broker: EmbeddedBroker,
) -> None:
    # It got 100 Continue, so the client sent 9 MB for the endpoint to read and drop.
    client = await connect(broker)
    await client.stream.send_all(
        b"POST / HTTP/1.1\r\nhost: h\r\nx-amz-target: AmazonSQS.SendMessage\r\n"
        b"expect: 100-continue\r\ncontent-length: 9000000\r\n\r\n"
    )
    answer = await client.answer()
    assert answer.status == 413
    assert answer.json()["__type"] == "com.amazonaws.sqs#RequestEntityTooLarge"
    assert answer.headers["connection"] == "close"
