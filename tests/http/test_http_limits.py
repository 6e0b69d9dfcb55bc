"""Object limits over the JSON API: 429 ``limit_exceeded``, as the OpenAPI document declares.

Creating a queue, log, binding or consumer group past its per-namespace
limit, or naming a new namespace past ``max_namespaces`` (any request may),
is answered 429 with the wire code ``limit_exceeded``, the status
minibroker/http/statuses.py gives it; /openapi.json lists 429 for every
operation, so schema-driven clients and schemathesis expect it.
"""

from __future__ import annotations

import httpx

from minibroker.config import ServerConfig
from minibroker.core.config import Limits
from minibroker.testing import run_in_thread


def _refused(answer: httpx.Response) -> str:
    assert answer.status_code == 429, answer.text
    error = answer.json()["error"]
    assert error["code"] == "limit_exceeded"
    return str(error["message"])


def test_creations_past_the_limits_are_429_limit_exceeded() -> None:
    limits = Limits(
        max_queues_per_namespace=1,
        max_logs_per_namespace=1,
        max_bindings_per_namespace=1,
        max_groups_per_namespace=1,
        max_namespaces=1,
    )
    config = ServerConfig(port=0, http_port=0, limits=limits)
    with run_in_thread(config) as broker, httpx.Client(base_url=broker.http_url) as http:
        http.put("/v1/queues/q").raise_for_status()
        assert "queue limit" in _refused(http.put("/v1/queues/other"))
        http.put("/v1/queues/q/bindings", json={"pattern": "a.*"}).raise_for_status()
        assert "binding limit" in _refused(
            http.put("/v1/queues/q/bindings", json={"pattern": "b.*"})
        )
        http.put("/v1/logs/l").raise_for_status()
        assert "log limit" in _refused(http.put("/v1/logs/other"))
        http.post("/v1/logs/l/commits", json={"group": "g", "offset": 0}).raise_for_status()
        assert "consumer group limit" in _refused(
            http.post("/v1/logs/l/commits", json={"group": "h", "offset": 0})
        )
        assert "namespace limit" in _refused(
            http.get("/v1/queues", params={"namespace": "another"})
        )


def test_the_openapi_document_declares_429_for_every_operation_in_a_namespace() -> None:
    with run_in_thread(http_port=0) as broker:
        document = httpx.get(f"{broker.http_url}/openapi.json").json()
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            names = {parameter["name"] for parameter in operation.get("parameters", [])}
            if "namespace" in names:
                assert "429" in operation["responses"], (method, path)
                checked += 1
    assert checked >= 20
    codes = document["components"]["responses"]["Error429"]["content"]["application/json"]
    assert "limit_exceeded" in codes["schema"]["properties"]["error"]["properties"]["code"]["enum"]
