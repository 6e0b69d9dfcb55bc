"""What a client flavour provides to the methods, and the methods' two makers.

The models (``queues.py``, ``topics.py``, ``logs.py``, ``rpc.py``) write
their methods against :class:`AsyncTransport` and :class:`SyncTransport`,
which the Trio, asyncio and blocking clients implement over one sans-I/O
``Connection``. ``api.py`` declares every method once with :class:`sends`
(one request, its result) or :class:`opens` (shared state in the flavour's
object); the builder a method is made from carries its signature and
docstring, so the flavours cannot drift.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar

from minibroker.client.connection import AsyncPendingCall, Connection, Hook, SyncPendingCall
from minibroker.client.flavours import Awaiting, Blocking, Flavoured
from minibroker.client.protocol import Call
from minibroker.client.pushes import (
    AsyncSubscription,
    BlockingSubscription,
    PushParser,
    Signal,
    SubscriptionCore,
)

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
S = TypeVar("S")
F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")


class Transport(abc.ABC):
    """A client over one ``Connection`` (``_conn``), whatever its concurrency style."""

    _conn: Connection
    #: Items each subscription may hold unread if ``connect`` was given
    #: ``max_pending``, else None (see pushes.SubscriptionCore._limit).
    _max_pending: int | None
    #: The flavour's subscription class.
    _subscription_kind: ClassVar[type[SubscriptionCore[Any]]]
    #: A fetch's deliveries settle through their client, one call each (a
    #: consumer's are batched: ``ConsumerState._batches``).
    _batches: ClassVar[bool] = False

    @property
    def closed(self) -> bool:
        """True once the connection ended (closed, dropped, or refused by the broker)."""
        return self._conn.closed is not None

    @abc.abstractmethod
    def _post(self, call: Call[Any]) -> None:
        """Send ``call`` without waiting for (or reading) its answer; safe on the reader."""

    def _subscription(
        self,
        call: Call[Any],
        parser: PushParser[T],
        callback: Callable[[T], object] | None = None,
        max_pending: int | None = None,
    ) -> Any:
        """The flavour's Subscription: entered (``async with`` / ``with``), it
        subscribes with ``call`` (whose result carries ``sub``); ``parser``
        makes its items of each push (or hands them to ``callback``)."""
        return self._subscription_kind(self, call, parser, callback, max_pending)


class AsyncTransport(Transport, Awaiting):
    """What an async client (Trio, asyncio, in-process) provides: how a caller
    waits (``_pending_kind``), a consumer's wake-up (``_signal``), and how
    bytes leave (``_queue``, and its own ``_call``)."""

    _pending_kind: ClassVar[type[AsyncPendingCall[Any]]]
    _subscription_kind = AsyncSubscription

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
        data = self._conn.post(call)
        if data is not None:
            self._queue(data)

    async def _post_now(self, call: Call[Any]) -> None:
        """Send ``call`` without waiting for its answer, as soon as the transport
        can (a responder's reply); by default with everything else queued."""
        self._post(call)


class SyncTransport(Transport, Blocking):
    """What the blocking client provides."""

    _subscription_kind = BlockingSubscription

    @abc.abstractmethod
    def _call(self, call: Call[T]) -> T:
        """Send ``call`` and block until its parsed result."""

    @abc.abstractmethod
    def _begin(self, call: Call[T]) -> SyncPendingCall[T]:
        """Send ``call`` without waiting for its answer (see connection.PendingCall)."""

    @abc.abstractmethod
    def _next_request(self, subscription: Any, handled: float = 0.0) -> Any:
        """A ``serve`` worker's next item of ``subscription`` (None once it ended),
        read from the socket by the calling thread when nobody else reads;
        ``handled``: seconds the worker's previous handler took."""

    @abc.abstractmethod
    def _stop_serving(self, subscription: Any) -> None:
        """A ``serve`` worker of ``subscription`` is leaving."""


class sends(Flavoured[Callable[P, Coroutine[Any, Any, T]], Callable[P, T]]):
    """A method that sends the Call ``build`` makes and returns its result:
    awaited on the async clients, blocking on the blocking one
    (``put = sends(put_call)``)."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        async def awaited(client: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
            return await client._call(build(*args, **kwargs))  # type: ignore[no-any-return]

        def blocked(client: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
            return client._call(build(*args, **kwargs))  # type: ignore[no-any-return]

        self._methods = (_like(blocked, build), _like(awaited, build))
        self.__doc__ = build.__doc__


class sends_each(Flavoured[Callable[P, Coroutine[Any, Any, int]], Callable[P, int]]):
    """A method that sends, in order, each Call ``build`` makes and returns the
    sum of their results (``ack``, ``nack``: one frame per queue)."""

    def __init__(self, build: Callable[P, list[Call[int]]]) -> None:
        async def awaited(client: Any, /, *args: P.args, **kwargs: P.kwargs) -> int:
            total = 0
            for call in build(*args, **kwargs):
                total += await client._call(call)
            return total

        def blocked(client: Any, /, *args: P.args, **kwargs: P.kwargs) -> int:
            return sum(client._call(call) for call in build(*args, **kwargs))

        self._methods = (_like(blocked, build), _like(awaited, build))
        self.__doc__ = build.__doc__


class opens(Flavoured[Callable[P, A], Callable[P, B]], Generic[P, S, A, B]):
    """A method that builds shared state ``S`` (from the client and its
    arguments) and wraps it in the flavour's object: ``async_kind`` on the
    async clients, ``sync_kind`` on the blocking one (a producer's two drivers, say)."""

    def __init__(
        self,
        build: Callable[Concatenate[Any, P], S],
        async_kind: Callable[[S], A],
        sync_kind: Callable[[S], B],
    ) -> None:
        def making(kind: Callable[[S], Any]) -> Callable[..., Any]:
            def method(client: Any, /, *args: P.args, **kwargs: P.kwargs) -> Any:
                return kind(build(client, *args, **kwargs))

            return _like(method, build, drop=1)

        self._methods = (making(sync_kind), making(async_kind))
        self.__doc__ = build.__doc__


def _like(method: F, build: Callable[..., Any], drop: int = 0) -> F:
    """Give ``method`` the name (less ``_call``, ``_calls`` or ``_state``),
    docstring and signature of ``build`` (its first ``drop`` parameters become ``self``)."""
    named: Any = method
    name = build.__name__.removesuffix("_calls").removesuffix("_call").removesuffix("_state")
    named.__name__ = named.__qualname__ = name
    named.__doc__ = build.__doc__
    signature = inspect.signature(build)
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    named.__signature__ = signature.replace(
        parameters=[self, *list(signature.parameters.values())[drop:]],
        return_annotation=inspect.Signature.empty,
    )
    return method
