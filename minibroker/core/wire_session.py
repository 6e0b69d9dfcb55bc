"""What the server's shell needs from a front end's per-connection state machine.

Every front end (the msgpack protocol; AMQP 0-9-1, Kafka, SQS beside it)
keeps its protocol state in a sans-I/O object per connection: bytes go in
through ``receive_data``, the core is called synchronously, and bytes come
out of ``data_to_send``. Time is an argument: the shell passes the time on
its clock with each call in (``receive_data``, ``resume_input``,
``connection_lost``), so a session never reads a clock of its own. The shell
(``server.connection.Connection``, graceful shutdown) drives any such object
the same way, so a new front end reuses the chunked reads, coalesced writes,
backpressure and closing logic instead of writing its own.

:class:`WireSession` is that contract, written once: the attributes the
shell reads and sets (initialised here) and the methods it calls (each
front end's own). It lives below the front ends so that every one of them
can subclass it (``protocol/session.py``, ``amqp/connection.py``,
``kafka/session.py``, ``sqs/session.py``); ``server/wire_session.py`` holds
what only the shell needs besides (``FrontEnd``). A confirmation that must
wait for the group commit's fsync is not the shell's business: the session
holds it through ``broker.durability`` (core/durability.py).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from minibroker.errors import BrokerError, Timeout


def _nothing() -> None:
    return None


class WireSession(abc.ABC):
    """One connection's protocol state, as driven by ``server.connection.Connection``."""

    def __init__(self) -> None:
        #: Called when there is something new to send; the shell wakes its writer.
        self.wakeup: Callable[[], None] = _nothing
        #: Set once the connection must close after the pending output is sent.
        self.closing: BrokerError | None = None
        #: True while dispatching stopped at the outbound high-water mark with
        #: input still buffered; the shell calls ``resume_input`` after draining.
        self.input_paused = False
        #: True while the session wants nothing read (AMQP: a publisher under a
        #: resource alarm); the shell waits for the writer's next round (the
        #: session's ``wakeup``) and looks again.
        self.input_blocked = False
        #: Who the client says it is (for logs); empty until it says.
        self.client_name = ""
        #: Called once when the handshake ends (``handshake_ended``): the shell
        #: counts the connections still in theirs (``--max-handshaking-connections``).
        self.on_handshake: Callable[[], None] = _nothing

    @property
    @abc.abstractmethod
    def handshake_done(self) -> bool:
        """True once the client has authenticated (ends the handshake deadline)."""

    def handshake_ended(self) -> None:
        """Tell the shell, once, that ``handshake_done`` has become True.

        Each front end calls it where its handshake succeeds, so that the
        shell's count of connections still in their handshake needs no look
        at every connection, and costs nothing per frame.
        """
        callback, self.on_handshake = self.on_handshake, _nothing
        callback()

    @abc.abstractmethod
    def receive_data(self, data: bytes | bytearray, now: float) -> None:
        """Handle ``data``, received at ``now`` (the shell's clock)."""

    @property
    @abc.abstractmethod
    def pending_input_bytes(self) -> int:
        """Bytes held until the next frame is complete: its declared size once
        known (the shell claims it from the partial-frame budget)."""

    @property
    @abc.abstractmethod
    def buffered_input_bytes(self) -> int:
        """Bytes received and not yet dispatched."""

    @abc.abstractmethod
    def discard_input(self) -> None:
        """Free the buffered input (the connection is refused or gone)."""

    @abc.abstractmethod
    def resume_input(self, now: float) -> None:
        """Dispatch what was left buffered when input paused (see ``input_paused``)."""

    @abc.abstractmethod
    def accepting_input(self) -> bool:
        """False once the connection is closing or closed: further input is ignored."""

    @property
    @abc.abstractmethod
    def over_high_water(self) -> bool:
        """True while the output waiting to be sent is above the high-water mark."""

    @abc.abstractmethod
    def has_output(self) -> bool: ...

    @abc.abstractmethod
    def data_to_send(self) -> bytes: ...

    @abc.abstractmethod
    def kick(self, error: BrokerError) -> None:
        """Close after telling the client why, in the front end's own terms."""

    def handshake_timed_out(self, seconds: float) -> None:
        """The handshake did not end within ``seconds`` (the shell's hello
        timeout): close, as the front end's own brokers do. By default a kick
        that tells the client why (the msgpack door's ``bye`` ``timeout``);
        a front end whose peers close silently overrides it."""
        self.kick(Timeout(f"no hello within {seconds:g} seconds; closing the connection"))

    @abc.abstractmethod
    def eof_received(self) -> None:
        """The client sent EOF: nothing more comes in, and the shell closes once
        what is already answered is sent. A front end that pushes (topic
        subscriptions, tails, consumers) stops pushing here, so a busy source
        cannot keep a finished connection sending until the close deadline."""

    @abc.abstractmethod
    def connection_lost(self, now: float) -> None:
        """The stream is gone: hand back deliveries, drop subscriptions and waiters."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """The server is stopping: say goodbye and close once flushed."""
