"""What the Trio shell needs from a front end's per-connection state machine.

Every front end (the msgpack protocol today; AMQP 0-9-1, Kafka and others
beside it) keeps its protocol state in a sans-I/O object per connection:
bytes go in through ``receive_data``, the core is called synchronously, and
bytes come out of ``data_to_send``. Time is an argument: the shell passes
the time on its clock with each call in (``receive_data``, ``resume_input``,
``connection_lost``), so a session never reads a clock of its own. The shell
(``Connection``, graceful shutdown) drives any such object the same way, so a
new front end reuses the chunked reads, coalesced writes, backpressure and
closing logic instead of writing its own.
``minibroker.protocol.session.Session`` is the
reference implementation; this protocol names exactly the part the shell uses.
A confirmation that must wait for the group commit's fsync is not the
shell's business: the session holds it through ``broker.durability``
(core/durability.py), which calls it back when the fsync is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from minibroker.core.broker import Broker
from minibroker.errors import BrokerError
from minibroker.value_class import Value


class WireSession(Protocol):
    """One connection's protocol state, as driven by ``server.connection.Connection``."""

    #: Called when there is something new to send; the shell wakes its writer.
    wakeup: Callable[[], None]
    #: Set once the connection must close after the pending output is sent.
    closing: BrokerError | None
    #: True while dispatching stopped at the outbound high-water mark with
    #: input still buffered; the shell calls ``resume_input`` after draining.
    input_paused: bool
    #: True while the session wants nothing read (AMQP: a publisher under a
    #: resource alarm); the shell waits for the writer's next round (the
    #: session's ``wakeup``) and looks again.
    input_blocked: bool
    #: Who the client says it is (for logs); empty until it says.
    client_name: str

    @property
    def handshake_done(self) -> bool:
        """True once the client has authenticated (ends the handshake deadline)."""
        ...

    def receive_data(self, data: bytes | bytearray, now: float) -> None:
        """Handle ``data``, received at ``now`` (the shell's clock)."""
        ...

    @property
    def pending_input_bytes(self) -> int:
        """Bytes held until the next frame is complete: its declared size once
        known (the shell claims it from the partial-frame budget)."""
        ...

    @property
    def buffered_input_bytes(self) -> int:
        """Bytes received and not yet dispatched."""
        ...

    def discard_input(self) -> None:
        """Free the buffered input (the connection is refused or gone)."""
        ...

    def resume_input(self, now: float) -> None: ...

    def accepting_input(self) -> bool: ...

    @property
    def over_high_water(self) -> bool: ...

    def has_output(self) -> bool: ...

    def data_to_send(self) -> bytes: ...

    def kick(self, error: BrokerError) -> None:
        """Close after telling the client why, in the front end's own terms."""
        ...

    def eof_received(self) -> None:
        """The client sent EOF: nothing more comes in, and the shell closes once
        what is already answered is sent. A front end that pushes (topic
        subscriptions, tails, consumers) stops pushing here, so a busy source
        cannot keep a finished connection sending until the close deadline."""
        ...

    def connection_lost(self, now: float) -> None:
        """The stream is gone: hand back deliveries, drop subscriptions and waiters."""
        ...

    def shutdown(self) -> None:
        """The server is stopping: say goodbye and close once flushed."""
        ...


#: Builds a front end's session for a new connection: (core, connection id, peer name).
SessionFactory = Callable[[Broker, int, str], WireSession]


class FrontEnd(Value, frozen=True):
    """A front end the server listens for on a port of its own."""

    #: Short name, used in logs and as the key of ``BrokerServer.front_end_ports``.
    name: str
    host: str
    #: 0 picks a free port; the bound one is in ``BrokerServer.front_end_ports``.
    port: int
    make_session: SessionFactory
    #: Whether the server's TLS certificate (if any) applies on this port.
    tls: bool = True
