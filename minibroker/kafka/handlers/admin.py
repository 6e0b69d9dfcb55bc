"""ApiVersions, Metadata, FindCoordinator, Create/DeleteTopics, CreatePartitions, InitProducerId.

minibroker is a cluster of one: every Metadata answer lists a single broker,
node 0, at the advertised host and port, as leader of every partition and as
the coordinator of every group.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from kio.schema.errors import ErrorCode

from minibroker.access.permissions import ADMIN
from minibroker.core.log_options import LogOptions
from minibroker.errors import BrokerError, LimitExceeded, StorageError, StorageFull
from minibroker.kafka import wire
from minibroker.kafka.authorize import (
    GROUP_AUTHORIZATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
    may_group,
    may_partition,
    may_partitions,
    sees_topic,
)
from minibroker.kafka.topics import MAX_PARTITIONS, valid_topic_name

if TYPE_CHECKING:
    from minibroker.kafka.service import KafkaNamespace
    from minibroker.kafka.session import KafkaSession, Slot

NODE_ID: Final = 0
CLUSTER_ID: Final = "minibroker"
NO_THROTTLE: Final = timedelta(0)

UNKNOWN_TOPIC_OR_PARTITION: Final = ErrorCode(3)
INVALID_TOPIC: Final = ErrorCode(17)
TOPIC_ALREADY_EXISTS: Final = ErrorCode(36)
INVALID_PARTITIONS: Final = ErrorCode(37)
INVALID_REPLICATION_FACTOR: Final = ErrorCode(38)
INVALID_CONFIG: Final = ErrorCode(40)
#: The answer to every transactional request: no transactional id may be
#: used here. Each client treats it as fatal at once (a retriable code such
#: as COORDINATOR_NOT_AVAILABLE would keep them retrying until their timeout).
TRANSACTIONAL_ID_AUTHORIZATION_FAILED: Final = ErrorCode(53)
#: The data directory is full or failing (retriable: clients try again).
KAFKA_STORAGE_ERROR: Final = ErrorCode(56)
#: What Kafka answers a CreateTopics past its partition cap ("Excessively large
#: number of partitions per request."): here, past ``max_logs_per_namespace``.
POLICY_VIOLATION: Final = ErrorCode(44)
NO_TRANSACTIONS: Final = "minibroker does not support transactions"
NONE: Final = ErrorCode(0)

#: Topic configs that map onto log options (name -> (option, unit scale)).
LOG_CONFIGS: Final = {
    "retention.ms": ("retention_seconds", 0.001),
    "retention.bytes": ("retention_bytes", 1),
    "segment.bytes": ("segment_bytes", 1),
}


#: The topic config of a topic's timestamps, and its values (True: LogAppendTime).
TIMESTAMP_TYPE: Final = "message.timestamp.type"
TIMESTAMP_TYPES: Final = {"CreateTime": False, "LogAppendTime": True}


def api_versions_body(version: int, error: int) -> bytes:
    cls, entry = wire.response_classes(18, version, "ApiVersion")
    keys = tuple(
        entry(api_key=key, min_version=low, max_version=high)
        for key, (low, high) in sorted(wire.ADVERTISED.items())
    )
    return wire.encode_response(
        wire.build(cls, error_code=ErrorCode(error), api_keys=keys, throttle_time=NO_THROTTLE)
    )


def api_versions(session: KafkaSession, slot: Slot, request: Any) -> Any:
    session.answer_bytes(slot, api_versions_body(slot.version, 0))
    return None


def metadata(session: KafkaSession, slot: Slot, request: Any) -> Any:
    ns = session.ns
    cls = wire.response_class(3, slot.version)
    requested = request.topics
    if requested is None or (slot.version == 0 and not requested):
        names = [name for name in sorted(ns.topics.topics()) if sees_topic(session, name)]
        may_create = False
    else:
        names = [topic.name for topic in requested]
        may_create = getattr(request, "allow_auto_topic_creation", True)
    partition_cls = wire.nested(cls, "MetadataResponsePartition")
    topic_cls = wire.nested(cls, "MetadataResponseTopic")
    topics = []
    for name in names:
        error, count = NONE, ns.topics.partition_count(name)
        if not sees_topic(session, name):
            error, count = TOPIC_AUTHORIZATION_FAILED, 0
        elif count == 0:
            error = auto_create(session, name) if may_create else UNKNOWN_TOPIC_OR_PARTITION
            count = ns.topics.partition_count(name)
        partitions = tuple(
            wire.build(
                partition_cls,
                error_code=NONE,
                partition_index=index,
                leader_id=NODE_ID,
                leader_epoch=0,
                replica_nodes=(NODE_ID,),
                isr_nodes=(NODE_ID,),
                offline_replicas=(),
            )
            for index in range(count)
        )
        topics.append(
            wire.build(
                topic_cls, error_code=error, name=name, is_internal=False, partitions=partitions
            )
        )
    broker = wire.build(
        wire.nested(cls, "MetadataResponseBroker"),
        node_id=NODE_ID,
        host=session.service.settings.advertised_host,
        port=session.service.port,
        rack=None,
    )
    return wire.build(
        cls,
        throttle_time=NO_THROTTLE,
        brokers=(broker,),
        cluster_id=CLUSTER_ID,
        controller_id=NODE_ID,
        topics=tuple(topics),
    )


def auto_create(session: KafkaSession, topic: str) -> ErrorCode:
    """Create ``topic`` on first use if the settings allow; the error code to answer."""
    settings = session.service.settings
    if not valid_topic_name(topic):
        return INVALID_TOPIC
    if not settings.auto_create_topics:
        return UNKNOWN_TOPIC_OR_PARTITION
    if not may_partitions(session, ADMIN, topic, settings.default_partitions):
        return UNKNOWN_TOPIC_OR_PARTITION  # Kafka's answer without CREATE rights
    if partition_room(session.ns, settings.default_partitions) is not None:
        return POLICY_VIOLATION
    try:
        session.ns.topics.create(topic, settings.default_partitions, LogOptions(), session.now)
    except (StorageFull, StorageError):
        return KAFKA_STORAGE_ERROR
    except LimitExceeded:
        return POLICY_VIOLATION
    except BrokerError:
        return INVALID_TOPIC
    return NONE


def partition_room(ns: KafkaNamespace, wanted: int) -> str | None:
    """Why ``wanted`` more partitions may not be made (each is a log, and the
    namespace holds at most ``max_logs_per_namespace``), or None when they fit.

    Checked before any is made, as Kafka checks its cap, so that a topic is
    refused whole rather than made and rolled back log by log.
    """
    room, limit = ns.topics.logs.room()
    if wanted <= room:
        return None
    return (
        f"cannot create {wanted} partitions: partition (log) limit {limit} would be "
        f"exceeded, {room} left"
    )


def find_coordinator(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls = wire.response_class(10, slot.version)
    if getattr(request, "key_type", 0) == 0 and not may_group(session, request.key):
        return wire.build(
            cls,
            throttle_time=NO_THROTTLE,
            error_code=GROUP_AUTHORIZATION_FAILED,
            error_message=f"may not use group {request.key!r}",
            node_id=-1,
            host="",
            port=-1,
        )
    if getattr(request, "key_type", 0) != 0:  # 1: a transaction coordinator
        return wire.build(
            cls,
            throttle_time=NO_THROTTLE,
            error_code=TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            error_message=NO_TRANSACTIONS,
            node_id=-1,
            host="",
            port=-1,
        )
    return wire.build(
        cls,
        throttle_time=NO_THROTTLE,
        error_code=NONE,
        error_message=None,
        node_id=NODE_ID,
        host=session.service.settings.advertised_host,
        port=session.service.port,
    )


def create_topics(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls, result_cls = wire.response_classes(19, slot.version, "CreatableTopicResult")
    results = []
    for topic in request.topics:
        error, message = _create_topic(session.ns, session, topic, request.validate_only)
        results.append(
            wire.build(result_cls, name=topic.name, error_code=error, error_message=message)
        )
    return wire.build(cls, throttle_time=NO_THROTTLE, topics=tuple(results))


def _create_topic(
    ns: KafkaNamespace, session: KafkaSession, topic: Any, validate_only: bool
) -> tuple[ErrorCode, str | None]:
    name = topic.name
    if not valid_topic_name(name):
        return INVALID_TOPIC, f"{name!r} is not a valid topic name"
    if ns.topics.partition_count(name):
        return TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists"
    partitions = topic.num_partitions
    if partitions == -1:
        partitions = session.service.settings.default_partitions
    if not 1 <= partitions <= MAX_PARTITIONS:
        return INVALID_PARTITIONS, f"partitions must be between 1 and {MAX_PARTITIONS}"
    if not may_partitions(session, ADMIN, name, partitions):
        return TOPIC_AUTHORIZATION_FAILED, f"may not create the logs of topic {name!r}"
    if topic.replication_factor not in (-1, 1):
        return INVALID_REPLICATION_FACTOR, "a single broker keeps one replica"
    refused = partition_room(ns, partitions)
    if refused is not None:
        return POLICY_VIOLATION, refused
    options: dict[str, Any] = {}
    for config in topic.configs:
        if config.name == TIMESTAMP_TYPE:
            if config.value not in TIMESTAMP_TYPES:
                return INVALID_CONFIG, f"{TIMESTAMP_TYPE} is CreateTime or LogAppendTime"
            options["append_time"] = TIMESTAMP_TYPES[config.value]
            continue
        known = LOG_CONFIGS.get(config.name)
        if known is None or config.value is None:
            continue  # accepted and ignored, as docs/kafka.md lists
        option, scale = known
        try:
            value = int(config.value)
        except ValueError:
            return INVALID_CONFIG, f"{config.name} must be an integer"
        if value >= 0:  # -1: unlimited
            options[option] = value * scale if scale != 1 else value
    log_options = LogOptions(**options)
    try:
        log_options.check()
        if not validate_only:
            ns.topics.create(name, partitions, log_options, session.now)
    except (StorageFull, StorageError) as exc:
        return KAFKA_STORAGE_ERROR, exc.message
    except LimitExceeded as exc:
        return POLICY_VIOLATION, exc.message
    except BrokerError as exc:
        return INVALID_CONFIG, exc.message
    return NONE, None


def delete_topics(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls, result_cls = wire.response_classes(20, slot.version, "DeletableTopicResult")
    results = []
    for name in request.topic_names:
        error = NONE
        count = session.ns.topics.partition_count(name)
        if not may_partitions(session, ADMIN, name, max(count, 1)):
            error = TOPIC_AUTHORIZATION_FAILED
        elif count:
            for index in range(count):
                session.service.producers.forget_log(f"{name}-{index}")
            session.ns.topics.delete(name, session.now)
        else:
            error = UNKNOWN_TOPIC_OR_PARTITION
        results.append(wire.build(result_cls, name=name, error_code=error))
    return wire.build(cls, throttle_time=NO_THROTTLE, responses=tuple(results))


def init_producer_id(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls = wire.response_class(22, slot.version)
    if request.transactional_id is not None:
        return wire.build(
            cls,
            throttle_time=NO_THROTTLE,
            error_code=TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            producer_id=-1,
            producer_epoch=-1,
        )
    now_ms = session.broker.clock.wall_ms(session.now)
    return wire.build(
        cls,
        throttle_time=NO_THROTTLE,
        error_code=NONE,
        producer_id=session.service.producers.new_id(now_ms),
        producer_epoch=0,
    )


def create_partitions(session: KafkaSession, slot: Slot, request: Any) -> Any:
    """More partitions for existing topics: new logs ``t-<n>`` with the options of ``t-0``."""
    cls, result_cls = wire.response_classes(37, slot.version, "CreatePartitionsTopicResult")
    results = []
    for topic in request.topics:
        error, message = _add_partitions(session, topic.name, topic.count, request.validate_only)
        results.append(
            wire.build(result_cls, name=topic.name, error_code=error, error_message=message)
        )
    return wire.build(cls, throttle_time=NO_THROTTLE, results=tuple(results))


def _add_partitions(
    session: KafkaSession, name: str, count: int, validate_only: bool
) -> tuple[ErrorCode, str | None]:
    topics = session.ns.topics
    current = topics.partition_count(name)
    if not sees_topic(session, name):
        return TOPIC_AUTHORIZATION_FAILED, f"may not see topic {name!r}"
    first = topics.partition(name, 0)
    if first is None:
        return UNKNOWN_TOPIC_OR_PARTITION, f"topic {name!r} does not exist"
    if not current < count <= MAX_PARTITIONS:
        return INVALID_PARTITIONS, (
            f"topic {name!r} has {current} partitions: ask for more, at most {MAX_PARTITIONS}"
        )
    new = range(current, count)
    if not all(may_partition(session, ADMIN, name, index) for index in new):
        return TOPIC_AUTHORIZATION_FAILED, f"may not create the new logs of topic {name!r}"
    refused = partition_room(session.ns, len(new))
    if refused is not None:
        return POLICY_VIOLATION, refused
    if validate_only:
        return NONE, None
    try:
        topics.add_partitions(name, count, first.options, session.now)
    except (StorageFull, StorageError) as exc:
        return KAFKA_STORAGE_ERROR, exc.message
    except LimitExceeded as exc:
        return POLICY_VIOLATION, exc.message
    except BrokerError as exc:
        return INVALID_PARTITIONS, exc.message
    return NONE, None
