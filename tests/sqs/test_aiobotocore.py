"""aiobotocore (asyncio) against the SQS endpoint: the same JSON protocol
from an asyncio program, long poll included."""

from __future__ import annotations

import asyncio

import pytest

from minibroker.testing import SqsEndpoint

aiobotocore_session = pytest.importorskip("aiobotocore.session")


async def exercise(endpoint: SqsEndpoint) -> list[str]:
    session = aiobotocore_session.get_session()
    async with session.create_client("sqs", **endpoint.client_kwargs) as sqs:
        url = (await sqs.create_queue(QueueName="aio"))["QueueUrl"]
        poll = asyncio.ensure_future(
            sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20, MaxNumberOfMessages=10)
        )
        await asyncio.sleep(0)  # let the poll go out first (it works either way)
        await sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": "a", "MessageBody": "one"}, {"Id": "b", "MessageBody": "two"}],
        )
        got = (await poll)["Messages"]
        await sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )
        attributes = await sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )
        assert attributes["Attributes"] == {"ApproximateNumberOfMessagesNotVisible": "0"}
        return [m["Body"] for m in got]


def test_aiobotocore_round_trip(minibroker_sqs_endpoint: SqsEndpoint) -> None:
    bodies = asyncio.run(exercise(minibroker_sqs_endpoint))
    assert bodies == ["one", "two"]  # one batch: a parked poll gets both


async def every_action(endpoint: SqsEndpoint) -> None:
    session = aiobotocore_session.get_session()
    async with session.create_client("sqs", **endpoint.client_kwargs) as sqs:
        dead = (await sqs.create_queue(QueueName="aio-dead"))["QueueUrl"]
        dead_arn = (await sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        url = (await sqs.create_queue(QueueName="aio-all", tags={"team": "a"}))["QueueUrl"]
        assert (await sqs.get_queue_url(QueueName="aio-all"))["QueueUrl"] == url
        assert (await sqs.list_queues(QueueNamePrefix="aio-a"))["QueueUrls"] == [url]
        policy = f'{{"deadLetterTargetArn":"{dead_arn}","maxReceiveCount":"5"}}'
        await sqs.set_queue_attributes(
            QueueUrl=url, Attributes={"RedrivePolicy": policy, "VisibilityTimeout": "60"}
        )
        attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))[
            "Attributes"
        ]
        assert attributes["VisibilityTimeout"] == "60"
        assert (await sqs.list_dead_letter_source_queues(QueueUrl=dead))["queueUrls"] == [url]

        await sqs.tag_queue(QueueUrl=url, Tags={"env": "test"})
        await sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
        assert (await sqs.list_queue_tags(QueueUrl=url))["Tags"] == {"env": "test"}

        sent = await sqs.send_message(
            QueueUrl=url,
            MessageBody="single",
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "x"}},
        )
        assert "MD5OfMessageAttributes" in sent
        batch = await sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": f"e{i}", "MessageBody": f"b{i}"} for i in range(3)]
        )
        assert len(batch["Successful"]) == 3
        got = (
            await sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                AttributeNames=["ApproximateReceiveCount"],
                MessageAttributeNames=["All"],
            )
        )["Messages"]
        assert sorted(m["Body"] for m in got) == ["b0", "b1", "b2", "single"]
        first, second, *rest = got
        await sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
        )
        changed = await sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[{"Id": "c", "ReceiptHandle": second["ReceiptHandle"], "VisibilityTimeout": 0}],
        )
        assert [e["Id"] for e in changed["Successful"]] == ["c"]
        for m in rest:
            await sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        again = (await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10))["Messages"]
        assert sorted(m["Body"] for m in again) == sorted([first["Body"], second["Body"]])
        deleted = await sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(again)
            ],
        )
        assert len(deleted["Successful"]) == 2

        fifo = (
            await sqs.create_queue(
                QueueName="aio.fifo",
                Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
            )
        )["QueueUrl"]
        one = await sqs.send_message(QueueUrl=fifo, MessageBody="f", MessageGroupId="g")
        two = await sqs.send_message(QueueUrl=fifo, MessageBody="f", MessageGroupId="g")
        assert one["MessageId"] == two["MessageId"]  # deduplicated

        await sqs.send_message(QueueUrl=url, MessageBody="purged")
        await sqs.purge_queue(QueueUrl=url)
        counts = await sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        assert counts["Attributes"] == {"ApproximateNumberOfMessages": "0"}
        await sqs.delete_queue(QueueUrl=url)
        with pytest.raises(sqs.exceptions.QueueDoesNotExist):
            await sqs.get_queue_url(QueueName="aio-all")


def test_aiobotocore_every_action(minibroker_sqs_endpoint: SqsEndpoint) -> None:
    asyncio.run(every_action(minibroker_sqs_endpoint))
