"""The client API, written once for every client flavour.

Each method builds a ``Call`` (see protocol.py) and hands it to ``_call``,
which each client implements for its own concurrency style; push
subscriptions go through ``_subscription(call, parser)`` the same way. A
method is declared once for every flavour with ``sends(call_builder)`` or
``opens(state_builder, async_kind, sync_kind)`` (client/transport.py): the
builder carries its signature and docstring. ``AsyncMethods`` serves the
Trio, asyncio and in-process clients; ``SyncMethods`` the blocking client.
Every model keeps its calls and its method mixins in one module
(``client/queues.py``, ``client/topics.py``, ...), and the classes below
simply inherit them all, so the method names, arguments and results cannot
drift between clients.
"""

from __future__ import annotations

from minibroker.client.logs import AsyncLogMethods, SyncLogMethods
from minibroker.client.protocol import Call
from minibroker.client.queues import AsyncQueueMethods, SyncQueueMethods
from minibroker.client.rpc import AsyncRpcMethods, SyncRpcMethods
from minibroker.client.topics import AsyncTopicMethods, SyncTopicMethods
from minibroker.client.transport import sends


def ping_call(data: bytes | None = None) -> Call[bytes | None]:
    """Round trip to the broker; returns ``data`` back."""
    return Call("ping", {} if data is None else {"data": data})


def drop_namespace_call(name: str) -> Call[bool]:
    """Delete namespace ``name`` with everything in it (queues, messages,
    logs, subscriptions, responders; durable files too) and close the
    connections in it. Not the namespace this client is in. False if
    there was nothing to drop."""
    return Call("namespace.drop", {"namespace": name}, lambda r: bool(r["dropped"]))


class AsyncMethods(AsyncLogMethods, AsyncQueueMethods, AsyncRpcMethods, AsyncTopicMethods):
    ping = sends(ping_call)
    drop_namespace = sends(drop_namespace_call)


class SyncMethods(SyncLogMethods, SyncQueueMethods, SyncRpcMethods, SyncTopicMethods):
    ping = sends(ping_call)
    drop_namespace = sends(drop_namespace_call)
