"""CreateQueue past ``max_queues_per_namespace`` (or ``max_namespaces``): SQS's OverLimit.

AWS answers OverLimit (HTTP 403) when "the specified action violates a
limit"; boto3 raises it as a ClientError with that code. A small limit from
the server's configuration, so the test makes three queues, not thousands.
"""

from __future__ import annotations

from typing import Any

import pytest

from minibroker.config import ServerConfig
from minibroker.core.config import Limits
from minibroker.testing import SqsEndpoint, run_in_thread

boto3 = pytest.importorskip("boto3", reason="the SQS tests drive the endpoint with boto3")
from botocore.exceptions import ClientError  # noqa: E402


def _refusal(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as refused:
        call()
    error: dict[str, Any] = refused.value.response["Error"]
    error["status"] = refused.value.response["ResponseMetadata"]["HTTPStatusCode"]
    return error


def test_create_queue_past_the_queue_limit_is_over_limit() -> None:
    limits = Limits(max_queues_per_namespace=2, max_namespaces=2)
    with run_in_thread(ServerConfig(port=0, sqs_port=0, limits=limits)) as server:
        sqs = SqsEndpoint(server, "limited").client()
        first = sqs.create_queue(QueueName="one")["QueueUrl"]
        sqs.create_queue(QueueName="two")
        assert sqs.create_queue(QueueName="one")["QueueUrl"] == first  # exists: no new queue
        error = _refusal(lambda: sqs.create_queue(QueueName="three"))
        assert (error["Code"], error["status"]) == ("OverLimit", 403)
        assert "queue limit in namespace 'limited' (2) is reached" in error["Message"]
        sqs.delete_queue(QueueUrl=first)
        sqs.create_queue(QueueName="three")

        SqsEndpoint(server, "second").client().create_queue(QueueName="q")
        error = _refusal(lambda: SqsEndpoint(server, "third").client().create_queue(QueueName="q"))
        assert (error["Code"], error["status"]) == ("OverLimit", 403)
        assert "namespace limit (2) is reached" in error["Message"]
