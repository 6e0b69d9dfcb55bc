"""The SQS endpoint through real boto3: queues, attributes, tags, errors.

Each test has its own namespace (``minibroker_sqs_endpoint``), visible in the
queue URLs. Time-dependent behaviour moves the threaded broker's clock with
``advance`` instead of waiting.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

import minibroker
from minibroker.testing import SqsEndpoint


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    code: str = exc.value.response["Error"]["Code"]
    return code


def test_queue_urls_carry_the_namespace(sqs: Any, minibroker_sqs_endpoint: SqsEndpoint) -> None:
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    assert url == f"{minibroker_sqs_endpoint.url}/jobs"
    assert minibroker_sqs_endpoint.namespace in url
    assert sqs.get_queue_url(QueueName="jobs")["QueueUrl"] == url
    # Creating it again with the same attributes is a no-op that gives the same URL.
    assert sqs.create_queue(QueueName="jobs")["QueueUrl"] == url


def test_another_namespace_does_not_see_the_queue(
    sqs: Any, minibroker_sqs_endpoint: SqsEndpoint
) -> None:
    sqs.create_queue(QueueName="private")
    other = SqsEndpoint(minibroker_sqs_endpoint.server, minibroker_sqs_endpoint.namespace + "x")
    assert "QueueUrls" not in other.client().list_queues()


def test_list_queues_prefix_and_pages(sqs: Any, minibroker_sqs_endpoint: SqsEndpoint) -> None:
    names = ["a-1", "a-2", "a-3", "b-1"]
    for name in names:
        sqs.create_queue(QueueName=name)
    base = minibroker_sqs_endpoint.url
    assert sqs.list_queues()["QueueUrls"] == [f"{base}/{n}" for n in names]
    assert sqs.list_queues(QueueNamePrefix="a-")["QueueUrls"] == [
        f"{base}/a-{i}" for i in (1, 2, 3)
    ]
    first = sqs.list_queues(MaxResults=2)
    assert first["QueueUrls"] == [f"{base}/a-1", f"{base}/a-2"]
    second = sqs.list_queues(MaxResults=2, NextToken=first["NextToken"])
    assert second["QueueUrls"] == [f"{base}/a-3", f"{base}/b-1"]
    assert "NextToken" not in second
    pages = sqs.get_paginator("list_queues").paginate(PaginationConfig={"PageSize": 3})
    assert [u for page in pages for u in page["QueueUrls"]] == [f"{base}/{n}" for n in names]


def test_delete_queue(sqs: Any, queue_url: str) -> None:
    sqs.delete_queue(QueueUrl=queue_url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as exc:
        sqs.get_queue_url(QueueName="jobs")
    assert error_code(exc) == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=queue_url, MessageBody="x")


def test_create_queue_attributes_and_conflict(sqs: Any) -> None:
    url = sqs.create_queue(
        QueueName="tuned",
        Attributes={
            "VisibilityTimeout": "45",
            "MessageRetentionPeriod": "3600",
            "DelaySeconds": "5",
            "ReceiveMessageWaitTimeSeconds": "2",
            "MaximumMessageSize": "2048",
        },
    )["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "45"
    assert attributes["MessageRetentionPeriod"] == "3600"
    assert attributes["DelaySeconds"] == "5"
    assert attributes["ReceiveMessageWaitTimeSeconds"] == "2"
    assert attributes["MaximumMessageSize"] == "2048"
    assert attributes["QueueArn"].endswith(":tuned")
    assert int(attributes["CreatedTimestamp"]) > 1_600_000_000
    # Same name, same attributes: fine; a different value: QueueAlreadyExists.
    assert sqs.create_queue(QueueName="tuned", Attributes={"VisibilityTimeout": "45"})
    with pytest.raises(sqs.exceptions.QueueNameExists) as exc:
        sqs.create_queue(QueueName="tuned", Attributes={"VisibilityTimeout": "46"})
    assert error_code(exc) == "QueueAlreadyExists"


@pytest.mark.parametrize(
    ("attributes", "code"),
    [
        ({"VisibilityTimeout": "43201"}, "InvalidAttributeValue"),
        ({"DelaySeconds": "soon"}, "InvalidAttributeValue"),
        ({"NoSuchAttribute": "1"}, "InvalidAttributeName"),
        ({"FifoQueue": "true"}, "InvalidParameterValue"),
    ],
)
def test_create_queue_refuses_bad_attributes(
    sqs: Any, attributes: dict[str, str], code: str
) -> None:
    with pytest.raises(ClientError) as exc:
        sqs.create_queue(QueueName="bad", Attributes=attributes)
    assert error_code(exc) == code
    assert "QueueUrls" not in sqs.list_queues()


def test_create_queue_refuses_bad_names(sqs: Any) -> None:
    for name in ["has space", "x" * 81, "dots.are.not.sqs"]:
        with pytest.raises(ClientError) as exc:
            sqs.create_queue(QueueName=name)
        assert error_code(exc) == "InvalidParameterValue"


def test_set_queue_attributes_reconfigures_the_core_queue(
    sqs: Any, queue_url: str, minibroker_sqs_endpoint: SqsEndpoint
) -> None:
    sqs.set_queue_attributes(
        QueueUrl=queue_url, Attributes={"VisibilityTimeout": "120", "DelaySeconds": "3"}
    )
    got = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["VisibilityTimeout", "DelaySeconds"]
    )["Attributes"]
    assert got == {"VisibilityTimeout": "120", "DelaySeconds": "3"}
    with native(minibroker_sqs_endpoint) as mb:
        assert mb.queue_stats("jobs").options["visibility_timeout"] == 120


def test_approximate_counts(sqs: Any, queue_url: str) -> None:
    for i in range(3):
        sqs.send_message(QueueUrl=queue_url, MessageBody=f"m{i}")
    sqs.send_message(QueueUrl=queue_url, MessageBody="later", DelaySeconds=60)
    sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=2)
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    got = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    assert got == dict(zip(names, ["1", "2", "1"], strict=True))


def test_purge_queue_removes_in_flight_messages_too(
    sqs: Any, queue_url: str, minibroker_sqs_endpoint: SqsEndpoint
) -> None:
    for i in range(5):
        sqs.send_message(QueueUrl=queue_url, MessageBody=f"m{i}")
    sqs.send_message(QueueUrl=queue_url, MessageBody="delayed", DelaySeconds=10)
    sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=2)
    sqs.purge_queue(QueueUrl=queue_url)
    minibroker_sqs_endpoint.advance(30)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url)
    with native(minibroker_sqs_endpoint) as mb:
        assert mb.queue_stats("jobs").purged == 6


def test_tags(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="tagged", tags={"team": "a", "env": "test"})["QueueUrl"]
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "a", "env": "test"}
    sqs.tag_queue(QueueUrl=url, Tags={"team": "b", "cost": "1"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["env"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "b", "cost": "1"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["team", "cost"])
    assert "Tags" not in sqs.list_queue_tags(QueueUrl=url)


def test_redrive_policy_and_dead_letter_sources(sqs: Any) -> None:
    dead = sqs.create_queue(QueueName="dead")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 3})
    one = sqs.create_queue(QueueName="one", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    two = sqs.create_queue(QueueName="two")["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=two, Attributes={"RedrivePolicy": policy})
    got = sqs.get_queue_attributes(QueueUrl=one, AttributeNames=["RedrivePolicy"])
    assert json.loads(got["Attributes"]["RedrivePolicy"]) == {
        "deadLetterTargetArn": arn,
        "maxReceiveCount": 3,
    }
    assert sqs.list_dead_letter_source_queues(QueueUrl=dead)["queueUrls"] == [one, two]
    sqs.set_queue_attributes(QueueUrl=two, Attributes={"RedrivePolicy": ""})
    assert sqs.list_dead_letter_source_queues(QueueUrl=dead)["queueUrls"] == [one]


def test_a_deleted_dead_letter_queue_leaves_its_sources_policy(
    sqs: Any, minibroker_sqs_endpoint: SqsEndpoint
) -> None:
    """As docs/sqs.md says: the policy stays, a message redriven meanwhile is
    dropped, and a queue made again with the name is the target again."""
    dead = sqs.create_queue(QueueName="dead")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 1})
    source = sqs.create_queue(QueueName="source", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    sqs.delete_queue(QueueUrl=dead)
    sqs.send_message(QueueUrl=source, MessageBody="poison")
    assert len(sqs.receive_message(QueueUrl=source)["Messages"]) == 1
    minibroker_sqs_endpoint.advance(31)  # its one receive is used up: redriven to nowhere
    assert "Messages" not in sqs.receive_message(QueueUrl=source)
    got = sqs.get_queue_attributes(QueueUrl=source, AttributeNames=["RedrivePolicy"])
    assert json.loads(got["Attributes"]["RedrivePolicy"])["deadLetterTargetArn"] == arn
    dead = sqs.create_queue(QueueName="dead")["QueueUrl"]
    assert sqs.list_dead_letter_source_queues(QueueUrl=dead)["queueUrls"] == [source]
    assert "Messages" not in sqs.receive_message(QueueUrl=dead)


def test_redrive_policy_needs_an_existing_target(sqs: Any) -> None:
    missing = "arn:aws:sqs:us-east-1:000000000000:nowhere"
    policy = json.dumps({"deadLetterTargetArn": missing, "maxReceiveCount": 3})
    with pytest.raises(ClientError) as exc:
        sqs.create_queue(QueueName="orphan", Attributes={"RedrivePolicy": policy})
    assert error_code(exc) == "InvalidParameterValue"


@pytest.mark.parametrize(
    ("policy", "missing"),
    [
        ({"maxReceiveCount": 3}, "deadLetterTargetArn"),
        ({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:x"}, "maxReceiveCount"),
    ],
)
def test_a_redrive_policy_missing_an_attribute_says_which(
    sqs: Any, policy: dict[str, Any], missing: str
) -> None:
    """Without deadLetterTargetArn the answer was "Invalid value for the queue
    ARN: 'None'", as AWS answers for a missing maxReceiveCount it names it."""
    with pytest.raises(ClientError) as exc:
        sqs.create_queue(QueueName="orphan", Attributes={"RedrivePolicy": json.dumps(policy)})
    assert error_code(exc) == "InvalidParameterValue"
    message = exc.value.response["Error"]["Message"]
    assert message.endswith(f"does not contain mandatory attribute: {missing}.")


def test_a_queue_created_over_sqs_is_a_minibroker_queue(
    sqs: Any, queue_url: str, minibroker_sqs_endpoint: SqsEndpoint
) -> None:
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody="from sqs",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "order"}},
    )
    with native(minibroker_sqs_endpoint) as mb:
        assert [q.queue for q in mb.list_queues()] == ["jobs"]
        (delivery,) = mb.fetch("jobs", 10)
        assert delivery.body == b"from sqs"
        assert delivery.headers is not None and delivery.headers["kind"] == "order"
        mb.ack([delivery])
        mb.put("jobs", b"from the native port", headers={"trace": "t-1"})
    (message,) = sqs.receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"])["Messages"]
    assert message["Body"] == "from the native port"
    assert message["MessageAttributes"] == {"trace": {"DataType": "String", "StringValue": "t-1"}}


def test_a_native_queue_is_reachable_over_sqs(
    sqs: Any, minibroker_sqs_endpoint: SqsEndpoint
) -> None:
    with native(minibroker_sqs_endpoint) as mb:
        mb.declare_queue("native.jobs", visibility_timeout=12)
        mb.put("native.jobs", b"hi")
    url = sqs.get_queue_url(QueueName="native.jobs")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "12"
    assert attributes["ApproximateNumberOfMessages"] == "1"
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "hi"


def native(endpoint: SqsEndpoint) -> Any:
    """A blocking native client in the endpoint's namespace."""
    return minibroker.connect_sync(endpoint.server.url_for(endpoint.namespace))


def test_requests_to_unknown_namespaces_create_nothing(
    minibroker_sqs_endpoint: SqsEndpoint,
) -> None:
    core = minibroker_sqs_endpoint.server.server.broker
    stranger = SqsEndpoint(minibroker_sqs_endpoint.server, "nobody-here")
    sqs = stranger.client()
    assert "QueueUrls" not in sqs.list_queues()
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName="jobs")
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=f"{stranger.url}/jobs", MessageBody="x")
    assert core.find_namespace("nobody-here") is None
    sqs.create_queue(QueueName="jobs")
    assert core.find_namespace("nobody-here") is not None
