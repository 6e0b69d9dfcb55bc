"""Kafka past ``max_logs_per_namespace`` and ``max_groups_per_namespace``: POLICY_VIOLATION.

Each partition is a log, so a topic's partitions are checked against the
namespace's room for logs before any is made, and refused whole with
POLICY_VIOLATION (44), the code Kafka answers a CreateTopics past its own
partition cap with; auto-creation (Metadata, Produce) and CreatePartitions
likewise. A commit for one consumer group too many gets the same code.
"""

from __future__ import annotations

from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from kafka_wire.wire_helpers import ONE_SECOND, call, frame, open_session, request_class
from minibroker.config import ServerConfig
from minibroker.core.broker import Broker
from minibroker.core.config import CoreConfig, Limits
from minibroker.core.log_options import LogOptions
from minibroker.core.queue_options import QueueOptions
from minibroker.core.timers import Timers
from minibroker.kafka import wire
from minibroker.kafka.groups import (
    GROUP_MAX_SIZE_REACHED,
    INCONSISTENT_GROUP_PROTOCOL,
    UNKNOWN_MEMBER_ID,
    GroupCoordinator,
    JoinResult,
)
from minibroker.kafka.session import KafkaSession
from minibroker.storage.memory import MemoryLog
from minibroker.testing import run_in_thread

POLICY_VIOLATION = ErrorCode(44)
NONE = ErrorCode(0)


def limited(**limits: int) -> Broker:
    return Broker(CoreConfig(limits=Limits(**limits)), memory_log=MemoryLog)


def create_topic(
    session: KafkaSession, name: str, partitions: int, *, validate_only: bool = False
) -> Any:
    topic = wire.build(
        request_class(19, 4, "CreatableTopic"),
        name=name,
        num_partitions=partitions,
        replication_factor=1,
        assignments=(),
        configs=(),
    )
    [result] = call(
        session, 19, 4, topics=(topic,), timeout=ONE_SECOND, validate_only=validate_only
    ).topics
    return result


def test_create_topics_past_the_log_limit_is_a_policy_violation() -> None:
    broker = limited(max_logs_per_namespace=4)
    session = open_session(broker)
    assert create_topic(session, "a", 3).error_code == NONE
    refused = create_topic(session, "b", 2)
    assert refused.error_code == POLICY_VIOLATION
    assert "(4) would be exceeded, 1 left" in refused.error_message
    assert create_topic(session, "b", 2, validate_only=True).error_code == POLICY_VIOLATION
    assert sorted(broker.namespace("t").logs.names()) == ["a-0", "a-1", "a-2"]  # none of "b"
    assert create_topic(session, "b", 1).error_code == NONE


def test_a_topic_past_the_broker_wide_log_limit_is_a_policy_violation() -> None:
    broker = limited(max_logs_total=3)
    broker.namespace("other").logs.create("l", LogOptions(), 0.0)
    session = open_session(broker)
    refused = create_topic(session, "t", 3)
    assert refused.error_code == POLICY_VIOLATION
    assert refused.error_message == (
        "cannot create 3 partitions: partition (log) limit of the broker (3) would be "
        "exceeded, 2 left"
    )


def test_create_partitions_past_the_log_limit_is_a_policy_violation() -> None:
    broker = limited(max_logs_per_namespace=3)
    session = open_session(broker)
    assert create_topic(session, "t", 2).error_code == NONE
    grow = wire.build(
        request_class(37, 1, "CreatePartitionsTopic"), name="t", count=4, assignments=None
    )
    [result] = call(session, 37, 1, topics=(grow,), timeout=ONE_SECOND, validate_only=False).results
    assert result.error_code == POLICY_VIOLATION
    assert sorted(broker.namespace("t").logs.names()) == ["t-0", "t-1"]


def test_auto_creation_past_the_log_limit_is_a_policy_violation() -> None:
    broker = limited(max_logs_per_namespace=2)
    session = open_session(broker, default_partitions=2)
    assert create_topic(session, "full", 1).error_code == NONE
    response = call(
        session,
        3,
        5,
        topics=(wire.build(request_class(3, 5, "MetadataRequestTopic"), name="auto"),),
        allow_auto_topic_creation=True,
    )
    [topic] = response.topics
    assert (topic.error_code, topic.partitions) == (POLICY_VIOLATION, ())
    assert broker.namespace("t").logs.names() == ["full-0"]


def commit(session: KafkaSession, group: str, topic: str) -> ErrorCode:
    def nested(entity: str, **values: Any) -> Any:
        return wire.build(request_class(8, 7, entity), **values)

    partition = nested(
        "OffsetCommitRequestPartition",
        partition_index=0,
        committed_offset=0,
        committed_leader_epoch=-1,
        committed_metadata="",
    )
    answer = call(
        session,
        8,
        7,
        group_id=group,
        generation_id_or_member_epoch=-1,
        member_id="",
        group_instance_id=None,
        topics=(nested("OffsetCommitRequestTopic", name=topic, partitions=(partition,)),),
    )
    [[result]] = [t.partitions for t in answer.topics]
    return result.error_code  # type: ignore[no-any-return]


def test_a_commit_for_a_group_past_the_limit_is_a_policy_violation() -> None:
    session = open_session(limited(max_groups_per_namespace=1))
    assert create_topic(session, "t", 1).error_code == NONE
    assert commit(session, "first", "t") == NONE
    assert commit(session, "second", "t") == POLICY_VIOLATION
    assert commit(session, "first", "t") == NONE


def test_confluent_kafka_admin_sees_a_policy_violation() -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    config = ServerConfig(port=0, kafka_port=0, limits=Limits(max_logs_per_namespace=2))
    with run_in_thread(config) as server:
        admin = AdminClient({"bootstrap.servers": server.kafka_bootstrap})
        admin.create_topics([NewTopic("small", 2, 1)])["small"].result(20)
        future = admin.create_topics([NewTopic("more", 1, 1)])["more"]
        with pytest.raises(KafkaException) as refused:
            future.result(20)
        error = refused.value.args[0]
        assert error.code() == KafkaError.POLICY_VIOLATION
        assert "partition (log) limit in namespace '' (2)" in error.str()


class Joins:
    def __init__(self) -> None:
        self.errors: list[int] = []

    def __call__(self, result: JoinResult) -> None:
        self.errors.append(result.error)


def join_group(coordinator: GroupCoordinator, group: str, answers: Joins, **extra: Any) -> None:
    protocols = extra.pop("protocols", (("range", b"meta"),))
    coordinator.join(
        group, extra.pop("member_id", ""), "c", 10.0, 30.0, "consumer", protocols, answers, 0.0
    )


def test_a_refused_join_leaves_no_group_behind() -> None:
    coordinator = GroupCoordinator(Timers())
    answers = Joins()
    for index in range(3):
        join_group(coordinator, f"no-protocols-{index}", answers, protocols=())
        join_group(coordinator, f"unknown-member-{index}", answers, member_id="stale")
    assert answers.errors == [INCONSISTENT_GROUP_PROTOCOL, UNKNOWN_MEMBER_ID] * 3
    assert coordinator.groups == {}


def test_a_join_for_a_group_past_the_limit_is_refused() -> None:
    coordinator = GroupCoordinator(Timers(), max_groups=2)
    answers = Joins()
    join_group(coordinator, "a", answers)
    join_group(coordinator, "b", answers)
    join_group(coordinator, "c", answers)
    join_group(coordinator, "a", answers)  # a known group takes more members
    # The second member of "a" waits for the first to rejoin: no answer yet.
    assert answers.errors == [NONE, NONE, GROUP_MAX_SIZE_REACHED]
    assert sorted(coordinator.groups) == ["a", "b"]


def test_a_client_id_naming_a_namespace_past_the_limit_is_closed() -> None:
    broker = limited(max_namespaces=1)
    broker.namespace("kept").queues.declare("q", QueueOptions(), 0.0)
    session = open_session(broker)
    session.receive_data(frame(18, 0, b"", client_id="t/c"))  # ApiVersions names namespace "t"
    assert session.closing is not None
    assert session.closing.message == "cannot create namespace 't': namespace limit (1) is reached"
    assert sorted(broker.namespaces) == ["kept"]
