"""Request/reply for every client: ``request``, ``respond``, ``serve`` and ``serving``.

Answers are fire-and-forget by default, like NATS's ``msg.respond``: a
responder loop must not spend a round trip per request waiting for the
broker's ``ok``, and the broker sends none (the ``reply`` frame says
``confirm: false``); ``reply(..., confirm=True)`` waits and says whether a
requester was still there. The rest (errors, groups, the blocking client's
``workers`` threads) is in docs/request-reply.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Self, TypedDict, Unpack, overload

import sniffio

from minibroker.client.bodies import as_body
from minibroker.client.protocol import Call
from minibroker.client.pushes import (
    AsyncSubscription,
    Opening,
    SubscriptionEnded,
    opened_async,
    opened_blocking,
)
from minibroker.client.serving import ServeHandle, serving_in_background, serving_in_thread
from minibroker.client.transport import AsyncTransport, SyncTransport
from minibroker.errors import BrokerError, ResponderError, TooLarge
from minibroker.protocol import frames

log = logging.getLogger("minibroker.client")

__all__ = [
    "AsyncServing",
    "IncomingRequest",
    "Reply",
    "ServeHandle",
    "SyncIncomingRequest",
    "SyncServing",
]

#: Default seconds a request waits for its reply.
DEFAULT_TIMEOUT = 5.0
#: Default handlers ``serve`` runs at once (async clients).
DEFAULT_CONCURRENCY = 64
#: Default number of threads running the blocking client's ``serve`` handlers.
DEFAULT_WORKERS = 8


@dataclass(frozen=True, slots=True)
class Reply:
    """A responder's answer, as the requester receives it (or a handler returns it)."""

    body: bytes = b""
    headers: dict[str, str] | None = None


# ------------------------------------------------------------------ calls


def _parse_reply(result: Any) -> Reply:
    return Reply(result["body"], result.get("headers"))


def request_call(
    subject: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Call[Reply]:
    """Send a request to one responder of ``subject`` and wait for its reply.

    Raises ``NoResponders`` at once if nobody serves ``subject``,
    ``Timeout`` after ``timeout`` seconds without a reply,
    ``ResponderGone`` if the responder went away holding the request, and
    ``ResponderError`` if it answered with an error.
    """
    fields: dict[str, Any] = {"subject": subject, "body": as_body(body), "timeout": timeout}
    if headers:
        fields["headers"] = headers
    # A caller that gives up (cancelled, Ctrl-C) withdraws it from the broker.
    return Call("request", fields, _parse_reply, withdraw=cancel_request_call)


def cancel_request_call(request_id: int) -> Call[bool]:
    """Withdraw the ``request`` sent with ``request_id`` (``request.cancel``)."""
    return Call("request.cancel", {"request": request_id}, lambda r: bool(r["cancelled"]))


def _reply_frame(fields: dict[str, Any], confirm: bool) -> Call[bool]:
    """A ``reply`` frame; unless ``confirm``, the broker sends no ``ok`` back (``quiet``)."""
    if not confirm:
        fields["confirm"] = False
    return Call("reply", fields, bool, quiet=not confirm)


# ------------------------------------------------------ incoming requests


@dataclass(slots=True)
class _IncomingBase:
    """A request pushed to a responder. ``timeout`` is the requester's, in seconds,
    counted from when the broker received the request."""

    rid: int
    subject: str
    body: bytes
    headers: dict[str, str] | None
    timeout: float
    _client: Any = field(repr=False)
    #: Set by ``reply``/``fail``; a request is answered at most once.
    answered: bool = field(default=False, init=False)

    @classmethod
    def _of_push(cls, frame: frames.Req, client: Any) -> list[Self]:
        """A responder's push parser: one ``req`` frame -> its requests of this kind."""
        return [cls(r.rid, r.subject, r.body, r.headers, r.timeout, client) for r in frame.requests]

    def _answer(self, body: bytes, headers: dict[str, str] | None) -> None:
        """Refuse locally what the broker would refuse (a posted reply's error is
        never read), then mark the request answered."""
        if self.answered:
            raise RuntimeError(f"request {self.rid} on {self.subject!r} was already answered")
        as_body(body, "reply bodies")
        limit = getattr(self._client, "server_info", {}).get("limits", {}).get("max_message_bytes")
        if limit is not None and len(body) > limit:
            raise TooLarge(
                f"reply body of {len(body)} bytes exceeds the limit of {limit} bytes", limit=limit
            )
        if headers and not all(type(k) is str and type(v) is str for k, v in headers.items()):
            raise TypeError("reply headers must map str to str")
        self.answered = True

    def _reply_call(
        self, body: bytes, headers: dict[str, str] | None, confirm: bool = False
    ) -> Call[bool]:
        self._answer(body, headers)
        fields: dict[str, Any] = {"rid": self.rid, "body": bytes(body)}
        if headers:
            fields["headers"] = headers
        return _reply_frame(fields, confirm)

    def _fail_call(self, message: str, confirm: bool = False) -> Call[bool]:
        self._answer(b"", None)
        return _reply_frame({"rid": self.rid, "error": str(message)}, confirm)


@dataclass(slots=True)
class IncomingRequest(_IncomingBase):
    """A request for an async responder; answer it once with ``reply`` or ``fail``.

    Answers are sent without waiting for the broker (like NATS's
    ``msg.respond``), so a responder loop never waits a round trip per
    request. Pass ``confirm=True`` to wait for the broker's answer instead:
    True if the requester was still waiting, False if the request had
    already ended (deadline passed, requester gone) and the reply was
    dropped. A late reply is never an error.
    """

    @overload
    async def reply(
        self,
        body: bytes = ...,
        headers: dict[str, str] | None = ...,
        *,
        confirm: Literal[False] = ...,
    ) -> None: ...

    @overload
    async def reply(
        self, body: bytes, headers: dict[str, str] | None = ..., *, confirm: Literal[True]
    ) -> bool: ...

    async def reply(
        self, body: bytes = b"", headers: dict[str, str] | None = None, *, confirm: bool = False
    ) -> bool | None:
        """Send the reply (see the class docstring for ``confirm``)."""
        return await self._send_answer(self._reply_call(body, headers, confirm), confirm)

    @overload
    async def fail(self, message: str, *, confirm: Literal[False] = ...) -> None: ...

    @overload
    async def fail(self, message: str, *, confirm: Literal[True]) -> bool: ...

    async def fail(self, message: str, *, confirm: bool = False) -> bool | None:
        """Answer with an error: the requester's ``request`` raises ``ResponderError``."""
        return await self._send_answer(self._fail_call(message, confirm), confirm)

    async def _send_answer(self, call: Call[bool], confirm: bool) -> bool | None:
        if confirm:
            delivered: bool = await self._client._call(call)
            return delivered
        await self._client._post_now(call)
        return None


@dataclass(slots=True)
class SyncIncomingRequest(_IncomingBase):
    """A request for a blocking responder; the same ``reply``/``fail`` as
    ``IncomingRequest`` (True/False with ``confirm=True``, else None), without ``await``."""

    def reply(
        self, body: bytes = b"", headers: dict[str, str] | None = None, *, confirm: bool = False
    ) -> bool | None:
        """Send the reply; with ``confirm=True`` block for the broker's answer."""
        return self._send_answer(self._reply_call(body, headers, confirm), confirm)

    def fail(self, message: str, *, confirm: bool = False) -> bool | None:
        """Answer with an error: the requester's ``request`` raises ``ResponderError``."""
        return self._send_answer(self._fail_call(message, confirm), confirm)

    def _send_answer(self, call: Call[bool], confirm: bool) -> bool | None:
        if confirm:
            delivered: bool = self._client._call(call)
            return delivered
        self._client._post(call)
        return None


def respond_state(
    client: Any, subject: str, group: str | None = None, *, max_pending: int | None = None
) -> Opening[IncomingRequest, SyncIncomingRequest]:
    """Register as a responder of ``subject``; iterate the requests as they come
    (``async with mb.respond(s) as requests: async for req in requests``;
    blocking client: ``with``/``for``).

    Responders sharing a ``group`` form one pool; each pool of a subject
    gets an equal share of its requests, members of a pool take turns.
    Leaving the block unregisters: requests received but not answered
    fail at once with ``responder_gone`` for their requesters.
    The client holds at most ``max_pending`` requests not yet taken (else
    the ``max_pending`` given to ``connect``, else 10,000); past that it
    pauses this responder in the broker, which keeps the rest for it.
    """
    fields: dict[str, Any] = {"subject": subject}
    if group is not None:
        fields["group"] = group
    call: Call[Any] = Call("respond", fields)
    parse_async, parse_blocking = IncomingRequest._of_push, SyncIncomingRequest._of_push
    return Opening(client, call, parse_async, parse_blocking, None, max_pending)


# ------------------------------------------------------------ handlers


#: What a ``serve`` handler may return: the reply body, a full Reply, or None
#: (an empty reply, unless the handler already answered the request itself).
HandlerResult = bytes | Reply | None


#: A ``serve`` handler of the async clients, and of the blocking client.
AsyncHandler = Callable[[IncomingRequest], Awaitable[HandlerResult]]
SyncHandler = Callable[[SyncIncomingRequest], HandlerResult]


class AsyncServeOptions(TypedDict, total=False):
    """What the async ``serving`` passes on to ``serve``."""

    group: str | None
    concurrency: int
    max_pending: int | None


class SyncServeOptions(TypedDict, total=False):
    """What the blocking ``serving`` passes on to ``serve``."""

    group: str | None
    workers: int
    max_pending: int | None


def _answer_of(result: HandlerResult) -> tuple[bytes, dict[str, str] | None]:
    if isinstance(result, Reply):
        return result.body, result.headers
    if result is None:
        return b"", None
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result), None
    raise TypeError(
        f"a serve handler must return bytes, Reply or None, not {type(result).__name__}"
    )


def _failure_message(exc: Exception) -> str:
    """What the requester reads when a handler raised."""
    if isinstance(exc, ResponderError):
        return exc.message
    log.error("request handler failed", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


def _answer_call(req: _IncomingBase, outcome: HandlerResult | Exception) -> Call[bool] | None:
    """The answer a handler's ``outcome`` (its result, or what it raised) makes:
    the reply, or a failure the requester reads; None if the handler answered
    ``req`` itself. A result that cannot be sent (not bytes, too large) fails
    the request instead of leaving its requester waiting for the timeout."""
    if req.answered:
        return None
    if not isinstance(outcome, Exception):
        try:
            return req._reply_call(*_answer_of(outcome))
        except Exception as exc:
            outcome = exc
    return req._fail_call(_failure_message(outcome))


async def _handle_async(req: IncomingRequest, handler: AsyncHandler) -> None:
    try:
        outcome: HandlerResult | Exception = await handler(req)
    except Exception as exc:
        outcome = exc
    call = _answer_call(req, outcome)
    if call is not None:
        with suppress(BrokerError):  # the connection is gone: nobody to tell
            await req._client._post_now(call)


def _handle_sync(req: SyncIncomingRequest, handler: SyncHandler) -> None:
    try:
        outcome: HandlerResult | Exception = handler(req)
    except Exception as exc:
        outcome = exc
    call = _answer_call(req, outcome)
    if call is not None:
        with suppress(BrokerError):
            req._client._post(call)


async def _serve_trio(
    requests: AsyncSubscription[IncomingRequest], handler: AsyncHandler, concurrency: int
) -> None:
    """Answer each request with ``handler`` in one of at most ``concurrency`` worker tasks.

    A worker that has answered a request takes the next one waiting in the
    buffer, or parks. The client's reader hands each request it reads to a
    parked worker (one ``reschedule``), or starts a new worker while fewer
    than ``concurrency`` run, in the scheduler round that read it
    (``requests._starter``); only a request that finds every worker busy
    waits in the buffer, and workers take those in arrival order. Waking a
    serve loop for every request and spawning a task per request cost a
    scheduler round and a task's start and end per request on its critical
    path (docs/internals.md, "Latency"). This loop only waits for the
    subscription to end.
    """
    import outcome
    import trio

    #: Workers parked with nothing to do, most recently parked last.
    idle: list[trio.lowlevel.Task] = []
    running = 0
    failure: BrokerError | None = None
    async with trio.open_nursery() as nursery:

        async def worker(req: IncomingRequest) -> None:
            nonlocal running
            task = trio.lowlevel.current_task()

            def abort(_: Any) -> trio.lowlevel.Abort:
                idle.remove(task)
                return trio.lowlevel.Abort.SUCCEEDED

            try:
                while True:
                    await _handle_async(req, handler)
                    waiting = requests.get_nowait()  # the buffer first, in order
                    if waiting is None:
                        if requests._ended is not None:
                            return
                        idle.append(task)
                        waiting = await trio.lowlevel.wait_task_rescheduled(abort)
                        if waiting is None:  # the subscription ended
                            return
                    req = waiting
            finally:
                running -= 1

        def start(items: list[IncomingRequest]) -> list[IncomingRequest]:
            nonlocal running
            started = 0
            if not requests._items:  # never ahead of a request that waits in the buffer
                for req in items:
                    if idle:
                        trio.lowlevel.reschedule(idle.pop(), outcome.Value(req))
                    elif running < concurrency:
                        running += 1
                        nursery.start_soon(worker, req)
                    else:
                        break
                    started += 1
            return items[started:] if started else items

        requests._starter = start
        try:
            while requests._ended is None:
                await requests._arrival.wait()  # an item buffered (workers take it), or the end
            ended = requests._ended
            if not isinstance(ended, SubscriptionEnded | StopAsyncIteration):
                raise ended
            # Ended cleanly: running handlers finish (and take what is buffered);
            # parked workers leave.
            while idle:
                trio.lowlevel.reschedule(idle.pop(), outcome.Value(None))
        except BrokerError as exc:
            # The connection dropped: handlers could not reply anyway. Raised
            # after the nursery so callers catch it plainly, not in a group.
            failure = exc
            nursery.cancel_scope.cancel()
        finally:
            requests._starter = None
    if failure is not None:
        raise failure


async def _serve_asyncio(
    requests: AsyncSubscription[IncomingRequest], handler: AsyncHandler, concurrency: int
) -> None:
    """Answer each request with ``handler`` in a task of its own, at most
    ``concurrency`` at once."""
    import asyncio

    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()

    async def answer(req: IncomingRequest) -> None:
        try:
            await _handle_async(req, handler)
        finally:
            slots.release()

    try:
        async for req in requests:
            await slots.acquire()
            task = asyncio.ensure_future(answer(req))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        # Cancelled, or the connection dropped: nothing can be answered now.
        for task in list(running):
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)


# --------------------------------------------------------------- mixins


class AsyncServing(AsyncTransport):
    """``serve`` and ``serving`` of the Trio, asyncio and in-process clients:
    handlers run as tasks (``respond`` is written once, in client/api.py)."""

    async def serve(
        self,
        subject: str,
        handler: AsyncHandler,
        *,
        group: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_pending: int | None = None,
        task_status: Any = None,
    ) -> None:
        """Answer every request to ``subject`` with ``await handler(req)``, forever.

        Up to ``concurrency`` handlers run at once (a Trio nursery, or an
        asyncio TaskGroup). The handler returns the reply body (bytes), a
        ``Reply`` with headers, or None after answering ``req`` itself; if it
        raises, the requester gets ``ResponderError`` with the exception's
        text (raise ``ResponderError(msg)`` to send just ``msg``). Returns
        only when cancelled; raises ``ConnectionClosed`` if the connection
        drops. With Trio, ``await nursery.start(mb.serve, subject, handler)``
        returns once the responder is registered (``task_status``); with
        asyncio (or Trio), ``async with mb.serving(...)`` does the same.
        Requests that find every handler busy wait in the client, at most
        ``max_pending`` of them (as for ``respond``), then in the broker.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        opening = respond_state(self, subject, group, max_pending=max_pending)
        async with opened_async(opening) as requests:
            if task_status is not None:
                task_status.started()
            on_trio = sniffio.current_async_library() == "trio"
            await (_serve_trio if on_trio else _serve_asyncio)(requests, handler, concurrency)

    def serving(
        self, subject: str, handler: AsyncHandler, **options: Unpack[AsyncServeOptions]
    ) -> AbstractAsyncContextManager[None]:
        """``async with mb.serving(subject, handler):`` ``serve`` (with the same
        ``options``) in the background for the duration of the block, in Trio
        and asyncio alike.

        The block starts only once the responder is registered, so a request
        sent from it never meets ``NoResponders``; leaving it stops serving.
        See ``minibroker/client/serving.py``.
        """
        return serving_in_background(partial(self.serve, subject, handler, **options))


class SyncServing(SyncTransport):
    """``serve`` and ``serving`` of the blocking client: handlers run on
    ``workers`` threads (same names as the async ones, no ``await``)."""

    def serve(
        self,
        subject: str,
        handler: SyncHandler,
        *,
        workers: int = DEFAULT_WORKERS,
        group: str | None = None,
        max_pending: int | None = None,
        handle: ServeHandle | None = None,
    ) -> None:
        """Answer requests to ``subject`` with ``handler(req)`` on ``workers`` threads.

        Blocks the calling thread until the connection closes, Ctrl-C, or
        ``handle.stop()`` is called from another thread (pass a
        ``ServeHandle`` to be able to). At most ``workers`` handlers run at
        once; further requests wait in the client's buffer meanwhile (at most
        ``max_pending``, as for ``respond``; then in the broker).
        Handler results and errors work as in the async ``serve``. On the way
        out, handlers already running are allowed to finish.

        Each of the ``workers`` threads takes the next request straight from
        the responder's buffer and runs the handler, so a request costs one
        hand-over (the client's reader thread waking an idle worker), not two
        through a dispatching thread and a pool (docs/request-reply.md,
        "Blocking serve"). The calling thread runs no handler: it waits, so
        Ctrl-C there stops serving without interrupting one.
        """
        if workers < 1:
            raise ValueError("workers must be at least 1")
        control = handle or ServeHandle()
        #: Set when serving ends: requests still buffered are left unhandled.
        leaving = threading.Event()
        #: Why serving ended, if the connection did (raised to the caller).
        failures: list[BrokerError] = []

        #: Handlers running now (the way out waits for them before unregistering).
        running = threading.Condition()
        busy = 0

        def work(requests: Any, done: threading.Event) -> None:
            nonlocal busy
            next_request = self._next_request
            clock = time.monotonic
            handled = 0.0
            try:
                while True:
                    # Read from the socket by this very thread when nobody else
                    # reads: no hand-over before the handler runs.
                    req = next_request(requests, handled)
                    if req is None:
                        return
                    with running:  # ``leaving`` is set under it: no handler starts after
                        if leaving.is_set() or control.stopped:
                            return
                        busy += 1
                    started = clock()
                    try:
                        _handle_sync(req, handler)
                    finally:
                        handled = clock() - started
                        with running:
                            busy -= 1
                            running.notify_all()
            except BrokerError as exc:  # the connection dropped
                failures.append(exc)
            finally:
                self._stop_serving(requests)
                done.set()

        opening = respond_state(self, subject, group, max_pending=max_pending)
        with opened_blocking(opening) as requests:
            control._requests = requests
            control.ready.set()
            if control.stopped:
                return
            # One event per worker, not Thread.join: on CPython 3.11 a join that
            # Ctrl-C interrupted can leave the thread looking finished, and a
            # second join then returns while its handler still runs.
            finished = [threading.Event() for _ in range(workers)]
            for n, done in enumerate(finished):
                threading.Thread(
                    target=work, args=(requests, done), name=f"serve-{subject}-{n}", daemon=True
                ).start()
            try:
                for done in finished:
                    done.wait()  # until the subscription ends; Ctrl-C interrupts it
            finally:
                # Take no more requests; let running handlers finish (their
                # replies still count), then unregister (stop() did already).
                # A worker waiting on the socket for the next request leaves
                # once the unsubscribe's answer (or the connection's end) comes.
                with running:
                    leaving.set()
                try:
                    requests._end(StopIteration())
                    with running:
                        running.wait_for(lambda: busy == 0)
                finally:
                    # Even when a second Ctrl-C cuts that wait short: ended
                    # locally, the subscription's ``close`` sends nothing.
                    self._unregister(requests)
                for done in finished:
                    done.wait()
            if failures:
                raise failures[0]

    def _unregister(self, requests: Any) -> None:
        """Unsubscribe a responder whose iteration was ended locally (its
        ``close`` does nothing then); a no-op once stopped or disconnected."""
        if requests.sub_id is None or self._conn.subscriptions.pop(requests.sub_id, None) is None:
            return
        if not self.closed:
            with suppress(BrokerError):
                self._call(Call("unsubscribe", {"sub": requests.sub_id}))

    def serving(
        self, subject: str, handler: SyncHandler, **options: Unpack[SyncServeOptions]
    ) -> AbstractContextManager[ServeHandle]:
        """``with mb.serving(subject, handler) as handle:`` ``serve`` (with the
        same ``options``) on a background thread for the duration of the block.

        The block starts only once the responder is registered (a request
        sent from it never meets ``NoResponders``); leaving it stops serving
        and waits for running handlers. See ``minibroker/client/serving.py``.
        """
        return serving_in_thread(partial(self.serve, subject, handler, **options), ServeHandle())
