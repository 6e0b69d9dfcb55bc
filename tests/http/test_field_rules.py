"""Every rule the OpenAPI document states is checked before the operation runs,
whatever state the queue or log is in, and nothing the document allows is
refused as a bad request (docs/http.md, the API)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import jsonschema
import pytest

from minibroker import open_broker
from minibroker.core.config import Limits
from minibroker.http.fields import field_schema
from minibroker.http.operations import OPERATIONS


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with open_broker(http=True) as broker, httpx.AsyncClient(base_url=broker.http_url) as c:
        yield c


async def test_a_wait_past_the_limit_is_refused_even_when_messages_are_ready(
    http: httpx.AsyncClient,
) -> None:
    """It used to be checked only when the fetch had to wait: the same request
    was 200 on a queue with messages and 400 on an empty one."""
    await http.put("/v1/queues/q")
    await http.post("/v1/queues/q/messages", json={"body": "x"})
    answer = await http.post("/v1/queues/q/fetch", json={"wait": 10**7})
    assert answer.status_code == 400, answer.text
    assert "wait" in answer.json()["error"]["message"]
    answer = await http.post("/v1/queues/q/fetch", json={"visibility_timeout": 0.0001})
    assert answer.status_code == 400, answer.text
    assert (await http.post("/v1/queues/q/fetch", json={"wait": 0})).status_code == 200


async def test_a_queue_that_dead_letters_into_itself_is_a_conflict(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.put("/v1/queues/q", json={"dead_letter_queue": "q"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "conflict")
    assert (await http.get("/v1/queues/q")).status_code == 404


async def test_a_batch_and_one_records_fields_together_are_refused(
    http: httpx.AsyncClient,
) -> None:
    """The single record's body was silently dropped."""
    await http.put("/v1/logs/l")
    answer = await http.post(
        "/v1/logs/l/records", json={"records": [{"body": "a"}], "body": "dropped"}
    )
    assert answer.status_code == 400, answer.text
    assert (await http.get("/v1/logs/l")).json()["records"] == 0


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/queues", {"namespace": "é"}),  # ASCII only, as the document says
        ("/v1/logs/l/records", {"wait": " 1"}),  # float() took these
        ("/v1/logs/l/records", {"wait": "1_0"}),
        ("/v1/logs/l/records", {"start": "0x1"}),
        ("/v1/logs/l/records", {"start": -1}),
    ],
)
async def test_query_values_the_document_refuses_are_refused(
    http: httpx.AsyncClient, path: str, params: dict[str, object]
) -> None:
    await http.put("/v1/logs/l")
    answer = await http.get(path, params=params)
    assert answer.status_code == 400, answer.text


async def test_padded_base64_only(http: httpx.AsyncClient) -> None:
    await http.put("/v1/queues/q")
    for encoded in ("QUJD=", "QQ", "QQ==QQ=="):
        answer = await http.post("/v1/queues/q/messages", json={"body_base64": encoded})
        assert answer.status_code == 400, (encoded, answer.text)
    answer = await http.post("/v1/queues/q/messages", json={"body_base64": "QUI="})
    assert answer.status_code == 200, answer.text


async def test_an_offset_past_the_end_is_a_conflict(http: httpx.AsyncClient) -> None:
    """409, not 416: schema-driven tools (schemathesis's stateful phase) count a
    416 as a valid request refused; the offset conflicts with the log as it is."""
    await http.put("/v1/logs/l")
    read = await http.get("/v1/logs/l/records", params={"start": 5})
    commit = await http.post("/v1/logs/l/commits", json={"group": "g", "offset": 5})
    for answer in (read, commit):
        assert (answer.status_code, answer.json()["error"]["code"]) == (409, "offset_out_of_range")


def test_every_optional_body_field_allows_null_in_the_document() -> None:
    """The server takes an optional field sent as null as not sent; the document
    must say so for every field, choices included (schemathesis sent
    ``"overflow": null`` to a queue declaration, the server rightly answered
    200, and the document's ``enum`` said it should have been refused)."""
    limits = Limits()
    checked = 0
    for op in OPERATIONS:
        for f in op.fields:
            if f.required:
                continue
            jsonschema.validate(None, field_schema(f, limits))
            checked += 1
    assert checked > 20
