"""A failed fsync through a live server: no protocol confirms what it held, and
the store refuses until a restart ("fsyncgate", docs/storage.md "A failed fsync").

The fdatasync of one store's files fails with EIO through the storage layer's
seam (``minibroker.storage.fileio.datasync``), chosen by path, while the broker
serves the native protocol, AMQP and SQS from a thread of this process. Each
client must see its waiting write fail, and every later write to that store
fail too although the fsync works again (the old code retried it, and
confirmed); the other stores go on, ``/health`` names the failed one, and a
restart serves what was synced. (Kafka's produce answers are checked on the
session itself: tests/kafka_wire/test_disk_full.py.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

import minibroker
from minibroker.config import ServerConfig
from minibroker.errors import StorageFailed
from minibroker.storage import fileio
from minibroker.testing import SqsEndpoint, ThreadedBroker, run_in_thread

boto3 = pytest.importorskip("boto3", reason="the SQS part drives the endpoint with boto3")
from botocore import config as botocore_config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

PERSISTENT = pika.BasicProperties(delivery_mode=2)


class FailingStore:
    """fdatasync fails with EIO for files whose path contains ``target``, and
    every fdatasync is recorded by path (to see that a failed one is never retried)."""

    def __init__(self) -> None:
        self.target: str | None = None
        self.synced: list[str] = []
        self._real = fileio.datasync

    def datasync(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        self.synced.append(path)
        if self.target is not None and self.target in path:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self._real(fd)

    def syncs_of(self, part: str) -> int:
        return sum(part in path for path in self.synced)


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch) -> FailingStore:
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to tell which file is synced")
    seam = FailingStore()
    monkeypatch.setattr(fileio, "datasync", seam.datasync)
    return seam


def config(data_dir: Path) -> ServerConfig:
    return ServerConfig(port=0, amqp_port=0, sqs_port=0, metrics_port=0, data_dir=data_dir)


def health(broker: ThreadedBroker) -> tuple[int, dict[str, object]]:
    url = f"http://{broker.config.host}:{broker.server.metrics_port}/health"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextlib.contextmanager
def amqp_channel(broker: ThreadedBroker) -> Iterator[BlockingChannel]:
    """A channel in confirm mode, its connection closed before the broker stops."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        yield channel
    finally:
        if connection.is_open:
            connection.close()


def sqs_client(broker: ThreadedBroker) -> object:
    endpoint = SqsEndpoint(broker, "fsqs")
    return boto3.client(
        "sqs",
        config=botocore_config.Config(retries={"total_max_attempts": 1}),
        **endpoint.client_kwargs,
    )


def test_a_failed_fsync_is_never_confirmed_by_any_protocol(
    failing: FailingStore, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with run_in_thread(config(data)) as broker, minibroker.connect_sync(broker.url) as mb:
        assert health(broker)[0] == 200
        # ---- native: the held put fails, later writes are refused, others go on
        mb.declare_queue("fsq-native", durable=True)
        mb.declare_queue("fsq-other", durable=True)
        mb.put_many("fsq-native", [b"kept"])
        failing.target = "/queues/fsq-native/"
        with pytest.raises(StorageFailed) as caught:
            mb.put_many("fsq-native", [b"unsure"])
        assert caught.value.code == "storage_failed"
        assert "restart the broker" in caught.value.message
        failing.target = None  # the disk works again: a retry would now "succeed"
        tried = failing.syncs_of("/queues/fsq-native/")
        with pytest.raises(StorageFailed):
            mb.put_many("fsq-native", [b"refused"])
        with pytest.raises(StorageFailed):
            mb.declare_queue("fsq-native", durable=True)  # "it exists" is not known
        assert failing.syncs_of("/queues/fsq-native/") == tried  # never fsynced again
        mb.put_many("fsq-other", [b"fine"])  # another store: confirmed as ever
        assert mb.ping(b"up") == b"up"
        status, body = health(broker)
        assert status == 503 and body["status"] == "storage_failed"
        [failed] = body["failed_stores"]  # type: ignore[misc]
        assert "fsq-native" in failed["path"] and failed["code"] == "storage_failed"

        # ---- AMQP publisher confirms: the held confirm is a Nack, and so is the next
        with amqp_channel(broker) as ch:
            ch.queue_declare("fsq-amqp", durable=True)
            ch.basic_publish("", "fsq-amqp", b"kept", PERSISTENT)
            failing.target = "/queues/fsq-amqp/"
            with pytest.raises(pika.exceptions.NackError):
                ch.basic_publish("", "fsq-amqp", b"unsure", PERSISTENT)
            failing.target = None
            with pytest.raises(pika.exceptions.NackError):
                ch.basic_publish("", "fsq-amqp", b"refused", PERSISTENT)
            ch.queue_declare("fsq-amqp-other", durable=True)
            ch.basic_publish("", "fsq-amqp-other", b"fine", PERSISTENT)

        # ---- SQS: SendMessage answers 500 InternalError, then and later
        sqs = sqs_client(broker)
        url = sqs.create_queue(QueueName="fsq-sqs")["QueueUrl"]  # type: ignore[attr-defined]
        sqs.send_message(QueueUrl=url, MessageBody="kept")  # type: ignore[attr-defined]
        failing.target = "/queues/fsq-sqs/"
        for body in ("unsure", "refused"):
            with pytest.raises(ClientError) as sqs_error:
                sqs.send_message(QueueUrl=url, MessageBody=body)  # type: ignore[attr-defined]
            assert sqs_error.value.response["Error"]["Code"] == "InternalError"
            assert "storage_failed" in sqs_error.value.response["Error"]["Message"]
            failing.target = None
        assert len(health(broker)[1]["failed_stores"]) == 3  # type: ignore[arg-type]

    # ---- a restart recovers every store from what is on disk
    with run_in_thread(config(data)) as broker, minibroker.connect_sync(broker.url) as mb:
        assert health(broker) == (200, {"status": "ok", "failed_stores": []})
        assert next(d.body for d in mb.fetch("fsq-native", max_messages=10)) == b"kept"
        assert [d.body for d in mb.fetch("fsq-other", max_messages=10)] == [b"fine"]
        mb.put_many("fsq-native", [b"after"])  # writable again
        with amqp_channel(broker) as ch:
            ch.basic_publish("", "fsq-amqp", b"after", PERSISTENT)
            method, _, first = ch.basic_get("fsq-amqp", auto_ack=True)
            assert method is not None and first == b"kept"
