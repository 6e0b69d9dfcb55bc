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
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from minibroker.client.logs import AsyncLogMethods, SyncLogMethods
from minibroker.client.protocol import Call
from minibroker.client.pushes import PushParser
from minibroker.client.queues import AsyncQueueMethods, SyncQueueMethods
from minibroker.client.rpc import AsyncRpcMethods, SyncRpcMethods
from minibroker.client.topics import AsyncTopicMethods, SyncTopicMethods

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class PendingCall(Protocol[T_co]):
    """A request sent with ``_begin``: its answer is collected later.

    This is how one task keeps several requests in flight (the queue
    consumer keeps its fetches pipelined this way) without a task per call.
    """

    @property
    def request_id(self) -> int:
        """The request's id on the wire (``fetch.cancel`` names a parked fetch by it)."""

    @property
    def done(self) -> bool:
        """True once the answer (or the connection's failure) is in."""

    async def wait(self) -> None:
        """Wait until ``done``; never raises the call's error. Always a checkpoint:
        the transport gets to send what was begun and read answers meanwhile."""

    def outcome(self) -> T_co:
        """The parsed result, or raise the call's error (only once ``done``)."""

    def abandon(self, on_result: Callable[[Any], None] | None = None) -> None:
        """Stop caring about the answer. ``on_result(raw_result)`` runs (on the
        transport's reader) if it arrives and succeeds: cleanup such as giving
        back messages that a fetch delivered after its consumer left."""


class SyncPendingCall(Protocol[T_co]):
    """The blocking client's ``PendingCall``: ``wait()`` blocks (up to the
    client's timeout plus the request's own server-side wait)."""

    @property
    def request_id(self) -> int: ...

    @property
    def done(self) -> bool: ...

    def wait(self) -> None: ...

    def outcome(self) -> T_co: ...

    def abandon(self, on_result: Callable[[Any], None] | None = None) -> None: ...


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
    def _begin(self, call: Call[T]) -> PendingCall[T]:
        """Send ``call`` without waiting for its answer (see ``PendingCall``)."""

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
