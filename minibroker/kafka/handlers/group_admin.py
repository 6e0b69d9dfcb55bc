"""ListGroups (v0-2) and DescribeGroups (v0-4): the consumer groups an admin client sees.

A group is listed while it has members (the coordinator in ``kafka/groups.py``)
or committed offsets on a Kafka topic's partition log; one with offsets
only is Empty, as in Kafka after its members left, and its protocol type is
unknown (""): the coordinator forgets a group when its last member leaves.
DescribeGroups answers a group nobody knows as Kafka does: no error, state
Dead, no members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from minibroker.kafka import wire
from minibroker.kafka.authorize import GROUP_AUTHORIZATION_FAILED, may_group, sees_group
from minibroker.kafka.groups import Group
from minibroker.kafka.handlers.admin import NO_THROTTLE, NONE

if TYPE_CHECKING:
    from minibroker.kafka.session import KafkaSession, Slot

EMPTY: Final = "Empty"
DEAD: Final = "Dead"
#: DescribeGroups v3+: authorized operations were not asked for.
NOT_ASKED: Final = -(2**31)


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
    cls, listed_cls = wire.response_classes(16, slot.version, "ListedGroup")
    live = session.ns.groups.groups
    types = {name: group.protocol_type or "" for name, group in live.items()}
    for name in _groups_with_offsets(session):
        types.setdefault(name, "")
    groups = tuple(
        wire.build(listed_cls, group_id=name, protocol_type=protocol_type)
        for name, protocol_type in sorted(types.items())
        if sees_group(session, name)
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
        described.append(wire.build(group_cls, **fields))
    return wire.build(cls, throttle_time=NO_THROTTLE, groups=tuple(described))


def _described(group: Group, member_cls: type) -> dict[str, Any]:
    protocol = group.protocol
    members = tuple(
        wire.build(
            member_cls,
            member_id=member.member_id,
            group_instance_id=None,
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
