"""The JSON API through httpx's blocking client, against a threaded broker:
what sync code under test does. Also tokens, permissions and TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from minibroker.access.permissions import Permissions
from minibroker.config import ServerConfig
from minibroker.testing import run_in_thread


def test_put_fetch_ack_with_the_blocking_client() -> None:
    with run_in_thread(http_port=0) as broker, httpx.Client(base_url=broker.http_url) as http:
        http.put("/v1/queues/jobs").raise_for_status()
        assert http.post("/v1/queues/jobs/messages", json={"body": "b"}).json() == {"count": 1}
        [d] = http.post("/v1/queues/jobs/fetch", json={"wait": 1}).json()["deliveries"]
        acked = http.post("/v1/queues/jobs/ack", json={"deliveries": [d["delivery_id"]]})
        assert acked.json() == {"count": 1}


def test_a_byte_limit_declared_over_http() -> None:
    with run_in_thread(http_port=0) as broker, httpx.Client(base_url=broker.http_url) as http:
        http.put("/v1/queues/small", json={"max_length_bytes": 3}).raise_for_status()
        assert http.post("/v1/queues/small/messages", json={"body": "abc"}).json() == {"count": 1}
        full = http.post("/v1/queues/small/messages", json={"body": "d"})
        assert full.status_code == 429 and full.json()["error"]["code"] == "overflow"
        stats = http.get("/v1/queues/small").json()
        assert stats["options"]["max_length_bytes"] == 3


def test_tokens_and_permissions_are_the_native_ports() -> None:
    permissions = Permissions.parse("allow reader read queue:jobs\nallow admin all #\n")
    config = ServerConfig(
        port=0,
        http_port=0,
        tokens={"t-read": "reader", "t-admin": "admin"},
        permissions=permissions,
    )
    with run_in_thread(config) as broker:
        url = broker.http_url
        anonymous = httpx.get(f"{url}/v1/queues")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert anonymous.json()["error"]["code"] == "unauthorized"
        wrong = httpx.get(f"{url}/v1/queues", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        with httpx.Client(base_url=url, headers={"authorization": "Bearer t-admin"}) as admin:
            admin.put("/v1/queues/jobs").raise_for_status()
            admin.post("/v1/queues/jobs/messages", json={"body": "x"}).raise_for_status()
        with httpx.Client(base_url=url, headers={"authorization": "Bearer t-read"}) as reader:
            refused = reader.post("/v1/queues/jobs/messages", json={"body": "y"})
            assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")
            assert reader.delete("/v1/queues/jobs").status_code == 403
            fetched = reader.post("/v1/queues/jobs/fetch", json={})
            assert [d["body"] for d in fetched.json()["deliveries"]] == ["x"]
            assert reader.get("/metrics").status_code == 200


def test_https_when_the_server_has_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    chain, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with run_in_thread(ServerConfig(port=0, http_port=0, tls_cert=chain, tls_key=key)) as broker:
        assert broker.http_url.startswith("https://")
        with httpx.Client(base_url=broker.http_url, verify=context) as http:
            assert http.put("/v1/queues/jobs").json()["created"] is True
        plain = broker.http_url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(plain + "/v1/queues", timeout=5)
