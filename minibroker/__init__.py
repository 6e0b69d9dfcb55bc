"""minibroker: a small, fast message broker on Trio.

Queues with pull consumers, topics with push fan-out, an append-only log
with offsets, and request/reply, over one msgpack-over-TCP protocol.

    async with minibroker.open_broker() as broker:      # in-process, no socket
        async with broker.connect() as mb:
            await mb.ping()

    async with minibroker.connect("minibroker://127.0.0.1:7878") as mb: ...
    async with minibroker.aio.connect("minibroker://127.0.0.1:7878") as mb: ...  # asyncio
    with minibroker.connect_sync("minibroker://127.0.0.1:7878") as mb: ...        # blocking

The package, from the top down (imports only go down; ``make test`` checks it):

- ``cli``, ``testing``, ``embedded``: the command, the pytest plugin, ``open_broker``
- ``server`` (the Trio shell) and ``client`` (the Python clients)
- ``protocol``: the msgpack front end (other front ends sit beside it)
- ``access``: who a connection is and what it may do, for every front end
- ``core``: every model's state and rules, sans-I/O
- ``storage``: the segmented log on disk and in memory
- the leaves: ``errors``, ``log_store`` (what the core needs from a store),
  ``value_class`` (cheap dataclass-like records),
  ``record_format``, ``defaults``
"""

import importlib
from typing import TYPE_CHECKING, Any

from minibroker._version import __version__
from minibroker.errors import *  # noqa: F403
from minibroker.errors import BrokerError, ConnectionClosed

if TYPE_CHECKING:
    from minibroker import aio
    from minibroker.client.logs import GroupLag, LogStats, Record
    from minibroker.client.pushes import SubscriptionEnded
    from minibroker.client.queue_wire import (
        Delivery,
        QueueContents,
        QueuedMessage,
        QueueInfo,
        QueueStats,
        SyncDelivery,
    )
    from minibroker.client.rpc import IncomingRequest, Reply, ServeHandle, SyncIncomingRequest
    from minibroker.client.sync import CallTimeout, connect_sync
    from minibroker.client.topics import PublishResult, TopicMessage
    from minibroker.client.trio_client import Client, Subscription, connect
    from minibroker.config import ServerConfig
    from minibroker.core.config import Limits
    from minibroker.embedded import EmbeddedBroker, open_broker

#: Public names imported on first use, so that ``minibroker serve`` (and a
#: program that needs only one client) does not pay for loading them all.
#: Everything a user's code names (to annotate, catch or configure) is here,
#: so nobody has to import from the modules inside.
_LAZY = {
    "CallTimeout": "minibroker.client.sync",
    "connect_sync": "minibroker.client.sync",
    "Client": "minibroker.client.trio_client",
    "Subscription": "minibroker.client.trio_client",
    "connect": "minibroker.client.trio_client",
    "EmbeddedBroker": "minibroker.embedded",
    "open_broker": "minibroker.embedded",
    "ServerConfig": "minibroker.config",
    "Limits": "minibroker.core.config",
    "Delivery": "minibroker.client.queue_wire",
    "SyncDelivery": "minibroker.client.queue_wire",
    "QueueStats": "minibroker.client.queue_wire",
    "QueueInfo": "minibroker.client.queue_wire",
    "QueueContents": "minibroker.client.queue_wire",
    "QueuedMessage": "minibroker.client.queue_wire",
    "TopicMessage": "minibroker.client.topics",
    "PublishResult": "minibroker.client.topics",
    "Record": "minibroker.client.logs",
    "LogStats": "minibroker.client.logs",
    "GroupLag": "minibroker.client.logs",
    "Reply": "minibroker.client.rpc",
    "IncomingRequest": "minibroker.client.rpc",
    "SyncIncomingRequest": "minibroker.client.rpc",
    "ServeHandle": "minibroker.client.rpc",
    "SubscriptionEnded": "minibroker.client.pushes",
}


def __getattr__(name: str) -> Any:
    if name == "aio":
        return importlib.import_module("minibroker.aio")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'minibroker' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BrokerError",
    "CallTimeout",
    "Client",
    "ConnectionClosed",
    "Delivery",
    "EmbeddedBroker",
    "GroupLag",
    "IncomingRequest",
    "Limits",
    "LogStats",
    "PublishResult",
    "QueueContents",
    "QueueInfo",
    "QueueStats",
    "QueuedMessage",
    "Record",
    "Reply",
    "ServeHandle",
    "ServerConfig",
    "Subscription",
    "SubscriptionEnded",
    "SyncDelivery",
    "SyncIncomingRequest",
    "TopicMessage",
    "__version__",
    "aio",
    "connect",
    "connect_sync",
    "open_broker",
]
