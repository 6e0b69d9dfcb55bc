"""What the Trio shell knows of a front end: its sessions and its port.

The per-connection contract, ``WireSession``, is defined once below the
front ends (:mod:`minibroker.core.wire_session`), so every front end
subclasses it; this module adds what only the shell needs: how to build a
session (``SessionFactory``) and where to listen (``FrontEnd``).
"""

from __future__ import annotations

from collections.abc import Callable

from minibroker.core.broker import Broker
from minibroker.core.wire_session import WireSession
from minibroker.value_class import Value

__all__ = ["FrontEnd", "SessionFactory", "WireSession"]


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
