"""Fetch (with long-poll) and ListOffsets.

A Fetch reads each requested partition's log from the fetch offset as the
log stores it: batches a Kafka producer appended come back as their stored
bytes, whole (the first may begin before the fetch offset; clients skip
those records, as with Kafka), and records appended through another door are
packed into one magic-2 batch per run (``kafka/records.py``), an append's
batch of entries into one magic-2 batch (whole, like a Kafka batch). At least one
batch comes back when one is there, even past ``max_bytes``, so a consumer is
never stuck behind a big one. When nothing is readable the
request is parked on every partition's log (the core's ``wait_for_records``)
until records arrive on any of them or ``max_wait_ms`` passes, on the core's
timers, so a MockClock test never waits. Consumers only ever see records
below the high watermark, which with group commit means records already
fsynced. A parked Fetch woken while its connection holds more answers than
``KafkaSession.takes_reply`` allows (a client that pipelined many Fetches
and stopped reading) answers as at ``max_wait_ms``, without records: the
client fetches again from the same offsets, and the broker holds no copy of
the records per parked Fetch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from kio.schema.errors import ErrorCode

from minibroker.core.log_readers import ReadWaiter
from minibroker.kafka import wire
from minibroker.kafka.handlers.admin import NO_THROTTLE, NONE, UNKNOWN_TOPIC_OR_PARTITION
from minibroker.kafka.records import encode_batch
from minibroker.log_store import StoredBatch
from minibroker.record_format import KIND_ENTRIES, decode_records_fast, entries_records

if TYPE_CHECKING:
    from minibroker.kafka.session import KafkaSession, Slot

OFFSET_OUT_OF_RANGE: Final = ErrorCode(1)
LATEST: Final = -1
EARLIEST: Final = -2
#: Most bytes of records one Fetch answer carries, whatever the client's
#: ``max_bytes`` (Kafka's broker config ``fetch.max.bytes``, 55 MiB by default):
#: a client asking for 2 GiB must not make the broker read that much of its
#: logs into one answer. The first batch still comes back whatever its size.
FETCH_MAX_BYTES: Final = 55 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Wanted:
    topic: str
    partition: int
    offset: int
    max_bytes: int


def fetch(session: KafkaSession, slot: Slot, request: Any) -> Any:
    wanted = [
        _Wanted(topic.topic, part.partition, part.fetch_offset, part.partition_max_bytes)
        for topic in request.topics
        for part in topic.partitions
    ]
    response, found = _read(session, slot.version, wanted, request.max_bytes)
    wait = request.max_wait.total_seconds()
    if found or wait <= 0:
        return response
    limit = session.broker.config.limits.max_wait_seconds
    _ParkedFetch(session, slot, wanted, request.max_bytes).park(min(wait, limit))
    return None


@dataclass(slots=True)
class _ParkedFetch:
    """A Fetch that found nothing, waiting on all its partitions' logs at once."""

    session: KafkaSession
    slot: Slot
    wanted: list[_Wanted]
    max_bytes: int
    waiters: list[tuple[int, ReadWaiter | None]] = field(default_factory=list)
    done: bool = False

    def park(self, wait: float) -> None:
        session = self.session
        logs = session.ns.core.logs
        for want in self.wanted:
            log = session.ns.topics.partition(want.topic, want.partition)
            if log is None or want.offset != log.high_watermark:
                continue
            token = session.park(self._wake)
            waiter = logs.wait_for_records(
                session, token, log.name, want.offset, 1, 1, wait, session.now
            )
            self.waiters.append((token, waiter))
        if not self.waiters:
            session.answer(
                self.slot, _read(session, self.slot.version, self.wanted, self.max_bytes)[0]
            )

    def _wake(self, _result: object) -> None:
        """Records arrived on one of the logs, or the wait ran out: answer once."""
        if self.done:
            return
        self.done = True
        session = self.session
        for token, waiter in self.waiters:
            session.unpark(token)
            if waiter is not None:
                waiter.detach()
        response, _ = _read(
            session, self.slot.version, self.wanted, self.max_bytes, session.takes_reply()
        )
        session.answer(self.slot, response)


def _read(
    session: KafkaSession,
    version: int,
    wanted: list[_Wanted],
    max_bytes: int,
    with_records: bool = True,
) -> tuple[Any, bool]:
    """The Fetch response for ``wanted`` as things are now, and whether it has records.

    Without ``with_records``, the answer at ``max_wait_ms``: every partition's
    offsets and errors, no records.
    """
    ns = session.ns
    cls, partition_cls, topic_cls = wire.response_classes(
        1, version, "PartitionData", "FetchableTopicResponse"
    )
    budget = max(min(max_bytes, FETCH_MAX_BYTES), 1)
    found = False
    by_topic: dict[str, list[Any]] = {}
    for want in wanted:
        log = ns.topics.partition(want.topic, want.partition)
        error, end, start = NONE, -1, -1
        records: bytes | wire.RecordParts = b""
        if log is None:
            error = UNKNOWN_TOPIC_OR_PARTITION
        else:
            end, start = log.high_watermark, log.first_offset
            if not start <= want.offset <= end:
                error = OFFSET_OUT_OF_RANGE
            elif with_records and want.offset < end and budget > 0:
                units = log.read_batches_at(want.offset, max(min(want.max_bytes, budget), 1))
                if units:
                    records = _as_kafka(units)
                    budget -= records.size
                    found = True
        by_topic.setdefault(want.topic, []).append(
            wire.build(
                partition_cls,
                partition_index=want.partition,
                error_code=error,
                high_watermark=end,
                last_stable_offset=end,
                log_start_offset=start,
                aborted_transactions=(),
                preferred_read_replica=-1,
                records=records,
            )
        )
    topics = tuple(
        wire.build(topic_cls, topic=name, partitions=tuple(parts))
        for name, parts in by_topic.items()
    )
    response = wire.build(
        cls, throttle_time=NO_THROTTLE, error_code=NONE, session_id=0, responses=topics
    )
    return response, found


def _as_kafka(units: list[StoredBatch]) -> wire.RecordParts:
    """A Fetch answer's records: stored Kafka batches as they are, runs of
    record frames and batches of entries packed into a batch each; not
    joined (``wire.RecordParts``)."""
    return wire.RecordParts(map(_kafka_batch, units))


def _kafka_batch(unit: StoredBatch) -> bytes:
    if unit.kind == KIND_ENTRIES:
        return encode_batch(entries_records(unit.data))
    if unit.kind:
        return unit.data  # a Kafka batch, as stored
    return encode_batch(decode_records_fast(unit.data))


def list_offsets(session: KafkaSession, slot: Slot, request: Any) -> Any:
    """Offsets by time: -1 the end (latest), -2 the start (earliest), else the
    first record at or after that many milliseconds since the epoch."""
    ns = session.ns
    cls, partition_cls, topic_cls = wire.response_classes(
        2, slot.version, "ListOffsetsPartitionResponse", "ListOffsetsTopicResponse"
    )
    topics = []
    for topic in request.topics:
        partitions = []
        for part in topic.partitions:
            log = ns.topics.partition(topic.name, part.partition_index)
            error, offset, timestamp = NONE, -1, -1
            if log is None:
                error = UNKNOWN_TOPIC_OR_PARTITION
            elif part.timestamp == LATEST:
                offset = log.high_watermark
            elif part.timestamp == EARLIEST:
                offset = log.first_offset
            elif part.timestamp >= 0:
                found = log.resolve_start("earliest", part.timestamp, None)
                if found < log.high_watermark:
                    offset = found
                    timestamp = decode_records_fast(log.read_at(found, 1, 1).data)[0].timestamp_ms
            partitions.append(
                wire.build(
                    partition_cls,
                    partition_index=part.partition_index,
                    error_code=error,
                    timestamp=timestamp,
                    offset=offset,
                    leader_epoch=0,
                )
            )
        topics.append(wire.build(topic_cls, name=topic.name, partitions=tuple(partitions)))
    return wire.build(cls, throttle_time=NO_THROTTLE, topics=tuple(topics))
