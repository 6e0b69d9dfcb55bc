"""The broker's error vocabulary.

Every failure a client can see has a stable, documented code (the strings
below are part of the wire protocol, see docs/protocol.md). The core raises
these exceptions; the protocol layer turns them into error frames; the clients
turn error frames back into the same exception classes, so a caller catches
``minibroker.NotFound`` whether it talks over TCP or in-process.
"""

from __future__ import annotations

from typing import ClassVar


class BrokerError(Exception):
    """Base of every error with a wire code. ``str(err)`` is the human message."""

    code: ClassVar[str] = "internal"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        #: Machine-readable extras (e.g. ``first_offset`` for OffsetOutOfRange).
        self.details: dict[str, object] = details


class BadFrame(BrokerError):
    """The bytes on the wire are not a valid frame; the connection is closed."""

    code = "bad_frame"


class UnsupportedVersion(BrokerError):
    code = "unsupported_version"


class Unauthorized(BrokerError):
    """Missing or wrong token, or a request before a successful hello."""

    code = "unauthorized"


class Forbidden(BrokerError):
    """The token is valid but does not grant this operation on this name."""

    code = "forbidden"


class UnknownOp(BrokerError):
    code = "unknown_op"


class BadRequest(BrokerError):
    """A well-formed frame whose fields have wrong types or out-of-range values."""

    code = "bad_request"


class DuplicateId(BrokerError):
    """A request reuses the id of a request of the same connection that is still
    waiting for its answer; the newer one is refused, the older one goes on."""

    code = "duplicate_id"


class InvalidName(BrokerError):
    """A queue, topic, pattern, log or subject name that breaks the naming rules."""

    code = "invalid_name"


class NotFound(BrokerError):
    code = "not_found"


class Conflict(BrokerError):
    """Declaring something that exists with different options, and similar clashes."""

    code = "conflict"


class TooLarge(BrokerError):
    """A frame or message above the configured size limit."""

    code = "too_large"


class Overflow(BrokerError):
    """A full queue (max_length or max_length_bytes, overflow=reject_publish) refused a put."""

    code = "overflow"


class LimitExceeded(BrokerError):
    """A configured limit (connections, subscriptions, pending requests...) is reached."""

    code = "limit_exceeded"

    #: True when the broker-wide cap refused (RabbitMQ says "in cluster" then).
    broker_wide: bool = False

    @classmethod
    def reached(
        cls, action: str, what: str, where: str, limit: int, **details: object
    ) -> LimitExceeded:
        """An object limit, in RabbitMQ's words: "cannot declare queue 'q': queue
        limit in namespace 'n' (10) is reached" (``where``: "in namespace 'n'",
        "of the broker"). ``details`` carry ``limit`` and what was refused."""
        return cls(f"{action}: {what} limit {where} ({limit}) is reached", limit=limit, **details)

    @classmethod
    def check_room(
        cls,
        action: str,
        what: str,
        namespace: str,
        held: tuple[int, int],
        limits: tuple[int, int],
        **details: object,
    ) -> None:
        """Refuse one more ``what`` when ``held`` (in the namespace, in the
        broker) has reached ``limits`` (per namespace, for the broker)."""
        if held[0] >= limits[0]:
            raise cls.reached(action, what, f"in namespace {namespace!r}", limits[0], **details)
        if held[1] >= limits[1]:
            error = cls.reached(action, what, "of the broker", limits[1], **details)
            error.broker_wide = True
            raise error


class UnknownDelivery(BrokerError):
    """Ack/nack of a delivery id that is unknown, expired, or not held by this connection."""

    code = "unknown_delivery"


class OffsetOutOfRange(BrokerError):
    """Reading a log below its first retained offset; details carry ``first_offset``."""

    code = "offset_out_of_range"


class NoResponders(BrokerError):
    code = "no_responders"


class Timeout(BrokerError):
    code = "timeout"


class ResponderGone(BrokerError):
    """The responder holding a request disconnected before replying."""

    code = "responder_gone"


class ResponderError(BrokerError):
    """A responder answered the request with an error instead of a reply."""

    code = "responder_error"


class RequestCancelled(BrokerError):
    """The requester withdrew its request (``request.cancel``) before it ended.

    Only a requester that withdrew the request is answered with it, and the
    clients withdraw only calls nobody waits for any more (a cancelled
    ``request``), so it is rarely seen (docs/request-reply.md).
    """

    code = "cancelled"


class StorageFull(BrokerError):
    """The disk is full (ENOSPC); nothing was stored, the broker keeps serving."""

    code = "storage_full"


class StorageError(BrokerError):
    """Any other storage failure; nothing was confirmed."""

    code = "storage_error"


class StorageFailed(StorageError):
    """An fsync of the store failed: it refuses durable writes until the broker restarts.

    After a failed fsync Linux may have dropped the dirty pages and marked
    them clean, so a later fsync "succeeds" without them on disk: nothing
    that depended on the failed sync may be confirmed by retrying it
    (docs/storage.md, "A failed fsync"). A StorageError, so every handler of
    storage failures treats it as one; its own code tells the client that
    retrying is pointless until the broker restarts.
    """

    code = "storage_failed"


class ShuttingDown(BrokerError):
    code = "shutting_down"


class SlowConsumer(BrokerError):
    """A subscription with on_overflow=disconnect overflowed its buffer."""

    code = "slow_consumer"


class InternalError(BrokerError):
    code = "internal"


def _all_error_classes() -> dict[str, type[BrokerError]]:
    found: dict[str, type[BrokerError]] = {}
    pending: list[type[BrokerError]] = [BrokerError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


#: Wire code -> exception class; used by the clients to rebuild errors.
ERRORS_BY_CODE: dict[str, type[BrokerError]] = _all_error_classes()


def error_from_code(
    code: str, message: str, details: dict[str, object] | None = None
) -> BrokerError:
    """Build the exception for a wire error; unknown codes become a plain BrokerError."""
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        err = BrokerError(message, **(details or {}))
        err.code = code  # type: ignore[misc]
        return err
    return cls(message, **(details or {}))


class ConnectionClosed(BrokerError):
    """Client side only: the connection dropped; every pending call fails with this."""

    code = "connection_closed"


ERRORS_BY_CODE[ConnectionClosed.code] = ConnectionClosed
