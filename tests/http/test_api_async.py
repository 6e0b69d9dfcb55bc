"""The JSON API through httpx's async client, on a broker served in this Trio run."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from functools import partial

import httpx
import jsonschema
import pytest
import trio

from minibroker import open_broker
from minibroker.embedded import EmbeddedBroker


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with open_broker(http=True) as broker:
        yield broker


@pytest.fixture
async def http(broker: EmbeddedBroker) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=broker.http_url) as client:
        yield client


async def test_put_fetch_ack(http: httpx.AsyncClient) -> None:
    assert (await http.put("/v1/queues/jobs")).json() == {"queue": "jobs", "created": True}
    put = await http.post(
        "/v1/queues/jobs/messages",
        json={"messages": [{"body": "one", "headers": {"k": "v"}}, {"body_base64": "/w=="}]},
    )
    assert put.json() == {"count": 2}
    fetched = (await http.post("/v1/queues/jobs/fetch", json={"max_messages": 5})).json()
    first, second = fetched["deliveries"]
    assert (first["body"], first["headers"], first["delivery_count"]) == ("one", {"k": "v"}, 1)
    assert second["body_base64"] == base64.b64encode(b"\xff").decode()
    ids = [first["delivery_id"], second["delivery_id"]]
    assert (await http.post("/v1/queues/jobs/ack", json={"deliveries": ids})).json() == {"count": 2}
    stats = (await http.get("/v1/queues/jobs")).json()
    assert (stats["ready"], stats["in_flight"], stats["acked"]) == (0, 0, 2)


async def test_nack_requeues_with_count_raised(http: httpx.AsyncClient) -> None:
    await http.put("/v1/queues/jobs")
    await http.post("/v1/queues/jobs/messages", json={"body": "x"})
    [d] = (await http.post("/v1/queues/jobs/fetch", json={})).json()["deliveries"]
    nack = await http.post("/v1/queues/jobs/nack", json={"deliveries": [d["delivery_id"]]})
    assert nack.json() == {"count": 1}
    [again] = (await http.post("/v1/queues/jobs/fetch", json={})).json()["deliveries"]
    assert (again["body"], again["delivery_count"]) == ("x", 2)


async def test_long_poll_fetch_is_woken_by_a_native_put(
    broker: EmbeddedBroker, http: httpx.AsyncClient
) -> None:
    await http.put("/v1/queues/jobs")
    answers: list[httpx.Response] = []

    async def fetch() -> None:
        answers.append(await http.post("/v1/queues/jobs/fetch", json={"wait": 30}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch)
        queue = broker.core.namespace().queues.get("jobs")
        await _wait_until(lambda: queue.statistics().waiting_fetches == 1)
        async with broker.connect() as mb:
            await mb.put("jobs", b"late")
    [answer] = answers
    assert [d["body"] for d in answer.json()["deliveries"]] == ["late"]


async def test_a_client_leaving_a_long_poll_withdraws_it(
    broker: EmbeddedBroker, http: httpx.AsyncClient
) -> None:
    """Without the withdrawal, the next message would go to the gone client
    (in flight until its visibility timeout) instead of staying ready."""
    await http.put("/v1/queues/jobs")
    queue = broker.core.namespace().queues.get("jobs")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(http.post, "/v1/queues/jobs/fetch", json={"wait": 30}))
        await _wait_until(lambda: queue.statistics().waiting_fetches == 1)
        nursery.cancel_scope.cancel()  # the client gives up: its connection closes
    face = broker.server.http_face
    await _wait_until(lambda: face.peer.parked == 0)  # the server saw it leave
    assert queue.statistics().waiting_fetches == 0
    await http.post("/v1/queues/jobs/messages", json={"body": "kept"})
    assert (queue.statistics().ready, queue.statistics().in_flight) == (1, 0)


async def test_a_client_leaving_a_long_poll_read_releases_its_waiter(
    broker: EmbeddedBroker, http: httpx.AsyncClient
) -> None:
    """Without the withdrawal, the waiter stayed on the log until its deadline."""
    await http.put("/v1/logs/events")
    log = broker.core.namespace().logs.get("events")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(http.get, "/v1/logs/events/records", params={"wait": 30}))
        await _wait_until(lambda: len(log.waiters) == 1)
        nursery.cancel_scope.cancel()
    face = broker.server.http_face
    await _wait_until(lambda: face.peer.parked == 0)
    assert not log.waiters


async def test_a_client_leaving_a_request_abandons_it(
    broker: EmbeddedBroker, http: httpx.AsyncClient
) -> None:
    """Without the withdrawal, the request stayed pending (and held by its
    responder) until its deadline; a reply after the client left is dropped."""
    rpc = broker.core.namespace().rpc
    async with broker.connect() as mb, mb.respond("svc.slow") as requests:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(http.post, "/v1/requests/svc.slow", json={"body": "hi", "timeout": 30})
            )
            held = await anext(aiter(requests))  # the responder has it
            nursery.cancel_scope.cancel()
        face = broker.server.http_face
        await _wait_until(lambda: face.peer.parked == 0)
        assert rpc.snapshot().pending == 0
        assert rpc.stats.outcomes["abandoned"] == 1
        await held.reply(b"too late")
        await mb.declare_queue("round-trip")  # the reply was handled before this answer
    assert rpc.stats.replies_dropped == 1


async def _wait_until(condition: Callable[[], bool]) -> None:
    """Let the server's tasks run until ``condition`` holds (no event exists for it)."""
    while not condition():
        await trio.sleep(0.001)


async def test_publish_reaches_a_bound_queue(http: httpx.AsyncClient) -> None:
    await http.put("/v1/queues/audit")
    bound = await http.put("/v1/queues/audit/bindings", json={"pattern": "orders.*"})
    assert bound.json() == {"created": True}
    published = await http.post("/v1/topics/orders.created/messages", json={"body": "o-1"})
    assert published.json() == {"subscriptions": 0, "queues": 1}
    [d] = (await http.post("/v1/queues/audit/fetch", json={})).json()["deliveries"]
    assert d["body"] == "o-1"


async def test_append_then_read_from_an_offset(http: httpx.AsyncClient) -> None:
    await http.put("/v1/logs/events")
    first = await http.post(
        "/v1/logs/events/records",
        json={"records": [{"body": "a", "key": "acct-1"}, {"body": "b", "headers": {"h": "1"}}]},
    )
    assert first.json() == {"offset": 0, "count": 2}
    single = await http.post("/v1/logs/events/records", json={"body": "c"})
    assert single.json() == {"offset": 2, "count": 1}
    read = (await http.get("/v1/logs/events/records", params={"start": 1})).json()
    assert [(r["offset"], r["body"]) for r in read["records"]] == [(1, "b"), (2, "c")]
    assert read["records"][0]["headers"] == {"h": "1"}
    assert read["next_offset"] == 3
    everything = (await http.get("/v1/logs/events/records")).json()
    assert everything["records"][0]["key"] == "acct-1"
    commit = await http.post("/v1/logs/events/commits", json={"group": "g", "offset": 2})
    assert commit.status_code == 200
    stats = (await http.get("/v1/logs/events")).json()
    assert stats["next_offset"] == 3 and "g" in stats["groups"]


async def test_one_record_takes_its_key_as_base64_as_a_batch_item_does(
    broker: EmbeddedBroker, http: httpx.AsyncClient
) -> None:
    """docs/http.md: record keys are "key" or "key_base64", at most one. The
    one-record form refused key_base64 as an unknown field (a key that is not
    UTF-8 could be appended only in a batch); the OpenAPI document agrees."""
    await http.put("/v1/logs/events")
    one = await http.post("/v1/logs/events/records", json={"body": "a", "key_base64": "/w=="})
    assert one.json() == {"offset": 0, "count": 1}
    both = await http.post(
        "/v1/logs/events/records", json={"body": "b", "key": "k", "key_base64": "/w=="}
    )
    assert both.status_code == 400
    [record] = (await http.get("/v1/logs/events/records")).json()["records"]
    assert record["key_base64"] == "/w=="
    document = (await http.get("/openapi.json")).json()
    schema = document["paths"]["/v1/logs/{log}/records"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    jsonschema.validate({"body": "a", "key_base64": "/w=="}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"body": "b", "key": "k", "key_base64": "/w=="}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"records": [], "key_base64": "/w=="}, schema)


@pytest.mark.parametrize(
    ("url", "batch"),
    [("/v1/queues/jobs/messages", "messages"), ("/v1/topics/t/messages", "messages")],
)
async def test_empty_headers_beside_a_batch_are_refused_as_the_schema_says(
    http: httpx.AsyncClient, url: str, batch: str
) -> None:
    """One message's fields never go with a batch (docs/http.md, and the
    OpenAPI document's oneOf); headers {} passed, read as no headers."""
    await http.put("/v1/queues/jobs")
    answer = await http.post(url, json={batch: [{"body": "x"}], "headers": {}})
    assert answer.status_code == 400
    assert "not both" in answer.json()["error"]["message"]
    alone = await http.post(url, json={"body": "x", "headers": {}})
    assert alone.status_code == 200


async def test_request_is_answered_by_a_native_responder(
    broker: EmbeddedBroker, http: httpx.AsyncClient
) -> None:
    async with broker.connect() as mb, mb.respond("svc.echo") as requests:

        async def serve_one() -> None:
            async for req in requests:
                await req.reply(b"echo " + req.body, headers={"via": "native"})
                return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_one)
            answer = await http.post("/v1/requests/svc.echo", json={"body": "hi"})
    assert answer.json() == {"body": "echo hi", "headers": {"via": "native"}}


async def test_request_without_responders_is_404_no_responders(http: httpx.AsyncClient) -> None:
    answer = await http.post("/v1/requests/svc.none", json={"body": "hi"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "no_responders"


async def test_request_past_its_deadline_is_504_timeout(
    broker: EmbeddedBroker, http: httpx.AsyncClient
) -> None:
    async with broker.connect() as mb, mb.respond("svc.slow"):
        answer = await http.post("/v1/requests/svc.slow", json={"body": "hi", "timeout": 0.01})
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "timeout"


def _raw_json(content: bytes) -> dict[str, object]:
    """httpx arguments sending ``content`` as it is, labelled as JSON."""
    return {"content": content, "headers": {"content-type": "application/json"}}


async def test_reading_from_the_committed_offset_needs_a_group(http: httpx.AsyncClient) -> None:
    await http.put("/v1/logs/events")
    await http.post("/v1/logs/events/records", json={"body": "a"})
    alone = await http.get("/v1/logs/events/records", params={"start": "committed"})
    assert (alone.status_code, alone.json()["error"]["code"]) == (400, "bad_request")
    assert "needs a group" in alone.json()["error"]["message"]
    grouped = await http.get("/v1/logs/events/records", params={"start": "committed", "group": "g"})
    assert [r["body"] for r in grouped.json()["records"]] == ["a"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("GET", "/v1/queues/missing", {}, 404, "not_found"),
        ("POST", "/v1/queues/missing/fetch", {"json": {}}, 404, "not_found"),
        ("PUT", "/v1/queues/a*b", {}, 400, "invalid_name"),
        ("POST", "/v1/queues/q/fetch", {"json": {"max_messages": "ten"}}, 400, "bad_request"),
        ("POST", "/v1/queues/q/fetch", {"json": {"max_messages": True}}, 400, "bad_request"),
        ("POST", "/v1/queues/q/fetch", {"json": {"bogus": 1}}, 400, "bad_request"),
        ("POST", "/v1/queues/q/fetch", {"json": [1]}, 400, "bad_request"),
        (
            "POST",
            "/v1/queues/q/fetch",
            {"content": b"{nope", "headers": {"content-type": "application/json"}},
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/queues/q/fetch",
            {"content": b'{"wait": NaN}', "headers": {"content-type": "application/json"}},
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/queues/q/fetch",
            {"content": b"{}", "headers": {"content-type": "text/plain"}},
            415,
            "bad_request",
        ),
        ("POST", "/v1/queues/q/messages", {"json": {"body_base64": "!!"}}, 400, "bad_request"),
        ("POST", "/v1/queues/q/messages", _raw_json(rb'{"body": "\ud800"}'), 400, "bad_request"),
        (
            "POST",
            "/v1/queues/q/messages",
            _raw_json(rb'{"body": "x", "headers": {"k\udfff": "v"}}'),
            400,
            "bad_request",
        ),
        ("PUT", "/v1/queues/q", _raw_json(b"[" * 100_000 + b"]" * 100_000), 400, "bad_request"),
        ("PUT", "/v1/queues/q", {"json": {"visibility_timeout": 10**400}}, 400, "bad_request"),
        ("POST", "/v1/queues/q/fetch", {"json": {"wait": -(10**400)}}, 400, "bad_request"),
        ("POST", "/v1/queues/q/fetch", {"json": {"max_messages": 2**64}}, 400, "bad_request"),
        ("GET", "/nowhere", {}, 404, "not_found"),
        ("DELETE", "/v1/queues", {}, 405, "bad_request"),
    ],
)
async def test_bad_input_gets_a_json_error(
    http: httpx.AsyncClient, method: str, path: str, kwargs: dict, status: int, code: str
) -> None:
    await http.put("/v1/queues/q")
    answer = await http.request(method, path, **kwargs)
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/v1/queues/q", {"GET", "HEAD", "PUT", "DELETE"}),
        ("/v1/queues/q/messages", {"GET", "HEAD", "POST"}),
        ("/v1/logs/events", {"GET", "HEAD", "PUT", "DELETE"}),
        ("/v1/logs/events/records", {"GET", "HEAD", "POST"}),
        ("/v1/queues/q/fetch", {"POST"}),
    ],
)
async def test_a_405_allows_every_method_of_the_path(
    http: httpx.AsyncClient, path: str, allowed: set[str]
) -> None:
    # One route per operation made starlette answer with the first route's
    # method alone (`Allow: PUT` for a queue), which RFC 9110 and schemathesis refuse.
    answer = await http.request("PATCH", path)
    assert answer.status_code == 405
    assert {m.strip() for m in answer.headers["allow"].split(",")} == allowed


async def test_every_operation_is_still_reached_by_its_method(http: httpx.AsyncClient) -> None:
    assert (await http.put("/v1/queues/q")).json() == {"queue": "q", "created": True}
    assert (await http.get("/v1/queues/q")).json()["queue"] == "q"
    assert (await http.head("/v1/queues/q")).status_code == 200
    assert (await http.delete("/v1/queues/q")).json() == {"messages": 0}


async def test_an_oversized_body_is_413_and_the_native_port_still_works(
    broker: EmbeddedBroker, http: httpx.AsyncClient
) -> None:
    await http.put("/v1/queues/q")
    limit = broker.server.http_face.max_body_bytes
    answer = await http.post(
        "/v1/queues/q/messages",
        content=b'{"body": "' + b"x" * limit + b'"}',
        headers={"content-type": "application/json"},
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (413, "too_large")
    async with broker.connect() as mb:
        await mb.put("q", b"fine")
    assert (await http.get("/v1/queues/q")).json()["ready"] == 1


async def test_namespaces_keep_names_apart(http: httpx.AsyncClient) -> None:
    await http.put("/v1/queues/jobs", params={"namespace": "a"})
    assert (await http.get("/v1/queues/jobs", params={"namespace": "b"})).status_code == 404
    listed = (await http.get("/v1/queues", params={"namespace": "a"})).json()["queues"]
    assert [q["queue"] for q in listed] == ["jobs"]


async def test_metrics_and_openapi_are_served(http: httpx.AsyncClient) -> None:
    await http.put("/v1/queues/jobs")
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200 and "minibroker_" in metrics.text
    document = (await http.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert "/v1/queues/{queue}/fetch" in document["paths"]


async def test_a_surrogate_pair_escape_is_a_character_not_an_error(http: httpx.AsyncClient) -> None:
    await http.put("/v1/queues/q")
    answer = await http.post("/v1/queues/q/messages", **_raw_json(rb'{"body": "\ud83d\ude00"}'))
    assert answer.status_code == 200
    fetched = await http.post("/v1/queues/q/fetch", json={})
    assert fetched.json()["deliveries"][0]["body"] == "\N{GRINNING FACE}"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("PUT", "/v1/queues/%ff"),
        ("PUT", "/v1/logs/a%fe"),
        ("POST", "/v1/topics/t.%c3/messages"),
        ("GET", "/v1/logs/log/records?group=%ff"),
    ],
)
async def test_percent_escapes_that_are_not_utf8_are_refused(
    http: httpx.AsyncClient, method: str, url: str
) -> None:
    """Decoded leniently, ``%ff`` and ``%fe`` both became U+FFFD: one queue (or
    log, or consumer group) named by different bytes."""
    await http.put("/v1/logs/log")
    answer = await http.request(method, url, json={"body": "x"} if method == "POST" else None)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "bad_request"
    assert "not UTF-8" in answer.json()["error"]["message"]
    listed = (await http.get("/v1/queues")).json()["queues"] + (await http.get("/v1/logs")).json()[
        "logs"
    ]
    assert not any("\ufffd" in str(item) for item in listed)


async def test_a_replacement_character_sent_as_utf8_is_a_name_like_any(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.put("/v1/queues/a%EF%BF%BD")
    assert answer.json() == {"queue": "a\ufffd", "created": True}
