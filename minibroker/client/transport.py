"""What a client flavour provides to the method mixins of every model.

The per-model modules (``queues.py``, ``topics.py``, ``logs.py``,
``rpc.py``) write their methods against these interfaces, and ``api.py``
gathers them into ``AsyncMethods`` and ``SyncMethods``; the Trio, asyncio
and blocking clients implement them over one sans-I/O ``Connection``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar

from minibroker.client.connection import (
    AsyncPendingCall,
    Connection,
    Hook,
    PendingCall,
    SyncPendingCall,
)
from minibroker.client.flavours import Awaiting, Blocking, Flavoured
from minibroker.client.protocol import Call, awaiting, blocking, opening
from minibroker.client.pushes import (
    AsyncSubscription,
    AsyncSubscriptionContext,
    PushParser,
    Signal,
)

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
S = TypeVar("S")
P = ParamSpec("P")


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
    def _subscription(
        self, call: Call[Any], parser: PushParser[T], callback: Callable[[T], object] | None = None
    ) -> Any:
        """A context (``async with`` / ``with``) that starts a push subscription with
        ``call`` (whose result carries ``sub``) and yields an iterable Subscription
        whose items are produced from each push frame by ``parser`` (or handed to
        ``callback`` on the reader)."""


class AsyncTransport(Transport, Awaiting):
    """What an async client flavour (Trio, asyncio, in-process) provides: how a
    caller waits (``_pending_kind``), a consumer's wake-up (``_signal``), and
    how bytes leave (``_queue``, and its own ``_call``)."""

    _pending_kind: ClassVar[type[AsyncPendingCall[Any]]]
    #: Items each subscription may hold unread (see pushes.SubscriptionCore._take).
    _max_pending: int

    @abc.abstractmethod
    async def _call(self, call: Call[T], *, on_reply: Hook | None = None) -> T:
        """Send ``call`` and wait for its parsed result."""

    @abc.abstractmethod
    def _queue(self, data: bytes) -> None:
        """Hand ``data`` to the writer: it leaves soon, in order, without waiting."""

    @abc.abstractmethod
    def _signal(self) -> Signal:
        """A fresh wake-up for one subscription's consumer."""

    def _begin(self, call: Call[T], on_reply: Hook | None = None) -> AsyncPendingCall[T]:
        """Queue ``call`` without waiting; collect the answer later (see connection.PendingCall)."""
        pending, data = self._conn.begin(call, self._pending_kind, on_reply)
        self._queue(data)
        return pending

    def _post(self, call: Call[Any]) -> None:
        """Queue ``call`` without waiting; its answer is ignored (cleanup, a responder's reply)."""
        data = self._conn.post(call)
        if data is not None:
            self._queue(data)

    def _subscription(
        self, call: Call[Any], parser: PushParser[T], callback: Callable[[T], object] | None = None
    ) -> AsyncSubscriptionContext[T]:
        return AsyncSubscriptionContext(
            AsyncSubscription(self, call, parser, self._max_pending, callback)
        )

    async def _post_now(self, call: Call[Any]) -> None:
        """Send ``call`` without waiting for its answer, as soon as the transport
        can (a responder's reply); by default with everything else queued."""
        self._post(call)


class SyncTransport(Transport, Blocking):
    """What the blocking client provides."""

    @abc.abstractmethod
    def _call(self, call: Call[T]) -> T:
        """Send ``call`` and block until its parsed result."""

    @abc.abstractmethod
    def _begin(self, call: Call[T]) -> SyncPendingCall[T]:
        """Send ``call`` without waiting for its answer (see connection.PendingCall)."""


class sends(Flavoured[Callable[P, Coroutine[Any, Any, T]], Callable[P, T]]):
    """A method of every client flavour that sends the Call ``build`` makes and
    returns its result: awaited on the async clients, blocking on the blocking one.

    ``build`` carries the method's signature and docstring, so each method is
    written once (``put = sends(put_call)``) and the flavours cannot drift.
    """

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self._methods = (blocking(build), awaiting(build))
        self.__doc__ = build.__doc__


class opens(Flavoured[Callable[P, A], Callable[P, B]], Generic[P, S, A, B]):
    """A method of every client flavour that builds shared state (with the
    client and its arguments) and wraps it in the flavour's object: the async
    clients' ``async_kind``, the blocking client's ``sync_kind`` (the two
    drivers of a producer, say)."""

    def __init__(
        self,
        build: Callable[Concatenate[Any, P], S],
        async_kind: Callable[[S], A],
        sync_kind: Callable[[S], B],
    ) -> None:
        self._methods = (opening(build, sync_kind), opening(build, async_kind))
        self.__doc__ = build.__doc__
