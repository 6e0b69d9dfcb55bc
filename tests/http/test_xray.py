"""X-ray: traces of a publish, a put and fetch, and a durable append, through
the HTTP routes; off again leaves the broker untouched (each step's
``path::symbol`` is checked by tests/docs/test_xray_sources.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from minibroker import open_broker
from minibroker.core.xray import SOURCES
from minibroker.embedded import EmbeddedBroker


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    async with open_broker(http=True, data_dir=tmp_path) as broker:
        yield broker


def _steps(trace: dict) -> list[str]:
    return [s["step"] for s in trace["steps"]]


async def test_a_publish_is_traced_from_decode_to_deliveries(broker: EmbeddedBroker) -> None:
    async with httpx.AsyncClient(base_url=broker.http_url) as http, broker.connect() as mb:
        assert (await http.get("/v1/xray")).json() == {"enabled": False, "traces": []}
        on = await http.put("/v1/xray", json={"pattern": "orders.*"})
        assert on.json()["enabled"] is True
        async with mb.subscribe("orders.#"):
            await mb.publish("orders.created", b"o-1")
            await mb.publish("billing.paid", b"not traced")
        [trace] = (await http.get("/v1/xray")).json()["traces"]
    assert (trace["op"], trace["name"]) == ("publish", "orders.created")
    assert _steps(trace) == ["decode", "trie match", "publish", "deliveries"]
    match = trace["steps"][1]["detail"]
    assert match["subscriptions"] == ["orders.#"]
    assert trace["steps"][2]["detail"] == {"subscriptions": 1, "queues": 0}
    [buffered] = trace["steps"][3]["detail"]["buffered"]
    assert buffered["pattern"] == "orders.#"
    assert buffered["bytes"] >= len(b"o-1")  # queued for the subscriber's connection


async def test_put_fetch_and_a_durable_append_wait_for_their_fsync_batch(
    broker: EmbeddedBroker,
) -> None:
    async with httpx.AsyncClient(base_url=broker.http_url) as http, broker.connect() as mb:
        await http.put("/v1/xray", json={"pattern": "#"})
        await mb.declare_queue("jobs")
        await mb.put("jobs", b"x")
        [delivery] = await mb.fetch("jobs")
        await mb.create_log("events")
        await mb.append("events", b"e")
        await http.post("/v1/queues/jobs/messages", json={"body": "via http"})
        traces = (await http.get("/v1/xray")).json()["traces"]
        after = traces[-1]["id"]
        assert (await http.get("/v1/xray", params={"after": after})).json()["traces"] == []
        off = await http.delete("/v1/xray")
        assert off.json()["enabled"] is False
        assert broker.core.xray is None
    by_op = {t["op"]: t for t in traces}
    assert by_op["fetch"]["steps"][1]["detail"]["delivery_ids"] == [delivery.delivery_id]
    assert _steps(by_op["append"]) == ["decode", "append", "fsync batch"]
    assert by_op["append"]["steps"][1]["detail"] == {"offset": 0, "count": 1}
    http_put = traces[-1]
    assert (http_put["op"], http_put["steps"][0]["source"]) == (
        "put",
        SOURCES["decode.http"],
    )


async def test_a_body_that_is_not_json_is_a_415_as_on_every_route(broker: EmbeddedBroker) -> None:
    # The x-ray rendered errors by their code alone, so this was a 400 here
    # where the API answers 415 (docs/http.md, Errors).
    async with httpx.AsyncClient(base_url=broker.http_url) as http:
        answer = await http.put(
            "/v1/xray", content=b"pattern=x", headers={"content-type": "text/plain"}
        )
        assert answer.status_code == 415
        assert answer.json()["error"]["code"] == "bad_request"
        assert (await http.get("/v1/xray")).json() == {"enabled": False, "traces": []}
