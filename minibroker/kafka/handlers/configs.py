"""DescribeConfigs, AlterConfigs, IncrementalAlterConfigs: a topic's configs are its logs' options.

A topic's configs are read from the options of its first partition's log
(all its partitions are created with the same): ``retention.ms``,
``retention.bytes`` and ``segment.bytes`` are the log's retention and segment
size, -1 where there is no limit; ``cleanup.policy`` is always ``delete``,
because minibroker does not compact (a topic created with ``compact`` keeps
every record, and says so here). Configs set at creation report the source
DYNAMIC_TOPIC_CONFIG, the others DEFAULT_CONFIG, as Kafka does. The broker
(resource type 4) reports the settings of the ``--kafka-*`` flags.

``message.timestamp.type`` is the log option ``append_time``
(LogAppendTime: the broker stamps produced batches, ``handlers/produce.py``).

AlterConfigs (v0-1) and IncrementalAlterConfigs (v0) change ``retention.ms``,
``retention.bytes`` and ``message.timestamp.type``: every partition log of
the topic gets the new options (``Logs.change_options``: journaled,
applied at once; a new timestamp type applies to batches produced after). AlterConfigs
sets the whole set, so a retention it does not name goes back to "no limit",
as a Kafka topic's unnamed configs go back to their defaults; the incremental
form changes only what it names (SET, or DELETE for the default). The other
configs are fixed: ``segment.bytes`` (the segments are cut to it) and
``cleanup.policy`` may only be "set" to what they are, anything else is
INVALID_CONFIG naming it, and so are configs minibroker does not have. It
needs ``admin`` on the topic's partition logs (Kafka's ALTER_CONFIGS); the
broker's configs are its flags and cannot be altered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kio.schema.errors import ErrorCode

from minibroker.access.permissions import ADMIN
from minibroker.core.log_options import LogOptions
from minibroker.errors import BrokerError
from minibroker.kafka import wire
from minibroker.kafka.authorize import TOPIC_AUTHORIZATION_FAILED, may_partitions, sees_topic
from minibroker.kafka.handlers.admin import (
    INVALID_CONFIG,
    LOG_CONFIGS,
    NO_THROTTLE,
    NONE,
    TIMESTAMP_TYPE,
    TIMESTAMP_TYPES,
    UNKNOWN_TOPIC_OR_PARTITION,
)
from minibroker.kafka.topics import partition_log
from minibroker.storage import DEFAULT_SEGMENT_BYTES

if TYPE_CHECKING:
    from minibroker.kafka.session import KafkaSession, Slot

TOPIC: Final = 2
BROKER: Final = 4
INVALID_REQUEST: Final = ErrorCode(42)

#: Kafka's ConfigSource values.
DYNAMIC_TOPIC_CONFIG: Final = 1
STATIC_BROKER_CONFIG: Final = 4
DEFAULT_CONFIG: Final = 5
#: Kafka's ConfigType values (DescribeConfigs v3).
BOOLEAN: Final = 1
STRING: Final = 2
INT: Final = 3
LONG: Final = 5
LIST: Final = 7
#: IncrementalAlterConfigs operations.
SET: Final = 0
DELETE: Final = 1
#: The topic configs AlterConfigs may change (the log options they are).
ALTERABLE: Final = ("retention.ms", "retention.bytes", TIMESTAMP_TYPE)


@dataclass(frozen=True, slots=True)
class Config:
    name: str
    value: str
    #: Set by the topic's creator (DYNAMIC_TOPIC_CONFIG) or a default.
    source: int
    kind: int
    documentation: str

    @property
    def read_only(self) -> bool:
        return self.name not in ALTERABLE


def topic_configs(options: LogOptions) -> list[Config]:
    """What a topic whose logs have ``options`` reports."""

    def source(value: object) -> int:
        return DEFAULT_CONFIG if value is None else DYNAMIC_TOPIC_CONFIG

    retention_ms, retention_bytes = options.retention_ms, options.retention_bytes
    segment_bytes = options.segment_bytes
    return [
        Config(
            "cleanup.policy",
            "delete",
            DEFAULT_CONFIG,
            LIST,
            "minibroker deletes whole old segments; it does not compact",
        ),
        Config(
            TIMESTAMP_TYPE,
            "LogAppendTime" if options.append_time else "CreateTime",
            DYNAMIC_TOPIC_CONFIG if options.append_time else DEFAULT_CONFIG,
            STRING,
            "CreateTime: the producer's timestamps; LogAppendTime: the broker's append time",
        ),
        Config(
            "retention.bytes",
            str(-1 if retention_bytes is None else retention_bytes),
            source(retention_bytes),
            LONG,
            "the log's retention_bytes; -1: no limit",
        ),
        Config(
            "retention.ms",
            str(-1 if retention_ms is None else retention_ms),
            source(retention_ms),
            LONG,
            "the log's retention_seconds in milliseconds; -1: no limit",
        ),
        Config(
            "segment.bytes",
            str(DEFAULT_SEGMENT_BYTES if segment_bytes is None else segment_bytes),
            source(segment_bytes),
            INT,
            "the log's segment size",
        ),
    ]


def broker_configs(session: KafkaSession) -> list[Config]:
    settings = session.service.settings
    return [
        Config(
            "auto.create.topics.enable",
            str(settings.auto_create_topics).lower(),
            STATIC_BROKER_CONFIG,
            BOOLEAN,
            "--kafka-auto-create",
        ),
        Config(
            "message.max.bytes",
            str(session.broker.config.limits.max_message_bytes),
            STATIC_BROKER_CONFIG,
            INT,
            "the broker's largest message",
        ),
        Config(
            "num.partitions",
            str(settings.default_partitions),
            STATIC_BROKER_CONFIG,
            INT,
            "--kafka-partitions",
        ),
    ]


def describe_configs(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls, result_cls, entry_cls = wire.response_classes(
        32, slot.version, "DescribeConfigsResult", "DescribeConfigsResourceResult"
    )
    results = []
    for resource in request.resources:
        error, message, configs = _describe(session, resource.resource_type, resource.resource_name)
        keys = resource.configuration_keys
        entries = tuple(
            wire.build(
                entry_cls,
                name=config.name,
                value=config.value,
                read_only=config.read_only,
                config_source=config.source,
                is_sensitive=False,
                synonyms=(),
                config_type=config.kind,
                documentation=config.documentation
                if getattr(request, "include_documentation", False)
                else None,
            )
            for config in configs
            if keys is None or config.name in keys
        )
        results.append(
            wire.build(
                result_cls,
                error_code=error,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
                configs=entries,
            )
        )
    return wire.build(cls, throttle_time=NO_THROTTLE, results=tuple(results))


def _describe(
    session: KafkaSession, resource_type: int, name: str
) -> tuple[ErrorCode, str | None, list[Config]]:
    if resource_type == BROKER:
        return NONE, None, broker_configs(session)
    if resource_type != TOPIC:
        return INVALID_REQUEST, f"resource type {resource_type} has no configs here", []
    if not sees_topic(session, name):
        return TOPIC_AUTHORIZATION_FAILED, f"may not see topic {name!r}", []
    first = session.ns.topics.partition(name, 0)
    if first is None:
        return UNKNOWN_TOPIC_OR_PARTITION, f"topic {name!r} does not exist", []
    return NONE, None, topic_configs(first.options)


def alter_configs(session: KafkaSession, slot: Slot, request: Any) -> Any:
    """AlterConfigs: each resource's configs become exactly those named."""
    return _alter(session, slot, 33, request, incremental=False)


def incremental_alter_configs(session: KafkaSession, slot: Slot, request: Any) -> Any:
    """IncrementalAlterConfigs: the named configs are set or deleted, the rest kept."""
    return _alter(session, slot, 44, request, incremental=True)


def _alter(session: KafkaSession, slot: Slot, api_key: int, request: Any, incremental: bool) -> Any:
    cls, result_cls = wire.response_classes(api_key, slot.version, "AlterConfigsResourceResponse")
    results = []
    for resource in request.resources:
        error, message = _alter_resource(session, resource, incremental, request.validate_only)
        results.append(
            wire.build(
                result_cls,
                error_code=error,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
            )
        )
    return wire.build(cls, throttle_time=NO_THROTTLE, responses=tuple(results))


def _alter_resource(
    session: KafkaSession, resource: Any, incremental: bool, validate_only: bool
) -> tuple[ErrorCode, str | None]:
    kind, name = resource.resource_type, resource.resource_name
    if kind == BROKER:
        return INVALID_REQUEST, "the broker's configs are the server's --kafka-* flags"
    if kind != TOPIC:
        return INVALID_REQUEST, f"resource type {kind} has no configs here"
    topics = session.ns.topics
    count = topics.partition_count(name)
    if not sees_topic(session, name) or not may_partitions(session, ADMIN, name, max(count, 1)):
        return TOPIC_AUTHORIZATION_FAILED, f"may not alter the configs of topic {name!r}"
    first = topics.partition(name, 0)
    if first is None:
        return UNKNOWN_TOPIC_OR_PARTITION, f"topic {name!r} does not exist"
    current = first.options
    fixed = {c.name: c.value for c in topic_configs(current) if c.read_only}
    # AlterConfigs names the whole set: a retention it leaves out is "no limit".
    values: dict[str, Any] = {
        "retention_seconds": None,
        "retention_bytes": None,
        "append_time": False,
    }
    if incremental:
        values = {
            "retention_seconds": current.retention_seconds,
            "retention_bytes": current.retention_bytes,
            "append_time": current.append_time,
        }
    for config in resource.configs:
        operation = config.config_operation if incremental else SET
        if config.name in fixed:
            if operation == SET and config.value == fixed[config.name]:
                continue
            return INVALID_CONFIG, f"{config.name} is fixed when the topic is created"
        if config.name not in ALTERABLE:
            return INVALID_CONFIG, f"minibroker has no topic config {config.name!r}"
        if config.name == TIMESTAMP_TYPE:
            if operation == DELETE:
                values["append_time"] = False
            elif operation == SET and config.value in TIMESTAMP_TYPES:
                values["append_time"] = TIMESTAMP_TYPES[config.value]
            else:
                return INVALID_CONFIG, f"{TIMESTAMP_TYPE} is CreateTime or LogAppendTime"
            continue
        option, scale = LOG_CONFIGS[config.name]
        if operation == DELETE:
            values[option] = None
            continue
        if operation != SET:
            return INVALID_CONFIG, f"{config.name} is not a list: only SET and DELETE apply"
        try:
            value = int(config.value or "")
        except ValueError:
            return INVALID_CONFIG, f"{config.name} must be an integer"
        values[option] = None if value == -1 else (value * scale if scale != 1 else value)
    options = LogOptions(segment_bytes=current.segment_bytes, **values)
    try:
        options.check()
        if not validate_only:
            logs = session.ns.core.logs
            for index in range(count):
                logs.change_options(partition_log(name, index), options, session.now)
    except BrokerError as exc:
        return INVALID_CONFIG, exc.message
    return NONE, None
