"""What only the SQS layer keeps about a queue (FifoQueue, ContentBasedDeduplication,
RedriveAllowPolicy, DelaySeconds, tags...) survives a restart on a data
directory, and so does FIFO behaviour: groups held in order, sequence
numbers increasing, content-based deduplication."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from minibroker.config import ServerConfig
from minibroker.core.queue_message import Message
from minibroker.sqs.attributes import QueueSettings
from minibroker.sqs.fifo import (
    DEDUPLICATION_HEADER,
    DEDUPLICATION_WINDOW,
    GROUP_HEADER,
    SEQUENCE_HEADER,
    Sent,
)
from minibroker.sqs.handler import _restoring_deduplication
from minibroker.sqs.messages import MESSAGE_ID_HEADER
from minibroker.testing import run_in_thread

boto3 = pytest.importorskip("boto3")

FIFO_ATTRIBUTES = {
    "FifoQueue": "true",
    "ContentBasedDeduplication": "true",
    "DeduplicationScope": "messageGroup",
    "DelaySeconds": "0",
    "ReceiveMessageWaitTimeSeconds": "3",
    "MaximumMessageSize": "2048",
    "RedriveAllowPolicy": json.dumps({"redrivePermission": "allowAll"}),
}


def client(url: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def bodies(messages: list[dict[str, Any]]) -> list[str]:
    return [m["Body"] for m in messages]


def test_a_fifo_queue_with_tags_keeps_its_attributes_and_behaviour_across_a_restart(
    tmp_path: Path,
) -> None:
    config = ServerConfig(port=0, sqs_port=0, data_dir=tmp_path)
    with run_in_thread(config) as broker:
        sqs = client(broker.sqs_url)
        url = sqs.create_queue(
            QueueName="orders.fifo", Attributes=FIFO_ATTRIBUTES, tags={"team": "billing"}
        )["QueueUrl"]
        sqs.tag_queue(QueueUrl=url, Tags={"env": "test"})
        sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "0"})
        sent = [
            sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group)
            for body, group in [("a1", "a"), ("a2", "a"), ("b1", "b")]
        ]
        before = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    with run_in_thread(config) as broker:
        sqs = client(broker.sqs_url)
        url = sqs.get_queue_url(QueueName="orders.fifo")["QueueUrl"]
        after = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert after == before
        for name, value in FIFO_ATTRIBUTES.items():
            assert after[name] == value
        assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "test"}
        # Groups again: a2 waits while a1 is in flight, b1 does not.
        first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
        assert bodies(first) == ["a1"]
        assert bodies(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]) == [
            "b1"
        ]
        # Content-based deduplication (the setting came back) and sequence numbers that
        # keep increasing past the ones given before the restart.
        again = sqs.send_message(QueueUrl=url, MessageBody="c1", MessageGroupId="c")
        duplicate = sqs.send_message(QueueUrl=url, MessageBody="c1", MessageGroupId="c")
        assert duplicate["MessageId"] == again["MessageId"]
        assert int(again["SequenceNumber"]) > max(int(s["SequenceNumber"]) for s in sent)
        # A FIFO-only parameter is still refused when missing: the queue is still FIFO.
        with pytest.raises(sqs.exceptions.ClientError, match="MessageGroupId"):
            sqs.send_message(QueueUrl=url, MessageBody="no group")


def test_a_deleted_queue_leaves_no_settings_for_its_successor(tmp_path: Path) -> None:
    config = ServerConfig(port=0, sqs_port=0, data_dir=tmp_path)
    with run_in_thread(config) as broker:
        sqs = client(broker.sqs_url)
        url = sqs.create_queue(QueueName="jobs", tags={"old": "1"})["QueueUrl"]
        sqs.delete_queue(QueueUrl=url)
        url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    with run_in_thread(config) as broker:
        sqs = client(broker.sqs_url)
        url = sqs.get_queue_url(QueueName="jobs")["QueueUrl"]
        assert sqs.list_queue_tags(QueueUrl=url).get("Tags", {}) == {}


def test_the_deduplication_window_comes_back_from_the_messages_after_a_restart(
    tmp_path: Path,
) -> None:
    """A send stored just before a crash whose answer the client never got is
    sent again after the restart: within five minutes it must be dropped, as
    SQS drops it, and answered as the first one was."""
    config = ServerConfig(port=0, sqs_port=0, data_dir=tmp_path)
    with run_in_thread(config) as broker:
        sqs = client(broker.sqs_url)
        url = sqs.create_queue(
            QueueName="once.fifo",
            Attributes={"FifoQueue": "true", "DeduplicationScope": "messageGroup"},
        )["QueueUrl"]
        first = sqs.send_message(
            QueueUrl=url, MessageBody="pay 10", MessageGroupId="a", MessageDeduplicationId="p1"
        )

    with run_in_thread(config) as broker:
        sqs = client(broker.sqs_url)
        url = sqs.get_queue_url(QueueName="once.fifo")["QueueUrl"]
        retry = sqs.send_message(
            QueueUrl=url, MessageBody="pay 10", MessageGroupId="a", MessageDeduplicationId="p1"
        )
        assert (retry["MessageId"], retry["SequenceNumber"]) == (
            first["MessageId"],
            first["SequenceNumber"],
        )
        # The scope came back with it: the same id in another group is another message.
        sqs.send_message(
            QueueUrl=url, MessageBody="pay 10", MessageGroupId="b", MessageDeduplicationId="p1"
        )
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert sorted(bodies(got)) == ["pay 10", "pay 10"]
        assert len({m["MessageId"] for m in got}) == 2


def test_a_restored_deduplication_id_lasts_five_minutes_from_its_send() -> None:
    settings = QueueSettings(created=0, modified=0, fifo=True)
    published_ms = 1_000_000_000_000
    headers = {
        MESSAGE_ID_HEADER: "m-1",
        GROUP_HEADER: "a",
        DEDUPLICATION_HEADER: "p1",
        SEQUENCE_HEADER: "00000000000000000007",
    }
    group_of = _restoring_deduplication(settings, epoch_offset=900_000_000.0)
    assert group_of(Message(b"x", headers, published_ms)) == "a"
    sent_at = published_ms / 1000 - 900_000_000.0  # on the broker's clock
    found = settings.deduplicator.find("p1", sent_at + DEDUPLICATION_WINDOW - 1)
    assert found == Sent("m-1", "00000000000000000007")
    assert settings.deduplicator.find("p1", sent_at + DEDUPLICATION_WINDOW) is None
