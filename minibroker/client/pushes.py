"""Turning push frames into the items a subscription yields.

:class:`SubscriptionCore` is what the Trio, asyncio and blocking clients'
``Subscription`` classes share: registering with the client as the subscribe
reply arrives, giving up cleanly when subscribing fails, and the two control
pushes (``notice``: the broker dropped messages; ``end``: the broker ended
the subscription), and what a full buffer does. Each flavour adds only how a
consumer waits for items.

A subscription holds at most ``max_pending`` items unread: its own (an
argument of ``subscribe``, ``tail``, ``respond``, ``serve`` and
``serving``), else the client's (``connect(max_pending=...)``), else, for a
topic subscription, its ``buffer``, so the one number a subscriber asks for
bounds it in the broker and in the client alike
(:meth:`SubscriptionCore._limit`); tails and responders default to
``DEFAULT_MAX_PENDING``.

A full buffer never stops the client reading its socket: replies to this
connection's own calls travel behind the pushes, so a client that subscribed
(or tails a log, or serves requests) and then called more than
``max_pending`` times on the same connection would wait forever for an
answer. Like a NATS client, a topic subscription's buffer instead applies the
subscription's own overflow policy on the client side (:meth:`SubscriptionCore._take`).
Log tails and responders must lose nothing, so a full buffer of theirs asks
the broker to ``pause`` that one subscription (Kafka's consumer ``pause``),
and to ``resume`` it once the application has taken half of it
(:meth:`SubscriptionCore._consumed`); the broker keeps the tail's cursor or
the responder's outbox meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from minibroker.client.connection import NO_GUARD
from minibroker.client.flavours import Awaiting, Blocking, Flow, waits
from minibroker.client.protocol import Call, Push
from minibroker.errors import BrokerError, ConnectionClosed, SlowConsumer, error_from_code
from minibroker.protocol import frames

log = logging.getLogger("minibroker.client")

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")

#: Items a log tail or responder may hold unread unless ``max_pending`` says
#: otherwise (a topic subscription holds its ``buffer``): past that a topic
#: subscription applies its overflow policy in the client, and a log tail or
#: responder is paused in the broker.
DEFAULT_MAX_PENDING = 10_000

#: (typed push frame, client) -> items for the subscription's buffer.
PushParser = Callable[[Any, Any], list[T]]


class SubscriptionEnded(BrokerError):
    """The broker ended a subscription (e.g. its log was deleted); ``cause`` says why."""

    code = "subscription_ended"

    def __init__(self, message: str, cause: BrokerError | None = None) -> None:
        super().__init__(message)
        self.cause = cause

    @classmethod
    def from_frame(cls, frame: frames.End) -> SubscriptionEnded:
        cause = error_from_code(frame.code, frame.message)
        return cls(f"subscription ended by the broker: {cause.message}", cause)


class SubscriptionCore(Generic[T]):
    """The state and control-push handling every client's subscription shares;
    a side adds how a consumer waits (:meth:`_arrived`, :meth:`_end`)."""

    #: Held while the reader buffers items (the blocking client's condition).
    _guard: AbstractContextManager[Any] = NO_GUARD

    def __init__(
        self,
        client: Any,
        call: Call[Any],
        parser: PushParser[T],
        callback: Callable[[T], object] | None = None,
        max_pending: int | None = None,
    ) -> None:
        self._client = client
        self._call = call
        self._parser = parser
        self._callback = callback
        self._items: deque[T] = deque()
        self._max_pending = self._limit(call, max_pending, client._max_pending)
        self._ended: BaseException | None = None
        self._abandoned = False
        #: True from the ``pause`` a full tail or responder buffer sent until its ``resume``.
        self._paused = False
        #: The topic subscription's ``on_overflow`` ("drop_oldest" or "disconnect"),
        #: applied to a full client-side buffer; None for kinds that have none.
        self._on_overflow: str | None = (
            call.fields.get("on_overflow", "drop_oldest") if call.op == "subscribe" else None
        )
        self.sub_id: int | None = None
        #: Set once subscribing began (entering the ``with`` block).
        self._started = False
        #: Messages discarded for this subscription because it fell behind: by the
        #: broker (``notice`` pushes) or by this client's full buffer.
        self.dropped = 0
        #: The subscribe call's result (carries ``sub`` and model-specific fields).
        self.info: Any = None
        #: Set by the Trio ``serve``: takes a push's items on the reader and
        #: returns those it could not start a handler for (see ``_feed``).
        self._starter: Callable[[list[T]], list[T]] | None = None

    @staticmethod
    def _limit(call: Call[Any], own: int | None, clients: int | None) -> int:
        """The items a subscription opened by ``call`` may hold unread: its own
        ``max_pending``, else its client's, else what it asked the broker to
        hold (a topic subscription's ``buffer``), else ``DEFAULT_MAX_PENDING``.

        A subscriber asking for ``buffer=1_000_000`` means to fall that far
        behind without losing anything; a client-side limit below it would
        drop what the broker had kept for it. Below 1 a topic subscription
        would drop everything and a paused tail or responder never resume:
        ``ValueError``.
        """
        for limit in (own, clients):
            if limit is not None and limit < 1:
                raise ValueError(f"max_pending must be at least 1, not {limit}")
        if own is not None:
            return own
        if clients is not None:
            return clients
        buffer: int = call.fields.get("buffer", DEFAULT_MAX_PENDING)
        return buffer

    def _register(self, result: Any) -> None:
        """Run by the reader as the reply arrives, before it reads the next frame:
        the first pushes may share a chunk with the reply and must find us."""
        sub_id = int(result["sub"])
        if self._abandoned:
            self._client._post(Call("unsubscribe", {"sub": sub_id}))
            return
        self.info = result
        self.sub_id = sub_id
        self._client._conn.subscriptions[sub_id] = self

    def _starting(self, /, **options: Any) -> Flow[None]:
        """Subscribe (``options``: the blocking client's ``timeout``); a subscribe
        that fails or is cancelled is abandoned."""
        self._started = True
        pending = self._client._begin(self._call, on_reply=self._register, **options)
        try:
            yield pending
            pending.outcome()
        except BaseException:
            self._abandon()
            raise

    _start = waits(_starting)

    def _abandon(self) -> None:
        """Subscribing was cancelled or failed: never leave the broker pushing
        to a subscription nobody reads (the reply may still be on its way)."""
        self._abandoned = True
        self._forget()

    def _forget(self) -> None:
        """Route no more pushes here and tell the broker, without waiting (once)."""
        if self.sub_id is not None and self._client._conn.subscriptions.pop(self.sub_id, None):
            self._client._post(Call("unsubscribe", {"sub": self.sub_id}))

    def _count_dropped(self, dropped: int, where: str) -> None:
        self.dropped += dropped
        log.warning(
            "subscription %s dropped %s messages in the %s (slow consumer)",
            self.sub_id,
            dropped,
            where,
        )

    def _take(self, items: list[T]) -> bool:
        """Buffer a push's items without ever waiting; True if the subscription
        must now end as a slow consumer (call :meth:`_end_slow`, outside any lock).

        Past ``max_pending`` items a topic subscription applies its overflow
        policy here, as the broker would: ``drop_oldest`` drops the oldest
        buffered items (counted in ``dropped``, logged like a ``notice``);
        ``disconnect`` keeps the items received so far and discards the rest.
        Either way memory stays bounded by ``max_pending``. A tail or a
        responder, which may drop nothing, pauses instead: the broker stops
        pushing to it, so its buffer holds at most ``max_pending`` items plus
        those already on their way (at most the broker's outbound high-water
        mark, 1 MiB, and what the sockets hold).
        """
        buffered = self._items
        buffered.extend(items)
        excess = len(buffered) - self._max_pending
        if self._on_overflow is None:
            if excess >= 0 and not self._paused and self._ended is None:
                self._paused = True
                self._client._post(Call("pause", {"sub": self.sub_id}))
            return False
        if excess <= 0 or self._ended is not None:
            return False
        if self._on_overflow == "disconnect":
            for _ in range(excess):
                buffered.pop()
            return True
        for _ in range(excess):
            buffered.popleft()
        self._count_dropped(excess, "client")
        return False

    def _consumed(self) -> bool:
        """The application took items; True if the broker must now be told to
        resume this paused subscription (call :meth:`_resume`, outside any lock).

        Resuming at half of ``max_pending``, not at the first free slot, keeps
        a consumer that is just behind from sending a pause and a resume per push.
        """
        if self._paused and len(self._items) <= self._max_pending // 2:
            self._paused = False
            return self._ended is None
        return False

    def _resume(self) -> None:
        self._client._post(Call("resume", {"sub": self.sub_id}))

    def _popped(self, max_items: int) -> tuple[list[T], bool]:
        """Under the guard: up to ``max_items`` buffered items (maybe none), and
        whether to :meth:`_resume` (outside the guard: sending may block, and
        the blocking client's reader needs the guard)."""
        items = self._items
        if len(items) <= max_items:  # everything buffered, copied at C speed
            batch = list(items)
            items.clear()
        else:
            popleft = items.popleft
            batch = [popleft() for _ in range(max_items)]
        return batch, self._paused and self._consumed()

    def _take_buffered(self, max_items: int) -> list[T]:
        """Up to ``max_items`` buffered items at once, without waiting (maybe none).

        What a batch reader takes after its first item: one call for the
        batch instead of one ``get_nowait`` per item (a log replay takes
        thousands per batch).
        """
        with self._guard:
            batch, resume = self._popped(max_items)
        if resume:
            self._resume()
        return batch

    def _end_slow(self) -> None:
        """on_overflow=disconnect on the client: end this subscription with the
        broker's slow-consumer error (after the buffered items) and unsubscribe
        it; the connection and its other subscriptions carry on."""
        self._end(
            SlowConsumer(
                f"subscription {self.sub_id} fell {self._max_pending} messages behind "
                "in the client (on_overflow=disconnect)",
                sub=self.sub_id,
            )
        )
        self._forget()

    def _feed(self, push: Push) -> None:
        """The reader: take one push frame without ever waiting: a ``notice`` (the
        broker dropped messages), an ``end`` (the broker ended the subscription),
        or items for the buffer (see :meth:`_take`) or the callback."""
        if push.op == "notice":
            self._count_dropped(push.frame.dropped, "broker")
            return
        if push.op == "end":
            self._end(SubscriptionEnded.from_frame(push.frame))
            return
        items = self._parser(push.frame, self._client)
        if self._callback is not None:
            self._run_callback(items)
            return
        if self._starter is not None:
            # The Trio serve starts handler tasks right here, on the reader:
            # one scheduler round per request less than waking its loop.
            items = self._starter(items)
            if not items:
                return
        with self._guard:
            slow = self._take(items)
            self._arrived()
        if slow:
            self._end_slow()

    def _run_callback(self, items: list[T]) -> None:
        """``callback(item)`` for each item, on the reader: one that raises is
        logged, and the reader (with every other subscription) carries on."""
        callback = self._callback
        assert callback is not None
        for item in items:
            try:
                callback(item)
            except Exception:
                log.exception("subscription %s callback failed", self.sub_id)

    def _arrived(self) -> None:
        """Wake a consumer waiting for items (the transport's primitive)."""
        raise NotImplementedError

    def _end(self, error: BaseException) -> None:
        raise NotImplementedError

    @property
    def ended(self) -> BaseException | None:
        """Why the subscription ended (None while live)."""
        return self._ended

    def _check_started(self) -> None:
        """Waiting for an item (never on the fast path): refuse a subscription
        used outside its ``with`` block, which would wait for ever."""
        if not self._started:
            raise RuntimeError("enter the subscription first: `with mb.subscribe(...) as sub`")


class BlockingIteration(Generic[T]):
    """``for item in it`` over the blocking ``get()``; ends at ``SubscriptionEnded``."""

    def get(self, timeout: float | None = None) -> T:
        raise NotImplementedError

    def __iter__(self) -> BlockingIteration[T]:
        return self

    def __next__(self) -> T:
        try:
            return self.get()
        except SubscriptionEnded:
            raise StopIteration from None


class Signal(Protocol):
    """One waiter's wake-up: ``set`` from the reader, ``wait`` for the next ``set``."""

    def set(self) -> None: ...

    async def wait(self) -> None: ...


class AsyncSubscription(SubscriptionCore[T], Awaiting):
    """A push subscription of the async clients: ``async for item in sub``,
    waiting on the client's :class:`Signal`. Iteration ends when the
    subscription is closed or the broker ends it, and raises
    ``ConnectionClosed`` (or the broker's goodbye error) if the connection goes."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._arrival: Signal = self._client._signal()

    def _arrived(self) -> None:
        self._arrival.set()

    def _end(self, error: BaseException) -> None:
        if self._ended is None:
            self._ended = error
        self._arrival.set()

    def _taken(self) -> None:
        """The consumer took items: resume a paused subscription drained to half."""
        if self._paused and self._consumed():
            self._resume()

    def __aiter__(self) -> AsyncSubscription[T]:
        return self

    async def __anext__(self) -> T:
        items = self._items
        while not items:
            if self._ended is not None:
                if isinstance(self._ended, SubscriptionEnded | StopAsyncIteration):
                    raise StopAsyncIteration
                raise self._ended
            self._check_started()
            await self._arrival.wait()
        item = items.popleft()
        self._taken()
        return item

    async def get_batch(self, max_items: int = 1000) -> list[T]:
        """Wait for at least one item, then return up to ``max_items`` at once."""
        batch = [await self.__anext__()]
        batch += self._take_buffered(max_items - 1)
        return batch

    def get_nowait(self) -> T | None:
        """The next buffered item, or None when nothing has arrived."""
        if not self._items:
            return None
        item = self._items.popleft()
        self._taken()
        return item

    async def aclose(self) -> None:
        """Stop the subscription: iteration ends and the broker is told (once)."""
        if self.sub_id is None or self._ended is not None:
            return
        self._end(StopAsyncIteration())
        client = self._client
        client._conn.subscriptions.pop(self.sub_id, None)
        if not client.closed:
            # Queued before anything waits (``_call`` may first wait for a
            # paused transport to drain): a close cancelled meanwhile must not
            # leave the broker pushing to nobody, a responder's requesters
            # waiting for their deadline instead of getting ``responder_gone``.
            unsubscribing = client._begin(Call("unsubscribe", {"sub": self.sub_id}))
            with suppress(ConnectionClosed, BrokerError):
                await unsubscribing.answer()

    async def __aenter__(self) -> AsyncSubscription[T]:
        """Subscribe (once); leaving the block unsubscribes."""
        if not self._started:
            await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class BlockingSubscription(SubscriptionCore[T], BlockingIteration[T], Blocking):
    """A push subscription of the blocking client, read from any thread:
    ``for item in sub``, ``get(timeout)``, ``get_batch``, ``get_nowait``
    (see :class:`AsyncSubscription`; waiting on a condition)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._cond = self._guard = threading.Condition(threading.Lock())
        # A blocking ``serve``'s workers take turns reading the socket
        # (``Client._next_request``); all three under ``_cond``:
        #: workers waiting for an item or for the reading role;
        self._idle = 0
        #: the reading role was handed to this subscription's workers, not yet taken;
        self._offered = False
        #: a worker reads the socket for this subscription and takes the first item itself;
        self._leader = False
        #: the worker the reading role is lent to while it runs a handler, and since when;
        self._lender: threading.Thread | None = None
        self._lent_at = 0.0
        #: roles lent so far, and whether a worker watches the lent one;
        self._lends = 0
        self._watched = False
        #: whether the last handler was quick (its worker may keep the role next time).
        self._fast = True

    # ------------------------------------------------- driven by the client

    def _arrived(self) -> None:
        # One waiter per buffered item, not all of them: a blocking serve
        # has ``workers`` threads waiting here and one request wakes one
        # (none for the item the serve worker that read it takes itself).
        self._cond.notify(len(self._items) - self._leader)

    def _end(self, error: BaseException) -> None:
        with self._cond:
            if self._ended is None:
                self._ended = error
            self._cond.notify_all()

    # ------------------------------------------------------ consumer side

    def get(self, timeout: float | None = None) -> T:
        """The next item; raises ``TimeoutError`` if none arrives in ``timeout``
        seconds, ``SubscriptionEnded`` once the subscription is closed or ended."""
        return self.get_batch(1, timeout)[0]

    def get_batch(self, max_items: int = 1000, timeout: float | None = None) -> list[T]:
        """Wait (up to ``timeout``) for at least one item, then return up to
        ``max_items`` at once."""
        with self._cond:
            if not self._items:
                self._wait_for_items(timeout)
            batch, resume = self._popped(max_items)
        if resume:
            self._resume()
        return batch

    def get_nowait(self) -> T | None:
        """The next buffered item, or None when nothing has arrived."""
        batch = self._take_buffered(1)
        return batch[0] if batch else None

    def _wait_for_items(self, timeout: float | None) -> None:
        """Holding the condition: return once an item is buffered, else raise."""
        self._check_started()
        if not self._cond.wait_for(lambda: self._items or self._ended is not None, timeout):
            raise TimeoutError(f"no item within {timeout} seconds")
        if self._items:
            return
        ended = self._ended
        if isinstance(ended, SubscriptionEnded):
            raise ended
        if isinstance(ended, StopIteration):
            raise SubscriptionEnded("the subscription was closed")
        assert ended is not None
        raise ended

    def close(self) -> None:
        """Stop the subscription: iteration ends and the broker is told (once)."""
        if self.sub_id is None or self._ended is not None:
            return
        self._end(StopIteration())
        client = self._client
        client._conn.subscriptions.pop(self.sub_id, None)
        if client.closed:
            return
        unsubscribe: Call[None] = Call("unsubscribe", {"sub": self.sub_id})
        if client._on_reader_thread():
            client._post(unsubscribe)
            return
        with suppress(ConnectionClosed, BrokerError):
            client._call(unsubscribe)

    def __enter__(self) -> BlockingSubscription[T]:
        """Subscribe (once); leaving the block unsubscribes."""
        if not self._started:
            self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Opening(NamedTuple, Generic[A, B]):
    """A push subscription a client method opens (``subscribe``, ``respond``):
    its call, and how its pushes become items on each flavour (the parsers
    differ where the items do, as a responder's requests)."""

    client: Any
    call: Call[Any]
    parse_async: PushParser[A]
    parse_blocking: PushParser[B]
    callback: Callable[[Any], object] | None = None
    #: Items it may hold unread (None: see :meth:`SubscriptionCore._limit`).
    max_pending: int | None = None


def opened_async(opening: Opening[A, Any]) -> AsyncSubscription[A]:
    """The async clients' context for ``opening`` (a ``transport.opens`` kind)."""
    client, call, parse, _, callback, max_pending = opening
    subscription: AsyncSubscription[A] = client._subscription(call, parse, callback, max_pending)
    return subscription


def opened_blocking(opening: Opening[Any, B]) -> BlockingSubscription[B]:
    """The blocking client's context for ``opening``."""
    client, call, _, parse, callback, max_pending = opening
    subscription: BlockingSubscription[B] = client._subscription(call, parse, callback, max_pending)
    return subscription
