"""What a client flavour provides to the method mixins of every model.

The per-model modules (``queues.py``, ``topics.py``, ``logs.py``,
``rpc.py``) write their methods against these interfaces, and ``api.py``
gathers them into ``AsyncMethods`` and ``SyncMethods``; the Trio, asyncio
and blocking clients implement them over one sans-I/O ``Connection``.
"""

from __future__ import annotations

import abc
from typing import Any, TypeVar

from minibroker.client.connection import AsyncPendingCall, Connection, PendingCall, SyncPendingCall
from minibroker.client.protocol import Call
from minibroker.client.pushes import PushParser

T = TypeVar("T")


class Transport(abc.ABC):
    """A client over one ``Connection`` (``_conn``), whatever its concurrency style."""

    _conn: Connection

    @property
    def closed(self) -> bool:
        """True once the connection ended (closed, dropped, or refused by the broker)."""
        return self._conn.closed is not None

    @property
    def _closed(self) -> BaseException | None:
        return self._conn.closed

    @property
    def _pending(self) -> dict[int, PendingCall[Any]]:
        return self._conn.pending

    @property
    def _subscriptions(self) -> dict[int, Any]:
        return self._conn.subscriptions

    @abc.abstractmethod
    def _post(self, call: Call[Any]) -> None:
        """Send ``call`` without waiting for (or reading) its answer; safe on the reader."""

    @abc.abstractmethod
    def _subscription(self, call: Call[Any], parser: PushParser[T]) -> Any:
        """A context (``async with`` / ``with``) that starts a push subscription with
        ``call`` (whose result carries ``sub``) and yields an iterable Subscription
        whose items are produced from each push frame by ``parser``."""


class AsyncTransport(Transport):
    """What an async client flavour (Trio, asyncio, in-process) provides."""

    @abc.abstractmethod
    async def _call(self, call: Call[T]) -> T:
        """Send ``call`` and wait for its parsed result."""

    @abc.abstractmethod
    def _begin(self, call: Call[T]) -> AsyncPendingCall[T]:
        """Send ``call`` without waiting for its answer (see connection.PendingCall)."""

    async def _post_now(self, call: Call[Any]) -> None:
        """Send ``call`` without waiting for its answer, as soon as the transport
        can (a responder's reply); by default with everything else queued."""
        self._post(call)


class SyncTransport(Transport):
    """What the blocking client provides."""

    @abc.abstractmethod
    def _call(self, call: Call[T]) -> T:
        """Send ``call`` and block until its parsed result."""

    @abc.abstractmethod
    def _begin(self, call: Call[T]) -> SyncPendingCall[T]:
        """Send ``call`` without waiting for its answer (see connection.PendingCall)."""
