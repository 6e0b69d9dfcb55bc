"""What the core needs from a client connection: the ``Peer`` port.

The core never holds sockets or frames. It talks to connections through this
small interface, implemented by ``protocol.session.Session`` (and by a
recording fake in the core's tests):

* ``resolve`` / ``reject`` finish a request the core had parked (a
  long-polling fetch, a request waiting for its reply), by the ``token`` the
  protocol layer handed in;
* ``push_ready`` says a push source of this connection (a topic
  subscription, a log tail, a responder) has something to send. The
  connection pulls from the source when its outbound buffer has room, so a
  slow reader slows only itself and the source decides what to drop;
* ``kick`` closes the connection (slow consumer with on_overflow=disconnect).

A connection that parks requests answered when something else happens
(request/reply ``request`` frames, long-poll log reads) is a
:class:`Requester` besides: ``takes_reply`` tells the core whether such an
answer may still be appended to its output (see ``RequestRouter.reply`` and
``ReadWaiter.wake`` in core/log_readers.py).

Why a port and not returned effect lists (as DESIGN.md sketches): a publish
that reaches many subscribers would allocate one effect object per delivery,
only for the shell to dispatch it to the same place. Calling the port lets
the session coalesce everything for one connection into one write per loop
iteration. The core stays free of I/O: a port call only records intent.
"""

from __future__ import annotations

from typing import Protocol

from minibroker.errors import BrokerError


class PushSource(Protocol):
    """A subscription-like object that a connection drains when it can write."""

    @property
    def sub_id(self) -> int: ...

    def cancel(self, now: float) -> None:
        """The client unsubscribed: release what the subscription holds in the broker."""


class Peer(Protocol):
    @property
    def conn_id(self) -> int: ...

    def resolve(self, token: int, result: object) -> None:
        """Complete the parked request ``token`` with ``result``."""

    def reject(self, token: int, error: BrokerError) -> None:
        """Fail the parked request ``token`` with ``error``."""

    def push_ready(self, source: PushSource) -> None:
        """``source`` has items waiting; drain it when the connection can write."""

    def kick(self, error: BrokerError) -> None:
        """Close this connection, telling the client why."""


class Requester(Peer, Protocol):
    """A ``Peer`` that parks request/reply requests (core/rpc.py) or
    long-poll log reads (core/log_readers.py)."""

    def takes_reply(self) -> bool:
        """False while this connection holds more unsent output than a reply may
        be added to: its client is not reading.

        A push source waits while its connection is over the high-water mark,
        but the answer to a parked request has no queue to wait in: it is
        written when its responder answers, or when records are appended to
        the log a read waits on. Without this check, a client that parks
        many requests and stops reading would make the broker hold every
        answer in memory. The router drops such a reply (its responder is
        told, as for a late one) and fails the request with a small
        ``limit_exceeded`` instead; a woken log read is answered as at its
        deadline, with an empty batch at its offset, and reads no records.
        """
