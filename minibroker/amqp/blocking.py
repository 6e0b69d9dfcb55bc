"""connection.blocked / unblocked: the server's resource alarm, as AMQP connections see it.

RabbitMQ's rule, which the clients are written for: while a resource alarm
is on (memory above its watermark, disk below its limit), a connection that
publishes is no longer read from, so the publisher waits and TCP pushes back;
connections that only consume are read as usual (their acks free memory).
Clients that advertise the ``connection.blocked`` capability are told:
Connection.Blocked when the alarm goes on (or when they open during it),
Connection.Unblocked when it clears. The capability is advertised only when
the server has an alarm configured.

``Blocking`` is the server's alarm state shared by the AMQP sessions; each
open session registers with it and decides for itself when to stop reading
(``AmqpSession.input_blocked``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minibroker.amqp.connection import AmqpSession


class Blocking:
    """The resource alarm's reason (None: off) and the sessions to tell when it changes."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.sessions: set[AmqpSession] = set()

    def set(self, reason: str | None) -> None:
        """The alarm went on (``reason``), changed, or cleared (None)."""
        if reason == self.reason:
            return
        self.reason = reason
        for session in list(self.sessions):
            session.alarm_changed(reason)
