"""minibroker: a small, fast message broker on Trio.

Queues with pull consumers, topics with push fan-out, an append-only log
with offsets, and request/reply, over one msgpack-over-TCP protocol.

    async with minibroker.open_broker() as broker:      # in-process, no socket
        async with broker.connect() as mb:
            await mb.ping()

    async with minibroker.connect("minibroker://127.0.0.1:7878") as mb: ...
"""

__version__ = "0.1.0"

from minibroker.client.trio_client import Client, Subscription, connect
from minibroker.core.errors import *  # noqa: F403
from minibroker.core.errors import BrokerError, ConnectionClosed
from minibroker.embedded import EmbeddedBroker, open_broker

__all__ = [
    "BrokerError",
    "Client",
    "ConnectionClosed",
    "EmbeddedBroker",
    "Subscription",
    "__version__",
    "connect",
    "open_broker",
]
