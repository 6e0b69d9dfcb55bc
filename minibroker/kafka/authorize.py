"""Kafka's authorization checks, on minibroker's permissions (``access/permissions.py``).

A Kafka topic partition is the log ``<topic>-<partition>``, so a Kafka client
needs on it what a msgpack client needs on that log: ``write`` to produce,
``read`` to fetch, list offsets and commit, ``admin`` to create or delete it.
A topic is visible (Metadata, DescribeConfigs) with any grant on its first
partition's log, as ``log.list`` shows a log with any grant. Consumer groups
are the ``group`` kind: ``read`` to join one, commit for it or describe it,
as Kafka's Group READ and DESCRIBE ACLs, ``admin`` to delete it or its
offsets. What is refused gets Kafka's codes: TOPIC_AUTHORIZATION_FAILED per
partition or topic, GROUP_AUTHORIZATION_FAILED for the group, and the
connection stays open.

Handlers of this package's admin and group APIs check as they go. Produce,
Fetch and ListOffsets are wrapped instead (:func:`guarded`): the partitions
the principal may not touch are taken out of the request before the handler
sees it, and put back into its answer with the error, so those handlers stay
about storage alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from kio.schema.errors import ErrorCode

from minibroker.access.permissions import ADMIN, GROUP, LOG, READ, WRITE
from minibroker.kafka import wire
from minibroker.kafka.topics import partition_log

if TYPE_CHECKING:
    from minibroker.kafka.session import KafkaSession, Slot

TOPIC_AUTHORIZATION_FAILED: Final = ErrorCode(29)
GROUP_AUTHORIZATION_FAILED: Final = ErrorCode(30)

Handler = Callable[["KafkaSession", "Slot", Any], Any]


def may_partition(session: KafkaSession, action: str, topic: str, partition: int) -> bool:
    grants = session.grants
    return grants is None or grants.allows(action, LOG, partition_log(topic, partition))


def may_partitions(session: KafkaSession, action: str, topic: str, count: int) -> bool:
    """``action`` on partitions 0 to ``count - 1`` of ``topic`` (creating, deleting)."""
    return all(may_partition(session, action, topic, index) for index in range(count))


def sees_topic(session: KafkaSession, topic: str) -> bool:
    grants = session.grants
    return grants is None or grants.allows_any(LOG, partition_log(topic, 0))


def may_group(session: KafkaSession, group: str) -> bool:
    grants = session.grants
    return grants is None or grants.allows(READ, GROUP, group)


def may_delete_group(session: KafkaSession, group: str) -> bool:
    """``admin`` on the group: deleting it or its offsets (Kafka's Group DELETE)."""
    grants = session.grants
    return grants is None or grants.allows(ADMIN, GROUP, group)


def sees_group(session: KafkaSession, group: str) -> bool:
    grants = session.grants
    return grants is None or grants.allows_any(GROUP, group)


# --------------------------------------------- Produce, Fetch, ListOffsets


@dataclass(frozen=True, slots=True)
class _Shape:
    """Where one API keeps its topics and partitions, in requests and answers."""

    api_key: int
    action: str
    #: Request: the topics field, a topic's name and partitions fields, a partition's index.
    topics: str
    topic_name: str
    partitions: str
    index: str
    #: Response: the same, with the nested classes' names.
    answer_topics: str
    answer_topic_cls: str
    answer_topic_name: str
    answer_partitions: str
    answer_partition_cls: str
    answer_index: str
    #: A refused partition's other fields.
    refused: dict[str, Any]


_SHAPES: Final = {
    0: _Shape(
        0,
        WRITE,
        "topic_data",
        "name",
        "partition_data",
        "index",
        "responses",
        "TopicProduceResponse",
        "name",
        "partition_responses",
        "PartitionProduceResponse",
        "index",
        {"base_offset": -1, "log_append_time": None, "log_start_offset": -1},
    ),
    1: _Shape(
        1,
        READ,
        "topics",
        "topic",
        "partitions",
        "partition",
        "responses",
        "FetchableTopicResponse",
        "topic",
        "partitions",
        "PartitionData",
        "partition_index",
        {
            "high_watermark": -1,
            "last_stable_offset": -1,
            "log_start_offset": -1,
            "aborted_transactions": (),
            "preferred_read_replica": -1,
            "records": b"",
        },
    ),
    2: _Shape(
        2,
        READ,
        "topics",
        "name",
        "partitions",
        "partition_index",
        "topics",
        "ListOffsetsTopicResponse",
        "name",
        "partitions",
        "ListOffsetsPartitionResponse",
        "partition_index",
        {"timestamp": -1, "offset": -1, "leader_epoch": -1},
    ),
}


def guarded(api_key: int, handler: Handler) -> Handler:
    """``handler`` behind the permission check of its partitions (Produce,
    Fetch, ListOffsets): refused ones get TOPIC_AUTHORIZATION_FAILED."""
    shape = _SHAPES[api_key]

    def guard(session: KafkaSession, slot: Slot, request: Any) -> Any:
        if session.grants is None:
            return handler(session, slot, request)
        kept, refused = _split(session, shape, request)
        if not refused:
            return handler(session, slot, request)
        slot.patch = lambda response: _add_refused(shape, slot.version, response, refused)
        return handler(session, slot, replace(request, **{shape.topics: kept}))

    return guard


def _split(
    session: KafkaSession, shape: _Shape, request: Any
) -> tuple[tuple[Any, ...], dict[str, list[int]]]:
    """The request's topics cut down to what may be done, and what may not."""
    kept: list[Any] = []
    refused: dict[str, list[int]] = {}
    for topic in getattr(request, shape.topics):
        name = getattr(topic, shape.topic_name)
        allowed = []
        for part in getattr(topic, shape.partitions):
            index = getattr(part, shape.index)
            if may_partition(session, shape.action, name, index):
                allowed.append(part)
            else:
                refused.setdefault(name, []).append(index)
        if allowed:
            kept.append(replace(topic, **{shape.partitions: tuple(allowed)}))
    return tuple(kept), refused


def _add_refused(shape: _Shape, version: int, response: Any, refused: dict[str, list[int]]) -> Any:
    answer_cls = wire.response_class(shape.api_key, version)
    topic_cls = wire.nested(answer_cls, shape.answer_topic_cls)
    partition_cls = wire.nested(answer_cls, shape.answer_partition_cls)
    topics = list(getattr(response, shape.answer_topics))
    for name, indexes in refused.items():
        entries = tuple(
            wire.build(
                partition_cls,
                **{shape.answer_index: index},
                error_code=TOPIC_AUTHORIZATION_FAILED,
                **shape.refused,
            )
            for index in indexes
        )
        for position, topic in enumerate(topics):
            if getattr(topic, shape.answer_topic_name) == name:
                merged = getattr(topic, shape.answer_partitions) + entries
                topics[position] = replace(topic, **{shape.answer_partitions: merged})
                break
        else:
            topics.append(
                wire.build(
                    topic_cls,
                    **{shape.answer_topic_name: name, shape.answer_partitions: entries},
                )
            )
    return replace(response, **{shape.answer_topics: tuple(topics)})
