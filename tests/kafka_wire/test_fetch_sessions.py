"""Fetch sessions (KIP-227): minibroker answers every Fetch with session id 0, and
the three clients keep sending full fetches and miss nothing.

kafka-python asks for a session on every fetch (epoch 0) and is told "none"
(id 0); librdkafka and aiokafka fetch without one (epoch -1). An incremental
fetch, which only a client that believed it had a session would send, gets
FETCH_SESSION_ID_NOT_FOUND.
"""

from __future__ import annotations

from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from kafka_wire.kafka_clients import CLIENTS, KafkaClient, Member, wait_for
from kafka_wire.test_session import _request
from kafka_wire.wire_helpers import call, open_session, request_class
from minibroker.kafka import handlers, wire
from minibroker.kafka.groups import JoinResult
from minibroker.kafka.session import KafkaSession, Slot
from minibroker.testing import KafkaBootstrap

pytestmark = pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning")


@pytest.mark.parametrize("client", CLIENTS, ids=lambda client: client.name)
def test_every_fetch_is_full_and_every_record_arrives(
    client: KafkaClient,
    minibroker_kafka_bootstrap: KafkaBootstrap,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kafka = minibroker_kafka_bootstrap
    fetches: list[tuple[int, int, int]] = []
    served = handlers.HANDLERS[1]

    def spy(session: KafkaSession, slot: Slot, request: Any) -> Any:
        if session.client_name.startswith(f"{kafka.namespace}/"):
            fetches.append((request.session_id, request.session_epoch, slot.version))
        return served(session, slot, request)

    monkeypatch.setitem(handlers.HANDLERS, 1, spy)
    client.create_topic(kafka, "jobs", 3)
    keys = [b"key-%d" % i for i in range(6)]
    first, second = [b"a-%d" % i for i in range(6)], [b"b-%d" % i for i in range(6)]
    client.produce(kafka, "jobs", first, keys=keys)
    member = Member(client.name, kafka, "jobs", "fetchers", None)
    wait_for(lambda: len(member.seen) >= 6, "the first records")
    client.produce(kafka, "jobs", second, keys=keys)
    wait_for(lambda: len(member.seen) >= 12, "the later records")
    member.stop()
    assert sorted(member.seen) == sorted(first + second)
    assert len(fetches) >= 2
    assert {(session_id, epoch) for session_id, epoch, _ in fetches} <= {(0, 0), (0, -1)}
    assert {version for _, _, version in fetches} == {11}


def _fetch(session_id: int, epoch: int) -> Any:
    session = open_session()
    call(session, 3, 0, topics=(wire.build(request_class(3, 0, "MetadataRequestTopic"), name="t"),))
    values = _request(1, 11, JoinResult(0))
    values.update(session_id=session_id, session_epoch=epoch)
    return call(session, 1, 11, correlation_id=2, **values)


def test_full_fetches_are_answered_without_a_session() -> None:
    for session_id, epoch in [(0, 0), (0, -1), (7, -1), (7, 0)]:
        response = _fetch(session_id, epoch)
        assert (response.error_code, response.session_id) == (ErrorCode.none, 0)
        assert [topic.topic for topic in response.responses] == ["t"]


def test_an_incremental_fetch_is_fetch_session_id_not_found() -> None:
    for session_id, epoch in [(7, 1), (0, 3)]:
        response = _fetch(session_id, epoch)
        assert response.error_code == ErrorCode.fetch_session_id_not_found
        assert (response.session_id, response.responses) == (0, ())
