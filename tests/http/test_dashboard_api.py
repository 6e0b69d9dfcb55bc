"""The dashboard's data: /v1/overview, the /events stream and its bound."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing

import httpx
import pytest
import trio

from minibroker import open_broker
from minibroker.embedded import EmbeddedBroker
from minibroker.server import http_dashboard


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with open_broker(http=True) as broker:
        yield broker


async def test_overview_shows_queues_logs_subscriptions_and_connections(
    broker: EmbeddedBroker,
) -> None:
    async with broker.connect(client_name="worker-7", namespace="shop") as mb:
        await mb.declare_queue("jobs")
        await mb.put("jobs", b"x")
        await mb.create_log("events")
        await mb.append("events", b"e")
        await mb.commit("events", "projector", 0)
        async with (
            mb.subscribe("orders.*", group="billing"),
            httpx.AsyncClient(base_url=broker.http_url) as http,
        ):
            snapshot = (await http.get("/v1/overview")).json()
    [shop] = snapshot["namespaces"]
    assert shop["namespace"] == "shop"
    [queue] = shop["queues"]
    assert (queue["queue"], queue["ready"]) == ("jobs", 1)
    [log] = shop["logs"]
    assert log["groups"]["projector"]["lag"] == 1
    [sub] = shop["subscriptions"]
    assert (sub["pattern"], sub["group"]) == ("orders.*", "billing")
    [connection] = snapshot["connections"]
    assert (connection["client"], connection["protocol"]) == ("worker-7", "msgpack")


async def _events(stream: httpx.Response) -> AsyncIterator[dict]:
    """The stream's events, parsed."""
    buffer = ""
    async for chunk in stream.aiter_text():
        buffer += chunk
        while "\n\n" in buffer:
            event, buffer = buffer.split("\n\n", 1)
            assert event.startswith("data: ")
            yield json.loads(event[len("data: ") :])


async def _first_event(stream: httpx.Response) -> dict:
    async with aclosing(_events(stream)) as events:
        async for event in events:
            return event
    raise AssertionError("the stream ended before its first event")


async def test_events_stream_snapshots_and_sees_changes(broker: EmbeddedBroker) -> None:
    async with (
        httpx.AsyncClient(base_url=broker.http_url, timeout=30) as http,
        http.stream("GET", "/events") as stream,
    ):
        assert stream.headers["content-type"] == "text/event-stream"
        events = _events(stream)
        assert (await anext(events))["namespaces"] == []
        async with broker.connect() as mb:
            await mb.declare_queue("jobs")
            await mb.put("jobs", b"x")
        async for event in events:  # the next snapshots, one per interval
            if event["namespaces"]:
                break
        [queue] = event["namespaces"][0]["queues"]
        assert queue["ready"] == 1
        await events.aclose()


async def test_event_streams_are_capped_and_released(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_dashboard, "MAX_EVENT_STREAMS", 3)
    dashboard = broker.server.http_face.dashboard
    limits = httpx.Limits(max_connections=None)
    async with (
        httpx.AsyncClient(base_url=broker.http_url, timeout=30, limits=limits) as http,
        trio.open_nursery() as nursery,
    ):
        opened = trio.Semaphore(0)

        async def watch() -> None:
            async with http.stream("GET", "/events") as stream:
                released = False
                async for _ in _events(stream):  # keep reading: closing would end it
                    if not released:
                        opened.release()
                        released = True

        for _ in range(3):
            nursery.start_soon(watch)
        for _ in range(3):
            await opened.acquire()
        assert dashboard.streams == 3
        for _ in range(50):
            refused = await http.get("/events")
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "limit_exceeded"
        async with broker.connect() as mb:  # the native port does not notice
            await mb.declare_queue("still-fine")
        nursery.cancel_scope.cancel()
    async with httpx.AsyncClient(base_url=broker.http_url) as http:
        await http.get("/v1/overview")  # a round trip: the server saw the closes
    while dashboard.streams:
        await trio.sleep(0.001)
    assert dashboard.streams == 0


async def test_the_page_and_its_files_are_served_without_third_parties(
    broker: EmbeddedBroker,
) -> None:
    async with httpx.AsyncClient(base_url=broker.http_url) as http:
        page = await http.get("/")
        assert page.headers["content-type"].startswith("text/html")
        for path in ("/dashboard.js", "/dashboard.css"):
            assert (await http.get(path)).status_code == 200
    assert "http://" not in page.text and "https://" not in page.text
