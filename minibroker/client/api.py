"""The client API, written once for every client flavour.

Each method builds a ``Call`` (see protocol.py) and hands it to ``_call``,
which each client implements for its own concurrency style; push
subscriptions go through ``_subscription(call, parser)`` the same way.
``AsyncMethods`` serves the Trio, asyncio and in-process clients;
``SyncMethods`` the blocking client. Every model keeps its calls and its two
method mixins in one module (``client/queues.py``, ``client/topics.py``, ...),
and the classes below simply inherit them all, so the method names,
arguments and results cannot drift between clients.
"""

from __future__ import annotations

import abc
from typing import Any, TypeVar

from minibroker.client.connection import AsyncPendingCall, SyncPendingCall
from minibroker.client.logs import AsyncLogMethods, SyncLogMethods
from minibroker.client.protocol import Call
from minibroker.client.pushes import PushParser
from minibroker.client.queues import AsyncQueueMethods, SyncQueueMethods
from minibroker.client.rpc import AsyncRpcMethods, SyncRpcMethods
from minibroker.client.topics import AsyncTopicMethods, SyncTopicMethods

T = TypeVar("T")


def ping_call(data: bytes | None) -> Call[bytes | None]:
    return Call("ping", {} if data is None else {"data": data})


def drop_namespace_call(name: str) -> Call[bool]:
    return Call("namespace.drop", {"namespace": name}, lambda r: bool(r["dropped"]))


class AsyncTransport(abc.ABC):
    """What an async client flavour provides to the method mixins."""

    @abc.abstractmethod
    async def _call(self, call: Call[T]) -> T:
        """Send ``call`` and wait for its parsed result."""

    @abc.abstractmethod
    def _begin(self, call: Call[T]) -> AsyncPendingCall[T]:
        """Send ``call`` without waiting for its answer (see connection.PendingCall)."""

    @abc.abstractmethod
    def _subscription(self, call: Call[Any], parser: PushParser[T]) -> Any:
        """An ``async with`` context that starts a push subscription with ``call``
        (whose result carries ``sub``) and yields an async-iterable Subscription
        whose items are produced from each push frame by ``parser``."""


class SyncTransport(abc.ABC):
    """What the blocking client provides to the method mixins."""

    @abc.abstractmethod
    def _call(self, call: Call[T]) -> T:
        """Send ``call`` and block until its parsed result."""

    @abc.abstractmethod
    def _begin(self, call: Call[T]) -> SyncPendingCall[T]:
        """Send ``call`` without waiting for its answer (see ``SyncPendingCall``)."""

    @abc.abstractmethod
    def _subscription(self, call: Call[Any], parser: PushParser[T]) -> Any:
        """A ``with`` context yielding an iterable Subscription (see AsyncTransport)."""


class AsyncMethods(
    AsyncLogMethods, AsyncQueueMethods, AsyncRpcMethods, AsyncTopicMethods, AsyncTransport
):
    async def ping(self, data: bytes | None = None) -> bytes | None:
        """Round trip to the broker; returns ``data`` back."""
        return await self._call(ping_call(data))

    async def drop_namespace(self, name: str) -> bool:
        """Delete namespace ``name`` with everything in it (queues, messages,
        logs, subscriptions, responders; durable files too) and close the
        connections in it. Not the namespace this client is in. False if
        there was nothing to drop."""
        return await self._call(drop_namespace_call(name))


class SyncMethods(
    SyncLogMethods, SyncQueueMethods, SyncRpcMethods, SyncTopicMethods, SyncTransport
):
    def ping(self, data: bytes | None = None) -> bytes | None:
        """Round trip to the broker; returns ``data`` back."""
        return self._call(ping_call(data))

    def drop_namespace(self, name: str) -> bool:
        """Delete namespace ``name`` (see ``AsyncMethods.drop_namespace``)."""
        return self._call(drop_namespace_call(name))
