"""Produce: one magic-2 batch per partition, appended to that partition's log.

Each batch is checked (magic, length, CRC-32C, record framing) and appended
as it came, as one unit, so its records get consecutive offsets atomically
and keep the producer's timestamps (CreateTime); only the base offset, outside
the CRC, is the broker's (``kafka/records.py``). The batch's ``maxTimestamp``
is its time in the log (retention, lookups by time), as in Kafka with
CreateTime. An idempotent
producer's batch (producer id >= 0) first passes the sequence check of
``kafka/producers.py``: a retried batch is answered with the offset it got
the first time instead of being stored again.

``acks=0`` gets no answer at all; ``acks=1`` and ``acks=all`` are the same
on one broker: the answer waits for the group commit's fsync when there is
a data directory (the session holds it; see ``KafkaSession._dispatch``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from kio.schema.errors import ErrorCode

from minibroker.errors import BrokerError, StorageError, StorageFull, TooLarge
from minibroker.kafka import wire
from minibroker.kafka.handlers.admin import (
    NO_THROTTLE,
    NONE,
    UNKNOWN_TOPIC_OR_PARTITION,
    auto_create,
)
from minibroker.kafka.records import InvalidBatch, check_produced

if TYPE_CHECKING:
    from minibroker.kafka.session import KafkaSession, Slot

#: Returned instead of a response: the request gets no answer (``acks=0``).
NO_RESPONSE: Final = object()

UNKNOWN_SERVER_ERROR: Final = ErrorCode(-1)
CORRUPT_MESSAGE: Final = ErrorCode(2)
MESSAGE_TOO_LARGE: Final = ErrorCode(10)
KAFKA_STORAGE_ERROR: Final = ErrorCode(56)
INVALID_RECORD: Final = ErrorCode(87)


def produce(session: KafkaSession, slot: Slot, request: Any) -> Any:
    ns = session.ns
    cls, partition_cls, topic_cls = wire.response_classes(
        0, slot.version, "PartitionProduceResponse", "TopicProduceResponse"
    )
    topics = []
    for topic in request.topic_data:
        topic_error = NONE
        if not ns.topics.partition_count(topic.name):
            topic_error = auto_create(session, topic.name)
        partitions = []
        for data in topic.partition_data:
            error, base_offset, log_start = topic_error, -1, -1
            if error is NONE:
                error, base_offset, log_start = _append(session, topic.name, data)
            partitions.append(
                wire.build(
                    partition_cls,
                    index=data.index,
                    error_code=error,
                    base_offset=base_offset,
                    log_append_time=None,
                    log_start_offset=log_start,
                )
            )
        topics.append(wire.build(topic_cls, name=topic.name, partition_responses=tuple(partitions)))
    if request.acks == 0:
        return NO_RESPONSE
    return wire.build(cls, responses=tuple(topics), throttle_time=NO_THROTTLE)


def _append(session: KafkaSession, topic: str, data: Any) -> tuple[ErrorCode, int, int]:
    """Append one partition's batch: ``(error, base offset, log start offset)``."""
    log = session.ns.topics.partition(topic, data.index)
    if log is None:
        return UNKNOWN_TOPIC_OR_PARTITION, -1, -1
    if data.records is None:
        return INVALID_RECORD, -1, -1
    try:
        batch = check_produced(data.records, session.service.max_request_bytes)
    except InvalidBatch as exc:
        return ErrorCode(exc.error), -1, -1
    logs = session.ns.core.logs
    producers = session.service.producers
    pid = batch.producer_id
    if pid >= 0:
        verdict = producers.check(
            pid, batch.producer_epoch, log.name, batch.base_sequence, batch.last_sequence
        )
        if verdict.error:
            return ErrorCode(verdict.error), -1, -1
        if verdict.duplicate_of is not None:
            return NONE, verdict.duplicate_of, log.store.first_offset
    try:
        offset = logs.append_kafka(
            log.name, batch.data, batch.count, batch.largest, batch.max_timestamp_ms, session.now
        )
    except TooLarge:
        return MESSAGE_TOO_LARGE, -1, -1
    except (StorageFull, StorageError):
        return KAFKA_STORAGE_ERROR, -1, -1
    except BrokerError:
        return INVALID_RECORD, -1, -1
    if pid >= 0:
        producers.appended(
            pid, batch.producer_epoch, log.name, batch.base_sequence, batch.last_sequence, offset
        )
    return NONE, offset, log.store.first_offset
