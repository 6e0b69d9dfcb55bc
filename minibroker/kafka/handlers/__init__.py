"""One handler per Kafka API: ``handler(session, slot, request) -> response``.

A handler returns the kio response object to send, or None when it will
call ``session.answer(slot, response)`` later (a parked Fetch, a JoinGroup
waiting for its round), or :data:`NO_RESPONSE` (Produce with ``acks=0``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from minibroker.kafka import wire
from minibroker.kafka.authorize import guarded
from minibroker.kafka.handlers import (
    acls,
    admin,
    configs,
    consumer_groups,
    delete_records,
    fetch,
    fetch_sessions,
    group_admin,
    produce,
    sasl,
)

if TYPE_CHECKING:
    from minibroker.kafka.session import KafkaSession, Slot

Handler = Callable[["KafkaSession", "Slot", Any], Any]

#: Returned by a handler whose request gets no answer at all.
NO_RESPONSE: Final = produce.NO_RESPONSE

UNSUPPORTED_VERSION: Final = 35

HANDLERS: Final[dict[int, Handler]] = {
    # Produce, Fetch and ListOffsets are checked against the principal's
    # permissions around the handler (kafka/authorize.py); the others check
    # as they go.
    0: guarded(0, produce.produce),
    1: guarded(1, fetch_sessions.sessionless(fetch.fetch)),
    2: guarded(2, fetch.list_offsets),
    3: admin.metadata,
    8: consumer_groups.offset_commit,
    9: consumer_groups.offset_fetch,
    10: admin.find_coordinator,
    11: consumer_groups.join_group,
    12: consumer_groups.heartbeat,
    13: consumer_groups.leave_group,
    14: consumer_groups.sync_group,
    15: group_admin.describe_groups,
    16: group_admin.list_groups,
    17: sasl.sasl_handshake,
    18: admin.api_versions,
    19: admin.create_topics,
    20: admin.delete_topics,
    21: delete_records.delete_records,
    22: admin.init_producer_id,
    29: acls.describe_acls,
    30: acls.create_acls,
    31: acls.delete_acls,
    32: configs.describe_configs,
    33: configs.alter_configs,
    36: sasl.sasl_authenticate,
    37: admin.create_partitions,
    42: group_admin.delete_groups,
    44: configs.incremental_alter_configs,
    47: group_admin.offset_delete,
}
assert set(HANDLERS) == set(wire.IMPLEMENTED)


def unsupported_version(api_key: int) -> bytes:
    """The body answering a request of an API or version we do not implement.

    For ApiVersions it is a v0 body (KIP-511): error 35 plus our version
    list, which is how a client that opened with a newer, flexible
    ApiVersions learns what to fall back to. Any other API gets just the
    error code: a version we cannot decode has no body we could write either,
    and the connection stays open.
    """
    if api_key == 18:
        return admin.api_versions_body(0, UNSUPPORTED_VERSION)
    return struct.pack(">h", UNSUPPORTED_VERSION)
