"""FIFO queues through boto3: order per message group, one group in flight
at a time, the five-minute deduplication window on the broker's clock."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_boto3_queues import error_code

from minibroker.testing import SqsEndpoint


@pytest.fixture
def fifo_url(sqs: Any) -> str:
    url: str = sqs.create_queue(
        QueueName="orders.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "10"}
    )["QueueUrl"]
    return url


def send(sqs: Any, url: str, body: str, group: str, dedup: str | None = None) -> Any:
    return sqs.send_message(
        QueueUrl=url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=dedup or body
    )


def bodies(response: Any) -> list[str]:
    return [m["Body"] for m in response.get("Messages", [])]


def test_one_group_in_flight_at_a_time_in_order(sqs: Any, fifo_url: str) -> None:
    for body, group in [("a1", "a"), ("b1", "b"), ("a2", "a"), ("a3", "a")]:
        send(sqs, fifo_url, body, group)
    first = sqs.receive_message(QueueUrl=fifo_url, MaxNumberOfMessages=1)["Messages"]
    assert bodies({"Messages": first}) == ["a1"]
    # Group a is held by a1: only b moves.
    assert bodies(sqs.receive_message(QueueUrl=fifo_url, MaxNumberOfMessages=10)) == ["b1"]
    assert bodies(sqs.receive_message(QueueUrl=fifo_url, MaxNumberOfMessages=10)) == []
    sqs.delete_message(QueueUrl=fifo_url, ReceiptHandle=first[0]["ReceiptHandle"])
    assert bodies(sqs.receive_message(QueueUrl=fifo_url, MaxNumberOfMessages=10)) == ["a2", "a3"]


def test_a_group_comes_back_in_order_after_its_visibility_timeout(
    sqs: Any, fifo_url: str, minibroker_sqs_endpoint: SqsEndpoint
) -> None:
    for i in range(3):
        send(sqs, fifo_url, f"m{i}", "g")
    assert bodies(sqs.receive_message(QueueUrl=fifo_url, MaxNumberOfMessages=2)) == ["m0", "m1"]
    minibroker_sqs_endpoint.advance(10)
    again = sqs.receive_message(
        QueueUrl=fifo_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert [m["Body"] for m in again] == ["m0", "m1", "m2"]
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in again] == ["2", "2", "1"]
    assert {m["Attributes"]["MessageGroupId"] for m in again} == {"g"}
    numbers = [int(m["Attributes"]["SequenceNumber"]) for m in again]
    assert numbers == sorted(numbers)
    assert again[0]["Attributes"]["MessageDeduplicationId"] == "m0"


def test_messages_made_visible_one_by_one_come_back_in_group_order(
    sqs: Any, fifo_url: str
) -> None:
    """One receive took a0, b0 and a1; each is made visible again on its own,
    in the order received (the order a worker giving up on each would use).
    Group a must be delivered again as a0, a1: each used to go to the front as
    it came back, so a1 overtook a0."""
    for body, group in [("a0", "a"), ("b0", "b"), ("a1", "a"), ("a2", "a")]:
        send(sqs, fifo_url, body, group)
    taken = sqs.receive_message(QueueUrl=fifo_url, MaxNumberOfMessages=3)["Messages"]
    assert [m["Body"] for m in taken] == ["a0", "b0", "a1"]
    for m in taken:
        sqs.change_message_visibility(
            QueueUrl=fifo_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )
    again = bodies(sqs.receive_message(QueueUrl=fifo_url, MaxNumberOfMessages=10))
    assert [b for b in again if b.startswith("a")] == ["a0", "a1", "a2"]
    assert "b0" in again


def test_a_batch_answers_in_the_order_of_its_entries(sqs: Any, fifo_url: str) -> None:
    """b repeats a's deduplication id: it was answered before a (the repeats
    first, then the stored entries)."""
    entries = [
        {"Id": "a", "MessageBody": "1", "MessageGroupId": "g", "MessageDeduplicationId": "x"},
        {"Id": "b", "MessageBody": "2", "MessageGroupId": "g", "MessageDeduplicationId": "x"},
        {"Id": "c", "MessageBody": "3", "MessageGroupId": "h", "MessageDeduplicationId": "y"},
    ]
    answer = sqs.send_message_batch(QueueUrl=fifo_url, Entries=entries)["Successful"]
    assert [a["Id"] for a in answer] == ["a", "b", "c"]
    assert answer[0]["MessageId"] == answer[1]["MessageId"]
    assert bodies(sqs.receive_message(QueueUrl=fifo_url, MaxNumberOfMessages=10)) == ["1", "3"]


def test_deduplication_window(
    sqs: Any, fifo_url: str, minibroker_sqs_endpoint: SqsEndpoint
) -> None:
    first = send(sqs, fifo_url, "once", "g", dedup="d-1")
    second = send(sqs, fifo_url, "once again", "g", dedup="d-1")
    assert second["MessageId"] == first["MessageId"]
    assert second["SequenceNumber"] == first["SequenceNumber"]
    assert bodies(sqs.receive_message(QueueUrl=fifo_url, MaxNumberOfMessages=10)) == ["once"]
    minibroker_sqs_endpoint.advance(300)
    third = send(sqs, fifo_url, "after the window", "g", dedup="d-1")
    assert third["MessageId"] != first["MessageId"]


def test_content_based_deduplication_and_batches(sqs: Any) -> None:
    url = sqs.create_queue(
        QueueName="cbd.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    result = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "1", "MessageBody": "same", "MessageGroupId": "g"},
            {"Id": "2", "MessageBody": "new", "MessageGroupId": "h"},
            {"Id": "3", "MessageBody": "new", "MessageGroupId": "h"},
        ],
    )
    assert sorted(e["Id"] for e in result["Successful"]) == ["1", "2", "3"]
    ids = {e["Id"]: e["MessageId"] for e in result["Successful"]}
    assert ids["2"] == ids["3"]
    assert bodies(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)) == ["same", "new"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["FifoQueue"] == "true"
    assert attributes["ContentBasedDeduplication"] == "true"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"MessageBody": "x", "MessageDeduplicationId": "d"}, "MissingParameter"),
        ({"MessageBody": "x", "MessageGroupId": "g"}, "InvalidParameterValue"),
        (
            {
                "MessageBody": "x",
                "MessageGroupId": "g",
                "MessageDeduplicationId": "d",
                "DelaySeconds": 5,
            },
            "InvalidParameterValue",
        ),
        (
            {"MessageBody": "x", "MessageGroupId": "g g", "MessageDeduplicationId": "d"},
            "InvalidParameterValue",
        ),
    ],
)
def test_fifo_send_errors(sqs: Any, fifo_url: str, kwargs: dict[str, Any], code: str) -> None:
    with pytest.raises(ClientError) as exc:
        sqs.send_message(QueueUrl=fifo_url, **kwargs)
    assert error_code(exc) == code


def test_fifo_names_and_attributes(sqs: Any, fifo_url: str) -> None:
    with pytest.raises(ClientError) as exc:
        sqs.create_queue(QueueName="plain.fifo")
    assert error_code(exc) == "InvalidParameterValue"
    with pytest.raises(ClientError) as exc:
        sqs.create_queue(QueueName="plain", Attributes={"ContentBasedDeduplication": "true"})
    assert error_code(exc) == "InvalidAttributeName"
    with pytest.raises(ClientError) as exc:
        sqs.set_queue_attributes(QueueUrl=fifo_url, Attributes={"FifoQueue": "false"})
    assert error_code(exc) == "InvalidAttributeValue"
    sqs.set_queue_attributes(QueueUrl=fifo_url, Attributes={"DeduplicationScope": "messageGroup"})
    got = sqs.get_queue_attributes(QueueUrl=fifo_url, AttributeNames=["DeduplicationScope"])
    assert got["Attributes"] == {"DeduplicationScope": "messageGroup"}
