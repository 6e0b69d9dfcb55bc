"""JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit and OffsetFetch.

The group protocol itself is ``kafka/groups.py``; these handlers translate
requests and answers. Committed offsets go into the partition log's
consumer-group offsets (``Logs.commit``), durable with the log and shown by
``minibroker log stats`` with the group's lag; the optional metadata string
of a commit is kept in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from kio.schema.errors import ErrorCode

from minibroker.access.permissions import READ
from minibroker.errors import (
    BrokerError,
    InvalidName,
    LimitExceeded,
    OffsetOutOfRange,
    StorageError,
    StorageFull,
)
from minibroker.kafka import wire
from minibroker.kafka.authorize import (
    GROUP_AUTHORIZATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
    may_group,
    may_partition,
)
from minibroker.kafka.groups import JoinResult
from minibroker.kafka.handlers.admin import NO_THROTTLE, NONE, UNKNOWN_TOPIC_OR_PARTITION
from minibroker.kafka.topics import partition_log

if TYPE_CHECKING:
    from minibroker.kafka.session import KafkaSession, Slot

OFFSET_OUT_OF_RANGE: Final = ErrorCode(1)
INVALID_GROUP_ID: Final = ErrorCode(24)
OFFSET_METADATA_TOO_LARGE: Final = ErrorCode(12)
#: Longest commit metadata string kept (bytes of UTF-8), as Kafka's broker
#: default ``offset.metadata.max.bytes``: the strings are kept in memory for
#: every group and partition, so a client must not park 32 KiB on each.
MAX_COMMIT_METADATA_BYTES: Final = 4096
UNKNOWN_SERVER_ERROR: Final = ErrorCode(-1)
#: What Kafka's group coordinator answers when the offsets cannot be stored
#: (KAFKA_STORAGE_ERROR): the client finds the coordinator again and retries.
NOT_COORDINATOR: Final = ErrorCode(16)
#: A commit for one group too many (``max_groups_per_namespace``): the broker's
#: policy refuses it, as Kafka refuses what its policies forbid.
POLICY_VIOLATION: Final = ErrorCode(44)


def _instance_id(request: Any) -> str | None:
    """The request's ``group.instance.id`` (KIP-345): JoinGroup v5, Heartbeat and
    SyncGroup v3, OffsetCommit v7 on carry it; older versions None."""
    instance: str | None = getattr(request, "group_instance_id", None)
    return instance


def join_group(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls, member_cls = wire.response_classes(11, slot.version, "JoinGroupResponseMember")

    def reply(result: JoinResult) -> None:
        members = tuple(
            wire.build(
                member_cls, member_id=member_id, group_instance_id=instance, metadata=metadata
            )
            for member_id, instance, metadata in result.members
        )
        session.answer(
            slot,
            wire.build(
                cls,
                throttle_time=NO_THROTTLE,
                error_code=ErrorCode(result.error),
                generation_id=result.generation,
                protocol_name=result.protocol or "",
                leader=result.leader,
                member_id=result.member_id,
                members=members,
            ),
        )

    if not may_group(session, request.group_id):
        reply(JoinResult(int(GROUP_AUTHORIZATION_FAILED), member_id=request.member_id))
        return None
    session_timeout = request.session_timeout.total_seconds()
    rebalance = getattr(request, "rebalance_timeout", request.session_timeout).total_seconds()
    slot.waits_for_peers = True  # the round may wait for members on this connection
    session.ns.groups.join(
        request.group_id,
        request.member_id,
        session.client_name,
        session_timeout,
        rebalance,
        request.protocol_type,
        [(protocol.name, protocol.metadata) for protocol in request.protocols],
        reply,
        session.now,
        client_host="/" + session.peer_name.rsplit(":", 1)[0],
        instance_id=_instance_id(request),
        connection=session,
    )
    return None


def sync_group(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls = wire.response_class(14, slot.version)

    def reply(error: int, assignment: bytes) -> None:
        session.answer(
            slot,
            wire.build(
                cls, throttle_time=NO_THROTTLE, error_code=ErrorCode(error), assignment=assignment
            ),
        )

    if not may_group(session, request.group_id):
        reply(int(GROUP_AUTHORIZATION_FAILED), b"")
        return None
    slot.waits_for_peers = True  # a follower waits for the leader's SyncGroup
    session.ns.groups.sync(
        request.group_id,
        request.generation_id,
        request.member_id,
        [(each.member_id, each.assignment) for each in request.assignments],
        reply,
        session.now,
        _instance_id(request),
    )
    return None


def heartbeat(session: KafkaSession, slot: Slot, request: Any) -> Any:
    error = int(GROUP_AUTHORIZATION_FAILED)
    if may_group(session, request.group_id):
        error = session.ns.groups.heartbeat(
            request.group_id,
            request.generation_id,
            request.member_id,
            session.now,
            _instance_id(request),
        )
    cls = wire.response_class(12, slot.version)
    return wire.build(cls, throttle_time=NO_THROTTLE, error_code=ErrorCode(error))


def leave_group(session: KafkaSession, slot: Slot, request: Any) -> Any:
    """LeaveGroup: v0-2 one member by its id; v3 a batch of members, each by
    member id or ``group.instance.id`` (KIP-345), answered member by member."""
    if slot.version < 3:
        error = int(GROUP_AUTHORIZATION_FAILED)
        if may_group(session, request.group_id):
            error = session.ns.groups.leave(request.group_id, request.member_id, session.now)
        cls = wire.response_class(13, slot.version)
        return wire.build(cls, throttle_time=NO_THROTTLE, error_code=ErrorCode(error))
    cls, member_cls = wire.response_classes(13, slot.version, "MemberResponse")
    if not may_group(session, request.group_id):
        # Kafka's error answer: the code at the top, no members.
        return wire.build(
            cls, throttle_time=NO_THROTTLE, error_code=GROUP_AUTHORIZATION_FAILED, members=()
        )
    answers = session.ns.groups.leave_members(
        request.group_id,
        [(each.member_id, each.group_instance_id) for each in request.members],
        session.now,
    )
    members = tuple(
        wire.build(
            member_cls, member_id=member_id, group_instance_id=instance, error_code=ErrorCode(error)
        )
        for member_id, instance, error in answers
    )
    return wire.build(cls, throttle_time=NO_THROTTLE, error_code=NONE, members=members)


def offset_commit(session: KafkaSession, slot: Slot, request: Any) -> Any:
    ns = session.ns
    cls, partition_cls, topic_cls = wire.response_classes(
        8, slot.version, "OffsetCommitResponsePartition", "OffsetCommitResponseTopic"
    )
    group = request.group_id
    refused = GROUP_AUTHORIZATION_FAILED
    if may_group(session, group):
        refused = ErrorCode(
            ns.groups.check_commit(
                group,
                request.generation_id_or_member_epoch,
                request.member_id,
                _instance_id(request),
            )
        )
    topics = []
    for topic in request.topics:
        partitions = []
        for part in topic.partitions:
            error = refused
            if error is NONE and not may_partition(session, READ, topic.name, part.partition_index):
                error = TOPIC_AUTHORIZATION_FAILED
            if error is NONE:
                error = _commit(session, group, topic.name, part)
            partitions.append(
                wire.build(partition_cls, partition_index=part.partition_index, error_code=error)
            )
        topics.append(wire.build(topic_cls, name=topic.name, partitions=tuple(partitions)))
    return wire.build(cls, throttle_time=NO_THROTTLE, topics=tuple(topics))


def _commit(session: KafkaSession, group: str, topic: str, part: Any) -> ErrorCode:
    ns = session.ns
    log = ns.topics.partition(topic, part.partition_index)
    if log is None:
        return UNKNOWN_TOPIC_OR_PARTITION
    metadata = part.committed_metadata
    if metadata and len(metadata.encode()) > MAX_COMMIT_METADATA_BYTES:
        return OFFSET_METADATA_TOO_LARGE  # and the offset is not committed, as in Kafka
    try:
        ns.core.logs.commit(log.name, group, part.committed_offset, session.now)
    except InvalidName:
        return INVALID_GROUP_ID
    except OffsetOutOfRange:
        return OFFSET_OUT_OF_RANGE
    except (StorageFull, StorageError):
        return NOT_COORDINATOR
    except LimitExceeded:
        return POLICY_VIOLATION
    except BrokerError:
        return UNKNOWN_SERVER_ERROR
    if metadata:
        ns.commit_metadata[(group, log.name)] = metadata
    else:
        ns.commit_metadata.pop((group, log.name), None)
    return NONE


def offset_fetch(session: KafkaSession, slot: Slot, request: Any) -> Any:
    ns = session.ns
    cls, partition_cls, topic_cls = wire.response_classes(
        9, slot.version, "OffsetFetchResponsePartition", "OffsetFetchResponseTopic"
    )
    group = request.group_id
    group_error = NONE if may_group(session, group) else GROUP_AUTHORIZATION_FAILED
    if request.topics is None:  # v2+: every partition the group committed
        asked = [] if group_error is not NONE else _committed(session, group)
    else:
        asked = [(topic.name, tuple(topic.partition_indexes)) for topic in request.topics]
    topics = []
    for name, indexes in asked:
        partitions = []
        for index in indexes:
            log = ns.topics.partition(name, index)
            error = group_error
            if error is NONE and not may_partition(session, READ, name, index):
                error = TOPIC_AUTHORIZATION_FAILED
            offset = -1 if log is None or error is not NONE else log.groups.get(group, -1)
            partitions.append(
                wire.build(
                    partition_cls,
                    partition_index=index,
                    committed_offset=offset,
                    committed_leader_epoch=-1,
                    metadata=""
                    if error is not NONE
                    else ns.commit_metadata.get((group, partition_log(name, index)), ""),
                    error_code=error,
                )
            )
        topics.append(wire.build(topic_cls, name=name, partitions=tuple(partitions)))
    return wire.build(cls, throttle_time=NO_THROTTLE, topics=tuple(topics), error_code=group_error)


def _committed(session: KafkaSession, group: str) -> list[tuple[str, tuple[int, ...]]]:
    """The topics ``group`` committed on, with the partitions this principal
    may read (Kafka leaves the others out of an OffsetFetch for every topic)."""
    found = []
    for name, count in sorted(session.ns.topics.topics().items()):
        if any(group in log.groups for log in _logs(session, name, count)):
            readable = tuple(i for i in range(count) if may_partition(session, READ, name, i))
            if readable:
                found.append((name, readable))
    return found


def _logs(session: KafkaSession, topic: str, count: int) -> list[Any]:
    found = (session.ns.topics.partition(topic, index) for index in range(count))
    return [log for log in found if log is not None]
