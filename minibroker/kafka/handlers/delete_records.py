"""DeleteRecords: move a partition's start up, as Kafka's ``deleteRecords`` does.

Test suites use it to empty a topic between tests without deleting it
(confluent-kafka's and aiokafka's ``delete_records``). Each partition's log
gets a new start offset (:meth:`minibroker.core.logs.Logs.delete_records`):
reads below it are OFFSET_OUT_OF_RANGE on every port, ListOffsets "earliest"
and the Fetch answer's ``log_start_offset`` are it, whole segments below it
are deleted, and it is journalled before the answer, so a restart keeps it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from kio.schema.errors import ErrorCode

from minibroker.access.permissions import ADMIN
from minibroker.errors import OffsetOutOfRange
from minibroker.kafka import wire
from minibroker.kafka.authorize import TOPIC_AUTHORIZATION_FAILED, may_partition
from minibroker.kafka.handlers.admin import NO_THROTTLE, NONE, UNKNOWN_TOPIC_OR_PARTITION
from minibroker.kafka.topics import partition_log

if TYPE_CHECKING:
    from minibroker.kafka.session import KafkaSession, Slot

OFFSET_OUT_OF_RANGE: Final = ErrorCode(1)
#: The offset that means "the high watermark": delete every record readers see.
HIGH_WATERMARK: Final = -1


def delete_records(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls, partition_cls, topic_cls = wire.response_classes(
        21, slot.version, "DeleteRecordsPartitionResult", "DeleteRecordsTopicResult"
    )
    topics = []
    for topic in request.topics:
        partitions = []
        for part in topic.partitions:
            error, low = _delete(session, topic.name, part.partition_index, part.offset)
            partitions.append(
                wire.build(
                    partition_cls,
                    partition_index=part.partition_index,
                    low_watermark=low,
                    error_code=error,
                )
            )
        topics.append(wire.build(topic_cls, name=topic.name, partitions=tuple(partitions)))
    return wire.build(cls, throttle_time=NO_THROTTLE, topics=tuple(topics))


def _delete(
    session: KafkaSession, topic: str, partition: int, offset: int
) -> tuple[ErrorCode, int]:
    """One partition's answer: ``(error, low watermark)`` (-1 on an error, as Kafka)."""
    if not may_partition(session, ADMIN, topic, partition):
        return TOPIC_AUTHORIZATION_FAILED, -1
    log = session.ns.topics.partition(topic, partition)
    if log is None:
        return UNKNOWN_TOPIC_OR_PARTITION, -1
    if offset == HIGH_WATERMARK:
        offset = log.high_watermark
    try:
        return NONE, session.ns.core.logs.delete_records(
            partition_log(topic, partition), offset, session.now
        )
    except OffsetOutOfRange:
        return OFFSET_OUT_OF_RANGE, -1
