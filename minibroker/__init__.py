"""minibroker: a small, fast message broker on Trio.

Queues with pull consumers, topics with push fan-out, an append-only log
with offsets, and request/reply, over one msgpack-over-TCP protocol.

    async with minibroker.open_broker() as broker:      # in-process, no socket
        async with broker.connect() as mb:
            await mb.ping()

    async with minibroker.connect("minibroker://127.0.0.1:7878") as mb: ...
    async with minibroker.aio.connect("minibroker://127.0.0.1:7878") as mb: ...  # asyncio
    with minibroker.connect_sync("minibroker://127.0.0.1:7878") as mb: ...        # blocking
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from minibroker.client.sync import CallTimeout, connect_sync
from minibroker.client.trio_client import Client, Subscription, connect
from minibroker.core.errors import *  # noqa: F403
from minibroker.core.errors import BrokerError, ConnectionClosed
from minibroker.embedded import EmbeddedBroker, open_broker

if TYPE_CHECKING:
    from minibroker import aio


def __getattr__(name: str) -> Any:
    # ``minibroker.aio`` is imported on first use: asyncio costs start-up time
    # that Trio and blocking users should not pay.
    if name == "aio":
        import minibroker.aio

        return minibroker.aio
    raise AttributeError(f"module 'minibroker' has no attribute {name!r}")


__all__ = [
    "BrokerError",
    "CallTimeout",
    "Client",
    "ConnectionClosed",
    "EmbeddedBroker",
    "Subscription",
    "__version__",
    "aio",
    "connect",
    "connect_sync",
    "open_broker",
]
