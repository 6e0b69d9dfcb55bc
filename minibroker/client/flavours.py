"""Code written once for the async and the blocking flavour: sides, flows, ``waits``.

An object of the client is on one side: :class:`Awaiting` (the Trio,
asyncio and in-process clients and what they hand out) or :class:`Blocking`
(the blocking client's). What such an object does is mostly bookkeeping
that never waits (``ProducerState``, ``ConsumerState``); what is left is
*when to wait for which answer*, and that is written once as a **flow**: a
generator that yields each ``PendingCall`` it must see answered and returns
its result (the shape of httpx's auth flows). :func:`run_async` drives a
flow by awaiting each call, :func:`run_blocking` by blocking on it; an
exception while waiting (a cancellation, Ctrl-C) is thrown into the flow,
so its ``try``/``finally`` cleans up on both sides alike.

``waits(flow)`` turns a flow method into the method of either side:
``flush = waits(_flushing)`` is ``await x.flush()`` on an ``Awaiting``
object and a blocking ``x.flush()`` on a ``Blocking`` one, with the flow's
signature and docstring, and typed for each side. ``transport.sends`` and
``transport.opens`` dispatch on the side the same way (:class:`Flavoured`).
:class:`AwaitingContext` and :class:`BlockingContext` give closable objects
(producers, consumers) their ``async with`` / ``with`` from one ``_closing``
flow and one ``_abandon``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from types import MethodType
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

T = TypeVar("T")
AM = TypeVar("AM")
SM = TypeVar("SM")
P = ParamSpec("P")

#: A wait written once for both sides: yields each call to see answered (a
#: ``PendingCall`` of the side's kind), returns T.
Flow = Generator[Any, None, T]


class Awaiting:
    """The async side: methods return awaitables."""

    __slots__ = ()
    _awaits: ClassVar[bool] = True


class Blocking:
    """The blocking side: methods block the calling thread."""

    __slots__ = ()
    _awaits: ClassVar[bool] = False


class _Steps(Generic[T]):
    """Where a driver is in a flow: the next call to wait for, then its result."""

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self._error: BaseException | None = None
        self.result: T

    def next(self) -> Any:
        """The next call to wait for (after throwing in what the last wait
        raised, if anything); None once the flow returned its ``result``."""
        error, self._error = self._error, None
        try:
            return self._flow.send(None) if error is None else self._flow.throw(error)
        except StopIteration as done:
            self.result = done.value
            return None

    def failed(self, error: BaseException) -> None:
        """Waiting raised ``error``: the flow gets it at the next step."""
        self._error = error


async def run_async(flow: Flow[T]) -> T:
    """Drive ``flow`` on the async side: await each call it yields."""
    steps = _Steps(flow)
    while (pending := steps.next()) is not None:
        try:
            await pending.wait()
        except BaseException as exc:
            steps.failed(exc)
    return steps.result


def run_blocking(flow: Flow[T]) -> T:
    """Drive ``flow`` on the blocking side: block on each call it yields."""
    steps = _Steps(flow)
    while (pending := steps.next()) is not None:
        try:
            pending.wait()
        except BaseException as exc:
            steps.failed(exc)
    return steps.result


class Flavoured(Generic[AM, SM]):
    """A method of both sides: ``AM`` on an ``Awaiting`` object, ``SM`` on a
    ``Blocking`` one, picked by the object's ``_awaits`` as it is looked up."""

    #: The blocking method, then the async one (indexed by ``_awaits``).
    _methods: tuple[Callable[..., Any], Callable[..., Any]]

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...

    @overload
    def __get__(self, obj: Awaiting, owner: type) -> AM: ...

    @overload
    def __get__(self, obj: Blocking, owner: type) -> SM: ...

    def __get__(self, obj: Awaiting | Blocking | None, owner: type) -> Any:
        if obj is None:
            return self
        return MethodType(self._methods[obj._awaits], obj)


class waits(Flavoured[Callable[P, Coroutine[Any, Any, T]], Callable[P, T]]):
    """A method written once as a flow (see the module docstring): awaited on
    the async side, blocking on the blocking side."""

    def __init__(self, flow: Callable[Concatenate[Any, P], Flow[T]]) -> None:
        async def awaited(obj: Any, /, *args: Any, **kwargs: Any) -> T:
            return await run_async(flow(obj, *args, **kwargs))

        def blocked(obj: Any, /, *args: Any, **kwargs: Any) -> T:
            return run_blocking(flow(obj, *args, **kwargs))

        for method in (awaited, blocked):
            method.__name__ = method.__qualname__ = flow.__name__.lstrip("_")
            method.__doc__ = flow.__doc__
        self._methods = (blocked, awaited)
        self.__doc__ = flow.__doc__


class _Closable:
    """What a closable object provides: its ``_closing`` flow (send what is left,
    wait for the broker's answers) and ``_abandon`` (send, wait for nothing)."""

    def _closing(self) -> Flow[None]:
        raise NotImplementedError

    def _abandon(self) -> None:
        raise NotImplementedError


class AwaitingContext(_Closable, Awaiting):
    """``async with`` an object that closes with its ``_closing`` flow: leaving
    normally closes it (``aclose``), leaving on an exception ``_abandon``s it
    (sends what it must, waits for nothing). ``_run`` drives its flows."""

    _run = staticmethod(run_async)

    async def aclose(self) -> None:
        """Close: send what is left and wait for the broker's answers. Idempotent."""
        await self._run(self._closing())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            await self.aclose()
        else:
            self._abandon()


class BlockingContext(_Closable, Blocking):
    """``with`` an object that closes with its ``_closing`` flow (see
    :class:`AwaitingContext`)."""

    _run = staticmethod(run_blocking)

    def close(self) -> None:
        """Close: send what is left and wait for the broker's answers. Idempotent."""
        self._run(self._closing())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abandon()
