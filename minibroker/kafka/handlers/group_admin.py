"""ListGroups, DescribeGroups, DeleteGroups, OffsetDelete: consumer groups for admin clients.

A group is listed while it has members (the coordinator in ``kafka/groups.py``)
or committed offsets on a Kafka topic's partition log; one with offsets
only is Empty, as in Kafka after its members left, with the protocol type
its members had ("consumer"), or "" for a group that never had members
(``GroupCoordinator.protocol_type``).
DescribeGroups answers a group nobody knows as Kafka does: no error, state
Dead, no members.

DeleteGroups (v0-1) deletes a group's committed offsets from every partition
log (``Logs.forget_group``: journaled, so they stay deleted after a restart);
a group with members is NON_EMPTY_GROUP, one nobody knows GROUP_ID_NOT_FOUND.
OffsetDelete (v0) deletes them for the partitions asked, except on topics a
live member subscribed to (GROUP_SUBSCRIBED_TO_TOPIC), as Kafka does. Both
need ``admin`` on ``group:<group>`` (Kafka's Group DELETE); OffsetDelete also
``read`` on each partition log, as Kafka asks Topic READ.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Final

from kio.schema.errors import ErrorCode

from minibroker.access.permissions import READ
from minibroker.kafka import wire
from minibroker.kafka.authorize import (
    GROUP_AUTHORIZATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
    may_delete_group,
    may_group,
    may_partition,
    sees_group,
)
from minibroker.kafka.groups import Group
from minibroker.kafka.handlers.admin import NO_THROTTLE, NONE, UNKNOWN_TOPIC_OR_PARTITION
from minibroker.kafka.topics import partition_log

if TYPE_CHECKING:
    from minibroker.kafka.session import KafkaSession, Slot

EMPTY: Final = "Empty"
DEAD: Final = "Dead"
#: DescribeGroups v3+: authorized operations were not asked for.
NOT_ASKED: Final = -(2**31)
NON_EMPTY_GROUP: Final = ErrorCode(68)
GROUP_ID_NOT_FOUND: Final = ErrorCode(69)
GROUP_SUBSCRIBED_TO_TOPIC: Final = ErrorCode(86)


def _groups_with_offsets(session: KafkaSession) -> set[str]:
    """Groups that committed offsets on any partition of any Kafka topic."""
    ns = session.ns
    found: set[str] = set()
    for topic, count in ns.topics.topics().items():
        for index in range(count):
            log = ns.topics.partition(topic, index)
            if log is not None:
                found.update(log.groups)
    return found


def list_groups(session: KafkaSession, slot: Slot, request: Any) -> Any:
    """Every group with members or committed offsets; v4 adds each one's
    state and filters by ``states_filter`` (empty: every state), as Kafka's
    ``listGroups`` does (the filter's names are matched case-insensitively)."""
    cls, listed_cls = wire.response_classes(16, slot.version, "ListedGroup")
    coordinator = session.ns.groups
    listed = {
        name: (group.protocol_type or "", group.state.value)
        for name, group in coordinator.groups.items()
    }
    for name in _groups_with_offsets(session):
        listed.setdefault(name, (coordinator.protocol_type(name), EMPTY))
    wanted = {state.lower() for state in getattr(request, "states_filter", ())}
    groups = tuple(
        wire.build(listed_cls, group_id=name, protocol_type=protocol_type, group_state=state)
        for name, (protocol_type, state) in sorted(listed.items())
        if (not wanted or state.lower() in wanted) and sees_group(session, name)
    )
    return wire.build(cls, throttle_time=NO_THROTTLE, error_code=NONE, groups=groups)


def describe_groups(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls, group_cls, member_cls = wire.response_classes(
        15, slot.version, "DescribedGroup", "DescribedGroupMember"
    )
    described = []
    for name in request.groups:
        fields: dict[str, Any] = {
            "group_id": name,
            "error_code": NONE,
            "group_state": DEAD,
            "protocol_type": "",
            "protocol_data": "",
            "members": (),
            "authorized_operations": NOT_ASKED,
        }
        group = session.ns.groups.describe(name)
        if not may_group(session, name):
            fields["error_code"] = GROUP_AUTHORIZATION_FAILED
        elif group is not None:
            fields.update(_described(group, member_cls))
        elif name in _groups_with_offsets(session):
            fields["group_state"] = EMPTY
            fields["protocol_type"] = session.ns.groups.protocol_type(name)
        described.append(wire.build(group_cls, **fields))
    return wire.build(cls, throttle_time=NO_THROTTLE, groups=tuple(described))


def _described(group: Group, member_cls: type) -> dict[str, Any]:
    protocol = group.protocol
    members = tuple(
        wire.build(
            member_cls,
            member_id=member.member_id,
            group_instance_id=member.instance_id,  # v4+ (not served yet)
            client_id=member.client_id,
            client_host=member.client_host,
            member_metadata=member.protocols.get(protocol, b"") if protocol else b"",
            member_assignment=member.assignment,
        )
        for member in group.members.values()
    )
    return {
        "group_state": group.state.value,
        "protocol_type": group.protocol_type or "",
        "protocol_data": protocol or "",
        "members": members,
    }


def delete_groups(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls, result_cls = wire.response_classes(42, slot.version, "DeletableGroupResult")
    results = tuple(
        wire.build(result_cls, group_id=name, error_code=_delete_group(session, name))
        for name in request.groups_names
    )
    return wire.build(cls, throttle_time=NO_THROTTLE, results=results)


def _delete_group(session: KafkaSession, name: str) -> ErrorCode:
    ns = session.ns
    if not may_delete_group(session, name):
        return GROUP_AUTHORIZATION_FAILED
    if ns.groups.describe(name) is not None:
        return NON_EMPTY_GROUP
    found = False
    for topic, count in ns.topics.topics().items():
        for index in range(count):
            found |= _forget(session, name, topic, index)
    ns.groups.deleted(name)
    return NONE if found else GROUP_ID_NOT_FOUND


def _forget(session: KafkaSession, group: str, topic: str, index: int) -> bool:
    """Delete ``group``'s offset on one partition (and its commit metadata)."""
    ns = session.ns
    log = partition_log(topic, index)
    ns.commit_metadata.pop((group, log), None)
    return ns.core.logs.forget_group(log, group, session.now)


def offset_delete(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls, topic_cls, partition_cls = wire.response_classes(
        47, slot.version, "OffsetDeleteResponseTopic", "OffsetDeleteResponsePartition"
    )
    name = request.group_id
    ns = session.ns
    error = NONE
    if not may_delete_group(session, name):
        error = GROUP_AUTHORIZATION_FAILED
    elif ns.groups.describe(name) is None and name not in _groups_with_offsets(session):
        error = GROUP_ID_NOT_FOUND
    if error is not NONE:
        return wire.build(cls, error_code=error, throttle_time=NO_THROTTLE, topics=())
    subscribed = _subscribed_topics(ns.groups.describe(name))
    topics = []
    for topic in request.topics:
        partitions = []
        for part in topic.partitions:
            index = part.partition_index
            if not may_partition(session, READ, topic.name, index):
                code = TOPIC_AUTHORIZATION_FAILED
            elif ns.topics.partition(topic.name, index) is None:
                code = UNKNOWN_TOPIC_OR_PARTITION
            elif subscribed is None or topic.name in subscribed:
                code = GROUP_SUBSCRIBED_TO_TOPIC
            else:
                _forget(session, name, topic.name, index)
                code = NONE
            partitions.append(wire.build(partition_cls, partition_index=index, error_code=code))
        topics.append(wire.build(topic_cls, name=topic.name, partitions=tuple(partitions)))
    return wire.build(cls, error_code=NONE, throttle_time=NO_THROTTLE, topics=tuple(topics))


def _subscribed_topics(group: Group | None) -> set[str] | None:
    """The topics the live members of ``group`` subscribed to; None: unknown (all).

    A member of a "consumer" group sends its subscription as the metadata of
    each strategy (Kafka's ConsumerProtocolSubscription: i16 version, then
    the topic names as an array of i16-length strings; later versions add
    fields after them). Any other protocol type, or metadata that does not
    read, counts as subscribed to everything, so nothing is deleted under it.
    """
    if group is None:
        return set()
    if group.protocol_type != "consumer":
        return None
    topics: set[str] = set()
    try:
        for member in group.members.values():
            for metadata in member.protocols.values():
                (count,) = struct.unpack_from(">i", metadata, 2)
                pos = 6
                for _ in range(count):
                    (length,) = struct.unpack_from(">h", metadata, pos)
                    topics.add(metadata[pos + 2 : pos + 2 + length].decode())
                    pos += 2 + length
    except (struct.error, UnicodeDecodeError):
        return None
    return topics
