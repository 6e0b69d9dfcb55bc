"""Signature V4 checked against configured keys (``ServerConfig.sqs_keys``,
``serve --sqs-keys``): right keys pass, anything else gets a 403."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from minibroker.sqs.signing import load_keys_file
from minibroker.testing import ThreadedBroker, run_in_thread

KEYS = {"AKIDMINIBROKER": "s3cret/with+symbols"}


@pytest.fixture(scope="module")
def guarded() -> Iterator[ThreadedBroker]:
    with run_in_thread(sqs_port=0, sqs_keys=KEYS) as broker:
        yield broker


def client(broker: ThreadedBroker, key_id: str, secret: str, path: str = "") -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=broker.sqs_url + path,
        region_name="eu-west-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def code_of(call: Any) -> tuple[int, str]:
    with pytest.raises(ClientError) as exc:
        call()
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def test_the_right_keys_pass(guarded: ThreadedBroker) -> None:
    sqs = client(guarded, "AKIDMINIBROKER", KEYS["AKIDMINIBROKER"], "/signed-ns")
    url = sqs.create_queue(QueueName="signed")["QueueUrl"]
    sqs.send_message(
        QueueUrl=url,
        MessageBody="hello",
        MessageAttributes={"a": {"DataType": "String", "StringValue": "x y  z"}},
    )
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "hello"


def test_a_wrong_secret_or_an_unknown_key_is_refused(guarded: ThreadedBroker) -> None:
    wrong = client(guarded, "AKIDMINIBROKER", "not the secret")
    assert code_of(wrong.list_queues) == (403, "SignatureDoesNotMatch")
    unknown = client(guarded, "AKIDSTRANGER", KEYS["AKIDMINIBROKER"])
    assert code_of(unknown.list_queues) == (403, "InvalidClientTokenId")


def test_an_unsigned_request_is_refused(guarded: ThreadedBroker) -> None:
    request = urllib.request.Request(
        guarded.sqs_url,
        data=b"{}",
        headers={
            "X-Amz-Target": "AmazonSQS.ListQueues",
            "Content-Type": "application/x-amz-json-1.0",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(request, timeout=10)
    assert exc.value.code == 403
    assert exc.value.headers["x-amzn-query-error"].startswith("MissingAuthenticationToken;")


def test_a_signed_query_protocol_request_passes(guarded: ThreadedBroker) -> None:
    body = urllib.parse.urlencode({"Action": "ListQueues", "Version": "2012-11-05"})
    request = AWSRequest(
        method="POST",
        url=guarded.sqs_url + "/?probe=1",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials("AKIDMINIBROKER", KEYS["AKIDMINIBROKER"]), "sqs", "us-east-1").add_auth(
        request
    )
    prepared = request.prepare()
    sent = urllib.request.Request(
        prepared.url, data=body.encode(), headers=dict(prepared.headers), method="POST"
    )
    with urllib.request.urlopen(sent, timeout=10) as response:
        assert response.status == 200
        assert b"<ListQueuesResponse" in response.read()


def test_keys_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# ci keys\nAKID1:secret:with:colons\n\nAKID2 : other  # trailing\n")
    assert load_keys_file(str(path)) == {"AKID1": "secret:with:colons", "AKID2": "other"}
    path.write_text("no-secret-here\n")
    with pytest.raises(ValueError, match=":1:"):
        load_keys_file(str(path))
