"""The SQS port speaks HTTPS when the server has a TLS certificate, like the
native port and the HTTP face: boto3 verifies it against the test CA."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from minibroker.config import ServerConfig
from minibroker.testing import run_in_thread

boto3 = pytest.importorskip("boto3")
botocore_exceptions = pytest.importorskip("botocore.exceptions")
botocore_config = pytest.importorskip("botocore.config")


def sqs_client(endpoint: str, verify: str | bool) -> object:
    return boto3.client(
        "sqs",
        config=botocore_config.Config(retries={"total_max_attempts": 1}),
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        verify=verify,
    )


def test_boto3_over_https_with_the_test_ca(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key, ca_file = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    with run_in_thread(ServerConfig(port=0, sqs_port=0, tls_cert=chain, tls_key=key)) as broker:
        assert broker.sqs_url.startswith("https://127.0.0.1:")
        sqs = sqs_client(broker.sqs_url, str(ca_file))
        url = sqs.create_queue(QueueName="secure")["QueueUrl"]  # type: ignore[attr-defined]
        assert url.startswith("https://")  # queue URLs keep the scheme
        sqs.send_message(QueueUrl=url, MessageBody="over tls")  # type: ignore[attr-defined]
        got = sqs.receive_message(QueueUrl=url)["Messages"]  # type: ignore[attr-defined]
        assert [m["Body"] for m in got] == ["over tls"]
        # A client that does not trust the CA refuses the endpoint; plain HTTP gets no answer.
        untrusting = sqs_client(broker.sqs_url, True)
        with pytest.raises(botocore_exceptions.SSLError):
            untrusting.list_queues()  # type: ignore[attr-defined]
        plain = sqs_client(broker.sqs_url.replace("https://", "http://"), False)
        with pytest.raises(botocore_exceptions.ConnectionClosedError):
            plain.list_queues()  # type: ignore[attr-defined]
