"""The consumer behind ``mb.consume(queue)``: pipelined fetches, batched acks.

What it promises is in docs/queues.md, "The consumer". ``ConsumerState`` is
the bookkeeping, shared by both sides and never waiting itself: the fetches
in flight (oldest first: one connection answers them in order), the
fetched deliveries not handed out yet, the recorded acks, and the acks and
nacks sent and not yet confirmed. ``AsyncConsumer`` and ``SyncConsumer`` only
wait; handing out a fetched delivery is building it from the answer's
columns (``queue_wire.deliveries``), so the async one runs no task and
yields once per batch. The pipeline depth adapts: two
fetches in flight while they come back full (a backlog, where overlapping
the network with the work pays), one while the queue keeps up, so a
consumer that stops on an idle queue has one long poll to withdraw.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Generic, TypeVar

from minibroker.client.flavours import (
    AwaitingContext,
    BlockingContext,
    Flow,
    waits,
)
from minibroker.client.protocol import Call
from minibroker.client.queue_wire import (
    Delivery,
    DeliveryBase,
    SyncDelivery,
    ack_call,
    cancel_fetch_call,
    deliveries,
    fetch_call,
    nack_call,
    raw_delivery_ids,
)
from minibroker.errors import BrokerError, UnknownDelivery

D = TypeVar("D")
V = TypeVar("V")

#: Messages a consumer fetches ahead of the loop (in its buffer and its fetches).
DEFAULT_PREFETCH = 100
#: Recorded acks that make the consumer send an ``ack`` frame.
DEFAULT_ACK_EVERY = 100
#: Seconds each consumer fetch long-polls before the broker answers "nothing".
DEFAULT_CONSUME_WAIT = 1.0
#: Fetches a consumer keeps in flight at most, each for ``prefetch / FETCHES_IN_FLIGHT``.
FETCHES_IN_FLIGHT = 2
#: The op that withdraws a parked fetch; its errors are ignored (see ``reap``).
CANCEL_OP = "fetch.cancel"


def giving_back(client: Any, queue: str) -> Callable[[Any], None]:
    """A hook for an abandoned fetch: nack (requeue) whatever it still brings in.

    It runs on the transport's reader the moment the answer arrives, so the
    messages go back at once instead of after their visibility timeout.
    """

    def give_back(result: list[dict[str, Any]] | dict[str, Any]) -> None:
        ids = raw_delivery_ids(result)
        if ids:
            client._post(nack_call(queue, ids, True, 0.0))

    return give_back


async def fetch_withdrawable(client: Any, queue: str, call: Call[list[Delivery]]) -> list[Delivery]:
    """Run a long-poll ``fetch`` so that cancelling the caller withdraws it.

    Without this, a cancelled ``await mb.fetch(q, wait=30)`` leaves its fetch
    parked on the broker: the next message is delivered to nobody and stays
    invisible until its visibility timeout, with its delivery count raised.
    So on cancellation the fetch is withdrawn (``fetch.cancel``) and
    abandoned with a hook that gives back anything it brings all the same;
    deliveries that arrived just as the caller was cancelled are given back
    too.
    """
    pending = client._begin(call)
    try:
        await pending.wait()
    except BaseException:
        if pending.done:
            with suppress(BrokerError):  # a failed fetch holds nothing
                ids = [d.delivery_id for d in pending.outcome()]
                if ids:
                    client._post(nack_call(queue, ids, True, 0.0))
        else:
            pending.abandon(giving_back(client, queue))
            with suppress(BrokerError):  # the connection is gone: the broker requeues all
                client._post(cancel_fetch_call(queue, pending.request_id))
        raise
    result: list[Delivery] = pending.outcome()
    return result


class ConsumerState:
    """A consumer's bookkeeping, shared by the async and blocking drivers; never waits.

    ``fetches`` are the pipelined fetch requests, oldest first (one
    connection answers them in order: fetches are served first come, first
    served). ``buffer`` yields the fetched deliveries not handed out yet
    (each built as it is handed out), ``acks`` the recorded, unsent ack
    ids, ``settling`` the ack/nack (and, once leaving, fetch.cancel)
    requests sent and not yet confirmed.
    """

    def __init__(
        self,
        client: Any,
        queue: str,
        kind: type[DeliveryBase],
        *,
        prefetch: int,
        wait: float,
        visibility_timeout: float | None,
        ack_every: int,
    ) -> None:
        if type(prefetch) is not int or prefetch < 1:
            raise ValueError(f"prefetch must be a positive integer, got {prefetch!r}")
        if type(ack_every) is not int or ack_every < 1:
            raise ValueError(f"ack_every must be a positive integer, got {ack_every!r}")
        self.client = client
        self.queue = queue
        #: Its deliveries' acks join a batch (a client's ``_batches`` is False);
        #: an instance attribute, the fastest read in ``Delivery.ack``.
        self._batches = True
        self.max_depth = min(FETCHES_IN_FLIGHT, prefetch)
        self.per_fetch = -(-prefetch // self.max_depth)
        #: Fetches to keep in flight now: all of them while fetches come back
        #: full (a backlog: pipelining pays), one while the queue keeps up.
        self.depth = 1
        self.kind = kind
        # One Call for every fetch: only the request id differs between them.
        # Its answer stays raw: ``take_fetched`` builds the deliveries lazily.
        fetch = fetch_call(queue, self.per_fetch, wait, visibility_timeout, kind, self)
        self.fetch: Call[Any] = Call(fetch.op, fetch.fields)
        #: With ``wait=0`` the iteration ends at the first empty fetch (drain mode).
        self.drain = not wait
        self.drained = False
        self.ack_every = ack_every
        self.fetches: deque[Any] = deque()
        self.buffer: Iterator[Any] = iter(())
        self.acks: list[int] = []
        self.settling: list[tuple[Any, Call[Any]]] = []
        self.closed = False
        #: Acks the broker confirmed.
        self.acked = 0
        #: Acks the broker refused because the delivery had been redelivered meanwhile.
        self.stale_acks = 0

    # ---------------------------------------------------- deliveries' side

    def record_ack(self, delivery_id: int) -> None:
        if self.closed:
            # Acked after the block ended: nobody will flush again, send it now.
            self.client._post(ack_call(self.queue, [delivery_id]))
            return
        acks = self.acks
        acks.append(delivery_id)
        if len(acks) >= self.ack_every:
            self.flush()

    def record_settle(self, call: Call[int]) -> None:
        if self.closed:
            self.client._post(call)
        else:
            self.settling.append((self.client._begin(call), call))

    # ------------------------------------------------------ drivers' side

    def top_up(self) -> None:
        """Begin fetches until ``depth`` are in flight."""
        fetches = self.fetches
        while len(fetches) < self.depth:
            fetches.append(self.client._begin(self.fetch))

    def next_fetch(self) -> Any:
        """The buffer is empty: send the recorded acks (a fetch is only sent once
        what was handed out is acked), top up the fetches, and return the oldest
        one to wait for; None once the consumer is closed or drained."""
        if self.closed or self.drained:
            return None
        self.reap()
        self.flush()
        self.top_up()
        return self.fetches[0]

    def take_fetched(self) -> Any:
        """The oldest fetch answered: buffer its deliveries and hand out the
        first (None if it brought none), adapting the depth.

        Only a fetch that came back full says there is a backlog worth a
        second fetch in flight; with one, a consumer that stops on an idle
        queue has one long poll to withdraw, not two (see ``start_closing``).
        """
        result = self.fetches.popleft().outcome()
        count = len(result) if isinstance(result, list) else len(result["bodies"])
        self.depth = self.max_depth if count >= self.per_fetch else 1
        if not count:
            self.drained = self.drain
            return None
        self.buffer = deliveries(self.kind, self.queue, self, result)
        return next(self.buffer)

    def unsettled(self) -> Any:
        """Collect what was answered; the oldest ack or nack still unanswered, if any."""
        self.reap()
        return self.settling[0][0] if self.settling else None

    @contextmanager
    def forgetting_on_error(self) -> Iterator[None]:
        """Waiting for the last confirmations failed or was cancelled: stop
        waiting for the rest (they are still sent)."""
        try:
            yield
        except BaseException:
            self.forget_settling()
            raise

    def flush(self) -> None:
        """Send the recorded acks as one frame (not waiting for the answer)."""
        if self.acks:
            call = ack_call(self.queue, self.acks)
            self.acks = []
            self.settling.append((self.client._begin(call), call))

    def reap(self) -> None:
        """Collect answered acks and nacks; resend a batch without its stale ids.

        Acks and nacks are all or nothing on the broker, so one stale id
        (redelivered after its visibility timeout) fails its whole batch: the
        error lists the stale ids, and the rest are sent again without them.
        Any other error (the queue was deleted, the connection dropped) is raised.
        """
        if not self.settling:
            return
        keep: list[tuple[Any, Call[Any]]] = []
        failure: BrokerError | None = None
        for entry in self.settling:
            pending, call = entry
            if not pending.done:
                keep.append(entry)
                continue
            try:
                count = pending.outcome()
            except UnknownDelivery as exc:
                try:
                    retry = self._without_stale(call, exc)
                except UnknownDelivery as unusable:
                    failure = failure or unusable
                    continue
                if retry is not None:
                    keep.append((self.client._begin(retry), retry))
                continue
            except BrokerError as exc:
                # A failed cancel changes nothing: the give-back hook of the
                # fetch still nacks what it brings (a broker without
                # fetch.cancel answers unknown_op).
                if call.op != CANCEL_OP:
                    failure = failure or exc
                continue
            if call.op == "ack":
                self.acked += count
        self.settling = keep
        if failure is not None:
            raise failure

    def _without_stale(self, call: Call[int], error: UnknownDelivery) -> Call[int] | None:
        details: dict[str, Any] = error.details or {}
        stale = set(details.get("deliveries") or ())
        ids: list[int] = call.fields["deliveries"]
        rest = [i for i in ids if i not in stale]
        if len(rest) == len(ids):
            raise error  # no usable details: do not loop
        if call.op == "ack":
            self.stale_acks += len(ids) - len(rest)
        if not rest:
            return None
        return Call(call.op, {**call.fields, "deliveries": rest}, call.parse)

    def start_closing(self) -> bool:
        """Withdraw the parked fetches, give back what was fetched and not
        handed out, then send the last acks.

        Each fetch still in flight gets a ``fetch.cancel``, sent before the
        nack: requeued messages would otherwise feed our own parked fetch
        first. The broker answers a withdrawn fetch with an empty list, so
        nothing is delivered to us and no delivery count goes up; its
        confirmation is awaited with the acks. A fetch answered before the
        cancel reached the broker is abandoned with a hook that nacks
        whatever it brings, straight from the transport's reader.
        """
        if self.closed:
            return False
        self.closed = True
        unhanded = [d.delivery_id for d in self.buffer]
        self.buffer = iter(())
        queue, client = self.queue, self.client
        give_back = giving_back(client, queue)
        for pending in self.fetches:
            if pending.done:
                with suppress(BrokerError):  # a failed fetch holds nothing
                    unhanded.extend(raw_delivery_ids(pending.outcome()))
            else:
                cancel = cancel_fetch_call(queue, pending.request_id)
                pending.abandon(give_back)
                self.settling.append((client._begin(cancel), cancel))
        self.fetches.clear()
        if unhanded:
            call = nack_call(queue, unhanded, True, 0.0)
            self.settling.append((client._begin(call), call))
        self.flush()
        return True

    def abandon(self) -> None:
        """Leave without waiting (an exception, a cancellation): send everything,
        collect nothing."""
        if self.closed:
            return
        with suppress(BrokerError):  # the connection is gone: the broker requeues all
            self.start_closing()
        self.forget_settling()

    def forget_settling(self) -> None:
        """Stop waiting for the acks and nacks in flight (they are still sent)."""
        for pending, _ in self.settling:
            pending.abandon()
        self.settling = []

    @property
    def pending_acks(self) -> int:
        """Acks recorded and not yet sent."""
        return len(self.acks)


class _OfState(Generic[V]):
    """A driver's read-only view of its ``ConsumerState``'s attribute of the same name."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, driver: Any, owner: type) -> V:
        return getattr(driver._state, self._name)  # type: ignore[no-any-return]


class _ConsumerDriver:
    """What both drivers show of their ``ConsumerState``, and their waits,
    written once as flows (client/flavours.py)."""

    def __init__(self, state: ConsumerState) -> None:
        self._state = state

    queue: _OfState[str] = _OfState("The queue consumed.")
    acked: _OfState[int] = _OfState("Acks the broker has confirmed so far.")
    stale_acks: _OfState[int] = _OfState("Acks refused: their delivery was redelivered meanwhile.")
    pending_acks: _OfState[int] = _OfState("Acks recorded and not yet sent.")

    def _fetched(self) -> Flow[Any]:
        """The buffer is empty: the next delivery to hand out, once fetched;
        None once the consumer is closed or drained."""
        state = self._state
        while (fetch := state.next_fetch()) is not None:
            yield fetch
            delivery = state.take_fetched()
            if delivery is not None:
                return delivery
        return None

    @staticmethod
    def _handed(delivery: D | None, exhausted: type[Exception]) -> D:
        """``delivery``, or raise ``exhausted`` (the side's end of iteration) for None."""
        if delivery is None:
            raise exhausted
        return delivery

    def _settled(self) -> Flow[None]:
        while (pending := self._state.unsettled()) is not None:
            yield pending

    def _flush(self) -> Flow[None]:
        """Send the recorded acks now and wait until the broker confirmed every ack."""
        self._state.flush()
        yield from self._settled()

    flush = waits(_flush)

    def _closing(self) -> Flow[None]:
        """Stop: give back unprocessed deliveries, send the last acks, wait for
        the broker to confirm them."""
        if self._state.start_closing():
            with self._state.forgetting_on_error():
                yield from self._settled()

    def _abandon(self) -> None:
        self._state.abandon()


class AsyncConsumer(_ConsumerDriver, AwaitingContext):
    """``mb.consume(queue, ...)``: ``async with`` it, ``async for`` its deliveries.

    See the module docstring for how fetches are pipelined and acks batched.
    Runs no task of its own; every wait happens inside ``__anext__`` and
    ``aclose``.
    """

    def __aiter__(self) -> AsyncConsumer:
        return self

    async def __anext__(self) -> Delivery:
        # A fetched delivery, the common case, needs no flow and no wait.
        delivery: Delivery | None = next(self._state.buffer, None)
        if delivery is None:
            delivery = self._handed(await self._run(self._fetched()), StopAsyncIteration)
        return delivery


class SyncConsumer(_ConsumerDriver, BlockingContext):
    """The blocking client's ``consume``: ``with`` it, ``for d in`` it, ``d.ack()``."""

    def __iter__(self) -> Iterator[SyncDelivery]:
        return self

    def __next__(self) -> SyncDelivery:
        delivery: SyncDelivery | None = next(self._state.buffer, None)
        if delivery is None:
            delivery = self._handed(self._run(self._fetched()), StopIteration)
        return delivery
