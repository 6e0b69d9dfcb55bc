"""A Kafka client that pipelines parked Fetches and stops reading cannot make
the broker hold a copy of the records per Fetch (docs/kafka.md).

One connection may have up to ``MAX_IN_FLIGHT`` requests waiting; a client
following the protocol keeps one Fetch in flight per broker, but a hostile
one may park a thousand, and one append wakes them all. Before the bound each
read up to ``fetch.max.bytes`` of records into its answer. Now a woken Fetch
on a connection holding more than ``MAX_ANSWER_BACKLOG`` bytes of answers
(sent or waiting their turn behind an earlier request) answers as at
``max_wait_ms``: no records, and the client fetches the same offset again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from kio.index import load_response_schema
from kio.serial import entity_reader

from minibroker.kafka import session as kafka_session
from minibroker.kafka import wire
from minibroker.kafka.session import KafkaSession

from .wire_helpers import call, encode_request, frame, open_session, request_class, responses

RECORD = 100 * 1024
BACKLOG = 256 * 1024
PARKED = 20
VERSION = 4


def _fetch_values(topic: str, wait: timedelta) -> dict[str, Any]:
    partition = wire.build(
        request_class(1, VERSION, "FetchPartition"),
        partition=0,
        fetch_offset=0,
        partition_max_bytes=1024 * 1024,
    )
    fetch_topic = wire.build(
        request_class(1, VERSION, "FetchTopic"), topic=topic, partitions=(partition,)
    )
    return {
        "replica_id": -1,
        "max_wait": wait,
        "min_bytes": 1,
        "max_bytes": 50 * 1024 * 1024,
        "isolation_level": 0,
        "topics": (fetch_topic,),
    }


def _send_fetch(session: KafkaSession, topic: str, correlation_id: int) -> None:
    body = encode_request(1, VERSION, **_fetch_values(topic, timedelta(seconds=30)))
    session.receive_data(frame(1, VERSION, body, correlation_id))


def _decode(body: bytes) -> Any:
    response, _ = entity_reader(load_response_schema(1, VERSION))(body, 0)
    return response


def _records(response: Any) -> bytes:
    [topic] = response.responses
    [partition] = topic.partitions
    assert partition.error_code == 0 and partition.high_watermark == 1
    return bytes(partition.records or b"")


@pytest.mark.parametrize("behind_another", [False, True])
def test_parked_fetches_of_a_client_that_stopped_reading_answer_empty_past_the_backlog(
    monkeypatch: pytest.MonkeyPatch, behind_another: bool
) -> None:
    """``behind_another``: a Fetch on another topic, parked first, holds every
    answer in its slot (answers go in request order): they count too."""
    monkeypatch.setattr(kafka_session, "MAX_ANSWER_BACKLOG", BACKLOG, raising=False)
    session = open_session()
    topics = tuple(
        wire.build(request_class(3, 0, "MetadataRequestTopic"), name=name) for name in ("t", "u")
    )
    call(session, 3, 0, topics=topics)
    if behind_another:
        _send_fetch(session, "u", 1)
    for correlation_id in range(10, 10 + PARKED):
        _send_fetch(session, "t", correlation_id)
    assert responses(session) == []
    logs = session.ns.core.logs
    assert len(logs.get("t-0").waiters) == PARKED
    logs.append("t-0", [b"r" * RECORD], 0.0)
    if behind_another:
        logs.append("u-0", [b"u"], 0.0)
    sent = session.data_to_send()
    # What the broker held: the backlog, the answer that passed it, and small
    # answers without records; not a copy per parked Fetch.
    assert len(sent) <= BACKLOG + RECORD + PARKED * 200 + 1000
    answers = _split(sent)
    if behind_another:
        assert answers.pop(0)[0] == 1
    assert [cid for cid, _ in answers] == list(range(10, 10 + PARKED))
    records = [_records(_decode(body)) for _, body in answers]
    full = sum(1 for r in records if r)
    assert 0 < full < PARKED
    assert all(records[:full]) and not any(records[full:])
    # Fetching the same offset again gets the record.
    response = call(session, 1, VERSION, correlation_id=99, **_fetch_values("t", timedelta(0)))
    assert _records(response) == records[0]
    assert b"r" * RECORD in records[0]


def test_a_parked_fetch_of_a_client_that_reads_gets_its_records() -> None:
    session = open_session()
    call(session, 3, 0, topics=(wire.build(request_class(3, 0, "MetadataRequestTopic"), name="t"),))
    _send_fetch(session, "t", 7)
    session.ns.core.logs.append("t-0", [b"r" * RECORD], 0.0)
    [(correlation_id, body)] = responses(session)
    assert correlation_id == 7
    assert b"r" * RECORD in _records(_decode(body))


def _split(data: bytes) -> list[tuple[int, bytes]]:
    found = []
    pos = 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big", signed=True)
        correlation_id = int.from_bytes(data[pos + 4 : pos + 8], "big", signed=True)
        found.append((correlation_id, data[pos + 8 : pos + 4 + size]))
        pos += 4 + size
    return found
