"""A receipt handle given out before a restart never settles a delivery made after it.

The core numbers deliveries from 1 again when the broker starts, so a
handle that named only the delivery id would name some other message once
the broker had restarted: a consumer that finished its work across a
restart (or a crash) and deleted with its old handle deleted the message
another consumer had just received, which was then lost. As in SQS, a
handle of an earlier receipt deletes nothing and the request succeeds.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from minibroker.config import ServerConfig
from minibroker.testing import run_in_thread

boto3 = pytest.importorskip("boto3")


def client(url: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def receive_one(sqs: Any, url: str) -> dict[str, Any]:
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    return message  # type: ignore[no-any-return]


def test_a_handle_from_before_a_restart_deletes_no_message_received_after_it(
    tmp_path: Path,
) -> None:
    config = ServerConfig(port=0, sqs_port=0, data_dir=tmp_path)
    with run_in_thread(config) as broker:
        sqs = client(broker.sqs_url)
        url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
        for body in ("a", "b", "c"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        first = receive_one(sqs, url)
        old_b = receive_one(sqs, url)
        assert (first["Body"], old_b["Body"]) == ("a", "b")
        sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])

    with run_in_thread(config) as broker:
        sqs = client(broker.sqs_url)
        url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
        new_b = receive_one(sqs, url)
        new_c = receive_one(sqs, url)
        assert (new_b["Body"], new_c["Body"]) == ("b", "c")
        # The old handle of b: accepted, as SQS accepts a stale handle, and nothing deleted.
        sqs.delete_message(QueueUrl=url, ReceiptHandle=old_b["ReceiptHandle"])
        with pytest.raises(sqs.exceptions.ClientError, match="MessageNotInflight"):
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=old_b["ReceiptHandle"], VisibilityTimeout=0
            )
        # Both receipts made after the restart still hold their messages.
        for message in (new_b, new_c):
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert sorted(m["Body"] for m in again) == ["b", "c"]


def test_a_handle_of_the_format_before_incarnations_deletes_nothing(
    sqs: Any, queue_url: str
) -> None:
    """``mb1:`` handles (delivery id and queue only) can only come from a broker
    before this one: they settle nothing, and the request succeeds."""
    sqs.send_message(QueueUrl=queue_url, MessageBody="kept")
    (message,) = sqs.receive_message(QueueUrl=queue_url)["Messages"]
    old_format = "mb1:" + base64.urlsafe_b64encode(b"1\njobs").decode()
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=old_format)
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    (again,) = sqs.receive_message(QueueUrl=queue_url)["Messages"]
    assert again["Body"] == message["Body"] == "kept"
