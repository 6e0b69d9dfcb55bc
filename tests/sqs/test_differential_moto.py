"""One scenario through boto3 against minibroker and against moto's server:
what boto3 observes must be the same.

moto's standalone server (``moto[server]``, in the test extra) is an
independent implementation of SQS's API that many projects test against, so
agreeing with it on bodies, digests, attributes, counts, orders and error
codes is a check of our reading of the SQS API (not of AWS itself). Skipped
with a message when moto is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from minibroker.testing import SqsEndpoint

moto_server = pytest.importorskip(
    "moto.server", reason="moto[server] is not installed: no differential test against moto"
)

ATTRIBUTES = {
    "kind": {"DataType": "String", "StringValue": "order ✓"},
    "amount": {"DataType": "Number", "StringValue": "12.5"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe"},
    "unit": {"DataType": "String.currency", "StringValue": "EUR"},
}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def scenario(sqs: Any) -> list[Any]:
    """What boto3 observes, with ids, handles, URLs and times left out."""
    seen: list[Any] = []
    url = sqs.create_queue(QueueName="diff", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    seen.append(url.rsplit("/", 1)[1])
    seen.append(sqs.get_queue_url(QueueName="diff")["QueueUrl"] == url)
    sent = sqs.send_message(QueueUrl=url, MessageBody="first ✓", MessageAttributes=ATTRIBUTES)
    seen.append((sent["MD5OfMessageBody"], sent["MD5OfMessageAttributes"]))
    batch = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": f"e{i}", "MessageBody": f"batch {i}"} for i in range(3)],
    )
    seen.append(sorted((e["Id"], e["MD5OfMessageBody"]) for e in batch["Successful"]))
    seen.append(batch.get("Failed", []))
    counts = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    seen.append(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=counts)["Attributes"])
    got = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        AttributeNames=["ApproximateReceiveCount"],
    )["Messages"]
    seen.append(
        [
            (
                m["Body"],
                m["MD5OfBody"],
                m.get("MD5OfMessageAttributes"),
                m.get("MessageAttributes"),
                m["Attributes"],
            )
            for m in got
        ]
    )
    seen.append(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=counts)["Attributes"])
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    again = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])
    seen.append([(m["Body"], m["Attributes"]) for m in again["Messages"]])
    deleted = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got[1:])
        ],
    )
    seen.append(sorted(e["Id"] for e in deleted["Successful"]))
    seen.append(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=counts)["Attributes"])
    sqs.tag_queue(QueueUrl=url, Tags={"a": "1", "b": "2"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["a"])
    seen.append(sqs.list_queue_tags(QueueUrl=url).get("Tags"))
    for call in (
        lambda: sqs.get_queue_url(QueueName="missing"),
        lambda: sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11),
        lambda: sqs.send_message_batch(QueueUrl=url, Entries=[]),
        lambda: sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": "x", "MessageBody": "1"}, {"Id": "x", "MessageBody": "2"}],
        ),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        seen.append(exc.value.response["Error"]["Code"])
    sqs.purge_queue(QueueUrl=url)
    seen.append(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=counts)["Attributes"])
    sqs.delete_queue(QueueUrl=url)
    seen.append([u.rsplit("/", 1)[1] for u in sqs.list_queues().get("QueueUrls", [])])
    return seen


def test_boto3_sees_the_same_as_with_moto(
    minibroker_sqs_endpoint: SqsEndpoint, moto_endpoint: str
) -> None:
    ours = scenario(minibroker_sqs_endpoint.client())
    kwargs = {**minibroker_sqs_endpoint.client_kwargs, "endpoint_url": moto_endpoint}
    theirs = scenario(boto3.client("sqs", **kwargs))
    assert ours == theirs
