"""The dashboard's data: /v1/overview, the /events stream and its bound."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator
from contextlib import aclosing
from functools import partial

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
    native, own = snapshot["connections"]  # the native client's, then this request's
    assert (native["client"], native["protocol"]) == ("worker-7", "msgpack")
    assert own["protocol"] == "http"


async def test_connections_show_bytes_in_and_out_for_every_protocol() -> None:
    async with (
        open_broker(http=True, listen=True, amqp=True, kafka=True) as broker,
        broker.connect(client_name="counted") as mb,
        httpx.AsyncClient(base_url=broker.http_url) as http,
    ):
        server = broker.server
        amqp = await trio.open_tcp_stream("127.0.0.1", server.front_end_ports["amqp"])
        await amqp.send_all(b"AMQP\x00\x00\x09\x01")
        start = await amqp.receive_some(65536)  # connection.start
        kafka = await trio.open_tcp_stream("127.0.0.1", server.front_end_ports["kafka"])
        api_versions = struct.pack(">ihhih", 10, 18, 0, 7, -1)  # v0, correlation 7, no client id
        await kafka.send_all(api_versions)
        [size] = struct.unpack(">i", await kafka.receive_some(4))
        await mb.declare_queue("jobs")
        await mb.put("jobs", b"x" * 10_000)
        snapshot = (await http.get("/v1/overview")).json()
        by_protocol = {c["protocol"]: c for c in snapshot["connections"]}
        assert set(by_protocol) == {"msgpack", "amqp", "kafka", "http"}
        assert by_protocol["msgpack"]["client"] == "counted"
        assert by_protocol["msgpack"]["bytes_in"] > 10_000
        assert by_protocol["msgpack"]["bytes_out"] > 0
        assert (by_protocol["amqp"]["bytes_in"], by_protocol["amqp"]["bytes_out"]) == (
            8,
            len(start),
        )
        assert by_protocol["kafka"]["bytes_in"] == len(api_versions)
        assert by_protocol["kafka"]["bytes_out"] == 4 + size
        assert by_protocol["http"]["bytes_in"] > 0  # this very request
        await amqp.aclose()
        await kafka.aclose()


async def test_overview_lists_responders_and_pending_requests_per_subject(
    broker: EmbeddedBroker,
) -> None:
    async with (
        broker.connect() as mb,
        mb.respond("svc.echo", group="workers") as requests,
        mb.respond("svc.idle"),
        httpx.AsyncClient(base_url=broker.http_url, timeout=30) as http,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(
            partial(http.post, "/v1/requests/svc.echo", json={"body": "hi", "timeout": 30})
        )
        held = await anext(aiter(requests))
        rpc = (await http.get("/v1/overview")).json()["namespaces"][0]["rpc"]
        assert (rpc["responders"], rpc["subjects"], rpc["pending"]) == (2, 2, 1)
        echo, idle = rpc["by_subject"]
        assert (echo["subject"], echo["responders"], echo["groups"]) == ("svc.echo", 1, ["workers"])
        assert (echo["queued"], echo["held"]) == (0, 1)
        assert echo["oldest_seconds"] >= 0
        assert (idle["subject"], idle["responders"], idle["queued"], idle["held"]) == (
            "svc.idle",
            1,
            0,
            0,
        )
        await held.reply(b"done")


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
