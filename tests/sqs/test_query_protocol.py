"""The query/XML protocol (older botocore, kombu's async client) and bad HTTP input.

Requests are made by hand with urllib, as a query-protocol client sends
them: form parameters with flattened lists and maps, answers in XML.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from botocore.exceptions import ClientError

from minibroker.sqs.digests import md5_of_body
from minibroker.testing import SqsEndpoint

NS = "{http://queue.amazonaws.com/doc/2012-11-05/}"
#: JSON nested deeper than Python's recursion limit (a RecursionError, not a ValueError).
DEEPLY_NESTED = b"[" * 100_000 + b"]" * 100_000


def post(url: str, data: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method="POST", headers=headers or {})
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def query(url: str, **params: str) -> tuple[int, ET.Element]:
    status, body = post(url, urllib.parse.urlencode(params).encode())
    return status, ET.fromstring(body)


def text(root: ET.Element, path: str) -> str:
    found = root.find(_qualified(path))
    assert found is not None, (path, ET.tostring(root))
    return found.text or ""


def _qualified(path: str) -> str:
    return ".//" + "/".join(NS + part for part in path.split("/"))


def test_query_protocol_round_trip(minibroker_sqs_endpoint: SqsEndpoint) -> None:
    base = minibroker_sqs_endpoint.url
    status, root = query(
        base,
        Action="CreateQueue",
        QueueName="legacy",
        **{"Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "40"},
    )
    assert status == 200
    url = text(root, "CreateQueueResult/QueueUrl")
    assert url == f"{base}/legacy"
    status, root = query(
        url,
        Action="SendMessage",
        QueueUrl=url,
        MessageBody="<hello & goodbye>",
        **{
            "MessageAttribute.1.Name": "kind",
            "MessageAttribute.1.Value.DataType": "String",
            "MessageAttribute.1.Value.StringValue": "order",
        },
    )
    assert text(root, "SendMessageResult/MD5OfMessageBody") == md5_of_body("<hello & goodbye>")
    sent_attributes_md5 = text(root, "SendMessageResult/MD5OfMessageAttributes")
    status, root = query(
        url,
        Action="ReceiveMessage",
        QueueUrl=url,
        **{"AttributeName.1": "All", "MessageAttributeName.1": "All"},
    )
    assert text(root, "Message/Body") == "<hello & goodbye>"
    assert text(root, "Message/MD5OfMessageAttributes") == sent_attributes_md5
    assert text(root, "Message/MessageAttribute/Name") == "kind"
    assert text(root, "Message/MessageAttribute/Value/StringValue") == "order"
    names = [e.text for e in root.iter(f"{NS}Name")]
    assert "ApproximateReceiveCount" in names
    handle = text(root, "Message/ReceiptHandle")
    status, root = query(url, Action="DeleteMessage", QueueUrl=url, ReceiptHandle=handle)
    assert status == 200
    status, root = query(
        url, Action="GetQueueAttributes", QueueUrl=url, **{"AttributeName.1": "All"}
    )
    attributes = {
        a.findtext(f"{NS}Name"): a.findtext(f"{NS}Value") for a in root.iter(f"{NS}Attribute")
    }
    assert attributes["VisibilityTimeout"] == "40"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    status, root = query(base, Action="ListQueues")
    assert [e.text for e in root.iter(f"{NS}QueueUrl")] == [url]


def test_query_protocol_batches_and_tags(minibroker_sqs_endpoint: SqsEndpoint) -> None:
    base = minibroker_sqs_endpoint.url
    _, root = query(
        base, Action="CreateQueue", QueueName="b", **{"Tag.1.Key": "team", "Tag.1.Value": "x"}
    )
    url = text(root, "CreateQueueResult/QueueUrl")
    _, root = query(
        url,
        Action="SendMessageBatch",
        QueueUrl=url,
        **{
            "SendMessageBatchRequestEntry.1.Id": "one",
            "SendMessageBatchRequestEntry.1.MessageBody": "1",
            "SendMessageBatchRequestEntry.2.Id": "two",
            "SendMessageBatchRequestEntry.2.MessageBody": "",
        },
    )
    assert text(root, "SendMessageBatchResultEntry/Id") == "one"
    assert text(root, "BatchResultErrorEntry/Id") == "two"
    assert text(root, "BatchResultErrorEntry/SenderFault") == "true"
    _, root = query(url, Action="ListQueueTags", QueueUrl=url)
    assert text(root, "Tag/Key") == "team"
    assert text(root, "Tag/Value") == "x"


def test_query_protocol_errors_are_xml(minibroker_sqs_endpoint: SqsEndpoint) -> None:
    base = minibroker_sqs_endpoint.url
    status, root = query(base, Action="GetQueueUrl", QueueName="missing")
    assert status == 400
    assert text(root, "Error/Code") == "AWS.SimpleQueueService.NonExistentQueue"
    assert text(root, "Error/Type") == "Sender"
    status, root = query(base, Action="NoSuchAction")
    assert (status, text(root, "Error/Code")) == (400, "InvalidAction")
    status, root = query(base, QueueName="no action")
    assert (status, text(root, "Error/Code")) == (400, "MissingAction")


def json_post(url: str, action: str, body: bytes) -> tuple[int, Any]:
    status, raw = post(
        url,
        body,
        {"X-Amz-Target": f"AmazonSQS.{action}", "Content-Type": "application/x-amz-json-1.0"},
    )
    return status, json.loads(raw)


@pytest.mark.parametrize(
    ("action", "body", "kind"),
    [
        ("ListQueues", b"{not json", "SerializationException"),
        ("ListQueues", b"[1, 2]", "SerializationException"),
        ("ListQueues", DEEPLY_NESTED, "SerializationException"),
        ("CreateQueue", b'{"QueueName": ' + DEEPLY_NESTED + b"}", "SerializationException"),
        ("Frobnicate", b"{}", "UnknownOperationException"),
        ("SendMessage", b'{"QueueUrl": 5, "MessageBody": "x"}', "MissingParameter"),
        ("ReceiveMessage", b'{"QueueUrl": "a/b/c/d"}', "InvalidAddress"),
        ("ListQueues", b'{"MaxResults": "many"}', "InvalidParameterValue"),
        ("CreateQueue", b'{"QueueName": "q", "Attributes": [1]}', "InvalidParameterValue"),
    ],
)
def test_malformed_json_requests_get_clean_400s(
    minibroker_sqs_endpoint: SqsEndpoint, action: str, body: bytes, kind: str
) -> None:
    status, answer = json_post(minibroker_sqs_endpoint.url, action, body)
    assert status == 400
    assert answer["__type"] == f"com.amazonaws.sqs#{kind}"


def test_oversized_request_is_refused_and_the_endpoint_goes_on(
    minibroker_sqs_endpoint: SqsEndpoint,
) -> None:
    huge = b'{"QueueName": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    status, answer = json_post(minibroker_sqs_endpoint.url, "CreateQueue", huge)
    assert (status, answer["__type"]) == (413, "com.amazonaws.sqs#RequestEntityTooLarge")
    status, _ = json_post(minibroker_sqs_endpoint.url, "ListQueues", b"{}")
    assert status == 200


@pytest.mark.parametrize(
    ("value", "named"),
    [(5, "NUMBER_VALUE"), (True, "TRUE_VALUE"), (None, "NULL_VALUE"), ({"a": "b"}, "structure")],
)
def test_tag_values_that_are_not_strings_are_a_serialization_exception(
    minibroker_sqs_endpoint: SqsEndpoint, sqs: Any, queue_url: str, value: object, named: str
) -> None:
    body = json.dumps({"QueueUrl": queue_url, "Tags": {"team": "a", "cost": value}}).encode()
    status, answer = json_post(minibroker_sqs_endpoint.url, "TagQueue", body)
    assert (status, answer["__type"]) == (400, "com.amazonaws.sqs#SerializationException")
    assert named in answer["message"]
    assert sqs.list_queue_tags(QueueUrl=queue_url).get("Tags", {}) == {}  # nothing was tagged


def test_a_non_string_queue_attribute_is_a_serialization_exception(
    minibroker_sqs_endpoint: SqsEndpoint,
) -> None:
    body = b'{"QueueName": "typed", "Attributes": {"DelaySeconds": 5}}'
    status, answer = json_post(minibroker_sqs_endpoint.url, "CreateQueue", body)
    assert (status, answer["__type"]) == (400, "com.amazonaws.sqs#SerializationException")


@pytest.mark.parametrize("where", ["queue", "account"])
def test_a_queue_url_whose_escapes_are_not_utf8_is_an_invalid_address(
    minibroker_sqs_endpoint: SqsEndpoint, queue_url: str, where: str
) -> None:
    account, queue = queue_url.rsplit("/", 2)[1:]
    bad = (
        queue_url.replace(f"/{queue}", "/jobs%ff")
        if where == "queue"
        else queue_url.replace(f"/{account}/", f"/{account}%ff/")
    )
    body = json.dumps({"QueueUrl": bad, "MessageBody": "x"}).encode()
    status, answer = json_post(minibroker_sqs_endpoint.url, "SendMessage", body)
    assert (status, answer["__type"]) == (400, "com.amazonaws.sqs#InvalidAddress")
    assert "not UTF-8" in answer["message"]


def test_an_endpoint_path_whose_escapes_are_not_utf8_is_an_invalid_address(
    minibroker_sqs_endpoint: SqsEndpoint,
) -> None:
    status, answer = json_post(minibroker_sqs_endpoint.url + "%ff", "ListQueues", b"{}")
    assert (status, answer["__type"]) == (400, "com.amazonaws.sqs#InvalidAddress")


def _redrive(account: str, count: str) -> str:
    """A RedrivePolicy aimed at queue "jobs" whose maxReceiveCount is ``count`` (JSON text)."""
    arn = f"arn:aws:sqs:us-east-1:{account}:jobs"
    return '{"deadLetterTargetArn": "' + arn + '", "maxReceiveCount": ' + count + "}"


@pytest.mark.parametrize(
    ("action", "params", "kind"),
    [
        # 1e400 is valid JSON and parses to infinity: int(inf) raised OverflowError (a 500).
        (
            "ReceiveMessage",
            '{"QueueUrl": "%s", "MaxNumberOfMessages": 1e400}',
            "InvalidParameterValue",
        ),
        (
            "ReceiveMessage",
            '{"QueueUrl": "%s", "WaitTimeSeconds": -1e400}',
            "InvalidParameterValue",
        ),
        ("ReceiveMessage", '{"QueueUrl": "%s", "VisibilityTimeout": 2.5}', "InvalidParameterValue"),
        (
            "SendMessage",
            '{"QueueUrl": "%s", "MessageBody": "x", "DelaySeconds": 1e400}',
            "InvalidParameterValue",
        ),
        ("ListQueues", '{"MaxResults": 1e400}', "InvalidParameterValue"),
        # NaN and Infinity are not JSON (Python's json module takes them by default).
        (
            "ReceiveMessage",
            '{"QueueUrl": "%s", "WaitTimeSeconds": Infinity}',
            "SerializationException",
        ),
        ("ListQueues", '{"MaxResults": NaN}', "SerializationException"),
    ],
)
def test_numbers_json_allows_but_sqs_does_not_are_400s_not_500s(
    minibroker_sqs_endpoint: SqsEndpoint, queue_url: str, action: str, params: str, kind: str
) -> None:
    body = (params % queue_url if "%s" in params else params).encode()
    status, answer = json_post(minibroker_sqs_endpoint.url, action, body)
    assert (status, answer["__type"]) == (400, f"com.amazonaws.sqs#{kind}")


@pytest.mark.parametrize("count", ["1e400", "Infinity", "2.5", "true"])
def test_a_redrive_policy_with_a_count_that_is_no_integer_is_refused(
    minibroker_sqs_endpoint: SqsEndpoint, sqs: Any, queue_url: str, count: str
) -> None:
    account = queue_url.rsplit("/", 2)[1]
    policy = _redrive(account, count)
    body = json.dumps({"QueueName": "src", "Attributes": {"RedrivePolicy": policy}}).encode()
    status, answer = json_post(minibroker_sqs_endpoint.url, "CreateQueue", body)
    assert status == 400
    assert answer["__type"] in (
        "com.amazonaws.sqs#InvalidParameterValue",
        "com.amazonaws.sqs#InvalidAttributeValue",
    )
    assert sqs.list_queues(QueueNamePrefix="src").get("QueueUrls", []) == []


@pytest.mark.parametrize("value", [" 30", "30 ", "1_0", "\u0663", "+", "3.0"])
def test_integer_attributes_are_ascii_digits_only(sqs: Any, value: str) -> None:
    with pytest.raises(ClientError) as refused:
        sqs.create_queue(QueueName="strict", Attributes={"VisibilityTimeout": value})
    assert refused.value.response["Error"]["Code"] == "InvalidAttributeValue"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-inf", "1_000", " 5", "1e999", "0x10", ""])
def test_number_attributes_must_be_decimal_numbers(sqs: Any, queue_url: str, value: str) -> None:
    with pytest.raises(ClientError) as refused:
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody="x",
            MessageAttributes={"n": {"DataType": "Number", "StringValue": value}},
        )
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"


@pytest.mark.parametrize("value", ["5", "-5", "+5", "1.5", ".5", "5.", "1e10", "-1.5E-3", "9" * 38])
def test_number_attributes_sqs_takes_are_taken(sqs: Any, queue_url: str, value: str) -> None:
    attributes = {"n": {"DataType": "Number", "StringValue": value}}
    sqs.send_message(QueueUrl=queue_url, MessageBody="x", MessageAttributes=attributes)
    [message] = sqs.receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"])["Messages"]
    assert message["MessageAttributes"]["n"]["StringValue"] == value
