"""Messages through the SQS endpoint with real boto3: send, receive, delete,
visibility, delays, redrive, batches, long polls and errors."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_boto3_queues import error_code

from minibroker.sqs.digests import md5_of_body
from minibroker.testing import SqsEndpoint

ATTRIBUTES = {
    "kind": {"DataType": "String", "StringValue": "order"},
    "amount": {"DataType": "Number", "StringValue": "12.50"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xffbytes"},
    "unit": {"DataType": "String.currency", "StringValue": "EUR"},
}


def receive_one(sqs: Any, url: str, **kwargs: Any) -> dict[str, Any]:
    (message,) = sqs.receive_message(QueueUrl=url, **kwargs)["Messages"]
    return dict(message)


def test_send_receive_delete(sqs: Any, queue_url: str) -> None:
    sent = sqs.send_message(QueueUrl=queue_url, MessageBody="hello ✓")
    assert sent["MD5OfMessageBody"] == md5_of_body("hello ✓")
    message = receive_one(sqs, queue_url)
    assert message["Body"] == "hello ✓"
    assert message["MessageId"] == sent["MessageId"]
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    # Deleting again succeeds, as in SQS.
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url)


def test_fifo_order_and_max_number(sqs: Any, queue_url: str) -> None:
    for i in range(15):
        sqs.send_message(QueueUrl=queue_url, MessageBody=f"m{i}")
    first = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    second = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in first + second] == [f"m{i}" for i in range(15)]


def test_message_attributes_round_trip_with_digests(sqs: Any, queue_url: str) -> None:
    sent = sqs.send_message(QueueUrl=queue_url, MessageBody="x", MessageAttributes=ATTRIBUTES)
    message = receive_one(sqs, queue_url, MessageAttributeNames=["All"])
    assert message["MessageAttributes"] == ATTRIBUTES
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]


def test_message_attribute_names_select(sqs: Any, queue_url: str) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody="x", MessageAttributes=ATTRIBUTES)
    message = receive_one(sqs, queue_url, MessageAttributeNames=["kind", "am.*"])
    assert set(message["MessageAttributes"]) == {"kind"}
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    bare = receive_one(sqs, queue_url)
    assert "MessageAttributes" not in bare and "MD5OfMessageAttributes" not in bare


def test_system_attributes(sqs: Any, queue_url: str, minibroker_sqs_endpoint: SqsEndpoint) -> None:
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody="x",
        MessageSystemAttributes={
            "AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-abc"}
        },
    )
    first = receive_one(sqs, queue_url, MessageSystemAttributeNames=["All"], VisibilityTimeout=5)
    assert first["Attributes"]["ApproximateReceiveCount"] == "1"
    assert first["Attributes"]["AWSTraceHeader"] == "Root=1-abc"
    assert int(first["Attributes"]["SentTimestamp"]) > 1_600_000_000_000
    minibroker_sqs_endpoint.advance(5)
    again = receive_one(sqs, queue_url, AttributeNames=["ApproximateReceiveCount"])
    assert again["Attributes"] == {"ApproximateReceiveCount": "2"}
    assert again["MessageId"] == first["MessageId"]


def test_visibility_timeout_redelivers(
    sqs: Any, queue_url: str, minibroker_sqs_endpoint: SqsEndpoint
) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody="x")
    first = receive_one(sqs, queue_url)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url)
    minibroker_sqs_endpoint.advance(30)  # the queue's default visibility timeout
    second = receive_one(sqs, queue_url)
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    # The first handle is stale: deleting with it does nothing (and succeeds).
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=first["ReceiptHandle"])
    minibroker_sqs_endpoint.advance(30)
    assert receive_one(sqs, queue_url)["Body"] == "x"


def test_change_message_visibility(
    sqs: Any, queue_url: str, minibroker_sqs_endpoint: SqsEndpoint
) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody="x")
    handle = receive_one(sqs, queue_url, VisibilityTimeout=10)["ReceiptHandle"]
    sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=100)
    minibroker_sqs_endpoint.advance(50)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url)
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=handle)  # still valid
    minibroker_sqs_endpoint.advance(100)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url)


def test_change_visibility_of_a_message_not_in_flight(
    sqs: Any, queue_url: str, minibroker_sqs_endpoint: SqsEndpoint
) -> None:
    sqs.send_message(QueueUrl=queue_url, MessageBody="x")
    handle = receive_one(sqs, queue_url, VisibilityTimeout=10)["ReceiptHandle"]
    minibroker_sqs_endpoint.advance(10)
    with pytest.raises(sqs.exceptions.MessageNotInflight) as exc:
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=30
        )
    assert error_code(exc) == "AWS.SimpleQueueService.MessageNotInflight"


def test_receipt_handles_are_checked(sqs: Any, queue_url: str) -> None:
    other = sqs.create_queue(QueueName="other")["QueueUrl"]
    sqs.send_message(QueueUrl=other, MessageBody="x")
    foreign = receive_one(sqs, other)["ReceiptHandle"]
    for handle in ["garbage", foreign]:
        with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=handle)


def test_delays(sqs: Any, minibroker_sqs_endpoint: SqsEndpoint) -> None:
    url = sqs.create_queue(QueueName="slow", Attributes={"DelaySeconds": "20"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="queue delay")
    sqs.send_message(QueueUrl=url, MessageBody="own delay", DelaySeconds=5)
    sqs.send_message(QueueUrl=url, MessageBody="no delay", DelaySeconds=0)
    assert receive_one(sqs, url)["Body"] == "no delay"
    minibroker_sqs_endpoint.advance(5)
    assert receive_one(sqs, url)["Body"] == "own delay"
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    minibroker_sqs_endpoint.advance(15)
    assert receive_one(sqs, url)["Body"] == "queue delay"


def test_redrive_moves_to_the_dead_letter_queue(
    sqs: Any, minibroker_sqs_endpoint: SqsEndpoint
) -> None:
    dead = sqs.create_queue(QueueName="dead")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 2})
    url = sqs.create_queue(
        QueueName="work", Attributes={"RedrivePolicy": policy, "VisibilityTimeout": "10"}
    )["QueueUrl"]
    sent = sqs.send_message(QueueUrl=url, MessageBody="poison", MessageAttributes=ATTRIBUTES)
    for _ in range(2):
        receive_one(sqs, url)
        minibroker_sqs_endpoint.advance(10)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    moved = receive_one(
        sqs, dead, MessageAttributeNames=["kind"], MessageSystemAttributeNames=["All"]
    )
    assert moved["Body"] == "poison"
    assert moved["MessageId"] == sent["MessageId"]
    assert moved["MessageAttributes"] == {"kind": ATTRIBUTES["kind"]}
    assert moved["Attributes"]["DeadLetterQueueSourceArn"] == arn.replace(":dead", ":work")


def test_send_message_batch(sqs: Any, queue_url: str) -> None:
    result = sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": "a", "MessageBody": "first", "MessageAttributes": ATTRIBUTES},
            {"Id": "b", "MessageBody": ""},
            {"Id": "c", "MessageBody": "third", "DelaySeconds": 0},
        ],
    )
    assert [e["Id"] for e in result["Successful"]] == ["a", "c"]
    assert result["Successful"][0]["MD5OfMessageBody"] == md5_of_body("first")
    assert "MD5OfMessageAttributes" in result["Successful"][0]
    (failed,) = result["Failed"]
    assert (failed["Id"], failed["Code"], failed["SenderFault"]) == (
        "b",
        "InvalidParameterValue",
        True,
    )
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in got] == ["first", "third"]


def test_message_attributes_count_against_a_batchs_size(sqs: Any, queue_url: str) -> None:
    """A batch is at most 1 MiB of messages, attributes included (each message
    is counted as against MaximumMessageSize); only bodies used to count."""
    attribute = {"pad": {"DataType": "String", "StringValue": "a" * 60_000}}
    entries = [
        {"Id": str(i), "MessageBody": "b" * 150_000, "MessageAttributes": attribute}
        for i in range(5)
    ]
    with pytest.raises(ClientError) as caught:
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    assert error_code(caught) == "AWS.SimpleQueueService.BatchRequestTooLong"
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url)
    fits = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries[:4])
    assert len(fits["Successful"]) == 4


def test_delete_and_change_visibility_batches(
    sqs: Any, queue_url: str, minibroker_sqs_endpoint: SqsEndpoint
) -> None:
    sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": f"m{i}"} for i in range(4)]
    )
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=4, VisibilityTimeout=10)[
        "Messages"
    ]
    deleted = sqs.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": "d0", "ReceiptHandle": got[0]["ReceiptHandle"]},
            {"Id": "bad", "ReceiptHandle": "nope"},
        ],
    )
    assert [e["Id"] for e in deleted["Successful"]] == ["d0"]
    assert deleted["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
    changed = sqs.change_message_visibility_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": "c1", "ReceiptHandle": got[1]["ReceiptHandle"], "VisibilityTimeout": 0},
            {"Id": "c2", "ReceiptHandle": got[2]["ReceiptHandle"], "VisibilityTimeout": 100},
        ],
    )
    assert [e["Id"] for e in changed["Successful"]] == ["c1", "c2"]
    assert receive_one(sqs, queue_url)["Body"] == "m1"
    minibroker_sqs_endpoint.advance(10)
    assert receive_one(sqs, queue_url)["Body"] == "m3"
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url)


@pytest.mark.parametrize(
    ("entries", "code"),
    [
        ([], "AWS.SimpleQueueService.EmptyBatchRequest"),
        (
            [{"Id": str(i), "MessageBody": "x"} for i in range(11)],
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        ),
        (
            [{"Id": "same", "MessageBody": "x"}, {"Id": "same", "MessageBody": "y"}],
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        ),
        ([{"Id": "no spaces", "MessageBody": "x"}], "AWS.SimpleQueueService.InvalidBatchEntryId"),
    ],
)
def test_batch_request_errors(
    sqs: Any, queue_url: str, entries: list[dict[str, str]], code: str
) -> None:
    with pytest.raises(ClientError) as exc:
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
    assert error_code(exc) == code
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url)


def test_long_poll_is_answered_by_a_send(sqs: Any, queue_url: str) -> None:
    got: list[Any] = []
    poller = threading.Thread(
        target=lambda: got.append(sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=20))
    )
    poller.start()
    sqs.send_message(QueueUrl=queue_url, MessageBody="wake up")
    poller.join(timeout=15)
    assert not poller.is_alive()
    assert got[0]["Messages"][0]["Body"] == "wake up"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"MessageBody": ""}, "InvalidParameterValue"),
        ({"MessageBody": "bad \x01 char"}, "InvalidMessageContents"),
        ({"MessageBody": "x", "DelaySeconds": 901}, "InvalidParameterValue"),
        ({"MessageBody": "x" * 262_145}, "InvalidParameterValue"),
        (
            {
                "MessageBody": "x",
                "MessageAttributes": {"n": {"DataType": "Number", "StringValue": "one"}},
            },
            "InvalidParameterValue",
        ),
        (
            {
                "MessageBody": "x",
                "MessageAttributes": {"AWS.x": {"DataType": "String", "StringValue": "v"}},
            },
            "InvalidParameterValue",
        ),
        ({"MessageBody": "x", "MessageDeduplicationId": "d"}, "InvalidParameterValue"),
    ],
)
def test_send_message_errors(sqs: Any, queue_url: str, kwargs: dict[str, Any], code: str) -> None:
    with pytest.raises(ClientError) as exc:
        sqs.send_message(QueueUrl=queue_url, **kwargs)
    assert error_code(exc) == code
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url)


@pytest.mark.parametrize(
    "kwargs",
    [{"MaxNumberOfMessages": 11}, {"WaitTimeSeconds": 21}, {"VisibilityTimeout": 43_201}],
)
def test_receive_message_errors(sqs: Any, queue_url: str, kwargs: dict[str, int]) -> None:
    with pytest.raises(ClientError) as exc:
        sqs.receive_message(QueueUrl=queue_url, **kwargs)
    assert error_code(exc) == "InvalidParameterValue"
