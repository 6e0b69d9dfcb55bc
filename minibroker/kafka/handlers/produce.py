"""Produce: one magic-2 batch per partition, appended to that partition's log.

Each batch is checked (magic, length, CRC-32C, record framing) and appended
as it came, as one unit, so its records get consecutive offsets atomically
and keep the producer's timestamps (CreateTime); only the base offset, outside
the CRC, is the broker's (``kafka/records.py``). The batch's ``maxTimestamp``
is its time in the log (retention, lookups by time), as in Kafka with
CreateTime. A topic with ``message.timestamp.type=LogAppendTime`` (the log
option ``append_time``) has each batch stamped with the broker's time
instead, as Kafka does: ``maxTimestamp`` and the timestamp-type bit set, the
CRC computed again, and the time in the answer. An idempotent
producer's batch (producer id >= 0) first passes the sequence check of
``kafka/producers.py``: a retried batch is answered with the offset it got
the first time instead of being stored again.

``acks=0`` gets no answer at all; ``acks=1`` and ``acks=all`` are the same
on one broker: the answer waits for the group commit's fsync when there is
a data directory (the session holds it; see ``KafkaSession._dispatch``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from kio.schema.errors import ErrorCode

from minibroker.errors import BrokerError, StorageError, StorageFull, TooLarge
from minibroker.kafka import wire
from minibroker.kafka.handlers.admin import (
    KAFKA_STORAGE_ERROR,
    NO_THROTTLE,
    NONE,
    UNKNOWN_TOPIC_OR_PARTITION,
    auto_create,
)
from minibroker.kafka.producers import TAIL_BYTES, TAIL_RECORDS, StoredSequence
from minibroker.kafka.records import (
    BATCH_HEADER,
    MAX_INFLATED_BYTES,
    InvalidBatch,
    check_produced,
    claimed_records,
    with_append_time,
)
from minibroker.log_store import StoredBatch
from minibroker.storage.batch import KIND_KAFKA

if TYPE_CHECKING:
    from minibroker.core.logs import Log
    from minibroker.kafka.session import KafkaSession, Slot

#: Returned instead of a response: the request gets no answer (``acks=0``).
NO_RESPONSE: Final = object()

UNKNOWN_SERVER_ERROR: Final = ErrorCode(-1)
CORRUPT_MESSAGE: Final = ErrorCode(2)
MESSAGE_TOO_LARGE: Final = ErrorCode(10)
INVALID_REQUIRED_ACKS: Final = ErrorCode(21)
INVALID_RECORD: Final = ErrorCode(87)
#: The ``acks`` a producer may ask for: none, the leader, all in-sync replicas.
VALID_ACKS: Final = (0, 1, -1)
#: Most records one Produce request may hold, all its batches together.
#: Checking them costs about a microsecond a record on the loop every client
#: shares (a 17.8 MB request of 2,000,000 empty records held every client up
#: for 7.5 s). Kafka clients send at most 1 MB per request by default
#: (``max.request.size``, librdkafka's ``message.max.bytes``), and a record
#: takes at least 7 bytes, so their requests stay below this.
MAX_REQUEST_RECORDS: Final = 200_000
#: Bytes the compressed batches of one Produce request may inflate to, all
#: together. Each batch may inflate to 16 MiB (``records.MAX_INFLATED_BYTES``),
#: but a request may hold thousands of them: a 64 KB request of 100 zstd
#: batches of 637 bytes, each inflating past 16 MiB, held every client up
#: for 5 s. Past the budget a compressed batch is MESSAGE_TOO_LARGE without
#: being inflated. Clients send at most 1 MB per request by default.
MAX_REQUEST_INFLATED_BYTES: Final = 64 * 1024 * 1024


def produce(session: KafkaSession, slot: Slot, request: Any) -> Any:
    ns = session.ns
    cls, partition_cls, topic_cls = wire.response_classes(
        0, slot.version, "PartitionProduceResponse", "TopicProduceResponse"
    )
    topics = []
    # Any other acks is refused for every partition before anything is
    # created or stored, as Kafka's replica manager does.
    valid_acks = request.acks in VALID_ACKS
    request_error = NONE if valid_acks else INVALID_REQUIRED_ACKS
    if valid_acks and _claimed(request) > MAX_REQUEST_RECORDS:
        request_error = MESSAGE_TOO_LARGE  # refused whole: nothing created or stored
    budget = _Budget(MAX_REQUEST_INFLATED_BYTES)
    for topic in request.topic_data:
        topic_error = request_error
        if topic_error is NONE and not ns.topics.partition_count(topic.name):
            topic_error = auto_create(session, topic.name)
        partitions = []
        for data in topic.partition_data:
            error, base_offset, log_start, append_time = topic_error, -1, -1, None
            if error is NONE:
                error, base_offset, log_start, append_time = _append(
                    session, topic.name, data, budget
                )
            partitions.append(
                wire.build(
                    partition_cls,
                    index=data.index,
                    error_code=error,
                    base_offset=base_offset,
                    log_append_time=append_time,
                    log_start_offset=log_start,
                )
            )
        topics.append(wire.build(topic_cls, name=topic.name, partition_responses=tuple(partitions)))
    if request.acks == 0:
        return NO_RESPONSE
    return wire.build(cls, responses=tuple(topics), throttle_time=NO_THROTTLE)


@dataclass(slots=True)
class _Budget:
    """What the rest of one Produce request's batches may inflate to."""

    inflate: int


def _claimed(request: Any) -> int:
    """The records the request's batches claim, from their headers alone."""
    return sum(
        claimed_records(data.records)
        for topic in request.topic_data
        for data in topic.partition_data
    )


Appended = tuple[ErrorCode, int, int, "datetime | None"]


def _append(session: KafkaSession, topic: str, data: Any, budget: _Budget) -> Appended:
    """Append one partition's batch: ``(error, base offset, log start offset,
    append time)``; the append time is None unless the topic is LogAppendTime.
    What it inflates to is taken from the request's ``budget``."""
    log = session.ns.topics.partition(topic, data.index)
    if log is None:
        return UNKNOWN_TOPIC_OR_PARTITION, -1, -1, None
    if data.records is None:
        return INVALID_RECORD, -1, -1, None
    limit = min(session.service.max_request_bytes, budget.inflate)
    try:
        batch = check_produced(data.records, limit, session.broker.config.limits.max_batch)
    except InvalidBatch as exc:
        if exc.error == MESSAGE_TOO_LARGE:
            budget.inflate -= min(limit, MAX_INFLATED_BYTES)  # what inflating it may have cost
        return ErrorCode(exc.error), -1, -1, None
    budget.inflate -= batch.inflated
    append_time = None
    if log.options.append_time:
        now_ms = session.broker.clock.wall_ms(session.now)
        batch = replace(batch, data=with_append_time(batch.data, now_ms), max_timestamp_ms=now_ms)
        append_time = datetime.fromtimestamp(now_ms / 1000, UTC)
    logs = session.ns.core.logs
    producers = session.service.producers
    pid = batch.producer_id
    if pid >= 0:
        if not producers.knows_tail(log.name):
            producers.learn_tail(log.name, stored_sequences(log))
        verdict = producers.check(
            pid, batch.producer_epoch, log.name, batch.base_sequence, batch.last_sequence
        )
        if verdict.error:
            return ErrorCode(verdict.error), -1, -1, None
        if verdict.duplicate_of is not None:
            return NONE, verdict.duplicate_of, log.first_offset, None
    try:
        offset = logs.append_kafka(
            log.name, batch.data, batch.count, batch.largest, batch.max_timestamp_ms, session.now
        )
    except TooLarge:
        return MESSAGE_TOO_LARGE, -1, -1, None
    except (StorageFull, StorageError):
        return KAFKA_STORAGE_ERROR, -1, -1, None
    except BrokerError:
        return INVALID_RECORD, -1, -1, None
    if pid >= 0:
        producers.appended(
            pid, batch.producer_epoch, log.name, batch.base_sequence, batch.last_sequence, offset
        )
    return NONE, offset, log.first_offset, append_time


def stored_sequences(log: Log) -> list[StoredSequence]:
    """The idempotent batches among the last ``TAIL_RECORDS`` records of ``log``,
    oldest first (what ``Producers.learn_tail`` needs after a restart).

    Reads windows ending at the high watermark, each eight times longer than
    the last, and keeps the longest one that fits in ``TAIL_BYTES`` (the
    first, the last batch, whatever its size): the newest batches, the ones
    a producer may send again, are always in it."""
    found: list[StoredSequence] = []
    window = 1
    while True:
        start = max(log.first_offset, log.high_watermark - window)
        units = _read_all(log, start, TAIL_BYTES if window > 1 else None)
        if units is None:
            return found
        found = [
            (producer_id, epoch, first_seq, first_seq + count - 1, unit.first_offset)
            for unit in units
            if unit.kind == KIND_KAFKA
            for producer_id, epoch, first_seq, count in [_producer_fields(unit.data)]
        ]
        if start == log.first_offset or window >= TAIL_RECORDS:
            return found
        window = min(window * 8, TAIL_RECORDS)


def _read_all(log: Log, start: int, max_bytes: int | None) -> list[StoredBatch] | None:
    """Every stored unit from ``start`` to the high watermark; None past ``max_bytes``."""
    units: list[StoredBatch] = []
    size = 0
    offset = start
    while offset < log.high_watermark:
        if max_bytes is not None and size >= max_bytes:
            return None
        got = log.read_batches_at(offset, TAIL_BYTES if max_bytes is None else max_bytes - size)
        if not got:
            break
        units += got
        size += sum(len(unit.data) for unit in got)
        offset = got[-1].first_offset + got[-1].records
    if max_bytes is not None and size > max_bytes:
        return None
    return units


def _producer_fields(batch: bytes) -> tuple[int, int, int, int]:
    """(producer id, epoch, base sequence, record count) of a stored Kafka batch."""
    fields = BATCH_HEADER.unpack_from(batch)
    return fields[9], fields[10], fields[11], fields[12]
