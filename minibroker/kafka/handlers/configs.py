"""DescribeConfigs (v1-3): a topic's configs as its logs hold them, and the broker's.

A topic's configs are read from the options of its first partition's log
(all its partitions are created with the same): ``retention.ms``,
``retention.bytes`` and ``segment.bytes`` are the log's retention and segment
size, -1 where there is no limit; ``cleanup.policy`` is always ``delete``,
because minibroker does not compact (a topic created with ``compact`` keeps
every record, and says so here). Configs set at creation report the source
DYNAMIC_TOPIC_CONFIG, the others DEFAULT_CONFIG, as Kafka does; all are
read-only, as there is no AlterConfigs. The broker (resource type 4) reports
the settings of the ``--kafka-*`` flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kio.schema.errors import ErrorCode

from minibroker.core.log_options import LogOptions
from minibroker.kafka import wire
from minibroker.kafka.authorize import TOPIC_AUTHORIZATION_FAILED, sees_topic
from minibroker.kafka.handlers.admin import NO_THROTTLE, NONE, UNKNOWN_TOPIC_OR_PARTITION
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
INT: Final = 3
LONG: Final = 5
LIST: Final = 7


@dataclass(frozen=True, slots=True)
class Config:
    name: str
    value: str
    #: Set by the topic's creator (DYNAMIC_TOPIC_CONFIG) or a default.
    source: int
    kind: int
    documentation: str


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
                read_only=True,
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
