"""DescribeAcls, CreateAcls, DeleteAcls (v1): minibroker's permissions seen as Kafka ACLs.

minibroker has no ACL store: who may do what comes from the server's
permissions file (``--permissions``, access/permissions.py), the same for
every port. So:

* Without a permissions file there is no authorizer, and all three APIs
  answer SECURITY_DISABLED, as a Kafka broker without ``authorizer.class.name``
  does.
* With one, DescribeAcls lists its grants as ALLOW bindings, read-only:
  principal ``User:<name>`` (``User:*`` for ``*``), host ``*``; a ``log``
  grant is a TOPIC binding and a ``group`` grant a GROUP binding (a grant
  for every kind is both; queue, topic and subject grants have no Kafka
  resource and are left out); ``read`` is READ, ``write`` WRITE, ``admin``
  CREATE and DELETE (what it allows on the Kafka port). The pattern ``#``
  is Kafka's wildcard ``*``, a plain name is LITERAL, ``prefix.#`` is
  PREFIXED ``prefix.``; other wildcard patterns have no Kafka form and are
  left out. A log grant names the partition log (``orders-0``), since that
  is what minibroker grants on. A principal sees its own bindings and
  those of ``*``; one with ``admin`` on every log and group (``#``) sees all.
* CreateAcls and DeleteAcls are refused with POLICY_VIOLATION: the file is
  the one source of permissions, and an ACL created through one port would
  not hold on the others. The answer says to edit the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kio.schema.errors import ErrorCode

from minibroker.access.permissions import ADMIN, EVERYONE, GROUP, LOG, READ, WRITE, Grant
from minibroker.kafka import wire
from minibroker.kafka.handlers.admin import NO_THROTTLE, NONE

if TYPE_CHECKING:
    from minibroker.kafka.session import KafkaSession, Slot

SECURITY_DISABLED: Final = ErrorCode(54)
POLICY_VIOLATION: Final = ErrorCode(44)
NO_AUTHORIZER: Final = "no authorizer: the server runs without a permissions file (--permissions)"
READ_ONLY: Final = (
    "ACLs are the server's permissions file (--permissions), read-only through Kafka: "
    "edit the file to change them"
)

# Kafka's enums (org.apache.kafka.common.acl / resource).
ANY: Final = 1
MATCH: Final = 2
TOPIC: Final = 2
GROUP_RESOURCE: Final = 3
LITERAL: Final = 3
PREFIXED: Final = 4
ALLOW: Final = 3
OPERATIONS: Final = {READ: (3,), WRITE: (4,), ADMIN: (5, 6)}  # READ; WRITE; CREATE, DELETE
_RESOURCE_TYPES: Final = {LOG: TOPIC, GROUP: GROUP_RESOURCE}


@dataclass(frozen=True, slots=True)
class Binding:
    """One Kafka ACL binding, as DescribeAcls answers it."""

    resource_type: int
    resource_name: str
    pattern_type: int
    principal: str
    operation: int
    host: str = "*"
    permission_type: int = ALLOW

    def matches(self, wanted: Any) -> bool:
        """Does this binding pass a DescribeAcls or DeleteAcls filter?"""
        return (
            wanted.resource_type_filter in (ANY, self.resource_type)
            and wanted.resource_name_filter in (None, self.resource_name)
            and wanted.pattern_type_filter in (ANY, MATCH, self.pattern_type)
            and wanted.principal_filter in (None, self.principal)
            and wanted.host_filter in (None, self.host)
            and wanted.operation in (ANY, self.operation)
            and wanted.permission_type in (ANY, self.permission_type)
        )


def _resource(pattern: tuple[str, ...]) -> tuple[str, int] | None:
    """A permissions pattern as a Kafka resource name and pattern type, if it has one."""
    if pattern == ("#",):
        return "*", LITERAL
    if "*" not in pattern and "#" not in pattern:
        return ".".join(pattern), LITERAL
    if pattern[-1] == "#" and "*" not in pattern[:-1] and "#" not in pattern[:-1]:
        return ".".join(pattern[:-1]) + ".", PREFIXED
    return None


def bindings(principal: str, grants: tuple[Grant, ...]) -> Iterator[Binding]:
    """The Kafka bindings of one principal's grants (see the module docstring)."""
    user = f"User:{principal}"
    for grant in grants:
        resource = _resource(grant.pattern)
        if resource is None:
            continue
        name, pattern_type = resource
        kinds = (LOG, GROUP) if grant.kind is None else (grant.kind,)
        for kind in kinds:
            resource_type = _RESOURCE_TYPES.get(kind)
            if resource_type is None:
                continue
            for action in sorted(grant.actions):
                for operation in OPERATIONS[action]:
                    yield Binding(resource_type, name, pattern_type, user, operation)


def visible_bindings(session: KafkaSession) -> list[Binding]:
    """What this connection's principal may see of the permissions, as bindings."""
    permissions = session.service.authenticator.permissions
    assert permissions is not None
    grants = session.grants
    sees_all = grants is None or (
        grants.allows(ADMIN, LOG, "#") and grants.allows(ADMIN, GROUP, "#")
    )
    own = session.principal.name if session.principal is not None else EVERYONE
    principals = (
        permissions.principals
        if sees_all
        else sorted({own, EVERYONE} & set(permissions.principals))
    )
    found: list[Binding] = []
    for principal in principals:
        found.extend(bindings(principal, permissions.grants_of(principal)))
    return found


def describe_acls(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls, resource_cls, acl_cls = wire.response_classes(
        29, slot.version, "DescribeAclsResource", "AclDescription"
    )
    if session.service.authenticator.permissions is None:
        return wire.build(
            cls,
            throttle_time=NO_THROTTLE,
            error_code=SECURITY_DISABLED,
            error_message=NO_AUTHORIZER,
            resources=(),
        )
    grouped: dict[tuple[int, str, int], list[Binding]] = {}
    for binding in visible_bindings(session):
        if binding.matches(request):
            key = (binding.resource_type, binding.resource_name, binding.pattern_type)
            grouped.setdefault(key, []).append(binding)
    resources = tuple(
        wire.build(
            resource_cls,
            resource_type=resource_type,
            resource_name=name,
            pattern_type=pattern_type,
            acls=tuple(
                wire.build(
                    acl_cls,
                    principal=b.principal,
                    host=b.host,
                    operation=b.operation,
                    permission_type=b.permission_type,
                )
                for b in found
            ),
        )
        for (resource_type, name, pattern_type), found in grouped.items()
    )
    return wire.build(
        cls, throttle_time=NO_THROTTLE, error_code=NONE, error_message=None, resources=resources
    )


def _refusal(session: KafkaSession) -> tuple[ErrorCode, str]:
    if session.service.authenticator.permissions is None:
        return SECURITY_DISABLED, NO_AUTHORIZER
    return POLICY_VIOLATION, READ_ONLY


def create_acls(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls, result_cls = wire.response_classes(30, slot.version, "AclCreationResult")
    error, message = _refusal(session)
    results = tuple(
        wire.build(result_cls, error_code=error, error_message=message) for _ in request.creations
    )
    return wire.build(cls, throttle_time=NO_THROTTLE, results=results)


def delete_acls(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls, result_cls = wire.response_classes(31, slot.version, "DeleteAclsFilterResult")
    error, message = _refusal(session)
    results = tuple(
        wire.build(result_cls, error_code=error, error_message=message, matching_acls=())
        for _ in request.filters
    )
    return wire.build(cls, throttle_time=NO_THROTTLE, filter_results=results)
