"""SaslHandshake (v1) and SaslAuthenticate (v0-1): logging a Kafka client in.

SaslHandshake picks the mechanism; each SaslAuthenticate carries one SASL
message to it and its answer back (``kafka/sasl.py``). A failed login is
answered with SASL_AUTHENTICATION_FAILED and its reason, then the connection
is closed a moment later, as Kafka does; so is a handshake for a mechanism not offered, or
one out of turn (ILLEGAL_SASL_STATE). SaslHandshake v0, after which raw SASL
bytes would follow without Kafka framing, is not offered: every client that
does SASL uses v1 when the broker offers it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from kio.schema.errors import ErrorCode

from minibroker.errors import Unauthorized
from minibroker.kafka import sasl, wire
from minibroker.kafka.handlers.admin import NONE

if TYPE_CHECKING:
    from minibroker.kafka.session import KafkaSession, Slot

UNSUPPORTED_SASL_MECHANISM: Final = ErrorCode(33)
ILLEGAL_SASL_STATE: Final = ErrorCode(34)
SASL_AUTHENTICATION_FAILED: Final = ErrorCode(58)
#: session_lifetime_ms 0: the login holds for the connection's life (no KIP-368 re-login).
FOREVER: Final = timedelta(0)


def sasl_handshake(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls = wire.response_class(17, slot.version)
    offered = sasl.mechanisms(session.service.authenticator)
    error = NONE
    if session.sasl is not None or session.sasl_done:
        # Logged in already (or mid-login): Kafka allows one login per connection.
        error = ILLEGAL_SASL_STATE
    else:
        session.sasl = sasl.start(request.mechanism, session.service.authenticator)
        if session.sasl is None:
            error = UNSUPPORTED_SASL_MECHANISM
    if error is not NONE:
        session.login_failed(Unauthorized(f"SASL handshake refused (Kafka error {int(error)})"))
    return wire.build(cls, error_code=error, mechanisms=offered)


def sasl_authenticate(session: KafkaSession, slot: Slot, request: Any) -> Any:
    cls = wire.response_class(36, slot.version)
    login = session.sasl
    if login is None:
        session.login_failed(Unauthorized("SaslAuthenticate without a SaslHandshake"))
        return wire.build(
            cls,
            error_code=ILLEGAL_SASL_STATE,
            error_message="send SaslHandshake first",
            auth_bytes=b"",
            session_lifetime=FOREVER,
        )
    try:
        answer = login.step(request.auth_bytes)
    except sasl.SaslFailed as exc:
        session.sasl = None
        session.login_failed(Unauthorized(f"SASL login failed: {exc}"))
        return wire.build(
            cls,
            error_code=SASL_AUTHENTICATION_FAILED,
            error_message=str(exc),
            auth_bytes=b"",
            session_lifetime=FOREVER,
        )
    if login.principal is not None:
        session.logged_in(login.principal)
    return wire.build(
        cls, error_code=NONE, error_message=None, auth_bytes=answer, session_lifetime=FOREVER
    )
