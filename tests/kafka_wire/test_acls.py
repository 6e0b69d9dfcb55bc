"""The ACL APIs through the admin clients that have them (confluent-kafka, kafka-python).

Without a permissions file there is no authorizer: every ACL call is
SECURITY_DISABLED. With one, DescribeAcls shows its grants as bindings and
CreateAcls/DeleteAcls are refused with POLICY_VIOLATION (docs/kafka.md,
"Security"; minibroker/kafka/handlers/acls.py). aiokafka has no ACL calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kafka_wire.kafka_clients import DEADLINE
from kafka_wire.wire_helpers import open_session
from minibroker.access.auth import Authenticator, Principal
from minibroker.access.permissions import Permissions
from minibroker.core.broker import Broker
from minibroker.kafka.handlers.acls import visible_bindings
from minibroker.kafka.service import KafkaService, KafkaSettings
from minibroker.storage.memory import MemoryLog
from minibroker.testing import KafkaBootstrap, ThreadedBroker, run_in_thread

pytestmark = pytest.mark.filterwarnings("ignore:(read|open)_text is deprecated:DeprecationWarning")

PERMISSIONS = """
allow anonymous read,write log:orders-0 group:billing
allow *         read       log:audit.#
allow ops       all        #
allow ops       read       queue:jobs
"""
#: (resource type, name, pattern type, principal, operation) as DescribeAcls lists them.
EXPECTED = {
    ("TOPIC", "orders-0", "LITERAL", "User:anonymous", "READ"),
    ("TOPIC", "orders-0", "LITERAL", "User:anonymous", "WRITE"),
    ("GROUP", "billing", "LITERAL", "User:anonymous", "READ"),
    ("GROUP", "billing", "LITERAL", "User:anonymous", "WRITE"),
    ("TOPIC", "audit.", "PREFIXED", "User:*", "READ"),
}


@pytest.fixture(scope="module")
def guarded() -> Iterator[ThreadedBroker]:
    with run_in_thread(kafka_port=0, permissions=Permissions.parse(PERMISSIONS)) as threaded:
        yield threaded


def _confluent_admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def _confluent_filter() -> Any:
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )


def _confluent_binding() -> Any:
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return AclBinding(
        ResourceType.TOPIC,
        "orders",
        ResourcePatternType.LITERAL,
        "User:app",
        "*",
        AclOperation.READ,
        AclPermissionType.ALLOW,
    )


def _kafka_python_filter() -> Any:
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    return ACLFilter(
        principal=None,
        host=None,
        operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
    )


def _kafka_python_admin(bootstrap: str) -> Any:
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(DEADLINE * 1000))


def test_confluent_sees_the_permissions_as_acls_and_may_not_change_them(
    guarded: ThreadedBroker,
) -> None:
    from confluent_kafka import KafkaError, KafkaException

    admin = _confluent_admin(guarded.kafka_bootstrap)
    found = admin.describe_acls(_confluent_filter()).result(DEADLINE)
    seen = {
        (
            b.restype.name,
            b.name,
            b.resource_pattern_type.name,
            b.principal,
            b.operation.name,
        )
        for b in found
        if b.principal != "User:ops"
    }
    assert seen == EXPECTED
    assert all(b.permission_type.name == "ALLOW" and b.host == "*" for b in found)
    [created] = admin.create_acls([_confluent_binding()]).values()
    with pytest.raises(KafkaException) as caught:
        created.result(DEADLINE)
    assert caught.value.args[0].code() == KafkaError.POLICY_VIOLATION
    assert "permissions file" in caught.value.args[0].str()
    [deleted] = admin.delete_acls([_confluent_filter()]).values()
    with pytest.raises(KafkaException) as caught:
        deleted.result(DEADLINE)
    assert caught.value.args[0].code() == KafkaError.POLICY_VIOLATION


def test_kafka_python_sees_the_permissions_as_acls_and_may_not_change_them(
    guarded: ThreadedBroker,
) -> None:
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )
    from kafka.errors import PolicyViolationError

    admin = _kafka_python_admin(guarded.kafka_bootstrap)
    try:
        found, error = admin.describe_acls(_kafka_python_filter())
        assert error.errno == 0
        seen = {
            (
                acl.resource_pattern.resource_type.name,
                acl.resource_pattern.resource_name,
                acl.resource_pattern.pattern_type.name,
                acl.principal,
                acl.operation.name,
            )
            for acl in found
            if acl.principal != "User:ops"
        }
        assert seen == EXPECTED
        wanted = ACL(
            principal="User:app",
            host="*",
            operation=ACLOperation.READ,
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(
                ResourceType.TOPIC, "orders", ACLResourcePatternType.LITERAL
            ),
        )
        created = admin.create_acls([wanted])
        assert not created["succeeded"]
        assert created["failed"] == [PolicyViolationError]
        [(_, matched, refusal)] = admin.delete_acls([_kafka_python_filter()])
        assert matched == [] and refusal is PolicyViolationError
    finally:
        admin.close()


def test_without_a_permissions_file_acls_are_security_disabled(
    minibroker_kafka_bootstrap: KafkaBootstrap,
) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from kafka.errors import SecurityDisabledError

    admin = _confluent_admin(minibroker_kafka_bootstrap.servers)
    # librdkafka 2.16 drops DescribeAcls's top-level error code: no bindings, no exception
    assert admin.describe_acls(_confluent_filter()).result(DEADLINE) == []
    [created] = admin.create_acls([_confluent_binding()]).values()
    with pytest.raises(KafkaException) as caught:
        created.result(DEADLINE)
    assert caught.value.args[0].code() == KafkaError.SECURITY_DISABLED
    python_admin = _kafka_python_admin(minibroker_kafka_bootstrap.servers)
    try:
        with pytest.raises(SecurityDisabledError):
            admin_result = python_admin.describe_acls(_kafka_python_filter())
            raise AssertionError(f"described without an authorizer: {admin_result}")
    finally:
        python_admin.close()


def test_a_principal_sees_its_own_and_everyones_bindings_an_admin_of_all_sees_all() -> None:
    permissions = Permissions.parse(PERMISSIONS)
    broker = Broker(memory_log=MemoryLog)
    service = KafkaService(
        broker, KafkaSettings(), lambda: 9092, Authenticator(permissions=permissions)
    )
    session = service.make_session(broker, 1, "test")
    assert session.principal is not None and session.principal.name == "anonymous"
    principals = {b.principal for b in visible_bindings(session)}
    assert principals == {"User:anonymous", "User:*"}
    session.logged_in(Principal("ops", permissions.grants_for("ops")))
    principals = {b.principal for b in visible_bindings(session)}
    assert principals == {"User:anonymous", "User:*", "User:ops"}
    # ops's queue grant has no Kafka resource, and "#" is Kafka's wildcard
    ops = {(b.resource_type, b.resource_name) for b in visible_bindings(session)}
    assert (2, "*") in ops and (3, "*") in ops and all(name != "jobs" for _, name in ops)
    assert open_session().grants is None
