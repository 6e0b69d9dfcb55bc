"""Fetch sessions (KIP-227): minibroker keeps none, and says so in Kafka's terms.

From Fetch v7 a client may ask the broker to remember the partitions it
fetches, so later fetches list only what changed (incremental fetches). A
broker may decline: it answers with session id 0, and the client's next
Fetch is a full one again, listing every partition. minibroker always
declines. On one broker a full fetch costs a few bytes per partition, and a
session would be state to bound and expire per connection. All three
clients handle this (``tests/kafka_wire/test_fetch_sessions.py``): librdkafka
and aiokafka never open sessions, and kafka-python asks again each time and
gets full fetches.

A full fetch has epoch 0 (open a session) or -1 (no session); it is served
whatever its session id, as Kafka does (id 0 with epoch 0 is how every
client opens). Any other epoch is an incremental fetch of a session that
does not exist here: FETCH_SESSION_ID_NOT_FOUND, as Kafka answers for a
session it has forgotten, which makes the client start over with a full one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from kio.schema.errors import ErrorCode

from minibroker.kafka import wire
from minibroker.kafka.handlers.admin import NO_THROTTLE

if TYPE_CHECKING:
    from minibroker.kafka.authorize import Handler
    from minibroker.kafka.session import KafkaSession, Slot

FETCH_SESSION_ID_NOT_FOUND: Final = ErrorCode(70)
#: Epochs of a full fetch: open a session (0), fetch without one (-1).
FULL_FETCH_EPOCHS: Final = (0, -1)


def sessionless(handler: Handler) -> Handler:
    """The Fetch ``handler``, refusing incremental fetches first."""

    def fetch(session: KafkaSession, slot: Slot, request: Any) -> Any:
        if getattr(request, "session_epoch", -1) in FULL_FETCH_EPOCHS:
            return handler(session, slot, request)
        return wire.build(
            wire.response_class(1, slot.version),
            throttle_time=NO_THROTTLE,
            error_code=FETCH_SESSION_ID_NOT_FOUND,
            session_id=0,
            responses=(),
        )

    return fetch
