"""Pipelined, ordered producers: ``mb.queue_producer(q)`` and ``mb.log_producer(log)``.

What they promise (order, batching, the window, errors per message) is in
docs/queues.md, "Producing many messages". ``ProducerState`` is the
bookkeeping, shared by both sides and never waiting itself, so the order
and error rules are written once; ``AsyncProducer`` and ``SyncProducer``
only wait, with the waits written once as flows (client/flavours.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping
from typing import Any, Generic, TypedDict, TypeVar, Unpack

from minibroker.client.bodies import MessageItem, encode_messages, message_map
from minibroker.client.flavours import (
    AwaitingContext,
    BlockingContext,
    Flow,
    run_async,
    run_blocking,
    waits,
)
from minibroker.client.logs import RecordItem, encode_records, first_offset, record_map
from minibroker.client.protocol import Call, connection_lost
from minibroker.client.queue_wire import bare_puts, count_of
from minibroker.errors import BrokerError

#: What a producer's ``put`` or ``append`` returns on one side (see ``QueueProducer``).
C = TypeVar("C")

#: Messages a producer puts in one frame at most.
DEFAULT_MAX_BATCH = 1000
#: About how many body bytes a producer puts in one frame at most.
DEFAULT_MAX_BATCH_BYTES = 512 * 1024
#: Batches a producer keeps waiting for their confirmation at most.
DEFAULT_MAX_IN_FLIGHT = 8


class _Batch:
    """Messages that leave in one frame, and that frame's answer once sent."""

    __slots__ = ("error", "items", "pending", "size")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.size = 0
        #: The sent request (None while the batch is still collecting).
        self.pending: Any = None
        #: Why the batch could not be sent at all (TooLarge, the connection ended).
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.pending.outcome()


class ProducerState:
    """A producer's batches; never waits (see the module docstring).

    It takes messages in their wire form (the model checks and encodes them
    first, so a str body raises TypeError before anything is queued);
    ``make_call`` builds the request for a batch; ``result_of(raw, index,
    count)`` is the result of the batch's ``index``-th message (``count``
    None), or of the group of ``count`` messages from there.
    """

    def __init__(
        self,
        client: Any,
        make_call: Callable[[list[Any]], Call[Any]],
        result_of: Callable[[Any, int, int | None], Any],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        for name, value in (
            ("max_batch", max_batch),
            ("max_batch_bytes", max_batch_bytes),
            ("max_in_flight", max_in_flight),
        ):
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.client = client
        self.conn = client._conn
        self.make_call = make_call
        self.result_of = result_of
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.max_in_flight = max_in_flight
        #: Async clients send the next batch from their reader as one is confirmed.
        self.ship_on_confirm = False
        #: The confirmation class of the driver (awaitable, or with ``result()``).
        self.confirmation: type[_ConfirmationBase] = SyncConfirmation
        self.collecting = _Batch()
        self.in_flight: deque[_Batch] = deque()
        #: The first error since the last flush (raised by ``flush``).
        self.failure: BaseException | None = None
        self.closed = False
        #: Whether a message without headers goes as its bare body (a queue
        #: producer whose broker announced ``put.bare``; logs always take them).
        self.bare_bodies = False

    def add(self, item: Any, size: int) -> Any:
        """Queue one encoded message and return its confirmation; send its batch
        if it is full or nothing is in flight (the last batch sent is answered:
        they are answered in order)."""
        if self.closed or self.conn.closed is not None:
            self._refuse()
        batch = self.collecting
        if batch.size + size > self.max_batch_bytes and batch.items:
            self.ship()  # a big message goes alone: if it is too large, it fails alone
            batch = self.collecting
        items = batch.items
        items.append(item)
        batch.size += size
        confirmation = _new(self.confirmation, (self, batch, len(items) - 1, None))
        if len(items) >= self.max_batch or self._due(batch):
            self.ship()
        return confirmation

    def add_many(self, items: list[Any], size: int) -> Any:
        """Queue a group of encoded messages that leave together, in one batch
        (after what was collected, if they fit beside it); one confirmation."""
        if self.closed or self.conn.closed is not None:
            self._refuse()
        batch = self.collecting
        if batch.items and (
            len(batch.items) + len(items) > self.max_batch
            or batch.size + size > self.max_batch_bytes
        ):
            self.ship()
            batch = self.collecting
        first = len(batch.items)
        batch.items.extend(items)
        batch.size += size
        confirmation = _new(self.confirmation, (self, batch, first, len(items)))
        if len(batch.items) >= self.max_batch or self._due(batch):
            self.ship()
        return confirmation

    def _due(self, batch: _Batch) -> bool:
        """Whether ``batch`` (below ``max_batch`` messages) leaves now: it is full
        by bytes, or this producer's last batch sent is answered (they are
        answered in order), so waiting would only add latency."""
        in_flight = self.in_flight
        return batch.size >= self.max_batch_bytes or not in_flight or in_flight[-1].pending.done

    def _refuse(self) -> None:
        if self.closed:
            raise RuntimeError("this producer was closed; open a new one")
        raise connection_lost(str(self.conn.closed))

    def full(self) -> bool:
        """True while ``max_in_flight`` batches await their confirmation."""
        return len(self.in_flight) >= self.max_in_flight

    def ship(self) -> None:
        """Send the collecting batch (if it holds anything)."""
        batch = self.collecting
        if not batch.items:
            return
        self.collecting = _Batch()
        call = self.make_call(batch.items)
        try:
            if self.ship_on_confirm:
                batch.pending = self.client._begin(call, on_reply=self._confirmed)
            else:
                batch.pending = self.client._begin(call)
        except BrokerError as exc:  # TooLarge, ConnectionClosed: the batch fails as a whole
            batch.error = exc
            self.failure = self.failure or exc
            return
        self.in_flight.append(batch)

    def _confirmed(self, result: Any) -> None:
        """The reader: a batch was confirmed; send what collected meanwhile."""
        if self.collecting.items:
            self.reap()
            if len(self.in_flight) < self.max_in_flight:
                self.ship()

    def reap(self) -> None:
        """Forget the answered batches at the front of the window, noting failures."""
        in_flight = self.in_flight
        while in_flight and in_flight[0].pending.done:
            batch = in_flight.popleft()
            if batch.pending.error is not None:
                self.failure = self.failure or batch.pending.error

    def waiting_for(self) -> Any:
        """The oldest request to wait for while the window is full, else None."""
        if not self.full():
            return None
        self.reap()
        return self.in_flight[0].pending if self.full() else None

    def unconfirmed(self) -> Any:
        """Flushing: send what is collected; the oldest request still unanswered."""
        self.ship()
        self.reap()
        return self.in_flight[0].pending if self.in_flight else None

    def take_failure(self) -> None:
        """Raise (once) the first error since the last flush."""
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure

    def shipped(self, batch: _Batch) -> Any:
        """The request a confirmation of ``batch`` waits for (sending the batch first)."""
        if batch is self.collecting:
            self.ship()
        return batch.pending


#: Builds a confirmation (a tuple) in one C call: a Python ``__init__`` would
#: cost a fifth of a message's path through ``put``.
_new = tuple.__new__


class _ConfirmationBase(tuple[ProducerState, _Batch, int, int | None]):
    """One message's (or group's) confirmation: its producer, its batch, its
    index in the batch, and how many messages a group confirms (None: one)."""

    __slots__ = ()

    @property
    def done(self) -> bool:
        """True once the broker answered this message's batch (or it failed to leave)."""
        batch = self[1]
        return batch.error is not None or (batch.pending is not None and batch.pending.done)

    def _answer(self) -> Flow[Any]:
        """Send the batch if it is still collecting, wait for its answer, and
        return this message's result (or raise the batch's error)."""
        state, batch, index, count = self
        pending = state.shipped(batch)
        if pending is not None and not pending.done:
            yield pending
        return state.result_of(batch.outcome(), index, count)


class Confirmation(_ConfirmationBase):
    """One message's confirmation for the async clients: ``await confirmation``
    returns its result (None for a queue, the record's offset for a log) or
    raises its batch's error."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, Any]:
        return run_async(self._answer()).__await__()


class SyncConfirmation(_ConfirmationBase):
    """One message's confirmation for the blocking client: ``result()``."""

    __slots__ = ()

    def result(self) -> Any:
        """Block until the broker answered; the message's result, or raise its
        batch's error (``CallTimeout`` past the client's timeout)."""
        return run_blocking(self._answer())


class _ProducerDriver:
    """What both drivers of a ``ProducerState`` share: everything but how the
    window makes room (``_room_after``, the per-message path, per side)."""

    def __init__(self, state: ProducerState) -> None:
        self._state = state

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet confirmed."""
        self._state.reap()
        return len(self._state.in_flight)

    def _room(self) -> Flow[None]:
        """Wait until fewer than ``max_in_flight`` batches await their confirmation."""
        while (oldest := self._state.waiting_for()) is not None:
            yield oldest

    def _flush(self) -> Flow[None]:
        """Wait until every message put so far is confirmed; raise the first
        error since the previous flush."""
        state = self._state
        while (pending := state.unconfirmed()) is not None:
            yield pending
        state.take_failure()

    flush = waits(_flush)

    def _closing(self) -> Flow[None]:
        """Flush, then refuse further messages."""
        if not self._state.closed:
            yield from self._flush()
            self._state.closed = True

    def _abandon(self) -> None:
        """Leaving on an exception: send what was put, wait for nothing."""
        self._state.ship()
        self._state.closed = True


class AsyncProducer(_ProducerDriver, AwaitingContext):
    """An ordered, pipelined producer for the async clients (see the module
    docstring). One task at a time may put through a producer (order is per
    producer); other tasks can share the client with producers of their own."""

    def __init__(self, state: ProducerState) -> None:
        super().__init__(state)
        state.ship_on_confirm = True
        state.confirmation = Confirmation

    async def _room_after(self, confirmation: Confirmation) -> Confirmation:
        """``confirmation`` once the window has room. ``put`` is a plain method
        returning this coroutine: one coroutine per message, not two."""
        state = self._state
        if len(state.in_flight) >= state.max_in_flight:
            await self._run(self._room())
        return confirmation


class SyncProducer(_ProducerDriver, BlockingContext):
    """An ordered, pipelined producer for the blocking client (see the module
    docstring). One thread at a time may use a producer (order is per
    producer); other threads can share the client with producers of their own."""

    def _room_after(self, confirmation: SyncConfirmation) -> SyncConfirmation:
        """``confirmation`` once the window has room (blocking)."""
        state = self._state
        if len(state.in_flight) >= state.max_in_flight:
            self._run(self._room())
        return confirmation


def body_size(body: Any, headers: Mapping[str, str] | None = None) -> int:
    """About how many bytes a message adds to its batch's frame."""
    return len(body) + (sum(len(k) + len(v) for k, v in headers.items()) if headers else 0)


class Window(TypedDict, total=False):
    """A producer's limits, as ``mb.queue_producer(q, max_batch=100)`` takes them."""

    #: Messages in one frame at most (default ``DEFAULT_MAX_BATCH``, 1000).
    max_batch: int
    #: About how many body bytes in one frame at most (default 512 KiB).
    max_batch_bytes: int
    #: Batches awaiting their confirmation at most (default 8).
    max_in_flight: int


# ------------------------------------------------------- queue producers


def queue_producer_state(client: Any, queue: str, **window: Unpack[Window]) -> ProducerState:
    """An ordered, pipelined producer for ``queue``: ``producer.put(body, headers)``
    returns the message's confirmation at once, batches leave in order with
    up to ``max_in_flight`` awaiting their confirmation (``max_batch``,
    ``max_batch_bytes`` and ``max_in_flight``: see ``Window``). Use it with
    ``async with`` (``with``); leaving the block flushes."""

    def put_batch(messages: list[Any]) -> Call[int]:
        return Call("put", {"queue": queue, "messages": messages}, count_of)

    state = ProducerState(client, put_batch, _queue_result, **window)
    state.bare_bodies = bare_puts(client)
    return state


def _queue_result(result: Any, index: int, count: int | None) -> int | None:
    """A message's result is None; a group's is its count (as ``mb.put_many``)."""
    return count


class QueueProducer(Generic[C]):
    """``put`` and ``put_many`` of a queue producer, written once: ``C`` is what
    the driver's ``_room_after`` returns (an awaitable confirmation, or the
    blocking client's ``SyncConfirmation``)."""

    _state: ProducerState
    _room_after: Callable[[Any], C]

    def put(self, body: bytes, headers: Mapping[str, str] | None = None) -> C:
        """Queue one message; waits (async: ``await`` it) only while the window is
        full. Its confirmation says when the message is stored (None) or why not:
        ``await confirmation``, or ``confirmation.result()`` on the blocking client."""
        state = self._state
        if type(body) is bytes and headers is None:  # the common case first: no calls
            return self._room_after(
                state.add(body if state.bare_bodies else {"body": body}, len(body))
            )
        message = message_map(body, headers)
        return self._room_after(state.add(message, body_size(body, headers)))

    def put_many(self, messages: Iterable[MessageItem]) -> C:
        """Queue a batch of messages (as ``mb.put_many`` takes them) that leave
        together; waits only while the window is full. Its confirmation gives
        their count once stored (or their batch's error)."""
        state = self._state
        encoded = encode_messages(messages, "put_many", bare=state.bare_bodies)
        return self._room_after(state.add_many(encoded, encoded_size(encoded)))


def encoded_size(encoded: list[Any]) -> int:
    """Body bytes of a batch in wire form (bare bodies and ``{"body"}`` maps),
    for queue producers and log producers alike."""
    try:
        # Bare bodies only, the common batch: one pass in C that checks and
        # sums at once (a map in the list raises TypeError).
        return len(b"".join(encoded))
    except TypeError:
        return sum(len(m) if type(m) is bytes else len(m["body"]) for m in encoded)


class AsyncQueueProducer(QueueProducer[Coroutine[Any, Any, Confirmation]], AsyncProducer):
    """``mb.queue_producer(queue)`` for the async clients (see ``queue_producer_state``)."""


class SyncQueueProducer(QueueProducer[SyncConfirmation], SyncProducer):
    """``mb.queue_producer(queue)`` for the blocking client (see ``queue_producer_state``)."""


# --------------------------------------------------------- log producers


def log_producer_state(client: Any, log: str, **window: Unpack[Window]) -> ProducerState:
    """An ordered, pipelined producer for ``log``: ``producer.append(body, key,
    headers)`` returns the record's confirmation at once (its offset, once
    stored), batches leave in order with up to ``max_in_flight`` awaiting
    their confirmation (see ``Window``). Use it with ``async with``
    (``with``); leaving the block flushes."""

    def append_batch(records: list[Any]) -> Call[int]:
        return Call("append", {"log": log, "records": records}, first_offset)

    return ProducerState(client, append_batch, _offset_in_batch, **window)


def _offset_in_batch(first: int, index: int, count: int | None) -> int:
    return first + index


class LogProducer(Generic[C]):
    """``append`` and ``append_many`` of a log producer, written once (see
    ``QueueProducer``)."""

    _state: ProducerState
    _room_after: Callable[[Any], C]

    def append(
        self, body: bytes, key: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> C:
        """Append one record; waits (async: ``await`` it) only while the window is
        full. Its confirmation gives the record's offset once stored: ``await
        confirmation``, or ``confirmation.result()`` on the blocking client."""
        if type(body) is bytes and key is None and headers is None:  # a bare body: no calls
            return self._room_after(self._state.add(body, len(body)))
        record = record_map(body, key, headers)
        return self._room_after(self._state.add(record, body_size(body, headers)))

    def append_many(self, records: Iterable[RecordItem]) -> C:
        """Queue a batch of records (as ``mb.append_many`` takes them) that leave
        together; waits only while the window is full. Its confirmation gives
        the first one's offset once stored (the rest follow densely)."""
        encoded = encode_records(records)
        return self._room_after(self._state.add_many(encoded, encoded_size(encoded)))


class AsyncLogProducer(LogProducer[Coroutine[Any, Any, Confirmation]], AsyncProducer):
    """``mb.log_producer(log)`` for the async clients (see ``log_producer_state``)."""


class SyncLogProducer(LogProducer[SyncConfirmation], SyncProducer):
    """``mb.log_producer(log)`` for the blocking client (see ``log_producer_state``)."""
