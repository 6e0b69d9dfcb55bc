"""ListGroups and DescribeGroups for a group whose members are gone, over the wire.

Kafka keeps an emptied group's protocol type ("consumer") while its offsets
remain (``GroupMetadata.initNextGeneration`` clears only the protocol name),
so admin clients still see a consumer group: confluent-kafka's
``is_simple_consumer_group`` is False for it. Only a group that never had
members (offsets committed by an ``assign()`` consumer) has protocol type "".
"""

from __future__ import annotations

import struct
from datetime import timedelta
from typing import Any

import pytest

from kafka_wire.wire_helpers import (
    call,
    encode_request,
    frame,
    open_session,
    request_class,
    responses,
)
from minibroker.kafka import wire
from minibroker.kafka.session import KafkaSession


def _produce(session: KafkaSession, topic: str) -> None:
    """One record on ``topic``-0 (Produce v3 auto-creates the topic)."""
    from kafka_wire.test_records import kio_batch

    batch = kio_batch([(None, b"x", {})])
    name = struct.pack(">h", len(topic)) + topic.encode()
    body = struct.pack(">hhi", -1, -1, 1000) + struct.pack(">i", 1) + name
    body += struct.pack(">iii", 1, 0, len(batch)) + batch
    session.receive_data(frame(0, 3, body, correlation_id=1))
    responses(session)


def _join(session: KafkaSession, group: str, protocol_type: str = "consumer") -> Any:
    protocol = request_class(11, 1, "JoinGroupRequestProtocol")
    body = encode_request(
        11,
        1,
        group_id=group,
        session_timeout=timedelta(seconds=10),
        rebalance_timeout=timedelta(seconds=10),
        member_id="",
        protocol_type=protocol_type,
        protocols=(wire.build(protocol, name="range", metadata=b"m"),),
    )
    session.receive_data(frame(11, 1, body, correlation_id=2))
    [(_, answer)] = responses(session)
    return wire.decode_response(11, 1, answer)


def _sync(session: KafkaSession, group: str, generation: int, member: str) -> None:
    assignment = request_class(14, 1, "SyncGroupRequestAssignment")
    answer = call(
        session,
        14,
        1,
        correlation_id=8,
        group_id=group,
        generation_id=generation,
        member_id=member,
        assignments=(wire.build(assignment, member_id=member, assignment=b"a"),),
    )
    assert answer.error_code == 0


def _commit(session: KafkaSession, group: str, topic: str, generation: int, member: str) -> None:
    topic_cls = request_class(8, 2, "OffsetCommitRequestTopic")
    partition_cls = request_class(8, 2, "OffsetCommitRequestPartition")
    answer = call(
        session,
        8,
        2,
        correlation_id=3,
        group_id=group,
        generation_id_or_member_epoch=generation,
        member_id=member,
        retention_time_ms=-1,
        topics=(
            wire.build(
                topic_cls,
                name=topic,
                partitions=(
                    wire.build(
                        partition_cls,
                        partition_index=0,
                        committed_offset=1,
                        committed_metadata="",
                    ),
                ),
            ),
        ),
    )
    assert answer.topics[0].partitions[0].error_code == 0


def _leave(session: KafkaSession, group: str, member: str) -> None:
    answer = call(session, 13, 1, correlation_id=4, group_id=group, member_id=member)
    assert answer.error_code == 0


def _listed(session: KafkaSession) -> dict[str, str]:
    answer = call(session, 16, 2, correlation_id=5)
    return {group.group_id: group.protocol_type for group in answer.groups}


def _described(session: KafkaSession, group: str) -> tuple[str, str, str]:
    answer = call(session, 15, 2, correlation_id=6, groups=(group,))
    [found] = answer.groups
    return found.group_state, found.protocol_type, found.protocol_data


def _emptied_group(session: KafkaSession, group: str) -> None:
    """``group`` had a member, which committed and left."""
    joined = _join(session, group)
    _sync(session, group, joined.generation_id, joined.member_id)
    _commit(session, group, "t", joined.generation_id, joined.member_id)
    _leave(session, group, joined.member_id)


def test_a_group_whose_members_left_keeps_its_protocol_type_while_its_offsets_remain() -> None:
    session = open_session()
    _produce(session, "t")
    _emptied_group(session, "left")
    _commit(session, "simple", "t", -1, "")  # an assign() consumer: never had members
    assert _listed(session) == {"left": "consumer", "simple": ""}
    assert _described(session, "left") == ("Empty", "consumer", "")
    assert _described(session, "simple") == ("Empty", "", "")


def test_a_deleted_group_loses_its_protocol_type_and_a_rejoin_takes_the_new_one() -> None:
    session = open_session()
    _produce(session, "t")
    _emptied_group(session, "left")
    assert call(session, 42, 0, correlation_id=7, groups_names=("left",)).results[0].error_code == 0
    assert _described(session, "left") == ("Dead", "", "")
    _commit(session, "left", "t", -1, "")
    assert _listed(session) == {"left": ""}
    joined = _join(session, "left", protocol_type="connect")
    _leave(session, "left", joined.member_id)
    assert _described(session, "left") == ("Empty", "connect", "")


def _flexible_call(session: KafkaSession, api_key: int, version: int, **values: Any) -> Any:
    """A request in a flexible version: request header v2 (tagged fields after
    the client id), and the answer's header v1 (tagged fields after the
    correlation id) checked and stripped (``wire_helpers.frame`` and ``call``)."""
    return call(session, api_key, version, correlation_id=9, **values)


def test_list_groups_v4_reports_each_groups_state_and_filters_by_it() -> None:
    """kafka-python's ``list_groups(states_filter=...)`` needs v4 (it raised
    IncompatibleBrokerVersion); confluent-kafka's ``list_consumer_groups``
    reported every group's state UNKNOWN and ignored its states filter."""
    session = open_session()
    _produce(session, "t")
    _emptied_group(session, "left")
    joined = _join(session, "live")
    _sync(session, "live", joined.generation_id, joined.member_id)
    every = _flexible_call(session, 16, 4, states_filter=())
    assert [(g.group_id, g.protocol_type, g.group_state) for g in every.groups] == [
        ("left", "consumer", "Empty"),
        ("live", "consumer", "Stable"),
    ]
    stable = _flexible_call(session, 16, 4, states_filter=("Stable",))
    assert [g.group_id for g in stable.groups] == ["live"]
    assert [g.group_id for g in _flexible_call(session, 16, 3).groups] == ["left", "live"]


def test_a_compact_array_of_absurd_length_is_refused_before_kio_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kio's native reader reserves memory for a compact array's claimed
    length before reading it: a 56-byte ListGroups v4 whose states filter
    claimed 2**32 - 2 entries made it ask for 32 GiB, and the allocation
    failure aborted the whole server. Flexible requests have their entries
    counted on the bytes first, whatever their size."""

    def refuse(api_key: int, version: int) -> Any:
        raise AssertionError("kio's reader must not see this request")

    monkeypatch.setattr(wire, "request_reader", refuse)
    session = open_session()
    states = b"\xff\xff\xff\xff\x0f" + b"\x02a" * 10  # compact array: 2**32 - 2 entries
    session.receive_data(frame(16, 4, states + b"\x00"))
    assert session.closing is not None
    assert "names more than 100000 entries" in session.closing.message
