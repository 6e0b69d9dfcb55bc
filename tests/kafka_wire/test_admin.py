"""The admin clients of confluent-kafka, aiokafka and kafka-python against minibroker.

Topic configs (DescribeConfigs) come from the partition logs' options, consumer
groups (ListGroups, DescribeGroups) from the group coordinator and the logs'
committed offsets, and CreatePartitions and DeleteTopics add and delete logs,
which minibroker's own client sees.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

import minibroker
from kafka_wire.kafka_clients import DEADLINE, Confluent
from minibroker.testing import KafkaBootstrap, ThreadedBroker

pytestmark = pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning")

INVALID_CONFIG = 40

#: What a group looks like to an admin client: (state, [(client id, host, partitions)]).
GroupView = tuple[str, list[tuple[str, str, list[int]]]]


class ConfluentAdmin:
    name = "confluent-kafka"

    def _admin(self, kafka: KafkaBootstrap) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient(kafka.confluent())

    def create_topic(self, kafka: KafkaBootstrap, topic: str, configs: dict[str, str]) -> None:
        from confluent_kafka.admin import NewTopic

        admin = self._admin(kafka)
        admin.create_topics([NewTopic(topic, 1, 1, config=configs)])[topic].result(DEADLINE)

    def topic_configs(self, kafka: KafkaBootstrap, topic: str) -> dict[str, str]:
        from confluent_kafka.admin import ConfigResource

        admin = self._admin(kafka)
        [future] = admin.describe_configs([ConfigResource("topic", topic)]).values()
        return {name: entry.value for name, entry in future.result(DEADLINE).items()}

    def groups(self, kafka: KafkaBootstrap) -> set[str]:
        admin = self._admin(kafka)
        return {group.group_id for group in admin.list_consumer_groups().result(DEADLINE).valid}

    def describe_group(self, kafka: KafkaBootstrap, group: str) -> GroupView:
        admin = self._admin(kafka)
        [future] = admin.describe_consumer_groups([group]).values()
        found = future.result(DEADLINE)
        members = [
            (m.client_id, m.host, sorted(tp.partition for tp in m.assignment.topic_partitions))
            for m in found.members
        ]
        return found.state.name.capitalize(), members

    def alter(
        self, kafka: KafkaBootstrap, topic: str, configs: dict[str, str], incremental: bool
    ) -> int:
        """The Kafka error code of altering ``topic``'s configs (0 when done)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

        admin = self._admin(kafka)
        if incremental:
            entries = [
                ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
                for name, value in configs.items()
            ]
            resource = ConfigResource("topic", topic, incremental_configs=entries)
            [future] = admin.incremental_alter_configs([resource]).values()
        else:
            [future] = admin.alter_configs([ConfigResource("topic", topic, configs)]).values()
        try:
            future.result(DEADLINE)
        except KafkaException as exc:
            return int(exc.args[0].code())
        return 0

    def delete_group(self, kafka: KafkaBootstrap, group: str) -> str:
        """The Kafka error name of deleting ``group`` ("NO_ERROR" when deleted)."""
        from confluent_kafka import KafkaException

        admin = self._admin(kafka)  # kept alive until the answer is in
        [future] = admin.delete_consumer_groups([group]).values()
        try:
            future.result(DEADLINE)
        except KafkaException as exc:
            return str(exc.args[0].name())
        return "NO_ERROR"

    def create_partitions(self, kafka: KafkaBootstrap, topic: str, total: int) -> None:
        from confluent_kafka.admin import NewPartitions

        admin = self._admin(kafka)
        admin.create_partitions([NewPartitions(topic, total)])[topic].result(DEADLINE)

    def delete_topic(self, kafka: KafkaBootstrap, topic: str) -> None:
        admin = self._admin(kafka)
        admin.delete_topics([topic])[topic].result(DEADLINE)

    def delete_records(self, kafka: KafkaBootstrap, topic: str, before: int) -> int:
        from confluent_kafka import TopicPartition

        admin = self._admin(kafka)
        [future] = admin.delete_records([TopicPartition(topic, 0, before)]).values()
        return int(future.result(DEADLINE).low_watermark)


class AioKafkaAdmin:
    name = "aiokafka"

    def _run(self, kafka: KafkaBootstrap, call: Callable[[Any], Any]) -> Any:
        from aiokafka.admin import AIOKafkaAdminClient

        async def run() -> Any:
            admin = AIOKafkaAdminClient(**kafka.kwargs())
            await admin.start()
            try:
                return await call(admin)
            finally:
                await admin.close()

        return asyncio.run(run())

    def create_topic(self, kafka: KafkaBootstrap, topic: str, configs: dict[str, str]) -> None:
        from aiokafka.admin import NewTopic

        new = NewTopic(topic, 1, 1, topic_configs=configs)
        self._run(kafka, lambda admin: admin.create_topics([new]))

    def topic_configs(self, kafka: KafkaBootstrap, topic: str) -> dict[str, str]:
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        [response] = self._run(
            kafka,
            lambda admin: admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]),
        )
        [resource] = response.resources
        return {entry[0]: entry[1] for entry in resource[4]}

    def groups(self, kafka: KafkaBootstrap) -> set[str]:
        return {group for group, _ in self._run(kafka, lambda a: a.list_consumer_groups())}

    def describe_group(self, kafka: KafkaBootstrap, group: str) -> GroupView:
        from aiokafka.protocol.group import MemberAssignment

        [response] = self._run(kafka, lambda admin: admin.describe_consumer_groups([group]))
        [(_error, _name, state, _type, _protocol, members)] = response.groups
        return state, [
            (
                client_id,
                host,
                sorted(p for _, ps in MemberAssignment.decode(assignment).assignment for p in ps),
            )
            for _id, client_id, host, _metadata, assignment in members
        ]

    def create_partitions(self, kafka: KafkaBootstrap, topic: str, total: int) -> None:
        from aiokafka.admin import NewPartitions

        self._run(kafka, lambda admin: admin.create_partitions({topic: NewPartitions(total)}))

    def delete_topic(self, kafka: KafkaBootstrap, topic: str) -> None:
        self._run(kafka, lambda admin: admin.delete_topics([topic]))

    def delete_records(self, kafka: KafkaBootstrap, topic: str, before: int) -> int:
        from aiokafka import TopicPartition
        from aiokafka.admin import RecordsToDelete

        partition = TopicPartition(topic, 0)
        found = self._run(
            kafka, lambda admin: admin.delete_records({partition: RecordsToDelete(before)})
        )
        return int(found[partition])

    def alter(
        self, kafka: KafkaBootstrap, topic: str, configs: dict[str, str], incremental: bool
    ) -> int:
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        assert not incremental, "aiokafka sends AlterConfigs only"
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs)
        [response] = self._run(kafka, lambda admin: admin.alter_configs([resource]))
        [(code, *_)] = response.resources
        return int(code)


class KafkaPythonAdmin:
    name = "kafka-python"

    def _admin(self, kafka: KafkaBootstrap) -> Any:
        from kafka.admin import KafkaAdminClient

        return KafkaAdminClient(**kafka.kwargs())

    def _call(self, kafka: KafkaBootstrap, call: Callable[[Any], Any]) -> Any:
        admin = self._admin(kafka)
        try:
            return call(admin)
        finally:
            admin.close()

    def create_topic(self, kafka: KafkaBootstrap, topic: str, configs: dict[str, str]) -> None:
        from kafka.admin import NewTopic

        new = NewTopic(topic, 1, 1, topic_configs=configs)
        self._call(kafka, lambda admin: admin.create_topics([new]))

    def topic_configs(self, kafka: KafkaBootstrap, topic: str) -> dict[str, str]:
        from kafka.admin import ConfigResource, ConfigResourceType

        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        found = self._call(kafka, lambda a: a.describe_configs([resource], config_filter="all"))
        return {name: entry["value"] for name, entry in found["topic"][topic].items()}

    def groups(self, kafka: KafkaBootstrap) -> set[str]:
        return {group["group_id"] for group in self._call(kafka, lambda a: a.list_groups())}

    def describe_group(self, kafka: KafkaBootstrap, group: str) -> GroupView:
        found = self._call(kafka, lambda admin: admin.describe_groups([group]))[group]
        return found["group_state"], [
            (
                member["client_id"],
                member["client_host"],
                sorted(
                    p
                    for each in member["member_assignment"]["assigned_partitions"]
                    for p in each["partitions"]
                ),
            )
            for member in found["members"]
        ]

    def create_partitions(self, kafka: KafkaBootstrap, topic: str, total: int) -> None:
        from kafka.admin import NewPartitions

        self._call(kafka, lambda admin: admin.create_partitions({topic: NewPartitions(total)}))

    def delete_topic(self, kafka: KafkaBootstrap, topic: str) -> None:
        self._call(kafka, lambda admin: admin.delete_topics([topic]))

    def delete_records(self, kafka: KafkaBootstrap, topic: str, before: int) -> int:
        from kafka import TopicPartition

        partition = TopicPartition(topic, 0)
        found = self._call(kafka, lambda admin: admin.delete_records({partition: before}))
        return int(found[partition]["low_watermark"])

    def alter(
        self, kafka: KafkaBootstrap, topic: str, configs: dict[str, str], incremental: bool
    ) -> int:
        from kafka.admin import ConfigResource, ConfigResourceType

        resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs)
        # raise_on_unknown=False: let the broker answer what the client would refuse
        found = self._call(
            kafka,
            lambda a: a.alter_configs([resource], incremental=incremental, raise_on_unknown=False),
        )
        # "OK", or the error as text: "[Error 40] InvalidConfigurationError: ..."
        [result] = found["topic"].values()
        return 0 if result == "OK" else int(result.split("]")[0].removeprefix("[Error "))

    def delete_group(self, kafka: KafkaBootstrap, group: str) -> str:
        from kafka import errors as kafka_errors

        # kafka-python answers "OK" or the name of the error's class
        found = self._call(kafka, lambda admin: admin.delete_groups([group]))[group]
        return "NO_ERROR" if found == "OK" else _kafka_name(getattr(kafka_errors, found))

    def delete_offset(self, kafka: KafkaBootstrap, group: str, topic: str) -> str:
        from kafka import TopicPartition
        from kafka.errors import KafkaError

        partition = TopicPartition(topic, 0)
        try:
            found = self._call(kafka, lambda a: a.delete_group_offsets(group, [partition]))
        except KafkaError as exc:  # the group's own error code is raised
            return _kafka_name(type(exc))
        error = found[partition]
        return "NO_ERROR" if error.errno == 0 else _kafka_name(error)


def _kafka_name(error: Any) -> str:
    """A kafka-python error class as Kafka names it (GroupIdNotFoundError: GROUP_ID_NOT_FOUND)."""
    return "".join(
        "_" + ch if ch.isupper() and i else ch
        for i, ch in enumerate(error.__name__.removesuffix("Error"))
    ).upper()


ADMINS = [ConfluentAdmin(), AioKafkaAdmin(), KafkaPythonAdmin()]


@pytest.fixture(params=ADMINS, ids=lambda admin: admin.name)
def admin(request: pytest.FixtureRequest) -> Any:
    return request.param


def test_topic_configs_are_the_logs_options(
    admin: Any, minibroker_kafka_bootstrap: KafkaBootstrap
) -> None:
    kafka = minibroker_kafka_bootstrap
    admin.create_topic(kafka, "kept", {"retention.ms": "60000", "segment.bytes": "1048576"})
    assert admin.topic_configs(kafka, "kept") == {
        "cleanup.policy": "delete",
        "message.timestamp.type": "CreateTime",
        "retention.bytes": "-1",
        "retention.ms": "60000",
        "segment.bytes": "1048576",
    }


def test_groups_are_listed_and_described(
    admin: Any, minibroker_kafka_bootstrap: KafkaBootstrap
) -> None:
    kafka = minibroker_kafka_bootstrap
    confluent = Confluent()
    confluent.produce(kafka, "orders", [b"a", b"b"])
    assert confluent.consume(kafka, "orders", "finished", 2, manual=True) == [b"a", b"b"]
    live = confluent.consumer(kafka, "live")
    live.subscribe(["orders"])
    try:
        while not live.assignment():
            live.poll(0.05)
        assert admin.groups(kafka) == {"finished", "live"}
        assert admin.describe_group(kafka, "live") == (
            "Stable",
            [(kafka.client_id(), "/127.0.0.1", [0])],
        )
        assert admin.describe_group(kafka, "finished") == ("Empty", [])
        assert admin.describe_group(kafka, "unknown") == ("Dead", [])
    finally:
        live.close()


def test_create_partitions_and_delete_topics_add_and_delete_logs(
    admin: Any,
    minibroker_kafka_bootstrap: KafkaBootstrap,
    minibroker_kafka_server: ThreadedBroker,
) -> None:
    kafka = minibroker_kafka_bootstrap
    admin.create_topic(kafka, "growing", {"retention.ms": "60000"})
    admin.create_partitions(kafka, "growing", 3)
    with minibroker.connect_sync(minibroker_kafka_server.url_for(kafka.namespace)) as mb:
        assert [name for name in mb.list_logs() if name.startswith("growing")] == [
            "growing-0",
            "growing-1",
            "growing-2",
        ]
        assert mb.log_stats("growing-2").options == mb.log_stats("growing-0").options
        admin.delete_topic(kafka, "growing")
        assert not [name for name in mb.list_logs() if name.startswith("growing")]


@pytest.mark.parametrize(
    "admin", [a for a in ADMINS if hasattr(a, "delete_group")], ids=lambda a: a.name
)
def test_delete_groups_deletes_the_committed_offsets_of_a_group_without_members(
    admin: Any,
    minibroker_kafka_bootstrap: KafkaBootstrap,
    minibroker_kafka_server: ThreadedBroker,
) -> None:
    kafka = minibroker_kafka_bootstrap
    confluent = Confluent()
    confluent.produce(kafka, "orders", [b"a", b"b"])
    assert confluent.consume(kafka, "orders", "done", 2, manual=True) == [b"a", b"b"]
    live = confluent.consumer(kafka, "live")
    live.subscribe(["orders"])
    try:
        while not live.assignment():
            live.poll(0.05)
        assert admin.delete_group(kafka, "live") == "NON_EMPTY_GROUP"
        assert admin.delete_group(kafka, "done") == "NO_ERROR"
        assert admin.delete_group(kafka, "done") == "GROUP_ID_NOT_FOUND"
    finally:
        live.close()
    with minibroker.connect_sync(minibroker_kafka_server.url_for(kafka.namespace)) as mb:
        assert "done" not in mb.log_stats("orders-0").groups


def test_offset_delete_spares_topics_a_live_member_subscribed_to(
    minibroker_kafka_bootstrap: KafkaBootstrap,
    minibroker_kafka_server: ThreadedBroker,
) -> None:
    kafka = minibroker_kafka_bootstrap
    admin = KafkaPythonAdmin()
    confluent = Confluent()
    confluent.produce(kafka, "orders", [b"a"])
    assert confluent.consume(kafka, "orders", "done", 1, manual=True) == [b"a"]
    live = confluent.consumer(kafka, "live", **{"enable.auto.commit": False})
    live.subscribe(["orders"])
    try:
        while not live.assignment():
            live.poll(0.05)
        live.commit(asynchronous=False, offsets=[_partition("orders", 1)])
        assert admin.delete_offset(kafka, "live", "orders") == "GROUP_SUBSCRIBED_TO_TOPIC"
    finally:
        live.close()
    assert admin.delete_offset(kafka, "done", "orders") == "NO_ERROR"
    assert admin.delete_offset(kafka, "nobody", "orders") == "GROUP_ID_NOT_FOUND"
    with minibroker.connect_sync(minibroker_kafka_server.url_for(kafka.namespace)) as mb:
        assert set(mb.log_stats("orders-0").groups) == {"live"}


def test_delete_records_moves_the_partitions_start_for_every_reader(
    admin: Any,
    minibroker_kafka_bootstrap: KafkaBootstrap,
    minibroker_kafka_server: ThreadedBroker,
) -> None:
    """DeleteRecords, the way test suites empty a topic: the partition's log
    starts at the offset given, for Kafka consumers and the msgpack door alike."""
    kafka = minibroker_kafka_bootstrap
    confluent = Confluent()
    values = [b"r%d" % i for i in range(10)]
    confluent.produce(kafka, "cleared", values)
    assert admin.delete_records(kafka, "cleared", 6) == 6
    assert admin.delete_records(kafka, "cleared", 2) == 6  # below the start: unchanged
    consumer = confluent.consumer(kafka, "after")
    assert consumer.get_watermark_offsets(_partition("cleared", 0), DEADLINE) == (6, 10)
    consumer.close()
    assert confluent.consume(kafka, "cleared", "after", 4, manual=True) == values[6:]
    with minibroker.connect_sync(minibroker_kafka_server.url_for(kafka.namespace)) as mb:
        assert mb.log_stats("cleared-0").first_offset == 6
        assert [record.offset for record in mb.read("cleared-0", start="earliest")] == [6, 7, 8, 9]
        with pytest.raises(minibroker.OffsetOutOfRange):
            mb.read("cleared-0", start=5)
    assert admin.delete_records(kafka, "cleared", -1) == 10  # -1: the high watermark
    confluent.produce(kafka, "cleared", [b"new"])
    assert confluent.consume(kafka, "cleared", "later", 1, manual=True) == [b"new"]


def _partition(topic: str, offset: int) -> Any:
    from confluent_kafka import TopicPartition

    return TopicPartition(topic, 0, offset)


@pytest.mark.parametrize("incremental", [False, True], ids=["AlterConfigs", "Incremental"])
def test_retention_configs_are_altered_on_every_partition_log(
    admin: Any,
    incremental: bool,
    minibroker_kafka_bootstrap: KafkaBootstrap,
    minibroker_kafka_server: ThreadedBroker,
) -> None:
    if incremental and admin.name == "aiokafka":
        pytest.skip("aiokafka has no IncrementalAlterConfigs call")
    kafka = minibroker_kafka_bootstrap
    admin.create_topic(kafka, "kept", {"retention.ms": "60000"})
    admin.create_partitions(kafka, "kept", 2)
    assert admin.alter(kafka, "kept", {"retention.bytes": "1048576"}, incremental) == 0
    configs = admin.topic_configs(kafka, "kept")
    # the incremental form keeps what it does not name; AlterConfigs sets the whole set
    # (kafka-python's alter_configs adds the topic's other modified configs to it)
    keeps = incremental or admin.name == "kafka-python"
    assert configs["retention.ms"] == ("60000" if keeps else "-1")
    assert configs["retention.bytes"] == "1048576"
    with minibroker.connect_sync(minibroker_kafka_server.url_for(kafka.namespace)) as mb:
        assert mb.log_stats("kept-1").options == mb.log_stats("kept-0").options
        assert mb.log_stats("kept-1").options["retention_bytes"] == 1048576
    assert admin.alter(kafka, "kept", {"segment.bytes": "2048"}, incremental) == INVALID_CONFIG
    assert admin.alter(kafka, "kept", {"min.insync.replicas": "2"}, incremental) == INVALID_CONFIG
    assert admin.topic_configs(kafka, "kept")["retention.bytes"] == "1048576"


def test_a_log_append_time_topic_stamps_batches_with_the_broker_time(
    admin: Any, minibroker_kafka_bootstrap: KafkaBootstrap
) -> None:
    from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Producer

    kafka = minibroker_kafka_bootstrap
    admin.create_topic(kafka, "stamped", {"message.timestamp.type": "LogAppendTime"})
    assert admin.topic_configs(kafka, "stamped")["message.timestamp.type"] == "LogAppendTime"
    producer = Producer(kafka.confluent())
    before = int(time.time() * 1000)
    producer.produce("stamped", b"a", timestamp=1000)  # the producer's time: 1970
    assert producer.flush(DEADLINE) == 0
    consumer = Confluent().consumer(kafka, None)
    consumer.assign([_partition("stamped", 0)])
    message = consumer.poll(DEADLINE)
    consumer.close()
    assert message is not None and message.error() is None and message.value() == b"a"
    kind, stamp = message.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME and stamp >= before - 1000
    assert admin.alter(kafka, "stamped", {"message.timestamp.type": "CreateTime"}, False) == 0
    producer.produce("stamped", b"b", timestamp=1000)
    assert producer.flush(DEADLINE) == 0
    consumer = Confluent().consumer(kafka, None)
    consumer.assign([_partition("stamped", 1)])
    message = consumer.poll(DEADLINE)
    consumer.close()
    assert message is not None and message.timestamp() == (TIMESTAMP_CREATE_TIME, 1000)


def test_groups_are_listed_by_state_and_an_emptied_group_stays_a_consumer_group(
    minibroker_kafka_bootstrap: KafkaBootstrap,
) -> None:
    """ListGroups v4 (state filter) through confluent-kafka and kafka-python;
    before, kafka-python's ``states_filter`` raised IncompatibleBrokerVersion
    and confluent-kafka reported every state UNKNOWN, its filter ignored, and
    a group whose members left as a "simple" (protocol type "") group."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient
    from kafka.admin import KafkaAdminClient

    kafka = minibroker_kafka_bootstrap
    confluent = Confluent()
    confluent.produce(kafka, "orders", [b"a"])
    assert confluent.consume(kafka, "orders", "finished", 1, manual=True) == [b"a"]  # then leaves
    live = confluent.consumer(kafka, "live")
    live.subscribe(["orders"])
    try:
        while not live.assignment():
            live.poll(0.05)
        admin = AdminClient(kafka.confluent())
        found = admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result(DEADLINE)
        assert [(g.group_id, g.state, g.is_simple_consumer_group) for g in found.valid] == [
            ("finished", ConsumerGroupState.EMPTY, False)
        ]
        python_admin = KafkaAdminClient(**kafka.kwargs())
        try:
            stable = python_admin.list_groups(states_filter=["Stable"])
        finally:
            python_admin.close()
        assert [(g["group_id"], g["group_state"]) for g in stable] == [("live", "Stable")]
    finally:
        live.close()
