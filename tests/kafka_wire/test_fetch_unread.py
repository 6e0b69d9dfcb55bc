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
import trio
import trio.testing
from kio.index import load_response_schema
from kio.serial import entity_reader

from minibroker.config import ServerConfig
from minibroker.kafka import session as kafka_session
from minibroker.kafka import wire
from minibroker.kafka.session import KafkaSession
from minibroker.server.app import BrokerServer

from .wire_helpers import (
    answer_ids,
    call,
    encode_request,
    frame,
    open_session,
    request_class,
    responses,
)

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


def test_answers_waiting_behind_a_parked_fetch_stop_the_reading_at_the_mark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fetches answered at once but queued behind a parked one (answers go in
    request order) were never counted against the high-water mark: 999 of
    them held 999 copies of a 1 MiB record. Now the session blocks its input
    at the mark and unblocks once the parked Fetch is answered."""
    mark = 256 * 1024
    monkeypatch.setattr(kafka_session, "OUTBOUND_HIGH_WATER", mark)
    session = open_session()
    topics = tuple(
        wire.build(request_class(3, 0, "MetadataRequestTopic"), name=name) for name in ("t", "u")
    )
    call(session, 3, 0, topics=topics)
    logs = session.ns.core.logs
    logs.append("t-0", [b"r" * RECORD], 0.0)
    parked = frame(
        1, VERSION, encode_request(1, VERSION, **_fetch_values("u", timedelta(seconds=30))), 1
    )
    now = encode_request(1, VERSION, **_fetch_values("t", timedelta(0)))
    session.receive_data(
        parked + b"".join(frame(1, VERSION, now, cid) for cid in range(10, 10 + PARKED))
    )
    assert session.input_blocked and session.input_paused
    assert session.buffered_input_bytes > 0  # the rest is not even decoded
    assert session.data_to_send() == b""  # everything waits behind the parked Fetch
    logs.append("u-0", [b"u"], 0.0)
    assert not session.input_blocked
    first = _split(session.data_to_send())
    assert first[0][0] == 1
    answered = [cid for cid, _ in first[1:]]
    # Dispatching stopped at the mark: what was held is the mark and one answer.
    assert 0 < len(answered) * RECORD <= mark + RECORD + len(answered) * 200
    while session.input_paused:  # as the shell does once it has sent the answers
        session.resume_input()
        answered += [cid for cid, _ in _split(session.data_to_send())]
    assert answered == list(range(10, 10 + PARKED))


async def test_a_blocked_kafka_connection_is_read_again_once_the_parked_fetchanswer_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the server: the connection stops reading behind a parked Fetch
    (no busy loop: every task blocks), and reads on once it is answered."""
    monkeypatch.setattr(kafka_session, "OUTBOUND_HIGH_WATER", 256 * 1024)
    server = BrokerServer(ServerConfig(port=0, kafka_port=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", server.front_end_ports["kafka"])
            topics = tuple(
                wire.build(request_class(3, 0, "MetadataRequestTopic"), name=name)
                for name in ("t", "u")
            )
            await stream.send_all(frame(3, 0, encode_request(3, 0, topics=topics), 0))
            assert await answer_ids(stream, 1) == [0]
            logs = server.broker.namespace("t").logs
            logs.append("t-0", [b"r" * RECORD], trio.current_time())
            wait = timedelta(seconds=30)
            parked = encode_request(1, VERSION, **_fetch_values("u", wait))
            now = encode_request(1, VERSION, **_fetch_values("t", timedelta(0)))
            await stream.send_all(
                frame(1, VERSION, parked, 1)
                + b"".join(frame(1, VERSION, now, cid) for cid in range(10, 10 + PARKED))
            )
            await trio.testing.wait_all_tasks_blocked()
            assert logs.statistics("u-0").waiting_reads == 1
            logs.append("u-0", [b"u"], trio.current_time())
            with trio.fail_after(30):  # not unblocked: the answers never come
                assert await answer_ids(stream, PARKED + 1) == [1, *range(10, 10 + PARKED)]
            await stream.aclose()
        finally:
            server.shutdown()
