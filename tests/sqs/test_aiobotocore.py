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
