"""A full data directory under the SQS endpoint: 503 ServiceUnavailable, as SQS
answers a temporary failure on its side, and the writes work again once there
is room (see docs/reliability.md, disk full)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minibroker.storage import fileio
from minibroker.testing import SqsEndpoint, ThreadedBroker, run_in_thread

botocore_config = pytest.importorskip("botocore.config")
botocore_exceptions = pytest.importorskip("botocore.exceptions")


class Disk:
    """The storage layer's seam: while ``full``, every write fails with ENOSPC."""

    def __init__(self) -> None:
        self.full = False
        self._real = os.pwrite

    def pwrite(self, fd: int, data: bytes | memoryview, position: int) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._real(fd, data, position)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    seam = Disk()
    monkeypatch.setattr(fileio, "pwrite", seam.pwrite)
    return seam


@pytest.fixture
def served(tmp_path: Path, disk: Disk) -> Iterator[ThreadedBroker]:
    with run_in_thread(data_dir=tmp_path / "data", sqs_port=0) as broker:
        yield broker


def _client(served: ThreadedBroker) -> Any:
    """A boto3 client that does not retry, so each refusal is seen as sent."""
    import boto3

    endpoint = SqsEndpoint(served, "disk")
    no_retries = botocore_config.Config(retries={"total_max_attempts": 1})
    return boto3.client("sqs", config=no_retries, **endpoint.client_kwargs)


def _refusal(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(botocore_exceptions.ClientError) as caught:
        call(**kwargs)
    response: dict[str, Any] = caught.value.response
    return response


def test_a_full_disk_is_service_unavailable_and_passes(served: ThreadedBroker, disk: Disk) -> None:
    sqs = _client(served)
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="before")

    disk.full = True
    for call, kwargs in (
        (sqs.send_message, {"QueueUrl": url, "MessageBody": "refused"}),
        (sqs.create_queue, {"QueueName": "late"}),
    ):
        refusal = _refusal(call, **kwargs)
        assert refusal["ResponseMetadata"]["HTTPStatusCode"] == 503, refusal
        assert refusal["Error"]["Code"] == "ServiceUnavailable", refusal
        assert "data directory is full" in refusal["Error"]["Message"], refusal
        assert refusal["Error"].get("Type") in (None, "Receiver"), refusal
    batch = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "x"}])
    assert [f["Code"] for f in batch["Failed"]] == ["ServiceUnavailable"]
    assert batch["Failed"][0]["SenderFault"] is False

    disk.full = False
    sqs.send_message(QueueUrl=url, MessageBody="after")
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in got) == ["after", "before"]


def test_a_fifo_batch_duplicate_of_a_refused_entry_is_refused_too(
    served: ThreadedBroker, disk: Disk
) -> None:
    """b repeats a's deduplication id in one batch. When a could not be stored,
    b was still answered as stored, with a's MessageId: a message that exists
    nowhere."""
    sqs = _client(served)
    url = sqs.create_queue(QueueName="orders.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    disk.full = True
    entry = {"MessageBody": "x", "MessageGroupId": "g", "MessageDeduplicationId": "same"}
    batch = sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": "a", **entry}, {"Id": "b", **entry}]
    )
    assert batch.get("Successful", []) == []
    assert [(f["Id"], f["Code"]) for f in batch["Failed"]] == [
        ("a", "ServiceUnavailable"),
        ("b", "ServiceUnavailable"),
    ]
    disk.full = False
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
