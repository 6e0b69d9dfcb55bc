"""``minibroker serve --sqs-port 0`` as a real process: the endpoint's URL in
the start-up log, boto3 against it, durable SQS queues across a restart."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from benchmarks.broker_process import BrokerProcess

pytestmark = pytest.mark.slow


def sqs_client(broker: BrokerProcess) -> Any:
    # The endpoint is logged before "listening on", which start() waited for.
    (line,) = broker.lines_matching(r"SQS endpoint on http://")
    port = int(re.findall(r":(\d+)\s*$", line.strip())[0])
    return boto3.client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def test_serve_sqs_port_survives_a_restart(tmp_path: Path) -> None:
    with BrokerProcess.start(tmp_path, "--sqs-port", "0") as broker:
        sqs = sqs_client(broker)
        url = sqs.create_queue(QueueName="kept")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="durable")
    with BrokerProcess.start(tmp_path, "--sqs-port", "0") as broker:
        sqs = sqs_client(broker)
        url = sqs.get_queue_url(QueueName="kept")["QueueUrl"]
        (message,) = sqs.receive_message(QueueUrl=url)["Messages"]
        assert message["Body"] == "durable"
