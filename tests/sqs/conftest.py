"""Fixtures for the SQS endpoint's tests: a boto3 client in this test's namespace."""

from __future__ import annotations

from typing import Any

import pytest

from minibroker.testing import SqsEndpoint

boto3 = pytest.importorskip("boto3", reason="the SQS tests drive the endpoint with boto3")


@pytest.fixture
def sqs(minibroker_sqs_endpoint: SqsEndpoint) -> Any:
    return minibroker_sqs_endpoint.client()


@pytest.fixture
def queue_url(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    return url
