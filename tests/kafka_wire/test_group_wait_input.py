"""Two members of a group on one connection: a JoinGroup waiting for the other
member is not a reason to stop reading that connection (docs/kafka.md).

The session stops reading a connection's requests once more than the
high-water mark of answers waits behind an unanswered request (answers go in
request order), so that a client pipelining requests behind a parked Fetch
cannot make the broker hold their answers. It used to do so whatever that
request was: behind a JoinGroup that waits for another member whose own
JoinGroup is next on the same connection, the connection stalled until the
round's rebalance timeout (minutes), the other member's JoinGroup unread.
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

MARK = 256 * 1024
RECORD = 100 * 1024
#: Fetches answered at once, queued behind the parked JoinGroup: past the mark.
FETCHES = 8
JOIN_VERSION = 2
FETCH_VERSION = 4
LONG = timedelta(minutes=5)


def _join_values(member_id: str) -> dict[str, Any]:
    protocol = wire.build(
        request_class(11, JOIN_VERSION, "JoinGroupRequestProtocol"), name="range", metadata=b"m"
    )
    return {
        "group_id": "g",
        "session_timeout": LONG,
        "rebalance_timeout": LONG,
        "member_id": member_id,
        "protocol_type": "consumer",
        "protocols": (protocol,),
    }


def _join(member_id: str) -> bytes:
    return encode_request(11, JOIN_VERSION, **_join_values(member_id))


def _fetch(topic: str, wait: timedelta) -> bytes:
    partition = wire.build(
        request_class(1, FETCH_VERSION, "FetchPartition"),
        partition=0,
        fetch_offset=0,
        partition_max_bytes=1 << 20,
    )
    fetch_topic = wire.build(
        request_class(1, FETCH_VERSION, "FetchTopic"), topic=topic, partitions=(partition,)
    )
    return encode_request(
        1,
        FETCH_VERSION,
        replica_id=-1,
        max_wait=wait,
        min_bytes=1,
        max_bytes=50 << 20,
        isolation_level=0,
        topics=(fetch_topic,),
    )


def _pipelined(first_member: str) -> bytes:
    """B's JoinGroup (waits for A), Fetches answered at once, then A's rejoin."""
    return (
        frame(11, JOIN_VERSION, _join(""), 20)
        + b"".join(
            frame(1, FETCH_VERSION, _fetch("t", timedelta(0)), 30 + i) for i in range(FETCHES)
        )
        + frame(11, JOIN_VERSION, _join(first_member), 50)
    )


def _join_answer(body: bytes) -> Any:
    response, _ = entity_reader(load_response_schema(11, JOIN_VERSION))(body, 0)
    return response


EXPECTED = [20, *range(30, 30 + FETCHES), 50]


def _first_member(session: KafkaSession) -> str:
    topics = (wire.build(request_class(3, 0, "MetadataRequestTopic"), name="t"),)
    call(session, 3, 0, topics=topics)
    session.ns.core.logs.append("t-0", [b"r" * RECORD], 0.0)
    joined = call(session, 11, JOIN_VERSION, correlation_id=2, **_join_values(""))
    # A lone member: answered at once, generation 1.
    assert joined.error_code == 0 and joined.generation_id == 1
    return str(joined.member_id)


def test_a_join_waiting_for_a_member_later_on_the_same_connection_does_not_stall_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kafka_session, "OUTBOUND_HIGH_WATER", MARK)
    session = open_session()
    first = _first_member(session)
    session.receive_data(_pipelined(first))
    assert not session.input_blocked
    answers = responses(session)
    assert [cid for cid, _ in answers] == EXPECTED
    joins = [_join_answer(answers[0][1]), _join_answer(answers[-1][1])]
    assert [(j.error_code, j.generation_id) for j in joins] == [(0, 2), (0, 2)]


SYNC_VERSION = 2


def _sync(member_id: str, assignments: dict[str, bytes]) -> bytes:
    entity = request_class(14, SYNC_VERSION, "SyncGroupRequestAssignment")
    return encode_request(
        14,
        SYNC_VERSION,
        group_id="g",
        generation_id=2,
        member_id=member_id,
        group_instance_id=None,
        assignments=tuple(
            wire.build(entity, member_id=member, assignment=assignment)
            for member, assignment in assignments.items()
        ),
    )


def test_a_sync_waiting_for_the_leader_later_on_the_same_connection_does_not_stall_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The follower's SyncGroup waits for the leader's, next on the connection."""
    monkeypatch.setattr(kafka_session, "OUTBOUND_HIGH_WATER", MARK)
    session = open_session()
    first = _first_member(session)
    session.receive_data(_pipelined(first))
    answers = responses(session)
    joins = [_join_answer(answers[0][1]), _join_answer(answers[-1][1])]
    leader = joins[0].leader
    assert leader == first
    follower = str(joins[0].member_id)
    session.receive_data(
        frame(14, SYNC_VERSION, _sync(follower, {}), 60)
        + b"".join(
            frame(1, FETCH_VERSION, _fetch("t", timedelta(0)), 70 + i) for i in range(FETCHES)
        )
        + frame(14, SYNC_VERSION, _sync(leader, {leader: b"L", follower: b"F"}), 80)
    )
    assert not session.input_blocked
    answers = responses(session)
    assert [cid for cid, _ in answers] == [60, *range(70, 70 + FETCHES), 80]
    synced = [
        entity_reader(load_response_schema(14, SYNC_VERSION))(body, 0)[0]
        for body in (answers[0][1], answers[-1][1])
    ]
    assert [(a.error_code, a.assignment) for a in synced] == [(0, b"F"), (0, b"L")]


def test_behind_a_parked_fetch_the_reading_still_stops_at_the_mark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The exemption is for a request waiting on peers only: a JoinGroup that
    is not first in line (a parked Fetch is) does not lift the block."""
    monkeypatch.setattr(kafka_session, "OUTBOUND_HIGH_WATER", MARK)
    session = open_session()
    first = _first_member(session)
    topics = (wire.build(request_class(3, 0, "MetadataRequestTopic"), name="u"),)
    call(session, 3, 0, correlation_id=3, topics=topics)
    parked = _fetch("u", timedelta(seconds=30))
    session.receive_data(frame(1, FETCH_VERSION, parked, 10) + _pipelined(first))
    assert session.input_blocked
    assert responses(session) == []
    session.ns.core.logs.append("u-0", [b"u"], 0.0)  # the Fetch is answered
    # The JoinGroup is now first: the block is lifted, and the rest is read.
    assert not session.input_blocked
    answered = [cid for cid, _ in responses(session)]
    while session.input_paused:
        session.resume_input()
        answered += [cid for cid, _ in responses(session)]
    assert answered == [10, *EXPECTED]


async def test_two_members_on_one_socket_join_with_answers_queued_behind_the_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the server, raw frames on one socket."""
    monkeypatch.setattr(kafka_session, "OUTBOUND_HIGH_WATER", MARK)
    server = BrokerServer(ServerConfig(port=0, kafka_port=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", server.front_end_ports["kafka"])
            topics = (wire.build(request_class(3, 0, "MetadataRequestTopic"), name="t"),)
            await stream.send_all(frame(3, 0, encode_request(3, 0, topics=topics), 0))
            assert await answer_ids(stream, 1) == [0]
            server.broker.namespace("t").logs.append("t-0", [b"r" * RECORD], trio.current_time())
            await stream.send_all(frame(11, JOIN_VERSION, _join(""), 2))
            data = b""
            while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
                data += await stream.receive_some()
            first = _join_answer(data[8:]).member_id
            await stream.send_all(_pipelined(first))
            # Before: the rebalance timeout (5 minutes) passed first.
            with trio.fail_after(30):
                assert await answer_ids(stream, len(EXPECTED)) == EXPECTED
            await stream.aclose()
        finally:
            server.shutdown()
