"""A Fetch answer is capped by the broker, whatever ``max_bytes`` the client asks for."""

from __future__ import annotations

from datetime import timedelta

import pytest

from minibroker.kafka import wire
from minibroker.kafka.handlers import fetch

from .wire_helpers import call, open_session, request_class


def _fetch_records(max_bytes: int) -> bytes:
    session = open_session()
    call(session, 3, 0, topics=(wire.build(request_class(3, 0, "MetadataRequestTopic"), name="t"),))
    logs = session.broker.namespace("t").logs
    for _ in range(20):
        logs.append("t-0", [b"x" * 1000], 0.0)
    partition = wire.build(
        request_class(1, 4, "FetchPartition"),
        partition=0,
        fetch_offset=0,
        partition_max_bytes=max_bytes,
    )
    topic = wire.build(request_class(1, 4, "FetchTopic"), topic="t", partitions=(partition,))
    response = call(
        session,
        1,
        4,
        replica_id=-1,
        max_wait=timedelta(0),
        min_bytes=1,
        max_bytes=max_bytes,
        isolation_level=0,
        topics=(topic,),
    )
    records = response.responses[0].partitions[0].records
    return bytes(records)


def test_a_fetch_of_2_gib_gets_at_most_the_brokers_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client's max_bytes of 2^31-1 made the broker read every record up to
    that much into one answer (200 MB from outside, RSS up as much); Kafka's
    broker caps it (fetch.max.bytes). Here the cap is made small."""
    everything = _fetch_records(2**31 - 1)
    assert len(everything) > 20_000
    monkeypatch.setattr(fetch, "FETCH_MAX_BYTES", 5000, raising=False)
    capped = _fetch_records(2**31 - 1)
    assert 0 < len(capped) <= 5000 + 1100
    assert everything.startswith(capped)
